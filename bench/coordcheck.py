"""Coordinate check of the parametrizations (Yang et al. 2022, TP5 Fig. 5), table and figure.

    python bench/coordcheck.py                                  # SP vs muP, widths 32-512
    python bench/coordcheck.py --vary depth --params mup,completep --depths 2,4,8,16
    python bench/coordcheck.py --widths 32,64 --seeds 1 --steps 2 --out /tmp/cc   # a quick look

Every model (2 layers, head dim 8, context 64, the stdlib corpus) trains `--steps` steps of
the library's compiled step at one constant learning rate from `--seeds` seeds, and the RMS
of every layer's output (and of its change since init) is measured on a fixed validation
batch after each step (`scaling.coordcheck`). muP and CompleteP are relative to the
narrowest width (and shallowest depth), so there they are the SP model. Prints, per tensor,
the spread (max/min over the models, worst over the steps) for each parametrization, writes
`coordcheck_<vary>.png` (RMS against width or depth, one line per step, as TP5 Fig. 5) and a
JSON of every number into --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


from scaling import coordcheck  # noqa: E402
from scaling.config import ModelConfig  # noqa: E402

PLOTTED = ("blocks.0.attn.qkv", "blocks.0.attn", "blocks.0.ffn", "residual.final", "logits", "embed")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def base_model(param: str, width: int, depth: int, args) -> ModelConfig:
    fields = dict(d_model=width, n_layers=depth, n_heads=width // args.head_dim, seq_len=args.seq_len)
    if param == "mup":
        fields.update(parametrization="mup", base_width=width)
    elif param == "completep":
        fields.update(parametrization="completep", base_width=width, base_depth=depth, depth_alpha=args.alpha)
    return ModelConfig(**fields)


def plot(results: dict, vary: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = list(results)
    fig, axes = plt.subplots(len(params), len(PLOTTED), figsize=(3.1 * len(PLOTTED), 2.7 * len(params)),
                             squeeze=False, sharey="col")
    for row, param in enumerate(params):
        res = results[param]
        xs = [m.d_model if vary == "width" else m.n_layers * m.loops for m in res.models]
        for col, name in enumerate(PLOTTED):
            ax = axes[row][col]
            for t in range(res.steps + 1):
                ys = [r[name][t] for r in res.rms]
                ax.plot(xs, ys, marker="o", ms=3, color=plt.cm.viridis(t / max(res.steps, 1)), label=f"t={t}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            spread = res.spread(name).max()
            ax.set_title(f"{param}: {name}\nspread {spread:.2f}x", fontsize=8)
            ax.tick_params(labelsize=7)
            if row == len(params) - 1:
                ax.set_xlabel(vary, fontsize=8)
        axes[row][0].set_ylabel("RMS of output", fontsize=8)
    axes[0][-1].legend(fontsize=6)
    fig.suptitle(f"coordinate check: RMS of each layer's output after t steps (lr {res.lr:g})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vary", choices=("width", "depth"), default="width")
    p.add_argument("--params", default=None, help="comma-separated parametrizations "
                   "(default sp,mup for width; mup,completep for depth)")
    p.add_argument("--widths", type=_ints, default=(32, 64, 128, 256, 512))
    p.add_argument("--depths", type=_ints, default=(2, 4, 8, 16))
    p.add_argument("--width", type=int, default=64, help="the width of a depth check")
    p.add_argument("--depth", type=int, default=2, help="the depth of a width check")
    p.add_argument("--head-dim", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--alpha", type=float, default=1.0, help="CompleteP's depth_alpha")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "figures"))
    args = p.parse_args(argv)
    params = (args.params or ("sp,mup" if args.vary == "width" else "mup,completep")).split(",")
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    results = {}
    for param in params:
        if args.vary == "width":
            base = base_model(param, args.widths[0], args.depth, args)
            models = coordcheck.family(base, widths=args.widths)
        else:
            base = base_model(param, args.width, args.depths[0], args)
            models = coordcheck.family(base, depths=args.depths)
        results[param] = coordcheck.run(models, steps=args.steps, lr=args.lr, seeds=range(args.seeds),
                                        batch=args.batch)
        label = (lambda m: f"d{m.d_model}") if args.vary == "width" else (lambda m: f"L{m.n_layers}")
        print(f"\n{param}:\n{coordcheck.format_table(results[param], label=label)}", flush=True)
    wall = time.time() - t0

    names = [n for n in results[params[0]].names() if all(n in r.names() for r in results.values())]
    print(f"\nspread over {args.vary}s {args.widths if args.vary == 'width' else args.depths} "
          f"(max/min; x: output, worst over steps 0-{args.steps}; dx: change since init, steps 1-{args.steps}):\n")
    print("| tensor | " + " | ".join(f"{p} x | {p} dx" for p in params) + " |")
    print("|---|" + "---:|" * (2 * len(params)))
    for n in names:
        cells = []
        for param in params:
            res = results[param]
            cells += [f"{res.spread(n).max():.2f}", f"{res.spread(n, 'delta')[1:].max():.2f}"]
        print(f"| {n} | " + " | ".join(cells) + " |")
    print(f"\nwall {wall:.0f} s, {platform.node()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
          f"{datetime.date.today()}")

    png = os.path.join(args.out, f"coordcheck_{args.vary}.png")
    plot(results, args.vary, png)
    with open(os.path.join(args.out, f"coordcheck_{args.vary}.json"), "w") as f:
        json.dump({param: {"models": [f"d{m.d_model}L{m.n_layers}" for m in r.models], "steps": r.steps, "lr": r.lr,
                           "rms": [{k: v.tolist() for k, v in d.items()} for d in r.rms],
                           "delta": [{k: v.tolist() for k, v in d.items()} for d in r.delta]}
                   for param, r in results.items()}, f)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
