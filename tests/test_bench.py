"""Benchmark scripts run end to end at a tiny size on CPU (their figures live in bench/README.md)."""

import pytest


@pytest.mark.slow
def test_gpu_step_script_runs_tiny_on_cpu():
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    out = subprocess.run([sys.executable, os.path.join(root, "bench", "gpu_step.py"), "--tiny"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["checks"] == {"finite": True, "decreasing": True, "bf16_f32_close": True}
    assert result["model"]["dtype"] == "bfloat16" and result["tokens_per_s"] > 0
