"""Families of `ModelConfig`s: widths x depths, or target parameter counts.

A scaling study varies one thing (size) and holds the rest of the recipe fixed. Kaplan et
al. 2020 (sec. 3.1, Fig. 5) found loss nearly insensitive to the aspect ratio
d_model / n_layers over a wide range (roughly 20 to 200), so a family can be indexed by N
alone once the ratio is fixed; `from_target_params` does that. Heads follow from a fixed
head dimension (as in Chinchilla's Table A9, where kv_size is 64 or 128).

Every config is validated by `ModelConfig` as it is built, before anything is compiled.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterable, Literal

from scaling.config import ModelConfig
from scaling.flops import param_counts


def _check_positive(name: str, values: Iterable) -> list:
    values = list(values)
    if not values:
        raise ValueError(f"{name}: empty")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{name}: {v!r} is not a positive number")
    return values


def grid(widths: Iterable[int], depths: Iterable[int], *, head_dim: int = 64, **base) -> list[ModelConfig]:
    """Every (d_model, n_layers) pair, with n_heads = d_model // head_dim.

    `base` holds the other ModelConfig fields (vocab_size, seq_len, ffn, ...). A width that
    `head_dim` does not divide raises ValueError naming the width.
    """
    widths, depths = _check_positive("widths", widths), _check_positive("depths", depths)
    out = []
    for d_model, n_layers in itertools.product(widths, depths):
        if d_model % head_dim:
            raise ValueError(f"widths: d_model={d_model} is not divisible by head_dim={head_dim}")
        out.append(ModelConfig(d_model=d_model, n_layers=n_layers, n_heads=d_model // head_dim, **base))
    return out


def from_target_params(targets: Iterable[float], *, aspect_ratio: float = 64.0, head_dim: int = 64,
                       count: Literal["non_embedding", "total"] = "non_embedding",
                       min_layers: int = 1, **base) -> list[ModelConfig]:
    """For each target N, the config whose `count` of parameters is closest to it, among
    shapes with d_model a multiple of head_dim and d_model / n_layers close to `aspect_ratio`.

    The search: for each depth L up to where 12 L (aspect_ratio L)^2 passes the target,
    try every multiple of head_dim within a factor 2 of aspect_ratio x L, and keep the shape
    whose count is nearest the target (in log space); the distance from the aspect ratio,
    with a weight of 0.02, only breaks near ties. Returned configs are sorted by size, without
    duplicates (two targets closer than one shape step give one config).
    """
    targets = _check_positive("targets", targets)
    if not aspect_ratio > 0:
        raise ValueError(f"aspect_ratio: {aspect_ratio!r} is not positive")
    if head_dim <= 0:
        raise ValueError(f"head_dim: {head_dim!r} is not positive")
    if count not in ("non_embedding", "total"):
        raise ValueError(f"count: {count!r} must be 'non_embedding' or 'total'")

    def n_params(cfg: ModelConfig) -> int:
        return getattr(param_counts(cfg), count)

    def _score(cfg: ModelConfig, target: float) -> float:
        size_err = abs(math.log(n_params(cfg) / target))
        shape_err = abs(math.log((cfg.d_model / cfg.n_layers) / aspect_ratio))
        return size_err + 0.02 * shape_err

    out: dict[tuple, ModelConfig] = {}
    for target in targets:
        best = None
        max_layers = max(min_layers, int(math.ceil((target / (12 * aspect_ratio**2)) ** (1 / 3) * 3)) + 2)
        for n_layers in range(min_layers, max_layers + 1):
            ideal = aspect_ratio * n_layers / head_dim
            for mult in range(max(1, math.floor(ideal / 2)), math.ceil(ideal * 2) + 1):
                d_model = mult * head_dim
                cfg = ModelConfig(d_model=d_model, n_layers=n_layers, n_heads=mult, **base)
                score = _score(cfg, target)
                if best is None or score < best[0]:
                    best = (score, cfg)
        cfg = best[1]
        out[(cfg.d_model, cfg.n_layers)] = cfg
    return sorted(out.values(), key=n_params)


def table(configs: Iterable[ModelConfig], method: str = "chinchilla") -> str:
    """A plain-text table of a family: shape, exact parameter counts, training FLOPs per token."""
    from scaling.flops import per_token

    rows = [("d_model", "layers", "heads", "loops", "N total", "N non-emb", "N emb",
             "FLOPs/token (6N)", f"FLOPs/token ({method})")]
    for cfg in configs:
        pc = param_counts(cfg)
        rows.append((cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.loops, f"{pc.total:,}", f"{pc.non_embedding:,}",
                     f"{pc.embedding:,}", f"{per_token(cfg, '6n'):.4g}", f"{per_token(cfg, method):.4g}"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(v).rjust(w) for v, w in zip(r, widths)) for r in rows)
