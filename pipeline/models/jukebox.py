"""The Jukebox prior and upsamplers: decoder-only transformers over VQ-VAE codes (Dhariwal et al. 2020).

``PriorConfig`` -> ``JukeboxPrior``: codes ``(B, T)`` of one level (``T <= context``) -> logits
``(B, T, bins)`` for every position (teacher forcing: the input at position ``p`` is the code at
``p - 1``, a learned start vector at ``p = 0``), plus a learned position embedding of ``context``
rows. Each layer is a pre-LayerNorm residual block (``h = x + a + m``, ``a = attn(ln(x))``,
``m = mlp(ln(x + a))``, as jukebox's ``ResAttnBlock``) whose attention follows one factorized
pattern of ``pipeline.models.sparse_attention``; ``pattern`` is cycled over the layers. The output
layer shares the code embedding's weights (jukebox ``share_x_emb_x_out``).

An upsampler is the same transformer with ``cond_ratio > 1``: the codes of the level above
(``T / cond_ratio`` of them for ``T`` codes here) go through the ``Conditioner`` (embedding, a
3-wide convolution, then per upsampling step a dilated residual 1-D convolution stack and a
transposed convolution, then LayerNorm, as jukebox's ``Conditioner`` / ``DecoderConvBock``), and
the result, one vector per position of this level, is added to the transformer's input and to
its output. Hop ratios that are powers of two are upsampled in steps of 2 (jukebox's
``strides_t``), other ratios in one step.

``new_cache`` / ``prime`` / ``step`` run the same network one position at a time with cached keys
and values (sampling); ``step`` at position ``t`` gives the logits that ``forward`` gives at ``t``.
No IO here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.config import NonNegativeInt, PositiveFloat, PositiveInt, Range, check_bounds
from pipeline.models.sparse_attention import factorized_attention, key_index
from pipeline.names import ATTENTION_KINDS


@dataclass(frozen=True, kw_only=True)
class PriorConfig:
    bins: Annotated[int, Range(2)]  # codebook size of the level
    width: PositiveInt = 128
    layers: PositiveInt = 3
    heads: PositiveInt = 2
    context: PositiveInt = 512  # positions (codes) per window
    blocksize: PositiveInt = 32  # positions per row of the factorized attention
    pattern: tuple[str, ...] = ("row", "column", "prev_row")  # cycled over the layers
    mlp_ratio: PositiveFloat = 1.0  # MLP width / width (jukebox m_mlp = 1)
    dropout: Annotated[float, Range(0, 1, hi_open=True)] = 0.0
    cond_ratio: PositiveInt = 1  # > 1: an upsampler, conditioned on the level above (hop ratio)
    cond_depth: NonNegativeInt = 4  # residual blocks per upsampling step of the conditioner
    cond_dilation_growth: PositiveInt = 3  # dilation = growth ** (depth % cycle)
    cond_dilation_cycle: NonNegativeInt = 0  # 0: no cycle
    cond_width: NonNegativeInt = 0  # conditioner channels (0: width)

    def __post_init__(self) -> None:
        check_bounds(self, ValueError)
        if self.width % self.heads:
            raise ValueError(f"width={self.width} must be a multiple of heads={self.heads}")
        if not self.pattern:
            raise ValueError("pattern must name at least one attention kind")
        for kind in self.pattern:
            if kind not in ATTENTION_KINDS:
                raise ValueError(f"pattern entry {kind!r} must be one of {', '.join(ATTENTION_KINDS)}")
        if self.context % self.cond_ratio:
            raise ValueError(f"context={self.context} must be a multiple of cond_ratio={self.cond_ratio}")

    def kinds(self) -> list[str]:
        return [self.pattern[i % len(self.pattern)] for i in range(self.layers)]


# ---------------------------------------------------------------------------------------------
# conditioner: the codes of the level above, upsampled to this level's rate


class ResConv1DBlock(nn.Module):
    def __init__(self, width: int, dilation: int, res_scale: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, 3, 1, dilation, dilation)
        self.proj = nn.Conv1d(width, width, 1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.proj(F.relu(self.conv(F.relu(x))))


def dilations(depth: int, growth: int, cycle: int) -> list[int]:
    """Dilation of each residual block: ``growth ** d`` (``d % cycle`` with a cycle), as jukebox's Resnet1D."""
    return [growth ** (d % cycle if cycle else d) for d in range(depth)]


def upsample_strides(ratio: int) -> list[int]:
    """Strides of the transposed convolutions whose product is ``ratio``: 2s for powers of two."""
    if ratio == 1:
        return []
    if ratio & (ratio - 1) == 0:
        return [2] * int(math.log2(ratio))
    return [ratio]


