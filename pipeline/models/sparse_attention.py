"""Factorized (sparse) causal self-attention of the Jukebox prior (Child et al. 2019; Dhariwal et al. 2020).

A sequence of positions ``0 .. n-1`` is cut into rows (blocks) of ``blocksize`` positions; a layer
attends with one of four patterns, each a boolean ``(query, key)`` matrix (True: may attend):

- ``dense``:    every earlier position and itself (``j <= i``); jukebox ``attn_func`` 0.
- ``row``:      the causal prefix of its own row (``i // b == j // b`` and ``j <= i``); ``attn_func`` 1.
- ``column``:   the positions with the same index inside its row, in its own and every earlier
  row (``i % b == j % b`` and ``j <= i``, stride ``b``); ``attn_func`` 2 (``transpose_block_attn``).
- ``prev_row``: every position of the previous row (``j // b == i // b - 1``), and nothing of its own
  row, exactly as jukebox's ``prev_block_attn`` (``attn_func`` 3, no mask, the keys and values of
  the first row zero-padded). Queries of the first row have no key at all: their output is zero,
  which is what jukebox's zero keys and values give (uniform weights over zero values).

Row and column attention together reach every earlier position in two layers; a layer pattern
such as ``row,column,prev_row`` (jukebox ``attn_order`` 2) is cycled over the depth.

``masked_attention`` applies any boolean mask (rows without keys give zero); ``factorized_attention``
computes the same numbers with block reshapes, in ``O(n * b)`` (row, prev_row) or ``O(n * n / b)``
(column) memory instead of ``O(n^2)``, when ``n`` is a multiple of ``b`` (else it falls back to
the mask). ``mask_row`` / ``key_index`` give the keys of one query for incremental sampling.
All functions are pure tensor code: no parameters, no IO.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from pipeline.names import ATTENTION_KINDS


def check_kind(kind: str) -> str:
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention kind {kind!r} must be one of {', '.join(ATTENTION_KINDS)}")
    return kind


def allowed(kind: str, i: torch.Tensor, j: torch.Tensor, blocksize: int) -> torch.Tensor:
    """Whether query position ``i`` may attend to key position ``j`` (broadcasting integer tensors)."""
    check_kind(kind)
    if blocksize < 1:
        raise ValueError(f"blocksize={blocksize} must be a positive integer")
    if kind == "dense":
        return j <= i
    if kind == "row":
        return (i // blocksize == j // blocksize) & (j <= i)
    if kind == "column":
        return (i % blocksize == j % blocksize) & (j <= i)
    return j // blocksize == i // blocksize - 1  # prev_row


def make_mask(kind: str, n: int, blocksize: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """The ``(n, n)`` boolean mask of a pattern: ``mask[i, j]`` is True where query ``i`` sees key ``j``."""
    idx = torch.arange(n, device=device)
    return allowed(kind, idx[:, None], idx[None, :], blocksize)


def key_index(kind: str, t: int, blocksize: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """The key positions (ascending) that query ``t`` attends to; empty for the first row of prev_row."""
    check_kind(kind)
    b = blocksize
    if kind == "dense":
        return torch.arange(t + 1, device=device)
    if kind == "row":
        return torch.arange((t // b) * b, t + 1, device=device)
    if kind == "column":
        return torch.arange(t % b, t + 1, b, device=device)
    r = t // b
    if r == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    return torch.arange((r - 1) * b, r * b, device=device)


def mask_row(kind: str, t: int, blocksize: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Row ``t`` of the mask over keys ``0 .. t`` (a ``(t + 1,)`` boolean vector)."""
    j = torch.arange(t + 1, device=device)
    return allowed(kind, torch.tensor(t, device=device), j, blocksize)


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention under a boolean ``(Tq, Tk)`` mask.

    ``q (..., Tq, D)``, ``k, v (..., Tk, D)`` -> ``(..., Tq, D)``. Disallowed keys get exactly zero
    weight (and so zero gradient); a query row without any allowed key returns zeros.
    """
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1) * mask  # empty rows: uniform * 0 = 0
    return torch.matmul(weights, v)


def _blocked_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    t = q.shape[-2]
    tril = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    return masked_attention(q, k, v, tril)


def factorized_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kind: str, blocksize: int) -> torch.Tensor:
    """Self-attention of one pattern over a whole sequence: ``q, k, v (B, H, T, D)`` -> ``(B, H, T, D)``.

    Equal (up to float rounding) to ``masked_attention(q, k, v, make_mask(kind, T, blocksize))``; with
    ``T % blocksize == 0`` the row, column and prev_row patterns are computed on block reshapes.
    """
    check_kind(kind)
    B, H, T, D = q.shape
    b = blocksize
    if kind == "dense" or T % b != 0 or T == 0:
        return masked_attention(q, k, v, make_mask(kind, T, b, device=q.device))
    nb = T // b
    if kind == "row":
        out = _blocked_causal(q.reshape(B, H, nb, b, D), k.reshape(B, H, nb, b, D), v.reshape(B, H, nb, b, D))
        return out.reshape(B, H, T, D)
    if kind == "column":
        qt, kt, vt = (x.reshape(B, H, nb, b, D).transpose(2, 3) for x in (q, k, v))  # (B, H, b, nb, D)
        return _blocked_causal(qt, kt, vt).transpose(2, 3).reshape(B, H, T, D)
    # prev_row: the keys and values of row r are those of row r - 1 (zeros before the first row)
    qb = q.reshape(B, H, nb, b, D)
    kb = F.pad(k.reshape(B, H, nb, b, D)[:, :, :-1], (0, 0, 0, 0, 1, 0))
    vb = F.pad(v.reshape(B, H, nb, b, D)[:, :, :-1], (0, 0, 0, 0, 1, 0))
    scores = torch.matmul(qb, kb.transpose(-1, -2)) * (1.0 / math.sqrt(D))
    out = torch.matmul(torch.softmax(scores, dim=-1), vb)  # first row: zero values -> zero output
    return out.reshape(B, H, T, D)
