"""Batched against one-at-a-time document reads from a real ArrayRecord TFDS dataset.

    python bench/tfds_reads.py                              # 50k lm1b-like docs, B=64, T=1024
    python bench/tfds_reads.py --docs 20000 --batch 32 --seq-len 256 --data-dir /tmp/tfds_bench

Builds (once; reused when --data-dir already holds it) a dataset of lm1b-sized documents
(10-40 words) with a small `tfds.core.GeneratorBasedBuilder` in array_record format, no
TensorFlow, then times `DocumentPacker.windows` (packing="documents", byte tokens) on the same
steps in one process, side by side:
  * batched: the source is `tfds_source.TfdsTexts` (`get_many` = one ArrayRecord
    `__getitems__` per round of documents), what `make_dataset` uses;
  * one by one: the same texts behind a plain `__getitem__` (one reader call per document);
  * grain, one by one: `grain.MapDataset.source(src).map(itemgetter("text"))`, one call per
    document through grain's map, which is what the pipeline did before (if grain is installed).
All must give identical windows (asserted). Prints per-batch times and their ratio; a
reader on gs:// pays a round trip per unbatched call, so the local ratio is a lower bound.
"""

from __future__ import annotations

import argparse
import operator
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scaling.data import rng  # noqa: E402
from scaling.data.packing import DocumentPacker  # noqa: E402
from scaling.data.tfds_source import open_texts  # noqa: E402
from scaling.data.tokenizers import ByteTokenizer  # noqa: E402

NAME = "scaling_bench_lm_like"


def build(data_dir: str, n_docs: int) -> None:
    import tensorflow_datasets as tfds

    g = np.random.default_rng(0)
    words = np.array(["".join(g.choice(list("abcdefghijklmnopqrstuvwxyz"), size=g.integers(2, 9)))
                      for _ in range(5000)])
    lengths = g.integers(10, 41, size=n_docs + 1000)
    picks = g.integers(0, len(words), size=int(lengths.sum()))
    bounds = np.concatenate([[0], np.cumsum(lengths)])

    class ScalingBenchLmLike(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, n_docs), "test": self._generate_examples(n_docs, n_docs + 1000)}

        def _generate_examples(self, lo, hi):
            for i in range(lo, hi):
                yield i, {"text": " ".join(words[picks[bounds[i]:bounds[i + 1]]])}

    ScalingBenchLmLike(data_dir=data_dir, file_format="array_record").download_and_prepare()


class OneByOne:
    """The same texts without `get_many`: the packer reads one document per call."""

    def __init__(self, texts):
        self.texts = texts

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, i):
        return self.texts[i]


def time_batches(packer, steps, batch) -> tuple[list[float], list[np.ndarray]]:
    times, outs = [], []
    for s in steps:
        keys = rng.row_keys(0, "train", s, np.arange(batch, dtype=np.uint64))
        t = time.perf_counter()
        outs.append(packer.windows(keys))
        times.append(time.perf_counter() - t)
    return times, outs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--data-dir", default=None, help="where to build/reuse the dataset (default: a temp dir)")
    args = p.parse_args()
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="tfds_bench_")
    if not os.path.isdir(os.path.join(data_dir, NAME)):
        t = time.perf_counter()
        build(data_dir, args.docs)
        print(f"built {args.docs:,} documents into {data_dir} in {time.perf_counter() - t:.1f} s")
    texts, ident = open_texts(NAME, "train", data_dir=data_dir, text_key="text", download=False)
    tok = ByteTokenizer()
    steps = list(range(1, args.steps + 1))
    batched = DocumentPacker(texts, tok, args.seq_len)
    single = DocumentPacker(OneByOne(texts), tok, args.seq_len)
    packers = {"one document per read": single, "batched reads": batched}
    try:
        import grain

        grain_texts = grain.MapDataset.source(texts.source).map(operator.itemgetter("text"))
        packers = {"grain map, one per read": DocumentPacker(grain_texts, tok, args.seq_len), **packers}
    except ImportError:
        pass
    times, windows = {}, {}
    for label, packer in packers.items():
        packer.windows(rng.row_keys(0, "train", 0, np.arange(args.batch, dtype=np.uint64)))  # open readers
        times[label], windows[label] = time_batches(packer, steps, args.batch)
    first = windows["batched reads"]
    assert all(np.array_equal(a, b) for w in windows.values() for a, b in zip(w, first)), "windows differ"
    tokens = args.batch * (args.seq_len + 1)
    print(f"{ident['num_documents']:,} documents, batch {args.batch} x {args.seq_len + 1} byte tokens, "
          f"{len(steps)} steps (median per batch; windows identical)")
    mb = statistics.median(times["batched reads"])
    for label, t in times.items():
        m = statistics.median(t)
        print(f"  {label:24s} {m * 1e3:8.1f} ms/batch  {tokens / m:12,.0f} tokens/s  {m / mb:5.1f}x the batched time")


if __name__ == "__main__":
    main()