class Conditioner(nn.Module):
    """Upper-level codes ``(B, T_up)`` -> ``(B, T_up * ratio, width)`` vectors for this level."""

    def __init__(self, bins: int, width: int, out_width: int, ratio: int, depth: int, growth: int, cycle: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.x_emb = nn.Embedding(bins, width)
        nn.init.normal_(self.x_emb.weight, std=0.02)
        layers: list[nn.Module] = [nn.Conv1d(width, width, 3, 1, 1)]
        res_scale = 1.0 / math.sqrt(depth) if depth else 1.0
        for s in upsample_strides(ratio):
            layers += [ResConv1DBlock(width, d, res_scale) for d in dilations(depth, growth, cycle)]
            if s % 2 == 0:
                layers.append(nn.ConvTranspose1d(width, width, 2 * s, s, s // 2))  # length * s exactly
            else:
                layers.append(nn.ConvTranspose1d(width, width, s, s, 0))
        if ratio == 1:
            layers += [ResConv1DBlock(width, d, res_scale) for d in dilations(depth, growth, cycle)]
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(width, out_width) if width != out_width else nn.Identity()
        self.ln = nn.LayerNorm(out_width)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = self.x_emb(codes).transpose(1, 2)  # (B, W, T_up)
        x = self.net(x).transpose(1, 2)  # (B, T_up * ratio, W)
        return self.ln(self.out(x))


# ---------------------------------------------------------------------------------------------
# transformer


class Cache:
    """Keys and values of every layer for one window: ``(B, H, length, D)`` buffers."""

    def __init__(self, layers: int, batch: int, heads: int, length: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.k = [torch.zeros(batch, heads, length, head_dim, device=device, dtype=dtype) for _ in range(layers)]
        self.v = [torch.zeros(batch, heads, length, head_dim, device=device, dtype=dtype) for _ in range(layers)]
        self.length = length
        self.filled = 0


class FactorizedAttention(nn.Module):
    def __init__(self, width: int, heads: int, kind: str, blocksize: int) -> None:
        super().__init__()
        self.heads, self.kind, self.blocksize = heads, kind, blocksize
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, W = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v  # (B, H, T, D) each

    def _merge(self, a: torch.Tensor) -> torch.Tensor:
        B, H, T, D = a.shape
        return self.proj(a.transpose(1, 2).reshape(B, T, H * D))

    def forward(self, x: torch.Tensor, cache: Cache | None = None, layer: int = 0) -> torch.Tensor:
        q, k, v = self._split(x)
        if cache is not None:
            T = x.shape[1]
            cache.k[layer][:, :, :T] = k
            cache.v[layer][:, :, :T] = v
        return self._merge(factorized_attention(q, k, v, self.kind, self.blocksize))

    def step(self, x: torch.Tensor, t: int, cache: Cache, layer: int) -> torch.Tensor:
        """One position ``t``: ``x (B, 1, W)``; keys and values of ``0 .. t - 1`` come from the cache."""
        q, k, v = self._split(x)
        cache.k[layer][:, :, t:t + 1] = k
        cache.v[layer][:, :, t:t + 1] = v
        idx = key_index(self.kind, t, self.blocksize, device=x.device)
        if idx.numel() == 0:  # prev_row, first row: no key, zero output (as jukebox's zero padding)
            return self._merge(torch.zeros_like(q))
        keys = cache.k[layer].index_select(2, idx)
        values = cache.v[layer].index_select(2, idx)
        w = torch.softmax(torch.matmul(q, keys.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1])), dim=-1)
        return self._merge(torch.matmul(w, values))


class Block(nn.Module):
    def __init__(self, cfg: PriorConfig, kind: str) -> None:
        super().__init__()
        self.ln_0 = nn.LayerNorm(cfg.width)
        self.attn = FactorizedAttention(cfg.width, cfg.heads, kind, cfg.blocksize)
        self.ln_1 = nn.LayerNorm(cfg.width)
        hidden = max(int(cfg.mlp_ratio * cfg.width), 1)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, hidden), nn.GELU(), nn.Linear(hidden, cfg.width))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: Cache | None = None, layer: int = 0) -> torch.Tensor:
        a = self.drop(self.attn(self.ln_0(x), cache, layer))
        m = self.drop(self.mlp(self.ln_1(x + a)))
        return x + a + m

    def step(self, x: torch.Tensor, t: int, cache: Cache, layer: int) -> torch.Tensor:
        a = self.attn.step(self.ln_0(x), t, cache, layer)
        return x + a + self.mlp(self.ln_1(x + a))


