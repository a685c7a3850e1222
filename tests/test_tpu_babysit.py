"""tpu/babysit.sh for real, against a scripted fake gcloud.

The fake answers `describe` with the state in FAKE_QR / FAKE_NODE (and, with FAKE_WARN=1,
prints gcloud-style warnings on stderr first), the sweep health check with FAKE_SWEEP, the
FAILED reason with FAKE_REASON, and records every call. Nothing else happens: the steps
babysit.sh runs (delete, create, setup, launch) only leave their calls behind.
"""

from __future__ import annotations

import subprocess

import pytest
from tpu_helpers import BASH, OVERRIDES, TPU, base_env

pytestmark = pytest.mark.skipif(BASH is None, reason="bash not available")

FAKE_GCLOUD = r"""#!/bin/bash
echo "$*" >> "$CALLS"
warn() {
  [ "${FAKE_WARN:-0}" = 1 ] || return 0
  echo "WARNING: Property validation for compute/zone was skipped: resource not found." >&2
  echo "WARNING: this command is deprecated; state SUSPENDED is not what you think" >&2
}
case "$*" in
  "storage ls "*/DONE) [ "${FAKE_DONE:-0}" = 1 ] ;;
  "compute tpus queued-resources describe "*failedData*) warn; echo "${FAKE_REASON:-}" ;;
  "compute tpus queued-resources describe "*)
    warn
    case "$FAKE_QR" in
      NOT_FOUND) echo "ERROR: (gcloud.compute.tpus.queued-resources.describe) NOT_FOUND: Resource not found" >&2; exit 1 ;;
      ERROR) echo "ERROR: network is unreachable" >&2; exit 1 ;;
      *) echo "$FAKE_QR" ;;
    esac ;;
  "compute tpus tpu-vm describe "*) warn; echo "${FAKE_NODE:-READY}" ;;
  "compute tpus tpu-vm ssh "*SWEEP_RUNNING*) echo "SWEEP_RUNNING"; echo "SWEEP_${FAKE_SWEEP:-RUNNING}" ;;
  *) exit 0 ;;
esac
"""


def _babysit(tmp_path, *args, env_extra=None, once=True, **fake):
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    (bindir / "gcloud").write_text(FAKE_GCLOUD)
    (bindir / "gcloud").chmod(0o755)
    calls = tmp_path / "calls"
    calls.unlink(missing_ok=True)
    env = base_env(OVERRIDES)
    env.update({"CALLS": str(calls), "PATH": f"{bindir}:{env['PATH']}"})
    env.update({f"FAKE_{k.upper()}": v for k, v in fake.items()})
    env.update(env_extra or {})
    argv = [BASH, str(TPU / "babysit.sh"), *(["--once"] if once else ["--interval=0"]), *args]
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    lines = calls.read_text().splitlines() if calls.exists() else []
    # "compute tpus tpu-vm ssh ..." -> "tpu-vm ssh"; "storage ls ..." -> "storage ls"
    short = [" ".join(l.split()[2:4]) if l.startswith("compute") else " ".join(l.split()[:2]) for l in lines]
    return res, short, lines


RECREATE = ["queued-resources delete", "queued-resources create"]


@pytest.mark.parametrize("warn", ["0", "1"])
@pytest.mark.parametrize("fake,expected", [
    ({"qr": "SUSPENDED"}, ["queued-resources describe"] + RECREATE),
    ({"qr": "FAILED"}, ["queued-resources describe", "queued-resources describe"] + RECREATE),
    ({"qr": "NOT_FOUND"}, ["queued-resources describe", "queued-resources create"]),
    ({"qr": "ERROR"}, ["queued-resources describe"]),
    ({"qr": "WAITING_FOR_RESOURCES"}, ["queued-resources describe"]),
    ({"qr": "ACTIVE", "node": "PREEMPTED"}, ["queued-resources describe", "tpu-vm describe"] + RECREATE),
    ({"qr": "ACTIVE", "node": "CREATING"}, ["queued-resources describe", "tpu-vm describe"]),
    ({"qr": "ACTIVE", "sweep": "RUNNING"}, ["queued-resources describe", "tpu-vm describe", "tpu-vm ssh"]),
    ({"qr": "ACTIVE", "sweep": "DEAD"},  # health check; stop; setup (lock?, install); launch
     ["queued-resources describe", "tpu-vm describe", "tpu-vm ssh", "tpu-vm ssh", "storage ls", "tpu-vm ssh",
      "tpu-vm ssh"]),
    ({"qr": "ACTIVE", "sweep": "NONE"},  # never launched here (fresh VMs): setup + launch, no stop
     ["queued-resources describe", "tpu-vm describe", "tpu-vm ssh", "storage ls", "tpu-vm ssh", "tpu-vm ssh"]),
])
def test_babysit_real_mode(tmp_path, fake, expected, warn):
    """The same actions with gcloud warnings on stderr: only stdout is read as a state, so a
    preempted TPU never reads as 'waiting' (nor a warning mentioning 'not found' as gone)."""
    res, short, lines = _babysit(tmp_path, warn=warn, **fake)
    assert res.returncode == 0, res.stderr
    assert short == ["storage ls"] + expected, lines
    if "queued-resources create" in expected:
        assert "--spot" in lines[-1] and "--project=test-proj" in lines[-1]
    if fake.get("sweep") == "DEAD":
        assert "kill -TERM" in lines[-4] and "requirements.lock" in lines[-2] and "python -m scaling sweep" in lines[-1]
        assert "crash 1/5" in res.stderr
    if fake.get("sweep") == "NONE":
        assert "crash 1/" not in res.stderr and "kill -TERM" not in "".join(lines)


