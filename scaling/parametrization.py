"""How init, forward multipliers and per-tensor Adam learning rates scale with width and depth.

`ModelConfig.parametrization` picks one of three rules; `rules(cfg)` gives every number a
model and its optimizer need, so that the formulas live here once (`scaling.model` reads the
init stds and forward multipliers, `scaling.step` the learning-rate, weight-decay and eps
multipliers). Jax-free: it is arithmetic on a config.

"sp": standard parametrization, the library's GPT-2 recipe: every matrix N(0, init_std^2),
  the residual output projections init_std / sqrt(2 n_layers loops) (Radford et al. 2019),
  attention logits q.k / sqrt(K), one Adam learning rate for every tensor.

"mup": the Maximal Update Parametrization for Adam (Yang et al. 2022, "Tensor Programs V",
  Table 3, in the output-multiplier form of their Table 8 that allows tied embeddings), written
  relative to a base width so that at d_model = base_width (and output_mult = 1) it IS the SP
  model above (and a learning rate tuned there transfers). With m_d = d_model / base_width:

    tensor (role)                         init std                 Adam lr   forward
    token/position embeddings ("input")   init_std                 lr        -
    block matrices qkv, up ("hidden")     init_std / sqrt(m_d)     lr / m_d  -
    block matrices out, down ("hidden")   SP's std / sqrt(m_d)     lr / m_d  -
    biases, LayerNorms in blocks ("vector") 0 / 1                  lr        -
    final LayerNorm, unembedding ("output") 0 / 1, init_std        lr        logits x output_mult / m_d

  Hidden matrices have init variance proportional to 1/fan_in and Adam rates to 1/fan_in
  (Table 3, "hidden weights"); embeddings and every vector keep a width-independent rate
  (Table 3, "input weights & all biases"); the readout keeps its init and rate and its output
  is multiplied by 1/m_d (Table 8, "output weights": multiplier 1/fan_in), times
  `output_mult`, TP5's output multiplier: a constant to tune at the base width like the
  learning rate (bench/README.md: on the stdlib corpus the base model wants about 8). m_d is one ratio
  for every hidden dimension: d_attn and F are assumed to grow with d_model, as they do in
  `scaling.family`. Attention: TP5 (sec. 4, "attention logits scaled by 1/d") divides q.k by K
  instead of sqrt(K) when the head dimension K grows with width. `base_head_dim` gives the head
  dimension at the base width; logits are then q.k sqrt(base_head_dim) / K (= SP's 1/sqrt(K) at
  the base). Left None, K is the same at every width (more heads, not wider heads, as
  `scaling.family` builds models), where 1/sqrt(K) is already width-independent.

"completep": muP plus depth (Dey et al. 2025, "Don't be lazy: CompleteP enables
  compute-efficient deep transformers", Table 1; alpha = 1/2 is the depth-muP of Yang et al.
  2023, "Tensor Programs VI", and Bordelon et al. 2023). With m_L = n_layers loops / base_depth
  (every application of a block counts, so looped models scale like deep ones):
    - every residual branch is multiplied by m_L^-alpha: x + m_L^-alpha F(LN(x));
    - the out/down init no longer shrinks with depth: init_std / sqrt(2 base_depth m_d)
      (the branch multiplier does that work);
    - hidden matrices: Adam lr / m_d x m_L^(alpha - 1), weight decay x m_d (so the decay per
      step, lr x wd, does not change with width); block vectors: lr x m_L^(alpha - 1);
    - Adam's eps x 1 / (m_d m_L^alpha) (the gradients it is compared with shrink so).
  At alpha = 1 (CompleteP proper) every learning rate is depth-independent. At base width and
  base depth the model is again exactly SP.
"""

from __future__ import annotations

import dataclasses
import functools
import math

from scaling.config import ModelConfig

# The parameter roles of TP5's Table 3, as `role_of` assigns them from a parameter's path.
ROLES = ("input", "hidden", "vector", "output")
_HIDDEN_LAYERS = ("qkv", "out", "up", "down")


@dataclasses.dataclass(frozen=True)
class Rules:
    """Every number a parametrization fixes for one ModelConfig (see the module docstring).

    width_mult: m_d = d_model / base_width (1 under SP).
    depth_mult: m_L = n_layers x loops / base_depth (1 unless completep).
    hidden_std: init std of the block matrices that read the residual stream (qkv, up).
    out_std: init std of the block matrices that write to it (attention out, FFN down).
    embed_std: init std of embeddings and of an untied unembedding.
    residual: the multiplier of every residual branch.
    logits: the multiplier of the output logits.
    attention_scale: q.k multiplier, or None for SP's 1/sqrt(K).
    lr, weight_decay: per role (`ROLES`), multipliers of TrainConfig.lr and .weight_decay.
    adam_eps: multiplier of TrainConfig.eps.
    """

    width_mult: float
    depth_mult: float
    hidden_std: float
    out_std: float
    embed_std: float
    residual: float
    logits: float
    attention_scale: float | None
    lr: dict
    weight_decay: dict
    adam_eps: float


@functools.lru_cache(maxsize=256)
def rules(cfg: ModelConfig) -> Rules:
    """The parametrization's numbers for `cfg` (validated by ModelConfig; cached)."""
    std, layers = cfg.init_std, cfg.n_layers * cfg.loops
    ones = {role: 1.0 for role in ROLES}
    if cfg.parametrization == "sp":
        return Rules(width_mult=1.0, depth_mult=1.0, hidden_std=std, out_std=std / math.sqrt(2 * layers),
                     embed_std=std, residual=1.0, logits=1.0, attention_scale=None, lr=ones,
                     weight_decay=dict(ones), adam_eps=1.0)
    m_d = cfg.d_model / cfg.base_width
    attention_scale = None if cfg.base_head_dim is None else math.sqrt(cfg.base_head_dim) / cfg.k
    if cfg.parametrization == "mup":
        return Rules(width_mult=m_d, depth_mult=1.0, hidden_std=std / math.sqrt(m_d),
                     out_std=std / math.sqrt(2 * layers * m_d), embed_std=std, residual=1.0,
                     logits=cfg.output_mult / m_d,
                     attention_scale=attention_scale, lr={**ones, "hidden": 1.0 / m_d},
                     weight_decay=dict(ones), adam_eps=1.0)
    # completep
    a = cfg.depth_alpha
    m_L = layers / cfg.base_depth
    depth_lr = m_L ** (a - 1)
    return Rules(width_mult=m_d, depth_mult=m_L, hidden_std=std / math.sqrt(m_d),
                 out_std=std / math.sqrt(2 * cfg.base_depth * m_d), embed_std=std, residual=m_L ** -a,
                 logits=cfg.output_mult / m_d, attention_scale=attention_scale,
                 lr={**ones, "hidden": depth_lr / m_d, "vector": depth_lr},
                 weight_decay={**ones, "hidden": m_d}, adam_eps=1.0 / (m_d * m_L ** a))


def role_of(path: tuple) -> str:
    """The role (`ROLES`) of the parameter at `path` (its names in the model, e.g.
    ("blocks", 0, "attn", "qkv", "kernel")): block matrices are "hidden", other block
    parameters "vector", embeddings "input", the final LayerNorm and unembedding "output"."""
    names = [str(p) for p in path]
    if names and names[0] == "blocks":
        return "hidden" if names[-1] == "kernel" and any(n in _HIDDEN_LAYERS for n in names) else "vector"
    if names and names[0] in ("embed", "pos_embed"):
        return "input"
    if names and names[0] in ("ln_final", "unembed"):
        return "output"
    raise ValueError(f"path={path!r}: not a parameter of scaling.model.Transformer")