class JukeboxPrior(nn.Module):
    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        W = cfg.width
        self.x_emb = nn.Embedding(cfg.bins, W)
        nn.init.normal_(self.x_emb.weight, std=0.02)
        self.start_token = nn.Parameter(torch.randn(1, W) * 0.01)
        self.pos_emb = nn.Parameter(torch.randn(cfg.context, W) * 0.01)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, kind) for kind in cfg.kinds())
        self.ln_f = nn.LayerNorm(W)
        self.conditioner = None
        if cfg.cond_ratio > 1:
            self.conditioner = Conditioner(cfg.bins, cfg.cond_width or W, W, cfg.cond_ratio, cfg.cond_depth,
                                           cfg.cond_dilation_growth, cfg.cond_dilation_cycle)

    @property
    def is_upsampler(self) -> bool:
        return self.conditioner is not None

    def condition(self, cond_codes: torch.Tensor | None, length: int) -> torch.Tensor | None:
        """``(B, length, width)`` conditioning vectors from the upper codes (None for the top prior)."""
        if self.conditioner is None:
            if cond_codes is not None:
                raise ValueError("the top-level prior takes no upper-level codes")
            return None
        if cond_codes is None:
            raise ValueError("an upsampler needs the codes of the level above")
        r = self.cfg.cond_ratio
        if cond_codes.shape[1] * r < length:
            raise ValueError(f"{cond_codes.shape[1]} upper codes x ratio {r} < {length} positions")
        return self.conditioner(cond_codes)[:, :length]  # every upper code of the window, as in sampling

    def _inputs(self, codes: torch.Tensor) -> torch.Tensor:
        B = codes.shape[0]
        start = self.start_token.expand(B, 1, -1)
        return torch.cat([start, self.x_emb(codes[:, :-1])], dim=1)

    def _check_length(self, T: int) -> None:
        if T > self.cfg.context:
            raise ValueError(f"{T} positions exceed the context of {self.cfg.context}")

    def hidden(self, codes: torch.Tensor, cond: torch.Tensor | None, cache: Cache | None = None) -> torch.Tensor:
        T = codes.shape[1]
        self._check_length(T)
        h = self.drop(self._inputs(codes) + self.pos_emb[:T])
        if cond is not None:
            h = h + cond[:, :T]
        for i, block in enumerate(self.blocks):
            h = block(h, cache, i)
        if cond is not None:
            h = h + cond[:, :T]
        return h

    def forward(self, codes: torch.Tensor, cond_codes: torch.Tensor | None = None) -> torch.Tensor:
        """``codes (B, T)`` -> logits ``(B, T, bins)``; position ``p`` predicts ``codes[:, p]``."""
        cond = self.condition(cond_codes, codes.shape[1])
        return F.linear(self.ln_f(self.hidden(codes, cond)), self.x_emb.weight)

    # -- incremental (sampling) ----------------------------------------------------------------

    def new_cache(self, batch: int, length: int) -> Cache:
        self._check_length(length)
        p = self.x_emb.weight
        return Cache(len(self.blocks), batch, self.cfg.heads, length, self.cfg.width // self.cfg.heads,
                     p.device, p.dtype)

    @torch.no_grad()
    def prime(self, cache: Cache, prefix: torch.Tensor, cond: torch.Tensor | None) -> None:
        """Fill the cache for positions ``0 .. P - 1`` from the known codes ``prefix (B, P)``."""
        if prefix.shape[1]:
            self.hidden(prefix, cond, cache)
        cache.filled = prefix.shape[1]

    @torch.no_grad()
    def step(self, cache: Cache, prev: torch.Tensor | None, cond: torch.Tensor | None) -> torch.Tensor:
        """Logits ``(B, bins)`` of position ``t = cache.filled`` given the code at ``t - 1`` (``prev (B,)``;
        None at ``t = 0``); advances the cache by one position."""
        t = cache.filled
        if t >= cache.length:
            raise ValueError(f"the cache holds {cache.length} positions; position {t} is past it")
        if t == 0:
            x = self.start_token.expand(cache.k[0].shape[0], 1, -1)
        else:
            x = self.x_emb(prev.reshape(-1, 1))
        x = x + self.pos_emb[t:t + 1]
        c = cond[:, t:t + 1] if cond is not None else None
        if c is not None:
            x = x + c
        for i, block in enumerate(self.blocks):
            x = block.step(x, t, cache, i)
        if c is not None:
            x = x + c
        cache.filled = t + 1
        return F.linear(self.ln_f(x[:, 0]), self.x_emb.weight)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

