"""Tokenizers: text or raw bytes -> integer token array, plus a separator id.

Two kinds, one small interface (``vocab_size``, ``separator``, ``encode``,
``encode_many``, ``identity``):

* ``ByteTokenizer``: the UTF-8 (or raw file) bytes themselves, vocab 256. It
  needs no model file, never sees an unknown token, and makes bits per byte
  equal bits per token, which is why it is the default.
* ``SentencePieceTokenizer``: a trained ``.model`` file (local path, or any
  ``gs://``-style path etils can read). Raw bytes that are not valid UTF-8 (a
  few stdlib test files) are decoded with U+FFFD replacement.

The separator is the token placed after every document when documents are
packed into windows: byte 0 for bytes (no .py file of the standard library
contains a NUL byte, so it is unambiguous there), the model's ``eos`` id for
SentencePiece.
"""

from __future__ import annotations

import hashlib
from typing import Sequence, Union

import numpy as np

Text = Union[str, bytes]


def _as_bytes(doc: Text) -> bytes:
    return doc.encode("utf-8") if isinstance(doc, str) else bytes(doc)


def _as_str(doc: Text) -> str:
    return doc if isinstance(doc, str) else bytes(doc).decode("utf-8", errors="replace")


def num_bytes(doc: Text) -> int:
    """UTF-8 size of a document: the unit of bits per byte."""
    return len(doc.encode("utf-8")) if isinstance(doc, str) else len(doc)


class ByteTokenizer:
    vocab_size = 256
    separator = 0

    def encode(self, doc: Text) -> np.ndarray:
        return np.frombuffer(_as_bytes(doc), dtype=np.uint8)

    def encode_many(self, docs: Sequence[Text]) -> list[np.ndarray]:
        return [self.encode(d) for d in docs]

    @property
    def identity(self) -> dict:
        return {"type": "byte", "vocab_size": 256, "separator": 0}


class SentencePieceTokenizer:
    def __init__(self, path: str):
        try:
            import sentencepiece as spm
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "DataConfig.tokenizer is a SentencePiece model but `sentencepiece` is not installed: "
                "pip install 'scaling-jax[tfds]' (or pip install sentencepiece)"
            ) from e
        self.path = path
        proto = _read_bytes(path)
        self.sha256 = hashlib.sha256(proto).hexdigest()
        self._sp = spm.SentencePieceProcessor(model_proto=proto)
        self.vocab_size = int(self._sp.get_piece_size())
        sep = int(self._sp.eos_id())
        if sep < 0:
            raise ValueError(
                f"DataConfig.tokenizer={path!r}: the SentencePiece model has no eos piece "
                "(eos_id=-1), which is needed as the document separator; train it with eos_id >= 0"
            )
        self.separator = sep
        self._dtype = np.uint16 if self.vocab_size <= 2**16 else np.int32

    def encode(self, doc: Text) -> np.ndarray:
        return np.asarray(self._sp.encode(_as_str(doc), out_type=int), dtype=self._dtype)

    def encode_many(self, docs: Sequence[Text]) -> list[np.ndarray]:
        ids = self._sp.encode([_as_str(d) for d in docs], out_type=int)
        return [np.asarray(x, dtype=self._dtype) for x in ids]

    @property
    def identity(self) -> dict:
        return {
            "type": "sentencepiece",
            "path": self.path,
            "sha256": self.sha256,
            "vocab_size": self.vocab_size,
            "separator": self.separator,
        }


def _read_bytes(path: str) -> bytes:
    if "://" in path:  # gs://..., read through etils (a tfds dependency)
        from etils import epath

        return epath.Path(path).read_bytes()
    with open(path, "rb") as f:
        return f.read()


def make_tokenizer(spec: str) -> ByteTokenizer | SentencePieceTokenizer:
    """``"byte"`` or a path to a SentencePiece model."""
    return ByteTokenizer() if spec == "byte" else SentencePieceTokenizer(spec)
