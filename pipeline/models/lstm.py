"""Next-token LSTM models (Kotecha & Young 2018) and an attentional variant (Keerti et al. 2020).

``LSTMConfig`` -> ``LSTMModel``: token ids ``(batch, time)`` -> logits ``(batch, time, vocab)``.
Input is a learned embedding (``embedding > 0``) or a one-hot vector (``embedding = 0``), then a
stack of ``layers`` LSTM layers of ``hidden`` units with ``dropout`` between them and before the
output layer. The attention variant (``attention = True``) lets every step attend, causally, over
the LSTM outputs of the context window up to and including itself (scaled dot-product attention
with learned query/key/value projections); the context vector is concatenated to the LSTM output
before the softmax layer. Causal masking keeps teacher forcing valid at every position, so one
window gives ``time`` training targets for both variants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.config import PositiveInt, Range, check_bounds


@dataclass(frozen=True, kw_only=True)
class LSTMConfig:
    vocab_size: Annotated[int, Range(2)]
    embedding: Annotated[int, Range(0, note="0: one-hot")] = 64  # 0: one-hot input
    hidden: PositiveInt = 128
    layers: PositiveInt = 2
    dropout: Annotated[float, Range(0, 1, hi_open=True)] = 0.2
    attention: bool = False
    attention_dim: PositiveInt = 64

    def __post_init__(self) -> None:
        check_bounds(self, ValueError)


class CausalAttention(nn.Module):
    """Single-head scaled dot-product attention over the past outputs of the window."""

    def __init__(self, hidden: int, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden, dim)
        self.key = nn.Linear(hidden, dim)
        self.value = nn.Linear(hidden, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self.query(h), self.key(h), self.value(h)
        scores = torch.matmul(q, k.transpose(1, 2)) * self.scale  # (B, T, T)
        t = h.shape[1]
        mask = torch.ones(t, t, dtype=torch.bool, device=h.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.matmul(weights, v), weights


class LSTMModel(nn.Module):
    def __init__(self, cfg: LSTMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embedding) if cfg.embedding > 0 else None
        in_dim = cfg.embedding if cfg.embedding > 0 else cfg.vocab_size
        self.lstm = nn.LSTM(in_dim, cfg.hidden, num_layers=cfg.layers, batch_first=True,
                            dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.attn = CausalAttention(cfg.hidden, cfg.attention_dim) if cfg.attention else None
        out_in = cfg.hidden + (cfg.attention_dim if cfg.attention else 0)
        self.head = nn.Linear(out_in, cfg.vocab_size)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            return self.embed(x)
        return F.one_hot(x, self.cfg.vocab_size).float()

    def forward(self, x: torch.Tensor, state=None) -> torch.Tensor:
        """Logits for every position; ``state`` is the LSTM state (plain variant, for sampling)."""
        logits, _ = self.forward_state(x, state)
        return logits

    def forward_state(self, x: torch.Tensor, state=None):
        h, state = self.lstm(self.inputs(x), state)
        h = self.drop(h)
        if self.attn is not None:
            ctx, _ = self.attn(h)
            h = torch.cat([h, ctx], dim=-1)
        return self.head(h), state

    def step_logits(self, x: torch.Tensor, state=None, memory: torch.Tensor | None = None, context: int = 0):
        """Incremental decoding: logits of the last position of ``x`` (B, T) given the LSTM ``state``
        after the tokens before it and, for the attention variant, ``memory``: the LSTM outputs of
        the last ``context`` steps (0: all). Returns (logits (B, V), state, memory)."""
        h, state = self.lstm(self.inputs(x), state)
        h = self.drop(h)
        if self.attn is None:
            return self.head(h[:, -1]), state, None
        memory = h if memory is None else torch.cat([memory, h], dim=1)
        if context > 0:
            memory = memory[:, -context:]
        q = self.attn.query(memory[:, -1:])
        k, v = self.attn.key(memory), self.attn.value(memory)
        w = torch.softmax(torch.matmul(q, k.transpose(1, 2)) * self.attn.scale, dim=-1)
        ctx = torch.matmul(w, v)
        return self.head(torch.cat([h[:, -1:], ctx], dim=-1))[:, 0], state, memory
