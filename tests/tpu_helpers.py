"""Shared helpers of the tests of the TPU VM scripts in tpu/ (test_tpu_*.py).

There is no gcloud and no TPU here. Scripts run either with --dry-run (the printed commands
are checked) or against a fake `gcloud` on PATH (FAKE_CLOUD) that keeps gs:// in a local
folder and runs each `tpu-vm ssh --command=...` with bash in a sandbox worker: a fake HOME
with stub `python3.11` (a fake venv whose python logs its pip calls and delegates `-c` to the
real interpreter), `curl` (the metadata server: worker 2) and the same fake gcloud.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TPU = ROOT / "tpu"
SCRIPTS = ["create.sh", "setup.sh", "launch.sh", "babysit.sh", "status.sh", "logs.sh", "stop.sh", "delete.sh"]
SSH_SCRIPTS = ["setup.sh", "launch.sh", "stop.sh", "status.sh", "logs.sh", "babysit.sh"]
BASH = shutil.which("bash")

# Every variable tpu/env.sh reads; cleared so the caller's environment cannot leak in.
CONFIG_VARS = [
    "TPU_PROJECT", "TPU_ZONE", "TPU_ACCELERATOR_TYPE", "TPU_RUNTIME_VERSION", "TPU_NAME",
    "TPU_QUEUED_RESOURCE", "TPU_SPOT", "BUCKET", "RUN", "EXPERIMENT", "SCALING_GIT_URL",
    "SCALING_GIT_REF", "SCALING_DATA_SOURCE", "SCALING_DATA_NAME", "SCALING_DATA_DIR",
    "SCALING_TOKENIZER", "SCALING_TFDS_DIR", "TPU_PYTHON", "REMOTE_VENV", "REMOTE_REPO",
    "REMOTE_LOG_DIR", "LOG_SYNC_SECONDS", "TPU_SSH_KEY", "TPU_SSH_AGENT_CHECK", "POLL_SECONDS",
    "MAX_PREEMPTIONS", "MAX_CRASHES", "MAX_RESTARTS", "DRY_RUN", "DRY_RUN_STATE",
    "DRY_RUN_NODE_STATE", "SSH_AUTH_SOCK",
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


def base_env(extra=None) -> dict:
    """The environment minus every tpu/env.sh setting, with an ssh key that does not exist
    (so the caller's own key cannot trigger the ssh-agent check), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env["TPU_SSH_KEY"] = "/nonexistent/google_compute_engine"
    env.update(extra or {})
    return env


def run_script(name, *args, env=None, stub=None, dry=True, tpu_dir=TPU, cwd=None):
    e = base_env(env)
    if stub is not None:
        e["PATH"] = f"{stub[0]}{os.pathsep}{e.get('PATH', '')}"
    argv = [BASH, str(Path(tpu_dir) / name), *args]
    if dry and "--dry-run" not in args and e.get("DRY_RUN") != "1":
        argv.append("--dry-run")
    res = subprocess.run(argv, env=e, capture_output=True, text=True, timeout=60, cwd=cwd)
    if stub is not None and dry:
        assert not stub[1].exists(), f"dry run executed: {stub[1].read_text()}"
    return res


def commands(stdout):
    """The printed commands ('+ ...' lines), each split into words like a shell would."""
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def short(cmd):
    """'gcloud compute tpus tpu-vm ssh ...' -> 'tpu-vm ssh'; 'gcloud storage cp ...' -> 'storage cp'."""
    words = cmd[1:] if cmd and cmd[0] == "gcloud" else cmd
    return " ".join(words[2:4]) if words[:1] == ["compute"] else " ".join(words[:2])


def one(cmds, *prefix):
    hits = [c for c in cmds if c[: len(prefix)] == list(prefix)]
    assert len(hits) == 1, f"expected one {' '.join(prefix)!r} command in {cmds}"
    return hits[0]


def remote_command(cmd):
    flags = [w for w in cmd if w.startswith("--command=")]
    assert len(flags) == 1, cmd
    return flags[0][len("--command="):]


# --- a fake cloud: gs:// in a folder, ssh into a sandbox worker --------------------------

FAKE_CLOUD = r"""#!/bin/bash
echo "$*" >> "$CALLS"
gs() { printf '%s' "${1/#gs:\/\//$GS_ROOT/}"; }
case "$1 $2" in
  "storage ls")
    [ -e "$(gs "$3")" ] || { echo "ERROR: (gcloud.storage.ls) One or more URLs matched no objects." >&2; exit 1; }
    echo "$3" ;;
  "storage cat") cat "$(gs "$3")" ;;
  "storage rm") rm -f "$(gs "$3")" ;;
  "storage cp")
    shift 2; args=("$@"); dst=$(gs "${args[-1]}"); unset 'args[-1]'
    for src in "${args[@]}"; do
      if [ "$src" = - ]; then mkdir -p "$(dirname "$dst")"; cat > "$dst"; continue; fi
      s=$(gs "$src"); [ -f "$s" ] || exit 1
      if [ "${dst%/}" != "$dst" ] || [ -d "$dst" ]; then mkdir -p "$dst"; cp "$s" "$dst/"
      else mkdir -p "$(dirname "$dst")"; cp "$s" "$dst"; fi
    done ;;
  "compute tpus")
    if [ "$3 $4" = "tpu-vm ssh" ]; then
      for a in "$@"; do case "$a" in --command=*) cmd="${a#--command=}" ;; esac; done
      HOME="$SANDBOX_HOME" PATH="$STUBS:$PATH" bash -c "$cmd"
    fi ;;
esac
"""

# The interpreter setup.sh uses: `python3.11 -m venv DIR` makes a fake venv.
FAKE_PYTHON311 = r"""#!/bin/bash
[ "$1 $2" = "-m venv" ] || exit 1
mkdir -p "$3/bin"
printf 'export PATH="%s/bin:$PATH"\n' "$3" > "$3/bin/activate"
cp "$(dirname "$0")/venv-python" "$3/bin/python"
"""

# The venv's python: logs every call; pip does nothing (freeze prints a fixed lock), the
# sweep idles until killed, `-c` programs run on the real interpreter.
FAKE_VENV_PYTHON = r"""#!/bin/bash
echo "$*" >> "$HOME/python-calls"
case "$1 $2 $3" in
  "-m pip freeze") printf 'jax==0.10.2\nlibtpu==0.0.52\n'; exit 0 ;;
  "-m pip install") exit 0 ;;
  "-m scaling sweep") echo "$@" > "$HOME/sweep-args"; echo "fake sweep $$"; exec sleep 30 ;;
esac
[ "$1" = -c ] && exec "$REAL_PYTHON" "$@"
exit 1
"""


@dataclass
class FakeCloud:
    root: Path
    env: dict

    @property
    def home(self) -> Path:
        return Path(self.env["SANDBOX_HOME"])

    @property
    def gs(self) -> Path:
        return Path(self.env["GS_ROOT"])

    @property
    def calls(self) -> list[str]:
        p = Path(self.env["CALLS"])
        return p.read_text().splitlines() if p.exists() else []

    def python_calls(self) -> list[str]:
        p = self.home / "python-calls"
        return p.read_text().splitlines() if p.exists() else []

    def new_worker(self) -> None:
        """A fresh VM (after a preemption): an empty HOME."""
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        Path(self.env["CALLS"]).unlink(missing_ok=True)

    def run(self, script, *args, tpu_dir=TPU, env=None, timeout=60):
        e = {**self.env, **(env or {})}
        return subprocess.run([BASH, str(Path(tpu_dir) / script), *args], env=e, capture_output=True,
                              text=True, timeout=timeout)


def fake_cloud(tmp_path: Path, **env) -> FakeCloud:
    bindir, stubs = tmp_path / "fakebin", tmp_path / "stubs"
    for d in (bindir, stubs, tmp_path / "worker-home", tmp_path / "gs"):
        d.mkdir(parents=True, exist_ok=True)
    for path, text in ((bindir / "gcloud", FAKE_CLOUD), (stubs / "python3.11", FAKE_PYTHON311),
                       (stubs / "venv-python", FAKE_VENV_PYTHON), (stubs / "curl", "#!/bin/sh\necho 2\n")):
        path.write_text(text)
        path.chmod(0o755)
    e = base_env({**OVERRIDES, "CALLS": str(tmp_path / "calls"), "GS_ROOT": str(tmp_path / "gs"),
                  "SANDBOX_HOME": str(tmp_path / "worker-home"), "STUBS": str(stubs),
                  "REAL_PYTHON": sys.executable, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    e.update(env)
    return FakeCloud(tmp_path, e)


def git(repo: Path, *args: str) -> str:
    ident = ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"]
    return subprocess.run(["git", *ident, "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, timeout=30).stdout.strip()
