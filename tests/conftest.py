"""Shared test setup and fixtures.

Tests run on CPU. Multi-device tests use 8 fake CPU devices: XLA_FLAGS must be set before
JAX initialises its backend, so it is set here, at collection time, for the whole session
(single-device tests pin themselves to one device explicitly).

Fixtures (factories, so each test states what it changes):
  tiny_run(steps=20, *, model=TINY_MODEL, data=DataConfig(), batch=16, **train_fields) -> RunConfig
    a 1-layer, d_model 32, context 32 model on the stdlib corpus: a run of `steps` steps
    compiles in seconds and trains in about a second on 2 cores.
  sigterm_at(step) -> a hook that sends this process SIGTERM after that step (a preemption).
  metric_lines(run_dir, kind="train") -> the run's metrics.jsonl lines of that kind.
"""

import json
import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from scaling.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402  (after the XLA flags)
from scaling.data import DataConfig  # noqa: E402

TINY_MODEL = ModelConfig(d_model=32, n_layers=1, n_heads=2, seq_len=32)


def make_tiny_run(steps: int = 20, *, model: ModelConfig = TINY_MODEL, data: DataConfig | None = None,
                  batch: int = 16, **train_fields) -> RunConfig:
    fields = dict(tokens=steps * batch * model.seq_len, global_batch_size=batch, lr=3e-3, warmup_steps=3,
                  eval_batches=2, progress=False)
    fields.update(train_fields)
    return RunConfig(model=model, data=data or DataConfig(), train=TrainConfig(**fields), name="tiny")


@pytest.fixture(scope="session")
def tiny_run():
    return make_tiny_run


@pytest.fixture(scope="session")
def sigterm_at():
    def make(step: int):
        def hook(event):
            if event.step == step:
                os.kill(os.getpid(), signal.SIGTERM)
        return hook
    return make


@pytest.fixture(scope="session")
def metric_lines():
    def read(run_dir, kind: str = "train") -> list[dict]:
        lines = [json.loads(x) for x in open(Path(run_dir) / "metrics.jsonl")]
        return [line for line in lines if line["kind"] == kind]
    return read


# --- sweeps and tables without training ---------------------------------------------------

SWEEP_MODEL = ModelConfig(d_model=64, n_layers=2, n_heads=4, seq_len=64)
SWEEP_TRAIN = TrainConfig(tokens=1, global_batch_size=16, warmup_steps=10)
# Hoffmann et al. 2022's fitted law (eq. 10): the truth behind `synthetic_rows`.
CHINCHILLA_LAW = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def make_sweep(**fields):
    """A small IsoFLOP sweep config (budgets 1e12-1e13, head_dim 16); `fields` override it."""
    from scaling.sweep import SweepConfig

    fields.setdefault("budgets", (1e12, 3e12, 1e13))
    fields.setdefault("model", SWEEP_MODEL)
    fields.setdefault("train", SWEEP_TRAIN)
    fields.setdefault("head_dim", 16)
    fields.setdefault("min_steps", 20)
    return SweepConfig(**fields)


@pytest.fixture(scope="session")
def sweep_config():
    return make_sweep


def make_synthetic_rows(budgets=(1e12, 3e12, 1e13, 3e13), seed: int = 0, noise: float = 0.003) -> list[dict]:
    """Results-table rows of a planned sweep whose losses follow CHINCHILLA_LAW with `noise`
    relative Gaussian noise: a table with a known answer, made without training."""
    import numpy as np

    from scaling import results, sweep

    law = CHINCHILLA_LAW
    cfg = sweep.SweepConfig(budgets=budgets, model=SWEEP_MODEL, train=TrainConfig(tokens=1, global_batch_size=16),
                            head_dim=16, sizes_per_budget=5, size_spread=3.0, min_steps=20)
    rng = np.random.default_rng(seed)
    rows = []
    for run in sweep.plan(cfg):
        loss = law["E"] + law["A"] / run.N ** law["alpha"] + law["B"] / run.D ** law["beta"]

        class Result:
            status, steps, wall_s = "finished", run.steps, 1.0
            points = [dict(step=run.steps, tokens=run.D, branch=None, val_loss=loss * (1 + noise * rng.standard_normal()),
                           train_loss=loss, flops=run.D * run.flops_per_token, wall_s=1.0, mfu=0.3)]

        rows += results.make_rows(run, Result())
    return rows


@pytest.fixture(scope="session")
def synthetic_rows():
    return make_synthetic_rows


@pytest.fixture(scope="session")
def chinchilla_law():
    return dict(CHINCHILLA_LAW)


@pytest.fixture
def fake_gcs(monkeypatch):
    """gs:// served from memory: epath's fsspec backend gets an in-memory filesystem (orbax's
    checkpoints need a real GCS API: tests/test_gcs.py runs an emulator for those)."""
    import importlib

    from etils.epath import backend
    from fsspec.implementations.memory import MemoryFileSystem

    class FakeGCS(MemoryFileSystem):
        protocol = ("gs", "gcs")
        store: dict = {}
        pseudo_dirs = [""]

        @classmethod
        def _strip_protocol(cls, path):
            path = str(path)
            for prefix in ("gs://", "gcs://"):
                path = path.removeprefix(prefix)
            return super()._strip_protocol(path)

    monkeypatch.setitem(importlib.import_module("fsspec.registry")._registry, "gcs", FakeGCS)
    backend.fsspec_backend._get_filesystem.cache_clear()
    yield FakeGCS.store
    backend.fsspec_backend._get_filesystem.cache_clear()
