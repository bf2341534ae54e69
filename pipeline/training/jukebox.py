"""The Jukebox prior family for training and sampling: bits per token, seeded window crops, a
step-based training loop that resumes, and the three sampling algorithms of Jukebox's ``sample.py``.

Training: each step draws ``batch_size`` windows of ``context`` codes from the encoded clips with
``np.random.default_rng([seed, step])`` (so a resumed run draws the same windows as an unbroken
one), with the aligned ``context / ratio`` codes of the level above for an upsampler, and takes one
Adam step on the cross-entropy in bits per token (nats / ln 2, as jukebox reports it). Checkpoints
(``last.pt``: model, optimizer, step, torch RNG state, history) every ``checkpoint_every`` steps and
at the end; ``metrics.json`` has one row per step (``step``, ``train_bits``) for ``dvc plots``.

Under ``torchrun`` (``pipeline.training.distributed``) each step's global batch of windows (drawn as
above) is split across the ranks, ``rows[rank::world]`` (``batch_size`` must divide by the world
size: every window has ``context`` tokens, so equal shares make the mean of the ranks' mean-loss
gradients, which DistributedDataParallel takes, the global batch's). Dropout draws from a torch
seed of ``(seed, step, rank)`` per step, so a distributed run matches one process in distribution
only where dropout is on (exactly, up to rounding, at dropout 0) and resumes on any world size. The
logged bits are the means over the ranks; rank 0 alone writes checkpoints and metrics.

Sampling (no gradients; logits on the model's device, the draw on the CPU with the caller's
seeded ``torch.Generator``; ``temperature = 0`` is greedy):

- ``sample_window``: continue known codes to ``length`` positions inside one context window,
  one position at a time with cached keys and values.
- ``sample_level``: ``total`` codes of one level; past the context, windows of ``context``
  positions start every ``hop`` positions (``get_starts``, as jukebox: the last window is moved
  back to end at ``total``), and each window re-reads the previous window's last
  ``context - hop`` codes as its known prefix (``hop = hop_fraction * context``). Codes already
  known (a prompt) are kept, and windows they fill entirely are skipped.
- ``sample_hierarchy``: ancestral sampling, top level first, each upsampler conditioned on the
  codes just sampled above it; with ``prompt`` codes at every level it is primed sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from pipeline.progress import training_bar
from pipeline.models.jukebox import JukeboxPrior
from pipeline.training.precision import Precision, to_device
from pipeline.training.solver import Panel, load_checkpoint, model_device, save_checkpoint, write_metrics

LN2 = math.log(2.0)


# ---------------------------------------------------------------------------------------------
# losses


def bits_per_token(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in bits: ``logits (..., K)``, ``targets (...)``."""
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction=reduction)
    return ce / LN2


def model_bits(model: JukeboxPrior, codes: torch.Tensor, cond: torch.Tensor | None = None,
               reduction: str = "mean") -> torch.Tensor:
    device = model_device(model)
    codes = to_device(codes, device)
    return bits_per_token(model(codes, None if cond is None else to_device(cond, device)), codes, reduction)


