"""Parameter counts and per-step training FLOPs of a few family members, by every analytic
count, beside XLA's own count of the compiled training step.

    python bench/flops_vs_xla.py

XLA counts what the program computes: the embedding gather as zero and, of the T x T
attention scores, only the blocks the causal attention computes
(`scaling.attention.attention_work_fraction`). So the table prints both the counts as written and
"palm@impl": PaLM's count with its attention term at the computed fraction.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scaling import flops  # noqa: E402
from scaling.attention import attention_work_fraction  # noqa: E402
from scaling.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402
from scaling.data import DataConfig  # noqa: E402
from scaling.step import step_xla_flops  # noqa: E402

BATCH = 4
MEMBERS = [
    ModelConfig(d_model=128, n_layers=2, n_heads=2, seq_len=256),
    ModelConfig(d_model=256, n_layers=4, n_heads=4, seq_len=256),
    ModelConfig(d_model=384, n_layers=6, n_heads=6, seq_len=256),
    ModelConfig(d_model=256, n_layers=2, n_heads=4, seq_len=256, loops=2),
    ModelConfig(d_model=256, n_layers=4, n_heads=4, seq_len=256, ffn="swiglu", positions="rotary",
                tie_embeddings=False, vocab_size=1024),
]


def main() -> None:
    header = ("shape", "N total", "N non-emb", "6N", "kaplan", "chinchilla", "palm", "palm@impl", "XLA",
              "XLA/palm@impl", "XLA/chinchilla")
    rows = [header]
    for cfg in MEMBERS:
        pc = flops.param_counts(cfg)
        per = {m: flops.per_step(cfg, BATCH, m) for m in flops.METHODS}
        layers = cfg.n_layers * cfg.loops
        attention = 12.0 * layers * cfg.n_heads * cfg.k * cfg.seq_len * BATCH * cfg.seq_len
        palm_impl = per["palm"] - (1 - attention_work_fraction(cfg.seq_len)) * attention
        xla = step_xla_flops(RunConfig(model=cfg, data=DataConfig(),
                                       train=TrainConfig(tokens=10**6, global_batch_size=BATCH)))
        shape = f"D{cfg.d_model} L{cfg.n_layers}x{cfg.loops} {cfg.ffn} V{cfg.vocab_size}"
        rows.append((shape, f"{pc.total:,}", f"{pc.non_embedding:,}", *(f"{per[m]:.4g}" for m in flops.METHODS),
                     f"{palm_impl:.4g}", f"{xla:.4g}", f"{xla / palm_impl:.3f}", f"{xla / per['chinchilla']:.3f}"))
    print(f"training FLOPs per step, batch {BATCH} x T tokens (T = 256)")
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))


if __name__ == "__main__":
    main()
