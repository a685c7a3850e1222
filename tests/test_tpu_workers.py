"""The programs the TPU scripts send to the workers, executed for real in a sandbox.

tpu/setup.sh and tpu/launch.sh run in real mode against the fake cloud of tpu_helpers:
gs:// is a folder, `tpu-vm ssh --command=...` runs the program with bash in a sandbox worker
(fake HOME, stub python/pip/curl). This checks what a worker ends up with: the code and the
versions pinned for the run (also after a preemption and after the source moved on), the
shipped working tree, the sweep command with the forwarded data config, the loud warning on
the stdlib corpus, and launch/stop of the background sweep.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from tpu_helpers import BASH, OVERRIDES, ROOT, TPU, commands, fake_cloud, git, remote_command, run_script

pytestmark = [pytest.mark.skipif(BASH is None or shutil.which("git") is None, reason="bash and git needed"),
              pytest.mark.skipif(sys.platform == "win32", reason="POSIX only"),
              pytest.mark.slow]  # end to end: a few seconds each (the workers import jax)

LOCK = "jax==0.10.2\nlibtpu==0.0.52\n"  # what the fake `pip freeze` prints


def _pip(cloud):
    return [c for c in cloud.python_calls() if c.startswith("-m pip")]


# --- setup.sh: the run's code and versions, pinned ---------------------------------------------


@pytest.fixture
def project(tmp_path):
    """A small git checkout with tpu/ in it: tracked, untracked, ignored and deleted files."""
    proj = tmp_path / "proj"
    shutil.copytree(TPU, proj / "tpu")
    (proj / "pkg").mkdir()
    (proj / "pkg" / "a.py").write_text("A = 1\n")
    (proj / "README.txt").write_text("hello\n")
    (proj / "gone.txt").write_text("deleted later\n")
    (proj / ".gitignore").write_text("ignored/\n*.log\n")
    git(proj, "init", "-q")
    git(proj, "add", "-A")
    git(proj, "commit", "-q", "-m", "init")
    (proj / "gone.txt").unlink()
    (proj / "new.txt").write_text("v1\n")
    (proj / "ignored").mkdir()
    (proj / "ignored" / "big.bin").write_text("x" * 1000)
    (proj / "notes.log").write_text("log\n")
    return proj


def test_setup_ships_the_working_tree_and_pins_it(tmp_path, project):
    cloud = fake_cloud(tmp_path, SCALING_GIT_URL="")
    res = cloud.run("setup.sh", tpu_dir=project / "tpu")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "setup ok:" in res.stdout and "working tree" in res.stdout
    setup = cloud.gs / "test-bucket" / "test-run" / "setup"
    with tarfile.open(setup / "source.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"README.txt", "pkg/a.py", "new.txt", ".gitignore", "tpu/setup.sh"} <= names
    assert not names & {"gone.txt", "notes.log", "ignored/big.bin", "ignored"}
    assert not any(n.startswith(".git/") for n in names)
    assert (setup / "requirements.lock").read_text() == LOCK
    head = git(project, "rev-parse", "--short", "HEAD")
    assert f"HEAD {head}, 2 uncommitted changes" in (setup / "source.txt").read_text()
    assert (cloud.home / "scaling" / "new.txt").read_text() == "v1\n"
    assert _pip(cloud) == ["-m pip install -q -U pip", "-m pip install -q -e .[tpu]",
                           "-m pip freeze --exclude-editable", "-m pip install -q -U pip",
                           f"-m pip install -q -r {_tmp_lock(cloud)}", "-m pip install -q --no-deps -e ."]

    # A preemption later: fresh VMs, and the local tree has moved on. setup.sh reinstalls
    # exactly the run's lock and code: nothing shipped or resolved again.
    (project / "new.txt").write_text("v2\n")
    cloud.new_worker()
    res = cloud.run("setup.sh", tpu_dir=project / "tpu")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not [c for c in cloud.calls if c.startswith("storage cp -")]
    assert (cloud.home / "scaling" / "new.txt").read_text() == "v1\n"
    assert "-m pip install -q -e .[tpu]" not in _pip(cloud) and "-m pip freeze --exclude-editable" not in _pip(cloud)
    assert (setup / "requirements.lock").read_text() == LOCK

    # --relock ships the tree as it is now.
    res = cloud.run("setup.sh", "--relock", tpu_dir=project / "tpu")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (cloud.home / "scaling" / "new.txt").read_text() == "v2\n"


def _tmp_lock(cloud):
    """The temporary path the install read the lock from (logged by the fake pip)."""
    hits = [c.split()[-1] for c in cloud.python_calls() if c.startswith("-m pip install -q -r ")]
    assert hits, cloud.python_calls()
    return hits[-1]


def test_setup_git_ref_is_resolved_once(tmp_path):
    """Git mode: the ref is resolved to one commit at the first setup; after the branch moves
    on, a re-setup (preemption) still installs that commit, without fetching."""
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    git(upstream, "init", "-q")
    (upstream / "VERSION").write_text("1\n")
    git(upstream, "add", "-A")
    git(upstream, "commit", "-q", "-m", "one")
    first = git(upstream, "rev-parse", "HEAD")
    cloud = fake_cloud(tmp_path, SCALING_GIT_URL=f"file://{upstream}", SCALING_GIT_REF="main")
    res = cloud.run("setup.sh")
    assert res.returncode == 0, res.stdout + res.stderr
    source = (cloud.gs / "test-bucket" / "test-run" / "setup" / "source.txt").read_text()
    assert f"main = commit {first}" in source
    assert (cloud.home / "scaling" / "VERSION").read_text() == "1\n"

    (upstream / "VERSION").write_text("2\n")
    git(upstream, "commit", "-q", "-am", "two")
    cloud.new_worker()
    res = cloud.run("setup.sh")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (cloud.home / "scaling" / "VERSION").read_text() == "1\n"
    assert f"commit {first}" in res.stdout
    assert not (cloud.home / "python-calls").read_text().count("freeze")


# --- launch.sh: the data config and the sweep on a worker ---------------------------------------


@pytest.fixture
def launched(tmp_path):
    """A worker with this repository checked out and a venv; kills what launch.sh starts."""
    cloud = fake_cloud(tmp_path, LOG_SYNC_SECONDS="1")
    (cloud.home / "scaling").symlink_to(ROOT)
    subprocess.run([str(cloud.root / "stubs" / "python3.11"), "-m", "venv", str(cloud.home / "scaling-venv")],
                   check=True)
    yield cloud
    logs = cloud.home / "scaling-logs"
    for pid_file in (logs / "test-run.pid", logs / "test-run.sync.pid"):
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_launch_warns_loudly_on_the_stdlib_corpus(launched):
    """experiments/tpu_v5e.py without data settings trains on the stdlib demo corpus: the
    workers load the experiment (the real scaling.experiment.load) and launch.sh says so."""
    res = launched.run("launch.sh")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "worker 2: data source=stdlib" in res.stdout
    assert "WARNING: this TPU sweep trains on the stdlib DEMO corpus" in res.stderr


def test_launch_forwards_the_data_config_to_the_sweep(launched):
    env = {"SCALING_DATA_NAME": "lm1b", "SCALING_DATA_SOURCE": "tfds", "SCALING_DATA_DIR": "gs://b/tfds"}
    res = launched.run("launch.sh", "--set", "train.lr=3e-4", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "worker 2: data source=tfds name=lm1b data_dir=gs://b/tfds tokenizer=byte" in res.stdout
    assert "WARNING" not in res.stderr
    args = _wait_for(launched.home / "sweep-args").split()
    assert args == ["-m", "scaling", "sweep", "experiments/tpu_v5e.py", "--set", "data.name=lm1b",
                    "--set", "data.data_dir=gs://b/tfds", "--set", "data.source=tfds", "--set", "train.lr=3e-4",
                    "--out", "gs://test-bucket/test-run", "--distributed"]


def test_launch_experiment_reads_scaling_tfds_dir(launched):
    res = launched.run("launch.sh", env={"SCALING_TFDS_DIR": "gs://b/tensorflow_datasets"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "data source=tfds name=lm1b data_dir=gs://b/tensorflow_datasets" in res.stdout
    assert "WARNING" not in res.stderr


def test_launch_bad_override_fails_before_the_sweep_starts(launched):
    res = launched.run("launch.sh", "--set", "data.nmae=lm1b")
    assert res.returncode != 0
    assert "nmae" in res.stderr and "launch failed" in res.stderr
    assert not (launched.home / "scaling-logs" / "test-run.pid").exists()


def _wait_for(path: Path, timeout=30.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not path.exists():
        time.sleep(0.05)
    return path.read_text()


def _wait(pred, timeout=30.0):  # generous: the machine may be busy
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


def test_worker_launch_and_stop_for_real(launched):
    env = {**OVERRIDES, "LOG_SYNC_SECONDS": "1"}
    launch = remote_command(commands(run_script("launch.sh", env=env).stdout)[0])
    stop = remote_command(commands(run_script("stop.sh", "--grace=5", env=env).stdout)[0])
    home, gs = launched.home, launched.gs
    worker_env = {**launched.env, "HOME": str(home), "PATH": f"{launched.env['STUBS']}:{launched.env['PATH']}"}
    logs = home / "scaling-logs"
    pid_file, sync_file = logs / "test-run.pid", logs / "test-run.sync.pid"
    gs_log = gs / "test-bucket" / "test-run" / "logs" / "worker-2.log"

    res = subprocess.run([BASH, "-c", launch], env=worker_env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "worker 2: started sweep" in res.stdout
    sweep_pid, sync_pid = int(pid_file.read_text()), int(sync_file.read_text())
    assert _alive(sweep_pid)
    assert _wait_for(home / "sweep-args").split() == [
        "-m", "scaling", "sweep", "experiments/tpu_v5e.py", "--out", "gs://test-bucket/test-run", "--distributed"]
    # The log reaches gs://BUCKET/RUN/logs/worker-2.log, with the data the sweep trains on.
    assert _wait(lambda: gs_log.exists() and "fake sweep" in gs_log.read_text())
    assert "data source=stdlib" in gs_log.read_text()

    # A second launch leaves the running sweep alone.
    res = subprocess.run([BASH, "-c", launch], env=worker_env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "already running" in res.stdout, res.stdout + res.stderr
    assert int(pid_file.read_text()) == sweep_pid

    res = subprocess.run([BASH, "-c", stop], env=worker_env, capture_output=True, text=True, timeout=20)
    assert res.returncode == 0 and f"stopped sweep (pid {sweep_pid})" in res.stdout, res.stdout + res.stderr
    assert _wait(lambda: not _alive(sweep_pid))
    assert _wait(lambda: not _alive(sync_pid)), "log sync loop should end after the sweep"
    assert "=== launch" in gs_log.read_text()

    res = subprocess.run([BASH, "-c", stop], env=worker_env, capture_output=True, text=True, timeout=20)
    assert "no sweep running" in res.stdout