@torch.no_grad()
def evaluate_bits(model: JukeboxPrior, codes: np.ndarray, upper: np.ndarray | None = None, *,
                  batch_size: int = 8) -> dict:
    """Mean bits per token over the non-overlapping ``context`` windows of every row of ``codes``
    (``(N, T)``; with ``upper (N, T / ratio)`` for an upsampler); tails shorter than a window are
    left out. ``{"bits_per_token", "tokens", "windows"}``."""
    model.eval()
    ctx, r = model.cfg.context, model.cfg.cond_ratio
    xs, cs = [], []
    for i in range(len(codes)):
        for s in range(0, codes.shape[1] - ctx + 1, ctx):
            xs.append(codes[i, s:s + ctx])
            if upper is not None:
                cs.append(upper[i, s // r:(s + ctx) // r])
    total, count = 0.0, 0
    for b in range(0, len(xs), batch_size):
        x = torch.from_numpy(np.stack(xs[b:b + batch_size]).astype(np.int64))
        c = torch.from_numpy(np.stack(cs[b:b + batch_size]).astype(np.int64)) if upper is not None else None
        total += float(model_bits(model, x, c, reduction="sum"))
        count += x.numel()
    return {"bits_per_token": total / count if count else None, "tokens": count, "windows": len(xs)}


# ---------------------------------------------------------------------------------------------
# training


def crop_batch(codes: np.ndarray, upper: np.ndarray | None, *, context: int, ratio: int, batch: int,
               rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``batch`` random windows of ``context`` codes (starts on multiples of ``ratio``) and, for an
    upsampler, the ``context / ratio`` codes of the level above that cover the same audio."""
    n, T = codes.shape
    rows = rng.integers(0, n, batch)
    starts = rng.integers(0, (T - context) // ratio + 1, batch) * ratio
    x = np.stack([codes[i, s:s + context] for i, s in zip(rows, starts)])
    c = None
    if upper is not None:
        c = torch.from_numpy(np.stack([upper[i, s // ratio:(s + context) // ratio]
                                       for i, s in zip(rows, starts)]).astype(np.int64))
    return torch.from_numpy(x.astype(np.int64)), c


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    steps: int = 100
    batch_size: int = 8
    lr: float = 3e-4
    warmup: int = 0  # linear warm-up steps, then a constant rate
    grad_clip: float = 1.0
    seed: int = 2026
    checkpoint_every: int = 50
    precision: str = "fp32"  # fp32 | bf16 | fp16 (``pipeline.training.precision``)
    compile: bool = False  # torch.compile the model's forward (in place)


def lr_at(step: int, cfg: TrainConfig) -> float:
    return cfg.lr * min(1.0, step / cfg.warmup) if cfg.warmup > 0 else cfg.lr


def train(model: JukeboxPrior, codes: np.ndarray, upper: np.ndarray | None, *, cfg: TrainConfig, out: Path,
          resume: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Train ``model`` on windows of ``codes`` (``(N, T)`` int, ``T >= context``); resumes from
    ``out/checkpoints/last.pt`` when it exists (and ``resume``). Writes ``checkpoints/last.pt``,
    ``metrics.json``. Returns ``{"steps_run", "resumed_at", "history"}``. Under ``torchrun``: see the
    module's docstring."""
    from pipeline.errors import StageError
    from pipeline.training import distributed

    dctx = distributed.current()
    if not dctx.is_main:
        log = None
    if dctx.active and cfg.batch_size % dctx.world:
        raise StageError(f"jukebox.train.batch_size={cfg.batch_size} does not split over {dctx.world} processes "
                         "(use a multiple of the world size)")
    out = Path(out)
    ckpt = out / "checkpoints" / "last.pt"
    ctx, r = model.cfg.context, model.cfg.cond_ratio
    if codes.ndim != 2 or codes.shape[1] < ctx:
        raise ValueError(f"codes of shape {codes.shape} hold no window of {ctx} codes")
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    amp = Precision.of(cfg.precision, model_device(model))
    if cfg.compile:  # the transformer's forward (training and evaluation; sampling's cached steps stay eager)
        model.compile()
    start, history, resumed = 0, [], False
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        amp.load(state)
        start, history, resumed = int(state["step"]), list(state["history"]), True
        history = history[:start]

    def checkpoint(step: int) -> None:
        if dctx.is_main:
            save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                                   "rng": torch.get_rng_state(), "history": history, **amp.state()})
            write_metrics(out / "metrics.json", history)
        dctx.barrier()

    net = dctx.wrap(model)  # DistributedDataParallel under torchrun, the model itself otherwise
    model.train()
    bar = training_bar(out.name, cfg.steps, start, log)
    for step in range(start + 1, cfg.steps + 1):
        rng = np.random.default_rng([cfg.seed, step])
        x, c = crop_batch(codes, upper, context=ctx, ratio=r, batch=cfg.batch_size, rng=rng)
        if dctx.active:  # this rank's windows; dropout draws of its own
            x, c = dctx.shard(x), None if c is None else dctx.shard(c)
            torch.manual_seed(int(np.random.SeedSequence([cfg.seed, step, dctx.rank]).generate_state(1)[0]))
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, cfg)
        optimizer.zero_grad()
        with amp.autocast():  # (the cross-entropy in fp32: bits_per_token)
            loss = model_bits(net, x, c)
        with dctx.collective(f"averaging gradients (step {step})"):
            amp.backward(loss)
        amp.step(optimizer, model.parameters(), cfg.grad_clip)
        bits = float(loss.detach())
        if dctx.active:  # equal shares: the global batch's mean is the mean over the ranks
            bits = dctx.all_sum([bits])[0] / dctx.world
        history.append({"step": step, "train_bits": bits})
        bar.step(note=f"{history[-1]['train_bits']:.3f} bits")
        if log and (step % max(cfg.steps // 10, 1) == 0 or step == cfg.steps):
            log(f"step {step}/{cfg.steps}: {history[-1]['train_bits']:.4f} bits per token")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            checkpoint(step)
    bar.close()
    if not ckpt.exists():  # zero steps asked: keep the initial weights
        checkpoint(0)
    if dctx.is_main:
        write_metrics(out / "metrics.json", history)
    dctx.barrier()
    model.eval()
    return {"steps_run": max(cfg.steps - start, 0), "resumed_at": start if resumed else None, "history": history}


#: the panel of ``loss.png`` (``solver.plot_curves``)
LOSS_PANELS = (Panel("cross-entropy (bits/token)", (("train_bits", "train"),)),)


# ---------------------------------------------------------------------------------------------
# sampling


def draw(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """One code per row of ``logits (B, K)``: softmax(logits / temperature) sampled on the CPU with
    ``generator`` (float64); ``temperature <= 0``: argmax. Returns ``(B,)`` int64 on the CPU."""
    logits = logits.detach().double().cpu()
    if temperature <= 0:
        return torch.argmax(logits, dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@torch.no_grad()
def sample_window(model: JukeboxPrior, prefix: torch.Tensor, length: int, *, cond_codes: torch.Tensor | None = None,
                  temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue ``prefix (B, P)`` (kept as is) to ``length`` codes in one window; ``cond_codes``:
    the upper-level codes of the window (``ceil(length / ratio)``) for an upsampler. CPU int64."""
    model.eval()
    device = model_device(model)
    B, P = prefix.shape
    if P > length:
        raise ValueError(f"prefix of {P} codes is longer than the window of {length}")
    cond = model.condition(None if cond_codes is None else cond_codes.to(device), length)
    cache = model.new_cache(B, length)
    model.prime(cache, prefix.to(device), cond)
    out = [prefix.cpu()]
    prev = prefix[:, -1].to(device) if P else None
    for _ in range(P, length):
        nxt = draw(model.step(cache, prev, cond), temperature, generator)
        out.append(nxt[:, None])
        prev = nxt.to(device)
    return torch.cat(out, dim=1)


def get_starts(total: int, context: int, hop: int) -> list[int]:
    """Window starts over ``total`` positions (jukebox ``get_starts``): every ``hop``, the last moved
    back so that it ends at ``total``."""
    if total <= context:
        return [0]
    starts = []
    for start in range(0, total - context + hop, hop):
        starts.append(min(start, total - context))
    return starts


def hop_length(context: int, fraction: float, ratio: int = 1) -> int:
    """``fraction * context`` positions, rounded down to a multiple of ``ratio`` (at least ``ratio``)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"hop_fraction={fraction} must be in (0, 1]")
    return max(ratio, int(fraction * context) // ratio * ratio)


@torch.no_grad()
def sample_level(model: JukeboxPrior, known: torch.Tensor, total: int, *, hop: int,
                 cond_codes: torch.Tensor | None = None, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[dict]]:
    """``total`` codes of one level from the first ``known (B, P)`` ones (kept), window by window.
    Returns the codes ``(B, total)`` and one record per sampled window (start, end, kept: codes
    re-read from before the window's first new code, new)."""
    ctx, r = model.cfg.context, model.cfg.cond_ratio
    if hop < 1 or hop > ctx or hop % r:
        raise ValueError(f"hop={hop} must be in 1..{ctx} and a multiple of the hop ratio {r}")
    if model.is_upsampler and (cond_codes is None or cond_codes.shape[1] * r < total):
        raise ValueError(f"an upsampler needs {-(-total // r)} upper codes for {total} positions")
    codes = known.cpu()
    windows = []
    for start in get_starts(total, ctx, hop):
        end = min(start + ctx, total)
        have = codes.shape[1]
        if have >= end:
            continue
        cond = cond_codes[:, start // r: -(-end // r)] if model.is_upsampler else None
        window = sample_window(model, codes[:, start:have], end - start, cond_codes=cond,
                               temperature=temperature, generator=generator)
        codes = torch.cat([codes, window[:, have - start:]], dim=1)
        windows.append({"start": start, "end": end, "kept": have - start, "new": end - have})
    return codes[:, :total], windows


@torch.no_grad()
def sample_hierarchy(models: list[JukeboxPrior], *, n: int, top_tokens: int, hop_fractions: list[float],
                     temperature: float = 1.0, generator: torch.Generator | None = None,
                     prompt: list[torch.Tensor] | None = None,
                     log: Callable[[str], None] | None = None) -> tuple[list[torch.Tensor], list[list[dict]]]:
    """Sample every level, top first. ``models`` bottom first (``models[-1]``: the top prior; the
    others upsamplers whose ``cond_ratio`` links them to the level above). ``prompt``: known codes
    per level (bottom first; primed sampling), or None (ancestral). Returns the codes per level
    (bottom first, ``top_tokens * prod(ratios above)`` each) and the window records per level."""
    levels = len(models)
    totals = [top_tokens] * levels
    for lvl in range(levels - 2, -1, -1):
        totals[lvl] = totals[lvl + 1] * models[lvl].cfg.cond_ratio
    codes: list[torch.Tensor | None] = [None] * levels
    windows: list[list[dict]] = [[] for _ in range(levels)]
    for lvl in range(levels - 1, -1, -1):
        m = models[lvl]
        known = prompt[lvl][:, :totals[lvl]] if prompt is not None else torch.zeros(n, 0, dtype=torch.int64)
        hop = hop_length(m.cfg.context, hop_fractions[lvl], m.cfg.cond_ratio)
        codes[lvl], windows[lvl] = sample_level(m, known, totals[lvl], hop=hop,
                                                cond_codes=codes[lvl + 1] if lvl < levels - 1 else None,
                                                temperature=temperature, generator=generator)
        if log:
            log(f"level {lvl}: {totals[lvl]} codes in {len(windows[lvl])} window(s)")
    return codes, windows


def codebook_stats(codes, bins: int) -> dict:
    """Codebook usage (fraction of the ``bins`` codes used) and perplexity (``exp`` of the entropy of
    the code histogram: k codes used equally often give k) of a code array."""
    from pipeline.metrics.audio import code_histogram, code_perplexity, codebook_usage

    codes = np.asarray(codes)
    return {"usage": codebook_usage(codes, bins), "used": int(np.count_nonzero(code_histogram(codes, bins))),
            "perplexity": code_perplexity(codes, bins)}

