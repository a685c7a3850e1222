"""Training: the step, the loop, evaluation, metrics, WSD branches, the CLI."""

import json
import math

import jax
import numpy as np
import pytest

from scaling import step as step_lib
from scaling import train
from scaling.config import ModelConfig
from scaling.data import DataConfig, make_dataset


@pytest.fixture(scope="module")
def eight(tiny_run, tmp_path_factory):
    assert len(jax.devices()) == 8, "conftest sets 8 fake CPU devices"
    out = tmp_path_factory.mktemp("eight")
    return out, train.run(tiny_run(), out)


def test_one_device_and_eight_devices_give_the_same_losses(metric_lines, tiny_run, eight, tmp_path):
    out8, r8 = eight
    r1 = train.run(tiny_run(), tmp_path, mesh=step_lib.data_mesh(jax.devices()[:1]))
    assert r1.status == r8.status == "finished" and r1.steps == r8.steps == 20
    l1 = [line["loss"] for line in metric_lines(tmp_path)]
    l8 = [line["loss"] for line in metric_lines(out8)]
    assert len(l1) == len(l8) == 20
    np.testing.assert_allclose(l8, l1, rtol=1e-5)
    assert l8[-1] < l8[0] - 0.5  # and it learns
    assert r8.points[0]["val_loss"] == pytest.approx(r1.points[0]["val_loss"], rel=1e-5)


def test_run_writes_metrics_point_and_metadata(metric_lines, eight):
    out, r = eight
    lines = metric_lines(out)
    assert [line["step"] for line in lines] == list(range(1, 21))
    for key in ("tokens", "flops", "flops_6n", "flops_palm", "loss", "lr", "grad_norm", "step_time_s",
                "tokens_per_s", "mfu"):
        assert key in lines[-1], key
    assert lines[-1]["tokens"] == 20 * 16 * 32
    # cosine: the last step's rate is exactly lr * final_lr_frac
    assert lines[-1]["lr"] == pytest.approx(3e-3 * 0.1, rel=1e-12)
    (p,) = r.points
    assert p["branch"] is None and p["tokens"] == 20 * 16 * 32 and p["step"] == 20
    assert p["flops"] == pytest.approx(lines[-1]["flops"]) and p["flops_6n"] == pytest.approx(lines[-1]["flops_6n"])
    assert 0 < p["val_accuracy"] < 1 and 0 <= p["val_exact_match"] <= p["val_accuracy"]
    assert p["val_bpb"] == pytest.approx(p["val_loss"] / math.log(2))  # bytes: 1 token = 1 byte
    assert p["train_loss"] == pytest.approx(np.mean([line["loss"] for line in lines[-10:]]))
    assert math.isfinite(p["mfu"]) and p["mfu"] > 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "finished" and meta["config"]["train"]["tokens"] == 20 * 16 * 32
    assert meta["data"]["train"]["source"] == "stdlib" and "python_version" in meta["data"]["train"]
    assert meta["data"]["train"]["unique_tokens"] == meta["data"]["train"]["num_tokens"] > 10**7
    assert meta["epochs"] == pytest.approx(20 * 16 * 32 / meta["data"]["train"]["num_tokens"])
    assert len(meta["devices"]) == 8 and meta["jax_version"] == jax.__version__
    assert list((out / "tensorboard").iterdir())
    assert [line["step"] for line in metric_lines(out, "eval")] == [20]


def test_same_shape_reuses_the_compiled_step_and_finished_runs_are_not_rerun(tiny_run, eight, tmp_path):
    before = dict(step_lib.TRACE_COUNTS)
    cfg = tiny_run(steps=7, lr=1e-3, schedule="wsd", seed=1)  # other lr, horizon, schedule, seed
    r = train.run(cfg, tmp_path)
    assert r.status == "finished" and r.steps == 7
    assert dict(step_lib.TRACE_COUNTS) == before
    again = train.run(cfg, tmp_path)
    assert again == r and dict(step_lib.TRACE_COUNTS) == before
    with pytest.raises(ValueError, match="different config"):
        train.run(tiny_run(steps=8), tmp_path)


