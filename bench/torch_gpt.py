"""The plain PyTorch reference: scaling's default family member written nanoGPT-style.

Benchmark-only (the `scaling` library never imports torch). Same architecture as
`scaling.model.Transformer` with the default `ModelConfig`: pre-LayerNorm blocks, no biases
(LayerNorm without bias too), fused qkv projection, causal `F.scaled_dot_product_attention`,
GELU(tanh) MLP of width 4 d_model, learned absolute positions, tied input/output embeddings,
N(0, 0.02) initialisation with the output projections at 0.02 / sqrt(2 n_layers).
Optimiser: torch.optim.AdamW + clip_grad_norm_ (what nanoGPT's train.py does).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, n_layers: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        nn.init.normal_(self.qkv.weight, std=0.02)
        nn.init.normal_(self.out.weight, std=0.02 / math.sqrt(2 * n_layers))

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        q = q.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)
        k = k.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)
        v = v.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).contiguous().view(B, T, D))


class MLP(nn.Module):
    def __init__(self, d_model: int, n_layers: int):
        super().__init__()
        self.up = nn.Linear(d_model, 4 * d_model, bias=False)
        self.down = nn.Linear(4 * d_model, d_model, bias=False)
        nn.init.normal_(self.up.weight, std=0.02)
        nn.init.normal_(self.down.weight, std=0.02 / math.sqrt(2 * n_layers))

    def forward(self, x):
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, n_layers: int):
        super().__init__()
        self.ln_attn = nn.LayerNorm(d_model, bias=False)
        self.attn = CausalSelfAttention(d_model, n_heads, n_layers)
        self.ln_ffn = nn.LayerNorm(d_model, bias=False)
        self.ffn = MLP(d_model, n_layers)

    def forward(self, x):
        x = x + self.attn(self.ln_attn(x))
        return x + self.ffn(self.ln_ffn(x))


class GPT(nn.Module):
    def __init__(self, d_model: int, n_layers: int, n_heads: int, vocab_size: int, seq_len: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos_embed = nn.Embedding(seq_len, d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed.weight, std=0.02)
        self.blocks = nn.ModuleList([Block(d_model, n_heads, n_layers) for _ in range(n_layers)])
        self.ln_final = nn.LayerNorm(d_model, bias=False)

    def forward(self, tokens):
        T = tokens.shape[1]
        x = self.embed(tokens) + self.pos_embed(torch.arange(T, device=tokens.device))[None]
        for block in self.blocks:
            x = block(x)
        return self.ln_final(x) @ self.embed.weight.T  # tied embeddings


def make_step(model: GPT, lr: float = 3e-4, weight_decay: float = 0.1, clip: float = 1.0):
    """One training step: next-token cross-entropy, backward, clip, AdamW. Returns the loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=weight_decay)

    def step(tokens):
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return loss

    return step


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n x n float32 matmul in torch, best of `repeats` after a warm-up."""
    import time
    a = torch.ones(n, n) * 0.5
    a @ a
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best
