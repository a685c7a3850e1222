"""Learning-rate transfer on CPU: does the best learning rate move as the model grows?

    python bench/lr_transfer.py                                   # width and depth, ~20-30 min
    python bench/lr_transfer.py --kinds width --widths 32,64 --steps 30 --out /tmp/lrt   # a quick look

Yang et al. 2022 (TP5, Fig. 1) and Dey et al. 2025 (CompleteP, Fig. 1) show it as loss
against learning rate, one curve per model size: under SP the minimum slides to smaller rates
as width grows; under muP (width) and CompleteP (depth) it stays put. Here:

  width: 1-layer models of d_model 32..512 (head dim 16, context 64), "sp" and "mup"
    (base_width 32: at width 32 the two are the same model);
  depth: d_model 64 models of 2..16 layers, "sp" and "completep" (base_width 64, base_depth 2,
    depth_alpha 1; SP here equals muP, whose width correction is 1 at width 64).
  --output-mult sets the mup/completep models' output multiplier (default 1: the base model
    is the SP one); --params picks the parametrizations.

Every run is `scaling.train.run` with the library's recipe (AdamW, weight decay 0.1, clip
1.0, warmup then cosine to 10%) on the stdlib corpus, `--steps` steps of `--batch` x 64 tokens, one
seed and the same batches for every run (common random numbers: the loss differences between
learning rates are not blurred by data order), validation loss on 4 x 32 sequences. Sized
for a busy 2-core machine: 128 steps of 8 x 64 tokens (66k tokens; the width-512 model, 3.3M
parameters, takes about a minute a run at load 12). Shorter runs (64 steps) gave loss-vs-lr
curves too ragged to place a minimum: the models were still leaving the unigram plateau. The learning rate is searched per model on a
grid of factors of 2: from a start, move towards lower validation loss until the minimum is
bracketed; the optimum is the vertex of a parabola in log2(lr) through the best point and its
two neighbours. Runs are kept in --runs (a rerun reuses finished ones).

Prints a table per kind (optimal lr and loss per size, and the drift max/min of the optimal
lr over sizes), writes lr_transfer.png (loss vs lr per size, the optima marked) and
lr_transfer.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scaling import train  # noqa: E402
from scaling.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402
from scaling.data import DataConfig  # noqa: E402


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def model_for(kind: str, param: str, size: int, args) -> ModelConfig:
    if kind == "width":
        fields = dict(d_model=size, n_layers=args.depth, n_heads=size // args.head_dim)
        base = dict(base_width=args.widths[0])
    else:
        fields = dict(d_model=args.width, n_layers=size, n_heads=args.width // args.head_dim)
        base = dict(base_width=args.width, base_depth=args.depths[0], depth_alpha=args.alpha)
    if param == "mup":
        fields.update(parametrization="mup", base_width=base["base_width"], output_mult=args.output_mult)
    elif param == "completep":
        fields.update(parametrization="completep", output_mult=args.output_mult, **base)
    return ModelConfig(seq_len=args.seq_len, **fields)


def val_loss(model: ModelConfig, log2_lr: float, args) -> float:
    """The final validation loss of one run (inf if it diverged)."""
    steps = args.steps
    om = f"-om{model.output_mult:g}" if model.output_mult != 1.0 else ""
    name = f"{model.parametrization}{om}-d{model.d_model}-L{model.n_layers}-lr2^{log2_lr:g}"
    cfg = RunConfig(model=model, data=DataConfig(source="stdlib"), name=name, train=TrainConfig(
        tokens=steps * args.batch * model.seq_len, global_batch_size=args.batch, lr=2.0 ** log2_lr,
        warmup_steps=max(1, steps // 10), eval_batches=4, eval_batch_size=32, log_every=steps, progress=False))
    out = os.path.join(args.runs, name)
    result = train.run(cfg, out)
    shutil.rmtree(os.path.join(out, "checkpoints"), ignore_errors=True)  # run.json keeps the result
    points = [p for p in result.points if p["branch"] is None]
    if result.status != "finished" or not points or not math.isfinite(points[-1]["val_loss"]):
        return math.inf
    return float(points[-1]["val_loss"])


def search(model: ModelConfig, start: float, args, log) -> dict[float, float]:
    """Losses on the log2-lr grid around the minimum: walk from `start` towards lower loss
    until the best point has a neighbour on each side, then add `--extra` points beyond
    each side (so that the plotted curves show the valley)."""
    losses: dict[float, float] = {}

    def at(x):
        if x not in losses:
            t = time.time()
            losses[x] = val_loss(model, x, args)
            log(f"  {model.parametrization:9s} d{model.d_model:<4d} L{model.n_layers:<3d} lr 2^{x:<5g} "
                f"val_loss {losses[x]:.4f}  ({time.time() - t:.0f} s)")
        return losses[x]

    x = start
    at(x - 1), at(x), at(x + 1)
    for _ in range(12):
        best = min(losses, key=losses.get)
        if best - 1 not in losses:
            at(best - 1)
        elif best + 1 not in losses:
            at(best + 1)
        else:
            break
    best = min(losses, key=losses.get)
    for k in range(1, args.extra + 1):
        at(best - 1 - k), at(best + 1 + k)
    return losses


def optimum(losses: dict[float, float]) -> float:
    """log2 of the optimal lr: the vertex of the parabola through the best grid point and its
    neighbours (the best point itself if the parabola is not convex)."""
    best = min(losses, key=losses.get)
    xs = [best - 1, best, best + 1]
    if not all(x in losses and math.isfinite(losses[x]) for x in xs):
        return best
    y0, y1, y2 = (losses[x] for x in xs)
    curvature = y0 - 2 * y1 + y2
    if curvature <= 0:
        return best
    return best + 0.5 * (y0 - y2) / curvature


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(kind, param) for kind in results for param in results[kind]]
    lows = [min(v for v in e["losses"].values() if math.isfinite(v))
            for kind, param in panels for e in results[kind][param].values()]
    ylim = (min(lows) - 0.05, max(lows) + 0.5)  # one scale for every panel: losses compare across them
    cols = max(len(results[kind]) for kind in results)
    fig, axes = plt.subplots(len(results), cols, figsize=(3.8 * cols, 3.3 * len(results)), squeeze=False)
    slots = [axes[r][c] for r, kind in enumerate(results) for c in range(len(results[kind]))]
    for ax in axes.flat:
        ax.set_visible(any(ax is slot for slot in slots))
    for ax, (kind, param) in zip(slots, panels):
        sizes = results[kind][param]
        for i, (size, entry) in enumerate(sorted(sizes.items(), key=lambda kv: int(kv[0]))):
            pts = sorted((float(x), y) for x, y in entry["losses"].items() if math.isfinite(y))
            color = plt.cm.viridis(i / max(len(sizes) - 1, 1))
            ax.plot([2 ** x for x, _ in pts], [y for _, y in pts], marker="o", ms=3, color=color,
                    label=f"{'d' if kind == 'width' else 'L'}={size}")
            ax.axvline(2 ** entry["log2_lr_opt"], color=color, lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_title(f"{param}, by {kind}: lr* drift {drift(sizes):.2f}x", fontsize=8)
        ax.set_xlabel("learning rate (base lr under mup/completep)", fontsize=8)
        ax.set_ylabel("validation loss (nats/byte)", fontsize=8)
        ax.set_ylim(*ylim)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def drift(sizes: dict) -> float:
    opts = [e["log2_lr_opt"] for e in sizes.values()]
    return 2.0 ** (max(opts) - min(opts))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", default="width,depth")
    p.add_argument("--params", default=None, help="these parametrizations (default: sp,mup for width, "
                   "sp,completep for depth; mup in a depth sweep is muP at its base width: SP's depth handling)")
    p.add_argument("--widths", type=_ints, default=(32, 64, 128, 256, 512))
    p.add_argument("--depths", type=_ints, default=(2, 4, 8, 16))
    p.add_argument("--width", type=int, default=64, help="d_model of the depth sweep")
    p.add_argument("--depth", type=int, default=1, help="n_layers of the width sweep")
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--output-mult", type=float, default=1.0, help="ModelConfig.output_mult of the mup/completep "
                   "models (tuned at the base width; 1 = the base model is SP)")
    p.add_argument("--start", type=float, default=-7.0, help="log2 lr the search starts from")
    p.add_argument("--extra", type=int, default=0, help="grid points added beyond each side of the minimum")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "figures"), help="figure, table, JSON")
    p.add_argument("--runs", default=os.path.join(tempfile.gettempdir(), "scaling-lr-transfer"),
                   help="the training runs (reused by a rerun with the same settings)")
    p.add_argument("--replot", nargs="+", metavar="JSON", help="no training: plot these lr_transfer.json files "
                   "together into --out/lr_transfer.png")
    args = p.parse_args(argv)
    if args.replot:
        merged: dict = {}
        for path in args.replot:
            for kind, by_param in json.load(open(path))["results"].items():
                merged.setdefault(kind, {}).update(by_param)
        plot(merged, os.path.join(args.out, "lr_transfer.png"))
        return 0
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "lr_transfer.log")

    def log(line):
        print(line, flush=True)
        with open(log_path, "a") as f:
            f.write(line + "\n")

    t0 = time.time()
    log(f"== {datetime.datetime.now():%Y-%m-%d %H:%M} {platform.node()} {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}: {' '.join(sys.argv[1:])}")
    plans = {"width": (("sp", "mup"), args.widths), "depth": (("sp", "completep"), args.depths)}
    results: dict = {}
    for kind in args.kinds.split(","):
        params, sizes = plans[kind]
        params = params if args.params is None else args.params.split(",")
        results[kind] = {}
        for param in params:
            label = param if param == "sp" or args.output_mult == 1 else f"{param} (output_mult {args.output_mult:g})"
            results[kind][label] = {}
            start = args.start
            for size in sizes:
                losses = search(model_for(kind, param, size, args), start, args, log)
                opt = optimum(losses)
                results[kind][label][size] = {"losses": losses, "log2_lr_opt": opt, "loss_opt": min(losses.values())}
                start = round(opt)  # the next size starts where this one's optimum is
    wall = time.time() - t0

    lines = []
    for kind, by_param in results.items():
        params = list(by_param)
        lines.append(f"\n{kind}: optimal learning rate (parabola vertex on a factor-2 grid) and best val loss\n")
        lines.append("| " + ("d_model" if kind == "width" else "n_layers") + " | "
                     + " | ".join(f"{q} lr* | {q} loss" for q in params) + " |")
        lines.append("|---:|" + "---:|" * (2 * len(params)))
        for size in next(iter(by_param.values())):
            cells = []
            for q in params:
                e = by_param[q][size]
                cells += [f"{2 ** e['log2_lr_opt']:.2e}", f"{e['loss_opt']:.4f}"]
            lines.append(f"| {size} | " + " | ".join(cells) + " |")
        lines.append("| drift max/min | " + " | ".join(f"{drift(by_param[q]):.2f}x | " for q in params) + "|")
    lines.append(f"\nwall {wall / 60:.1f} min, {platform.node()}, {os.cpu_count()} cores, "
                 f"load {os.getloadavg()[0]:.1f}, {datetime.date.today()}, steps {args.steps} x {args.batch} x "
                 f"{args.seq_len} tokens")
    log("\n".join(lines))
    with open(os.path.join(args.out, "lr_transfer.json"), "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items()}, "results": results}, f, indent=1, default=str)
    png = os.path.join(args.out, "lr_transfer.png")
    plot(results, png)
    log(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
