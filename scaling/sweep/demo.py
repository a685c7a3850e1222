"""The `scaling demo` recipe: a sweep small enough for a laptop CPU, and why it is so.

The sweep config lives here, in the package, so that `scaling demo` works from an installed
wheel; `experiments/cpu_demo.py` is the place to copy it from and edit. Running, fitting and
plotting it: `scaling.pipeline.demo`.
"""

from __future__ import annotations

from scaling.config import ModelConfig, TrainConfig
from scaling.data.config import DataConfig
from scaling.sweep.config import SweepConfig

_DEMO_WIDTHS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 128)
DEMO_BUDGETS = {
    # name: (budgets, widths, depths, sizes per budget, size spread, bootstrap replicates,
    #        seeds per point, evaluation batches of 32 x 64 tokens)
    "tiny": ((2.5e10, 8e10, 2.5e11), _DEMO_WIDTHS, (2,), 4, 3.0, 100, 1, 16),
    "small": ((5e10, 9.3e10, 1.7e11, 3.2e11, 6e11), _DEMO_WIDTHS, (2,), 5, 3.0, 400, 2, 128),
    "medium": ((5e10, 1.1e11, 2.4e11, 5.2e11, 1.1e12, 2.5e12), _DEMO_WIDTHS, (2,), 6, 3.5, 1000, 2, 128),
}


def demo_config(budget: str = "small") -> SweepConfig:
    """The `scaling demo` sweep: byte-level models of ~4k-250k parameters on the embedded
    Python-stdlib corpus, float32 on CPU, 64-token contexts, batches of 16 sequences.

    tiny: 3 budgets x 4 sizes over a decade, one seed (CI, ~1.5-2 minutes on 2 cores); small:
    5 budgets x 5 sizes x 2 seeds over 1.1 decades (the default); medium: 6 x 6 x 2 over 1.7
    decades. Times measured: bench/README.md ("demo").

    Why this recipe (pilot runs at C = 1e11 on CPU):
      - one shape per size: every model has 2 layers and d_model a multiple of 8 (head_dim 8).
        A widths x depths grid mixed narrow-deep and wide-shallow models of similar N whose
        losses differed by more than neighbouring sizes did, which spoiled the parabolas.
        Depth 2 rather than a depth rule: deeper narrow models cost several times more CPU
        time per FLOP, and every extra shape costs a compilation (~5-15 s on 2 busy cores);
      - lr = 0.016 x 32 / d_model (`lr_width`): with one lr (3e-3) the narrow models were
        badly under-tuned (d_model=16: 2.34 at 3e-3, 2.12 at 3e-2), pushing the optimum
        towards large N; the best lr fell roughly as 1/width (d16: >= 3e-2, d32: 2e-2 of
        1e-2/2e-2/4e-2, d56: <= 1e-2);
      - sizes centred on 60 tokens per parameter, not 20: with the per-width lr the pilot's
        minimum at C = 1e11 sat at ~13k parameters, ~75 tokens per parameter (models this
        small are mostly byte embedding). This only places the runs; the fitted exponents
        and D/N come from the runs;
      - budgets from 5e10: the family's smallest model (d_model 8, 4.1k parameters, the
        256 x 8 embedding is most of it) must sit left of the optimum; at 2.5e10 it was the
        best run, so the minimum fell off the grid. The grid is coarse there (d_model 8 -> 16
        is 2.7x in N), so the smallest budgets' sizes are not symmetric about the optimum.
        The top budget is what 2 CPU cores allow; with it, approach 2's backtest (which needs
        a decade without the largest budget) runs only in `medium`;
      - two seeds per (budget, size), averaged (`SweepConfig.seeds`), and 128 batches of 32
        validation sequences (262k tokens, the same for every run): measured, the run-to-run
        noise of these models is ~1.4% of the loss (seed against seed, up to 5% for the widest
        models of a budget, which get the fewest steps), and with one seed and 32k validation
        tokens the forecast at 10x the largest budget swung between +3.6% and +8.6% off the
        trained loss between two identical sweeps; with both it was 1.2% off
        (bench/README.md, "demo forecast");
      - 16 optimizer steps per device call (`steps_per_dispatch`): these models do a few MFLOP
        a step and are bound by the host's per-step round trip (1.3-2x faster, bench/dispatch.py);
      - exact match scored for spans of 1, 4, 8 and 16 tokens (the emergence check of
        `scaling.questions`).
    """
    if budget not in DEMO_BUDGETS:
        raise ValueError(f"budget={budget!r}: must be one of {', '.join(DEMO_BUDGETS)}")
    budgets, widths, depths, sizes, spread, _, seeds, eval_batches = DEMO_BUDGETS[budget]
    return SweepConfig(
        name=f"demo-{budget}", budgets=budgets, widths=widths, depths=depths, head_dim=8,
        sizes_per_budget=sizes, size_spread=spread, tokens_per_param=60.0, flops_method="chinchilla",
        min_steps=40, max_warmup_frac=0.1, lr_width=32, seeds=seeds,
        model=ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=256, seq_len=64),
        data=DataConfig(source="stdlib"),
        train=TrainConfig(tokens=1, global_batch_size=16, lr=1.6e-2, warmup_steps=40, schedule="cosine",
                          eval_batches=eval_batches, eval_batch_size=32, exact_match_spans=(1, 4, 16),
                          steps_per_dispatch=16, log_every=100, progress=False),
    )
