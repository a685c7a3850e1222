"""The embedded default corpus: the Python standard library's own source files.

Why this corpus: every Python install has it, so experiments run with no
network and no download step, and it is real, structured text (code, comments,
docstrings) that a small model can make measurable progress on.

What is in it: every ``*.py`` file under ``sysconfig.get_paths()["stdlib"]``
(``site-packages``, ``dist-packages`` and ``__pycache__`` excluded), as raw
bytes, in sorted relative-path order. On CPython 3.11 that is about 1,800 files
and 31.5 MB (about half of it the ``test/`` package). It is NOT capped: as a
uint8 array it is 31.5 MB of memory and reading it takes ~0.3 s, so a cap
would only shrink the corpus (and make small models overfit sooner) without
saving anything that matters. For the same reason there is no on-disk cache:
it would save ~0.3 s per process and add an invalidation problem. The corpus is
cached in memory per process (``load_corpus`` is memoised).

Train/validation split: by FILE, not by position, so that no file contributes
to both. Files are ranked by sha256 of their relative path and the first
``round(validation_fraction * n)`` (at least one) are held out. The split thus
depends on paths only: not on the data seed, not on file contents, and a file
keeps its side when others are added.

Identity: the corpus differs between Python versions, so every run records the
Python version, file and byte counts and a sha256 over the sorted (path,
content) pairs, for the whole corpus and for the split: for each file in order,
``sha256.update(relpath_utf8 + b"\\0" + str(len(content)).encode() + b"\\0" + content)``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import sysconfig
from dataclasses import dataclass

EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})


def default_root() -> str:
    return sysconfig.get_paths()["stdlib"]


def corpus_sha256(paths, contents) -> str:
    """sha256 over sorted (path, content) pairs, with lengths to avoid ambiguity."""
    h = hashlib.sha256()
    for p, c in zip(paths, contents):
        h.update(p.encode("utf-8") + b"\0" + str(len(c)).encode() + b"\0")
        h.update(c)
    return h.hexdigest()


@dataclass(frozen=True)
class StdlibCorpus:
    root: str
    paths: tuple[str, ...]  # relative, '/'-separated, sorted
    contents: tuple[bytes, ...]
    sha256: str

    @property
    def num_bytes(self) -> int:
        return sum(len(c) for c in self.contents)

    def split_indices(self, split: str, validation_fraction: float) -> list[int]:
        """Indices (in sorted path order) of the files of one split."""
        n = len(self.paths)
        k = min(n - 1, max(1, round(validation_fraction * n)))
        if n < 2:
            raise ValueError(f"DataConfig.stdlib_path={self.root!r}: need at least 2 .py files to split, found {n}")
        by_hash = sorted(range(n), key=lambda i: hashlib.sha256(self.paths[i].encode("utf-8")).digest())
        held_out = set(by_hash[:k])
        return [i for i in range(n) if (i in held_out) == (split == "validation")]

    def identity(self) -> dict:
        return {
            "python_version": platform.python_version(),
            "python_implementation": sys.implementation.name,
            "stdlib_path": self.root,
            "corpus_files": len(self.paths),
            "corpus_bytes": self.num_bytes,
            "corpus_sha256": self.sha256,
        }


def list_files(root: str) -> list[str]:
    """Relative paths of the corpus files under ``root``, sorted."""
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in EXCLUDED_DIRS]
        for f in files:
            if f.endswith(".py"):
                out.append(os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/"))
    return sorted(out)


@functools.lru_cache(maxsize=4)
def load_corpus(root: str | None = None) -> StdlibCorpus:
    """Read (once per process) every corpus file under ``root``."""
    root = os.path.abspath(root or default_root())
    paths = list_files(root)
    contents = []
    for p in paths:
        with open(os.path.join(root, p), "rb") as f:
            contents.append(f.read())
    return StdlibCorpus(root, tuple(paths), tuple(contents), corpus_sha256(paths, contents))