def test_babysit_failed_reason_is_printed(tmp_path):
    reason = "Quota limit 'TPUV5sLitepodServingPerProjectPerZoneForTPUAPI' has been exceeded."
    res, _, lines = _babysit(tmp_path, qr="FAILED", reason=reason, warn="1")
    assert res.returncode == 0, res.stderr
    assert f"queued resource FAILED: {reason}" in res.stderr
    assert "WARNING" not in res.stderr.split("FAILED: ")[1].splitlines()[0]  # stderr is not the reason
    assert any("--format=value(state.failedData.error.message)" in l for l in lines)


def test_babysit_unparseable_state_is_not_waiting(tmp_path):
    res, short, _ = _babysit(tmp_path, qr="")
    assert res.returncode == 0
    assert "printed no state" in res.stderr and "state unknown" in res.stderr
    assert short == ["storage ls", "queued-resources describe"]


def test_babysit_real_mode_done(tmp_path):
    res, short, _ = _babysit(tmp_path, done="1", qr="ACTIVE")
    assert res.returncode == 0 and short == ["storage ls"]
    res, short, lines = _babysit(tmp_path, "--delete-when-done", done="1", qr="ACTIVE")
    assert res.returncode == 0 and short == ["storage ls", "queued-resources delete"]
    assert "--force" in lines[-1] and "--quiet" in lines[-1]


# --- separate budgets for preemptions and crashes -----------------------------------------


def test_crash_budget(tmp_path):
    """A sweep that dies every time is relaunched MAX_CRASHES times, then babysit gives up;
    the preemption budget does not limit it."""
    res, short, lines = _babysit(tmp_path, once=False, qr="ACTIVE", sweep="DEAD",
                                 env_extra={"MAX_CRASHES": "2", "MAX_PREEMPTIONS": "0"})
    assert res.returncode == 1
    assert "crash 3/2" in res.stderr and "MAX_CRASHES=2" in res.stderr
    assert sum("python -m scaling sweep" in l for l in lines) == 2  # two relaunches
    assert "queued-resources delete" not in short


def test_preemption_budget(tmp_path):
    """A TPU that is preempted every time is recreated MAX_PREEMPTIONS times; crashes are
    counted separately (MAX_CRASHES=0 does not stop preemption recovery)."""
    res, short, _ = _babysit(tmp_path, once=False, qr="SUSPENDED",
                             env_extra={"MAX_PREEMPTIONS": "3", "MAX_CRASHES": "0"})
    assert res.returncode == 1
    assert "preemption 4/3" in res.stderr and "MAX_PREEMPTIONS=3" in res.stderr
    assert short.count("queued-resources create") == 3
    assert "crash 1/" not in res.stderr


def test_failed_counts_as_a_crash(tmp_path):
    res, short, _ = _babysit(tmp_path, qr="FAILED", env_extra={"MAX_CRASHES": "0"})
    assert res.returncode == 1 and "MAX_CRASHES=0" in res.stderr
    assert "queued-resources create" not in short
    res, short, _ = _babysit(tmp_path, qr="FAILED", env_extra={"MAX_PREEMPTIONS": "0"})
    assert res.returncode == 0 and "queued-resources create" in short


def test_first_creation_and_first_launch_are_free(tmp_path):
    """Starting from nothing (no queued resource; then a READY TPU where nothing was
    launched) uses neither budget."""
    budgets = {"MAX_PREEMPTIONS": "0", "MAX_CRASHES": "0"}
    res, short, _ = _babysit(tmp_path, qr="NOT_FOUND", env_extra=budgets)
    assert res.returncode == 0 and short[-1] == "queued-resources create"
    res, short, lines = _babysit(tmp_path, qr="ACTIVE", sweep="NONE", env_extra=budgets)
    assert res.returncode == 0 and "python -m scaling sweep" in lines[-1]


def test_a_vanished_queued_resource_is_a_preemption(tmp_path):
    """Seen ACTIVE, then gone: a preemption (with MAX_PREEMPTIONS=0 babysit gives up)."""
    state = tmp_path / "qr-state"
    state.write_text("ACTIVE\n")
    bindir, real = tmp_path / "fakebin", tmp_path / "real-gcloud"
    bindir.mkdir()
    real.write_text(FAKE_GCLOUD)
    real.chmod(0o755)
    # The first describe answers ACTIVE and switches the answer to NOT_FOUND.
    (bindir / "gcloud").write_text(
        f'#!/bin/bash\nexport FAKE_QR=$(cat "{state}")\n'
        f'case "$*" in "compute tpus queued-resources describe "*) echo NOT_FOUND > "{state}";; esac\n'
        f'exec "{real}" "$@"\n')
    (bindir / "gcloud").chmod(0o755)
    env = base_env(OVERRIDES)
    env.update({"CALLS": str(tmp_path / "calls"), "PATH": f"{bindir}:{env['PATH']}", "MAX_PREEMPTIONS": "0"})
    res = subprocess.run([BASH, str(TPU / "babysit.sh"), "--interval=0"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1, res.stderr
    assert "TPU READY, sweep running" in res.stderr
    assert "preemption 1/0: queued resource gone" in res.stderr
