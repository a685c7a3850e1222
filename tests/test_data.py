"""Tests of scaling.data: determinism, random access, sharding, the stdlib
corpus, the synthetic language's entropy rate, TFDS (mocked, no download) with
byte and SentencePiece tokens, and input validation. CPU only, a few seconds."""

from __future__ import annotations

import itertools
import json
import math
import platform
import re
import time
from unittest import mock

import numpy as np
import pytest

from scaling.data import DataConfig, bits_per_byte, count_unique_tokens, epochs, make_dataset
from scaling.data.stdlib_corpus import list_files, load_corpus
from scaling.data.synthetic import entropy, get_chain, zipf_probs

SEQ = 64


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mock_tfds():
    """Mocked TFDS (random lm1b-like records, no download, no TensorFlow)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from tensorflow_datasets.core.data_sources.array_record import ArrayRecordDataSource

    # The mock sets `__getitems__` on a MagicMock, which binds only real magic methods, so
    # batched reads would raise TypeError; read one record at a time instead. Real ArrayRecord
    # sources batch (tests/test_data_tfds.py builds one).
    one_by_one = lambda self, keys: [self[k] for k in keys]  # noqa: E731
    with tfds.testing.mock_data(num_examples=40), mock.patch.object(ArrayRecordDataSource, "__getitems__", one_by_one):
        yield tfds


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    """A tiny SentencePiece model trained on sentences made here."""
    spm = pytest.importorskip("sentencepiece")
    g = np.random.default_rng(0)
    words = ["".join(g.choice(list("abcdefghijklmnopqrstuvwxyz"), size=g.integers(2, 7))) for _ in range(400)]
    sentences = [" ".join(g.choice(words, size=g.integers(3, 12))) for _ in range(3000)]
    prefix = tmp_path_factory.mktemp("spm") / "tiny"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_prefix=str(prefix),
        vocab_size=100,
        character_coverage=1.0,
        eos_id=2,
        # exact round trip (lm1b's mock text has runs of spaces)
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    return str(prefix) + ".model"


@pytest.fixture
def fake_stdlib(tmp_path):
    """A small stdlib-shaped tree: includes files that must be excluded."""
    root = tmp_path / "lib"
    for i in range(20):
        (root / "pkg").mkdir(parents=True, exist_ok=True)
        (root / "pkg" / f"mod{i:02d}.py").write_text(f"def f{i}(x):\n    return x * {i}  # ü\n" * 20)
    for excluded in ("site-packages/thirdparty.py", "dist-packages/other.py", "__pycache__/mod.py"):
        (root / excluded).parent.mkdir(parents=True, exist_ok=True)
        (root / excluded).write_text("EXCLUDED = True\n")
    (root / "notes.txt").write_text("not python\n")
    return str(root)


def _config(kind: str, **kw) -> DataConfig:
    if kind == "stdlib":
        return DataConfig(source="stdlib", **kw)
    if kind == "synthetic":
        return DataConfig(source="synthetic", synthetic_vocab_size=64, **kw)
    return DataConfig(source="tfds", name="lm1b", **kw)


KINDS = ["stdlib", "synthetic", "tfds"]


@pytest.fixture(params=KINDS)
def kind(request):
    if request.param == "tfds":
        request.getfixturevalue("mock_tfds")
    return request.param


# --------------------------------------------------------------------------- determinism & sharding


def test_determinism_and_random_access(kind):
    cfg = _config(kind, seed=3)
    ds = make_dataset(cfg, seq_len=SEQ, split="train")
    a = ds.batch(7, 8)
    assert a.shape == (8, SEQ + 1) and a.dtype == np.int32
    assert a.min() >= 0 and a.max() < ds.vocab_size
    np.testing.assert_array_equal(a, make_dataset(cfg, seq_len=SEQ, split="train").batch(7, 8))
    assert not np.array_equal(a, ds.batch(8, 8)), "different steps must differ"
    assert not np.array_equal(a, make_dataset(cfg.replace(seed=4), seq_len=SEQ, split="train").batch(7, 8))
    assert not np.array_equal(a, make_dataset(cfg, seq_len=SEQ, split="validation").batch(7, 8))
    assert len({bytes(r.tobytes()) for r in a}) == 8, "rows of a batch must differ"
    # Random access: a fresh dataset's batch(k) equals the k-th batch of a run from step 0.
    sequential = list(itertools.islice(ds.iterate(8), 12))
    fresh = make_dataset(cfg, seq_len=SEQ, split="train")
    np.testing.assert_array_equal(fresh.batch(11, 8), sequential[11])
    np.testing.assert_array_equal(fresh.batch(7, 8), a)
    assert next(ds.iterate(8, start_step=7)).tobytes() == a.tobytes()


def test_far_step_costs_the_same(kind):
    ds = make_dataset(_config(kind), seq_len=SEQ, split="train")
    ds.batch(0, 16)  # warm caches

    def cost(step):
        t = time.perf_counter()
        for _ in range(5):
            ds.batch(step, 16)
        return time.perf_counter() - t
    near, far = cost(1), cost(10**12)
    assert far < 10 * near + 0.05, (near, far)


def test_sharding_equals_global_batch(kind):
    ds = make_dataset(_config(kind, seed=1), seq_len=SEQ, split="train")
    whole = ds.batch(5, 12)
    parts = [ds.batch(5, 12, process_index=p, process_count=4) for p in range(4)]
    assert all(p.shape == (3, SEQ + 1) for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    # and with 2 processes too
    np.testing.assert_array_equal(
        np.concatenate([ds.batch(5, 12, process_index=p, process_count=2) for p in range(2)]), whole
    )
    with pytest.raises(ValueError, match="global_batch_size"):
        ds.batch(5, 10, process_index=0, process_count=4)


def test_host_batch_uses_jax_process():
    jax = pytest.importorskip("jax")
    ds = make_dataset(DataConfig(source="synthetic"), seq_len=8, split="train")
    assert jax.process_count() == 1
    np.testing.assert_array_equal(ds.host_batch(2, 4), ds.batch(2, 4))


def test_identity_is_json(kind):
    ds = make_dataset(_config(kind), seq_len=SEQ, split="validation")
    ident = json.loads(json.dumps(ds.identity))
    assert ident["source"] == kind and ident["split"] == "validation" and ident["vocab_size"] == ds.vocab_size


# --------------------------------------------------------------------------- stdlib corpus


def test_stdlib_corpus():
    t = time.perf_counter()
    train = make_dataset(DataConfig(), seq_len=256, split="train")
    val = make_dataset(DataConfig(), seq_len=256, split="validation")
    corpus = load_corpus()
    tr, va = corpus.split_indices("train", 0.05), corpus.split_indices("validation", 0.05)
    assert set(tr).isdisjoint(va) and sorted(tr + va) == list(range(len(corpus.paths)))
    assert len(va) == round(0.05 * len(corpus.paths))
    assert not any("site-packages" in p or "dist-packages" in p or not p.endswith(".py") for p in corpus.paths)
    assert corpus.paths == tuple(sorted(corpus.paths))
    ti, vi = train.identity, val.identity
    assert ti["python_version"] == vi["python_version"] == platform.python_version()
    assert len(ti["corpus_sha256"]) == 64 and ti["corpus_sha256"] == vi["corpus_sha256"]
    assert ti["split_sha256"] != vi["split_sha256"]
    assert ti["split_files"] + vi["split_files"] == ti["corpus_files"] == len(corpus.paths) > 500
    assert ti["split_bytes"] + vi["split_bytes"] == ti["corpus_bytes"]
    # The stream is the split's files, each followed by the separator byte 0.
    assert ti["num_tokens"] == ti["split_bytes"] + ti["split_files"]
    assert train.vocab_size == 256 and train.bytes_per_token == 1.0 and train.entropy_rate is None
    h = train.unigram_entropy()
    print(
        f"\nstdlib corpus: {ti['corpus_files']} files, {ti['corpus_bytes']:,} bytes, python {ti['python_version']}; "
        f"train unigram entropy {h:.4f} nats = {h / math.log(2):.4f} bits/byte; "
        f"validation {val.unigram_entropy():.4f} nats; load {time.perf_counter() - t:.2f} s"
    )
    assert 2.5 < h < 4.5  # source code: far below log(256) = 5.55, far above 0
    # A window is real source text: mostly printable ASCII.
    w = train.batch(0, 4)
    printable = np.isin(w, [9, 10, 0] + list(range(32, 127))).mean()
    assert printable > 0.95


def test_stdlib_split_by_file_and_exclusions(fake_stdlib, spm_model):
    assert all(p.startswith("pkg/") for p in list_files(fake_stdlib)) and len(list_files(fake_stdlib)) == 20
    cfg = DataConfig(stdlib_path=fake_stdlib, validation_fraction=0.25)
    train = make_dataset(cfg, seq_len=32, split="train")
    val = make_dataset(cfg, seq_len=32, split="validation")
    assert (train.identity["split_files"], val.identity["split_files"]) == (15, 5)
    corpus = load_corpus(fake_stdlib)
    val_files = {corpus.paths[i] for i in corpus.split_indices("validation", 0.25)}
    # Every validation window comes from validation files only: the distinct
    # multiplier in "return x * {i}" identifies the file.
    seen = set()
    for step in range(20):
        for row in val.batch(step, 8):
            text = bytes(row.astype(np.uint8)).decode("utf-8", errors="ignore")
            seen.update(f"pkg/mod{int(m):02d}.py" for m in re.findall(r"x \* (\d+) ", text))
    assert seen and seen <= val_files
    assert "EXCLUDED" not in bytes(train.packer.tokens).decode("utf-8", errors="ignore")
    # Same stdlib through SentencePiece: the generic stream path, exact bytes/token.
    sp = make_dataset(cfg.replace(tokenizer=spm_model), seq_len=32, split="train")
    assert sp.vocab_size == 100 and sp.identity["tokenizer"]["type"] == "sentencepiece"
    assert sp.bytes_per_token == pytest.approx(sp.identity["num_bytes"] / sp.identity["num_tokens"])
    assert sp.bytes_per_token > 1.0


# --------------------------------------------------------------------------- synthetic language


def test_synthetic_rows_and_stationary_distribution():
    c = get_chain(32, 1.3, 5)
    P = c.transition_matrix()
    assert np.all(P > 0) and np.allclose(P.sum(1), 1.0, atol=1e-12)
    for i in range(32):  # each row is the Zipf distribution over a permutation
        np.testing.assert_allclose(np.sort(P[i])[::-1], zipf_probs(32, 1.3))
    assert len({tuple(r) for r in c.successors}) == 32, "rows use different permutations"
    assert c.stationary.sum() == pytest.approx(1.0) and np.all(c.stationary > 0)
    np.testing.assert_allclose(c.stationary @ P, c.stationary, atol=1e-14)
    rows_h = -(P * np.log(P)).sum(1)
    assert c.entropy_rate == pytest.approx(float(c.stationary @ rows_h), rel=1e-12)
    assert c.entropy_rate == pytest.approx(entropy(zipf_probs(32, 1.3)), rel=1e-12)
    assert c.entropy_rate < c.unigram_entropy < math.log(32)
    assert get_chain(16, 0.0, 0).entropy_rate == pytest.approx(math.log(16))
    assert not np.array_equal(get_chain(32, 1.3, 6).successors, c.successors)


def test_synthetic_entropy_rate_matches_monte_carlo():
    cfg = DataConfig(source="synthetic", synthetic_vocab_size=256, synthetic_zipf_exponent=1.0, seed=2)
    ds = make_dataset(cfg, seq_len=256, split="train")
    x = np.concatenate([ds.batch(s, 64) for s in range(8)])  # 131k predicted tokens
    nll = -ds.chain.log_prob(x[:, :-1], x[:, 1:])
    mc = nll.mean()
    print(f"\nsynthetic V=256 s=1: entropy rate {ds.entropy_rate:.4f} nats, Monte Carlo {mc:.4f}, "
          f"unigram {ds.unigram_entropy():.4f}")
    assert mc == pytest.approx(ds.entropy_rate, rel=0.01)
    assert ds.identity["entropy_rate"] == ds.entropy_rate and ds.bytes_per_token == 1.0
    # Every predicted position has entropy H, the first one included (stationary start).
    first = nll[:, 0]
    se = first.std() / math.sqrt(len(first))
    assert abs(first.mean() - ds.entropy_rate) < 4 * se + 0.01 * ds.entropy_rate


def test_synthetic_starts_stationary():
    ds = make_dataset(DataConfig(source="synthetic", synthetic_vocab_size=16, synthetic_zipf_exponent=2.0),
                      seq_len=3, split="validation")
    pi = ds.chain.stationary
    assert 0.5 * np.abs(pi - 1 / 16).sum() > 0.3  # far from uniform: the test can tell
    x = ds.batch(0, 40_000)
    n = len(x)
    tol = 5 * np.sqrt(pi * (1 - pi) / n)
    for t in (0, 3):  # the first token, and the last: same marginal
        freq = np.bincount(x[:, t], minlength=16) / n
        assert np.all(np.abs(freq - pi) < tol), (t, freq, pi)


def _periods(x: np.ndarray) -> list[int | None]:
    """The smallest m < len/2 with x_t = x_{t mod m} for every t of each row, else None."""
    out = []
    for row in x:
        out.append(next((m for m in range(1, len(row) // 2 + 1)
                         if np.array_equal(row, row[np.arange(len(row)) % m])), None))
    return out


def test_repeat_task_rows_repeat_their_passage_and_leave_the_rest_alone():
    plain = DataConfig(source="synthetic", seed=3)
    task = plain.replace(synthetic_task="repeat", synthetic_task_fraction=0.3, synthetic_task_period=8)
    a = make_dataset(plain, seq_len=32, split="train").batch(5, 2000)
    ds = make_dataset(task, seq_len=32, split="train")
    b = ds.batch(5, 2000)
    changed = np.any(a != b, axis=1)
    assert 0.3 - 0.04 < changed.mean() < 0.3 + 0.04  # the fraction, within ~4 sigma
    periods = _periods(b[changed])
    assert all(m is not None and 8 % m == 0 for m in periods)  # period 8 (a passage may repeat inside itself)
    np.testing.assert_array_equal(b[changed][:, :8], a[changed][:, :8])  # the passage is the language's
    assert all(p is None for p in _periods(b[~changed][:200]))  # the rest: the plain language, untouched
    assert ds.entropy_rate is None and ds.identity["task"] == "repeat"
    assert ds.identity["language_entropy_rate"] == pytest.approx(make_dataset(plain, seq_len=32, split="train").entropy_rate)
    np.testing.assert_array_equal(ds.batch(5, 2000), b)  # deterministic, random access


def test_repeat_task_periods_drawn_per_row_between_min_and_max():
    cfg = DataConfig(source="synthetic", synthetic_task="repeat", synthetic_task_fraction=1.0,
                     synthetic_task_period=12, synthetic_task_min_period=5, synthetic_vocab_size=4096)
    x = make_dataset(cfg, seq_len=40, split="validation").batch(0, 3000)
    periods = np.array(_periods(x))  # V=4096: a passage of <= 12 tokens rarely repeats inside itself
    assert set(periods) == set(range(5, 13))
    counts = np.bincount(periods, minlength=13)[5:]
    assert counts.min() > 3000 / 8 * 0.7  # roughly uniform


# --------------------------------------------------------------------------- TFDS (mocked)


def test_tfds_lm1b_bytes_end_to_end(mock_tfds):
    src = mock_tfds.data_source("lm1b", split="train")
    texts = [r["text"] for r in src]
    texts = [t.decode() if isinstance(t, bytes) else t for t in texts]
    for packing in ("documents", "stream"):
        cfg = DataConfig(source="tfds", name="lm1b", packing=packing)
        ds = make_dataset(cfg, seq_len=SEQ, split="train")
        assert ds.vocab_size == 256 and ds.bytes_per_token == 1.0
        ident = ds.identity
        assert ident["name"] == "lm1b" and ident["version"] and ident["tfds_split"] == "train"
        assert ident["packing"] == packing
        b = ds.batch(3, 8)
        assert b.shape == (8, SEQ + 1)
        # Windows are pieces of the documents joined by the separator byte 0.
        joined = "\0".join(texts * 2)
        for row in b:
            s = bytes(row.astype(np.uint8)).decode()
            assert s in joined, s
        assert (b == 0).any(), "short lm1b sentences: windows cross document boundaries"
        assert 0 < ds.unigram_entropy() < math.log(256)
    val = make_dataset(DataConfig(source="tfds", name="lm1b"), seq_len=SEQ, split="validation")
    assert val.identity["tfds_split"] == "test"


def test_tfds_sentencepiece(mock_tfds, spm_model):
    import sentencepiece as spm

    cfg = DataConfig(source="tfds", name="lm1b", tokenizer=spm_model)
    ds = make_dataset(cfg, seq_len=SEQ, split="train")
    sp = spm.SentencePieceProcessor(model_file=spm_model)
    assert ds.vocab_size == sp.get_piece_size() == 100
    assert ds.identity["tokenizer"]["sha256"] and ds.identity["tokenizer"]["separator"] == sp.eos_id()
    b = ds.batch(0, 8)
    assert b.min() >= 0 and b.max() < 100
    texts = [r["text"] for r in mock_tfds.data_source("lm1b", split="train")]
    texts = [t.decode() if isinstance(t, bytes) else t for t in texts]
    # 40 documents < stats_documents: the statistics cover the whole split, so
    # bytes per token is exact: (bytes + separators) / (tokens + separators).
    n_tok = sum(len(sp.encode(t)) for t in texts)
    n_bytes = sum(len(t.encode()) for t in texts)
    assert ds.bytes_per_token == pytest.approx((n_bytes + len(texts)) / (n_tok + len(texts)), rel=1e-12)
    # Every whole document inside a window decodes back to a document of the split.
    for row in b:
        pieces = np.split(row, np.flatnonzero(row == sp.eos_id()))
        for inner in pieces[1:-1]:  # between two separators: one whole document
            assert sp.decode(inner[1:].tolist()) in texts
    assert bits_per_byte(ds.bytes_per_token * math.log(2), ds.bytes_per_token) == pytest.approx(1.0)


def test_tfds_bad_name_and_key(mock_tfds):
    with pytest.raises(ValueError, match="text_key"):
        make_dataset(DataConfig(source="tfds", name="lm1b", text_key="nope"), seq_len=8, split="train")
    with pytest.raises(ValueError, match="name"):
        make_dataset(DataConfig(source="tfds", name="no_such_dataset_xyz"), seq_len=8, split="train")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(source="wikipedia"), "source"),
        (dict(seed=-1), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(source="tfds"), "name"),
        (dict(tokenizer="/no/such/file.model"), "tokenizer"),
        (dict(synthetic_vocab_size=1), "synthetic_vocab_size"),
        (dict(synthetic_vocab_size=10**6), "synthetic_vocab_size"),
        (dict(synthetic_zipf_exponent=-0.5), "synthetic_zipf_exponent"),
        (dict(validation_fraction=0.0), "validation_fraction"),
        (dict(validation_fraction=1.5), "validation_fraction"),
        (dict(packing="shuffle"), "packing"),
        (dict(text_key=""), "text_key"),
        (dict(stdlib_path="/no/such/dir"), "stdlib_path"),
        (dict(stats_documents=0), "stats_documents"),
        (dict(synthetic_task="parity"), "synthetic_task"),
        (dict(synthetic_task="repeat"), "synthetic_task"),  # needs source="synthetic"
        (dict(synthetic_task_fraction=0.0, source="synthetic"), "synthetic_task_fraction"),
        (dict(synthetic_task_fraction=1.5, source="synthetic"), "synthetic_task_fraction"),
        (dict(synthetic_task_period=0, source="synthetic"), "synthetic_task_period"),
        (dict(synthetic_task_min_period=9, source="synthetic"), "synthetic_task_min_period"),
    ],
)
def test_bad_config(kwargs, field):
    with pytest.raises(ValueError, match=field) as e:
        DataConfig(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(e.value) or field == "name"


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda: make_dataset(DataConfig(source="synthetic"), seq_len=0, split="train"), "seq_len"),
        (lambda: make_dataset(DataConfig(source="synthetic"), seq_len=8, split="test"), "split"),
        (lambda: make_dataset("stdlib", seq_len=8, split="train"), "cfg"),
        (lambda: make_dataset(DataConfig(source="synthetic"), seq_len=8, split="train").batch(-1, 4), "step"),
        (lambda: make_dataset(DataConfig(source="synthetic"), seq_len=8, split="train").batch(0, 0), "global_batch_size"),
        (lambda: make_dataset(DataConfig(source="synthetic"), seq_len=8, split="train").batch(0, 4, process_index=4, process_count=4), "process_index"),
        (lambda: make_dataset(DataConfig(), seq_len=10**9, split="validation"), "seq_len"),
    ],
)
def test_bad_arguments(call, field):
    with pytest.raises(ValueError, match=field):
        call()


def test_bits_per_byte_formula():
    assert bits_per_byte(math.log(2), 1.0) == pytest.approx(1.0)
    assert bits_per_byte(2 * math.log(2), 4.0) == pytest.approx(0.5)


# --------------------------------------------------------------------------- unique tokens, epochs


def test_unique_tokens_of_stdlib_count_every_byte_and_separator(fake_stdlib, spm_model):
    cfg = DataConfig(stdlib_path=fake_stdlib, validation_fraction=0.25)
    corpus = load_corpus(fake_stdlib)
    for split in ("train", "validation"):
        files = [corpus.contents[i] for i in corpus.split_indices(split, 0.25)]
        expected = sum(len(c) for c in files) + len(files)  # bytes + one separator per file
        ds = make_dataset(cfg, seq_len=32, split=split)
        assert ds.unique_tokens == ds.identity["unique_tokens"] == expected
        assert count_unique_tokens(cfg, seq_len=32, split=split) == expected
    # SentencePiece: the tokens of the split's stream, fewer than its bytes.
    sp_cfg = cfg.replace(tokenizer=spm_model)
    sp = make_dataset(sp_cfg, seq_len=32, split="train")
    assert sp.unique_tokens == len(sp.packer.tokens) < count_unique_tokens(cfg, seq_len=32)
    assert count_unique_tokens(sp_cfg, seq_len=32) == sp.unique_tokens


def test_unique_tokens_of_the_default_corpus_are_millions():
    # ~29.7 M bytes in CPython 3.11's training split; any CPython >= 3.8 has well over 10 M.
    assert 10_000_000 < count_unique_tokens(DataConfig(), seq_len=64) < 100_000_000


def test_synthetic_data_is_unlimited():
    ds = make_dataset(DataConfig(source="synthetic", synthetic_vocab_size=64), seq_len=SEQ, split="train")
    assert ds.unique_tokens is None and ds.identity["unique_tokens"] is None
    assert count_unique_tokens(DataConfig(source="synthetic"), seq_len=SEQ) is None
    assert epochs(10**12, None) == 0.0


def test_epochs_is_tokens_over_unique_tokens():
    assert epochs(300, 100) == 3.0 and epochs(50, 100) == 0.5


def test_tfds_unique_tokens_exact_or_estimated(mock_tfds, spm_model):
    import sentencepiece as spm

    texts = [r["text"] for r in mock_tfds.data_source("lm1b", split="train")]
    texts = [t.decode() if isinstance(t, bytes) else t for t in texts]
    exact = sum(len(t.encode()) for t in texts) + len(texts)  # bytes + separators
    for packing in ("stream", "documents"):  # 40 documents < stats_documents: both exact
        cfg = DataConfig(source="tfds", name="lm1b", packing=packing)
        assert make_dataset(cfg, seq_len=SEQ, split="train").unique_tokens == exact
    # Estimated from a sample of 10 of the 40 documents: documents x mean tokens per document.
    sample = make_dataset(DataConfig(source="tfds", name="lm1b", stats_documents=10), seq_len=SEQ, split="train")
    assert not sample.identity["stats_exact"]
    assert sample.unique_tokens == pytest.approx(exact, rel=0.35)
    sp = spm.SentencePieceProcessor(model_file=spm_model)
    sp_exact = sum(len(sp.encode(t)) for t in texts) + len(texts)
    cfg = DataConfig(source="tfds", name="lm1b", tokenizer=spm_model)
    assert make_dataset(cfg, seq_len=SEQ, split="train").unique_tokens == sp_exact


# --------------------------------------------------------------------------- a cap on unique tokens


def test_a_cap_keeps_a_fixed_random_sample_of_the_training_windows():
    full = make_dataset(DataConfig(), seq_len=SEQ, split="train")
    cap = 300_000
    cfg = DataConfig(unique_tokens=cap)
    ds = make_dataset(cfg, seq_len=SEQ, split="train")
    kept = cap // (SEQ + 1)  # whole windows of seq_len + 1 tokens
    assert ds.unique_tokens == kept * (SEQ + 1) == count_unique_tokens(cfg, seq_len=SEQ) == 299_975
    assert ds.identity["unique_tokens"] == 299_975 and ds.identity["unique_tokens_cap"] == cap
    assert epochs(7 * ds.unique_tokens, ds.unique_tokens) == 7.0  # a run of D tokens repeats the cut D / U times
    pool = ds.packer.pool
    assert len(np.unique(pool)) == kept and np.all(pool % (SEQ + 1) == 0)  # distinct aligned windows
    # Spread over the whole stream (it is ordered by file path): every tenth of it holds ~a tenth of the windows.
    share = np.bincount(pool * 10 // len(full.packer.tokens), minlength=10) / kept
    assert share.min() > 0.07 and share.max() < 0.13
    # Training windows are exactly the kept ones, drawn with replacement: after 20x their number
    # every one has been seen (repeated epochs; P(one missed) ~ kept e^-20 < 1e-5), and nothing else.
    starts = set(pool.tolist())
    drawn = np.concatenate([ds.batch(step, 256) for step in range(20 * kept // 256)])
    stream = full.packer.tokens
    index = {stream[s:s + SEQ + 1].tobytes(): s for s in pool}
    seen = {index[row.astype(np.uint8).tobytes()] for row in drawn}
    assert seen == starts
    # Nested: a smaller cap keeps a subset of a larger one's windows; validation is never cut.
    big = make_dataset(DataConfig(unique_tokens=2 * cap), seq_len=SEQ, split="train")
    assert set(pool.tolist()) < set(big.packer.pool.tolist())
    val_full = make_dataset(DataConfig(), seq_len=SEQ, split="validation")
    val_cut = make_dataset(cfg, seq_len=SEQ, split="validation")
    np.testing.assert_array_equal(val_full.batch(3, 16), val_cut.batch(3, 16))
    assert "unique_tokens_cap" not in val_cut.identity


def test_capped_batches_are_a_pure_function_of_seed_step_and_row():
    a = make_dataset(DataConfig(unique_tokens=50_000, seed=4), seq_len=SEQ, split="train")
    b = make_dataset(DataConfig(unique_tokens=50_000, seed=4), seq_len=SEQ, split="train")
    np.testing.assert_array_equal(a.batch(1234, 8), b.batch(1234, 8))
    halves = [b.batch(1234, 8, process_index=p, process_count=2) for p in range(2)]
    np.testing.assert_array_equal(a.batch(1234, 8), np.concatenate(halves))
    # The seed changes the order of windows, never which windows the cut holds.
    other = make_dataset(DataConfig(unique_tokens=50_000, seed=5), seq_len=SEQ, split="train")
    np.testing.assert_array_equal(a.packer.pool, other.packer.pool)
    assert not np.array_equal(a.batch(0, 8), other.batch(0, 8))


def test_a_cap_with_document_packing_takes_evenly_spaced_whole_documents(fake_stdlib):
    base = DataConfig(stdlib_path=fake_stdlib, validation_fraction=0.25, packing="documents")
    full = make_dataset(base, seq_len=16, split="train")
    per_doc = full.unique_tokens / full.packer.num_docs  # every fake file has the same length
    ds = make_dataset(base.replace(unique_tokens=int(5 * per_doc)), seq_len=16, split="train")
    assert ds.packer.num_docs == 5 and ds.unique_tokens == pytest.approx(5 * per_doc, rel=1e-6)
    assert list(ds.packer.docs.indices) == [0, 3, 6, 9, 12]  # 15 training files, every third
    for row in ds.batch(0, 16):  # windows only from those documents
        text = bytes(row.astype(np.uint8))
        chosen = b"".join(full.packer.docs[i] + b"\0" for i in ds.packer.docs.indices) * 2
        assert text in chosen


def test_a_cap_must_be_smaller_than_the_split_and_not_on_synthetic_data(fake_stdlib):
    with pytest.raises(ValueError, match="DataConfig.unique_tokens=1000000000: the training split has only"):
        make_dataset(DataConfig(unique_tokens=10**9), seq_len=SEQ, split="train")
    with pytest.raises(ValueError, match="DataConfig.unique_tokens=64: smaller than one window of seq_len"):
        make_dataset(DataConfig(unique_tokens=64), seq_len=SEQ, split="train")
    make_dataset(DataConfig(unique_tokens=10**9), seq_len=SEQ, split="validation")  # validation is not cut
    with pytest.raises(ValueError, match="DataConfig.unique_tokens=64: the synthetic language is unlimited"):
        DataConfig(source="synthetic", unique_tokens=64)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="DataConfig.unique_tokens"):
            DataConfig(unique_tokens=bad)
    with pytest.raises(ValueError, match="DataConfig.unique_tokens=.*documents"):
        make_dataset(DataConfig(stdlib_path=fake_stdlib, packing="documents", unique_tokens=10**6), seq_len=16,
                     split="train")


def test_tfds_cap_exact_in_stream_and_whole_documents_in_document_packing(mock_tfds):
    stream = make_dataset(DataConfig(source="tfds", name="lm1b", packing="stream", unique_tokens=500), seq_len=SEQ,
                          split="train")
    assert stream.unique_tokens == 500 // (SEQ + 1) * (SEQ + 1)
    full = make_dataset(DataConfig(source="tfds", name="lm1b"), seq_len=SEQ, split="train")  # documents: 40 records
    cap = int(10 * full.unique_tokens / 40)
    ds = make_dataset(DataConfig(source="tfds", name="lm1b", unique_tokens=cap), seq_len=SEQ, split="train")
    picked = list(ds.packer.docs.indices)
    assert picked == list(range(0, 40, 4))  # 10 records, evenly spaced
    texts = [full.packer.docs[i] for i in picked]
    held = sum(len(t.encode() if isinstance(t, str) else t) + 1 for t in texts)
    assert ds.unique_tokens == held and ds.identity["stats_exact"]  # what the cut holds, counted