def test_wsd_branches_give_one_evaluated_point_each(metric_lines, tiny_run, tmp_path):
    tpb = 16 * 32
    cfg = tiny_run(steps=30, schedule="wsd", cooldown_frac=0.2, final_lr_frac=0.0, wsd_branches=(10 * tpb, 20 * tpb))
    r = train.run(cfg, tmp_path)
    assert r.status == "finished"
    assert [p["branch"] for p in r.points] == [10 * tpb, 20 * tpb, None]
    assert [p["tokens"] for p in r.points] == [10 * tpb, 20 * tpb, 30 * tpb]
    for p in r.points:
        assert math.isfinite(p["val_loss"]) and p["val_loss"] < math.log(256)
        assert p["flops_6n"] == pytest.approx(p["tokens"] * r.points[-1]["flops_6n"] / r.points[-1]["tokens"])
    branches = metric_lines(tmp_path, "branch")
    assert [(b["fork_step"], b["step"]) for b in branches] == [(8, 10), (16, 20)]
    # The main run never saw a branch's cooldown: its lr stays at the stable value until its own.
    lines = metric_lines(tmp_path)
    assert [line["step"] for line in lines] == list(range(1, 31))
    assert all(line["lr"] == 3e-3 for line in lines[3:24])


@pytest.mark.slow
def test_stdlib_validation_loss_falls_well_below_the_unigram_entropy(tiny_run, tmp_path):
    model = ModelConfig(d_model=64, n_layers=2, n_heads=4, seq_len=64)
    cfg = tiny_run(steps=250, model=model, batch=32, warmup_steps=20, eval_batches=4)
    r = train.run(cfg, tmp_path)
    unigram = make_dataset(DataConfig(), seq_len=64, split="validation").unigram_entropy()
    val = r.points[-1]["val_loss"]
    print(f"stdlib: val_loss {val:.4f} nats vs unigram entropy {unigram:.4f} ({val / unigram:.3f}x)")
    assert val < 0.8 * unigram


@pytest.mark.slow
def test_synthetic_loss_approaches_the_entropy_rate_from_above(tiny_run, tmp_path):
    data = DataConfig(source="synthetic", synthetic_vocab_size=64)
    entropy = make_dataset(data, seq_len=32, split="validation").entropy_rate
    losses = {}
    for d in (8, 64):
        model = ModelConfig(d_model=d, n_layers=1, n_heads=1, seq_len=32, vocab_size=64)
        r = train.run(tiny_run(steps=150, model=model, data=data, batch=32, lr=1e-2, eval_batches=8), tmp_path / str(d))
        losses[d] = r.points[-1]["val_loss"]
    print(f"synthetic: entropy rate {entropy:.4f}, val_loss d=8 {losses[8]:.4f}, d=64 {losses[64]:.4f}")
    noise = 0.03  # 8 x 32 x 32 eval tokens
    assert losses[8] > entropy - noise and losses[64] > entropy - noise
    assert losses[64] - entropy < losses[8] - entropy


def test_several_steps_per_dispatch_train_the_same_run(tiny_run, metric_lines, sigterm_at, tmp_path):
    """K steps per device call (a lax.scan) are the same K updates: the same losses to float32
    rounding, evaluations, checkpoints and WSD forks at their own steps, the same resume."""
    tpb = 16 * 32
    base = dict(schedule="wsd", wsd_branches=(10 * tpb,), checkpoint_every=6, eval_every=9)
    ref = train.run(tiny_run(23, **base), tmp_path / "k1", mesh=step_lib.data_mesh(jax.devices()[:1]))
    before = step_lib.TRACE_COUNTS["train_steps"]
    cfg = tiny_run(23, steps_per_dispatch=4, **base)
    mesh = step_lib.data_mesh(jax.devices()[:1])
    stopped = train.run(cfg, tmp_path / "k4", mesh=mesh, hooks=[sigterm_at(13)])
    assert stopped.status == "preempted" and stopped.steps == 16  # the signal is seen where its block (12-16) ends
    r = train.run(cfg, tmp_path / "k4", mesh=mesh)
    assert step_lib.TRACE_COUNTS["train_steps"] - before == 1  # one compiled K-step function, partial blocks included
    assert r.status == "finished" and r.steps == 23
    want, got = metric_lines(tmp_path / "k1"), metric_lines(tmp_path / "k4")
    assert [x["step"] for x in got] == list(range(1, 24))
    np.testing.assert_allclose([x["loss"] for x in got], [x["loss"] for x in want], rtol=2e-5)
    assert [x["lr"] for x in got] == pytest.approx([x["lr"] for x in want], rel=1e-6)
    assert [x["step"] for x in metric_lines(tmp_path / "k4", "eval")] == [x["step"] for x in metric_lines(tmp_path / "k1", "eval")]
    assert [p["branch"] for p in r.points] == [p["branch"] for p in ref.points] == [10 * tpb, None]
    for a, b in zip(r.points, ref.points):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


