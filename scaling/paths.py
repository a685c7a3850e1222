"""Where the library writes: one path layer for local directories and object stores alike.

Every file `scaling` writes (checkpoints, metrics, run.json, the results table, plans,
reports, plots) goes through `etils.epath` via these helpers, so `--out gs://bucket/sweep`
means the same thing as `--out sweeps/local` (gs:// needs gcsfs: `pip install
'scaling-jax[gcs]'`). String paths are joined with `join`, never `os.path.join` (which
would turn `gs://b/x` into a local folder named `gs:`).
"""

from __future__ import annotations

import os


def path(p):
    """`p` as an `etils.epath.Path` (local, or gs:// and other fsspec/tf.io.gfile schemes)."""
    from etils import epath

    return epath.Path(p)


def is_local(p) -> bool:
    return "://" not in str(p)


def join(base, *parts: str) -> str:
    """`base/part/...` as a string, for local paths and URLs alike."""
    text = str(base)
    for part in parts:
        text = (text.rstrip("/") + "/" + str(part).lstrip("/")) if text else str(part)
    return text


def absolute(p) -> str:
    """Local paths made absolute (orbax and subprocesses want them); URLs unchanged."""
    return os.path.abspath(str(p)) if is_local(p) else str(p)


def makedirs(p):
    """Create directory `p` (and parents); returns it as an epath.Path."""
    d = path(p)
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_atomic(target, data: str | bytes) -> None:
    """Write `data` to `target` so that a kill at any moment leaves the old file or the new one,
    never half of one.

    Local files: through a temporary sibling and a rename (POSIX rename is atomic). Object
    stores: one whole-object write, which is atomic by itself (readers see the old object or
    the new one); a temporary object and a "rename" there would be a copy and a delete, three
    requests instead of one, leaving `.name.tmp` behind when killed between them (and a GCS
    emulator rejects gcsfs's moveTo call, so every write logged an error and fell back to that).
    """
    target = path(target)
    if not is_local(target):
        if isinstance(data, bytes):
            target.write_bytes(data)
        else:
            target.write_text(data)
        return
    tmp = target.parent / f".{target.name}.tmp"
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    tmp.replace(target)