def test_divergence_inside_a_block_names_its_step(tiny_run, tmp_path):
    cfg = tiny_run(20, lr=1e3, warmup_steps=0, steps_per_dispatch=8)
    r = train.run(cfg, tmp_path, mesh=step_lib.data_mesh(jax.devices()[:1]))
    assert r.status == "diverged" and 0 < r.steps <= 20 and r.points == []
    assert f"diverged at step {r.steps}:" in r.message


# --- FSDP meshes and the memory plan ----------------------------------------------------------


@pytest.fixture(scope="module")
def one_device(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_device")
    return out, train.run(tiny_run(), out, mesh=step_lib.data_mesh(jax.devices()[:1]))


@pytest.mark.parametrize("data,fsdp", [(8, 1), (4, 2), (2, 4), (1, 8)])
def test_fsdp_meshes_give_the_losses_of_one_device(metric_lines, tiny_run, eight, one_device, tmp_path, capsys,
                                                   data, fsdp):
    """Parameters, gradients and AdamW state sharded over fsdp, rows over data x fsdp: the
    same 20 steps as one device (float32, 1e-5 relative). (8, 1) is the data-parallel run."""
    if fsdp == 1:
        out, r = eight
    else:
        out, r = tmp_path, train.run(tiny_run(mesh_fsdp=fsdp), tmp_path)
        assert f"mesh {data}x{fsdp} (data x fsdp)" in capsys.readouterr().out  # the memory plan, printed first
    ref_out, ref = one_device
    assert r.status == ref.status == "finished"
    got, want = [x["loss"] for x in metric_lines(out)], [x["loss"] for x in metric_lines(ref_out)]
    assert len(got) == len(want) == 20
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert r.points[0]["val_loss"] == pytest.approx(ref.points[0]["val_loss"], rel=1e-5)


def test_fsdp_with_steps_per_dispatch_accumulation_and_wsd_branches(metric_lines, tiny_run, tmp_path):
    """K steps per call (lax.scan), gradient accumulation and WSD branch copies of the sharded
    state on a 2 x 4 mesh: the same losses as one device stepping one batch at a time."""
    tpb = 16 * 32
    ref = train.run(tiny_run(schedule="wsd", wsd_branches=(10 * tpb,)), tmp_path / "ref",
                    mesh=step_lib.data_mesh(jax.devices()[:1]))
    cfg = tiny_run(schedule="wsd", wsd_branches=(10 * tpb,), mesh_fsdp=4, steps_per_dispatch=4, grad_accum=2)
    r = train.run(cfg, tmp_path / "fsdp")
    got, want = metric_lines(tmp_path / "fsdp"), metric_lines(tmp_path / "ref")
    assert [x["step"] for x in got] == list(range(1, 21))
    np.testing.assert_allclose([x["loss"] for x in got], [x["loss"] for x in want], rtol=2e-5)
    assert [p["branch"] for p in r.points] == [p["branch"] for p in ref.points] == [10 * tpb, None]
    for a, b in zip(r.points, ref.points):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


def test_a_run_that_cannot_fit_its_chip_is_refused_before_compiling(tiny_run, tmp_path):
    big = ModelConfig(d_model=4096, n_layers=32, n_heads=32, seq_len=32, vocab_size=256)
    cfg = tiny_run(model=big)
    before = dict(step_lib.TRACE_COUNTS)
    with pytest.raises(ValueError, match=r"TrainConfig\.mesh_fsdp=1: the run needs .* TPU v5 lite .* "
                                         r"On these 8 devices mesh_fsdp=8 fits .* The smallest mesh that fits: "):
        train.Trainer(cfg, tmp_path, device_kind="TPU v5 lite")
    assert dict(step_lib.TRACE_COUNTS) == before and not (tmp_path / "run.json").exists()
    with pytest.raises(ValueError, match=r"TrainConfig\.mesh_fsdp=2: the mesh given has fsdp=1"):
        train.Trainer(tiny_run(mesh_fsdp=2), tmp_path, mesh=step_lib.data_mesh())
