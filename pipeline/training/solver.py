"""A small, family-agnostic solver: seeding, the epoch loop, checkpoints, metrics, early stopping.

- ``seed_everything``: ``torch.manual_seed`` and ``torch.use_deterministic_algorithms(True)``
  (on CPU the same seed, params and thread count give the same numbers to the last digit; with
  ``pipeline.numerics`` pinned, on every x86-64 CPU with AVX2).
- ``fit``: per epoch, one pass over the (seeded, shuffled, optionally capped) training batches
  with the family's ``step`` (teacher forcing), then the validation loss; a checkpoint
  ``last.pt`` after every epoch and ``best.pt`` when the validation loss improves; stops after
  ``patience`` epochs without improvement. A run whose ``last.pt`` exists resumes from it.
- Checkpoints are plain dicts of state dicts, numbers and lists (``torch.save``); they load with
  ``torch.load(..., weights_only=True)``: model, optimizer, epoch, torch RNG state, best loss,
  epochs without improvement, and the metrics history.
- ``metrics.json``: a JSON list, one object per epoch (epoch, train_loss, valid_loss,
  valid_accuracy, valid_perplexity), which ``dvc plots`` reads; no wall-clock times in it, so it
  repeats exactly.

The pieces every family (LSTM, MuseGAN, VQ-VAE, Jukebox prior/upsamplers) shares live here, once:

- ``save_checkpoint`` / ``load_checkpoint``: the same bytes for the same state (written through a
  buffer, atomically); loaded with ``weights_only=True``.
- ``run_digest`` (with ``resume_fields`` and ``file_digest``) and ``resume_config``: the digest of
  what a run's result depends on, written to the run's ``config.json``; a rerun resumes only when
  it matches, otherwise the stale checkpoints go.
- ``write_metrics``: the per-step (or per-epoch) rows, every row with every key.
- ``plot_curves`` (with ``Panel``): the loss-curve figure, one panel per quantity, labelled axes,
  log scale where a curve spans more than two decades; the same history gives the same PNG bytes.
- ``markdown_table`` (with ``fmt_cell``): the tables of the ``evaluation.md`` reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from pipeline.progress import training_bar
from pipeline.files import atomic_write_bytes


def seed_everything(seed: int, *, threads: int = 0) -> None:
    """Seed torch, and make its kernels deterministic (``pipeline.numerics.configure_torch``: with
    pinned numerics also oneDNN and NNPACK off). ``threads > 0`` fixes the intra-op thread count;
    0 leaves torch's default, which is 1 under pinned numerics and the core count otherwise."""
    from pipeline import numerics

    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    numerics.configure_torch()


def batches(data: np.ndarray, batch_size: int, *, seed: int | None = None, limit: int = 0) -> Iterator[torch.Tensor]:
    """Rows of ``data`` in batches; shuffled with a generator of its own when ``seed`` is given
    (so that resuming does not depend on the global RNG); at most ``limit`` rows when > 0."""
    n = len(data)
    if seed is not None:
        order = np.random.default_rng(seed).permutation(n)
        if limit > 0:
            order = order[:limit]
    elif 0 < limit < n:
        order = np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))  # evenly spread
    else:
        order = np.arange(n)
    for i in range(0, len(order), batch_size):
        yield torch.from_numpy(np.asarray(data[order[i:i + batch_size]], dtype=np.int64))


@torch.no_grad()
def evaluate(model: torch.nn.Module, batch_iter: Iterable[torch.Tensor],
             loss_fn: Callable) -> dict[str, float | None]:
    """Mean cross-entropy (nats per token), perplexity and next-token accuracy over batches.
    ``loss_fn(model, batch) -> (sum_loss, n_correct, n_tokens)``. None when there is no data."""
    total, correct, count = eval_sums(model, batch_iter, loss_fn)
    return eval_summary(total, correct, count)


@torch.no_grad()
def eval_sums(model: torch.nn.Module, batch_iter: Iterable[torch.Tensor], loss_fn: Callable) -> tuple[float, int, int]:
    """(summed loss, correct predictions, tokens) over batches, in eval mode."""
    model.eval()
    total, correct, count = 0.0, 0, 0
    for b in batch_iter:
        s, c, n = loss_fn(model, b)
        total += float(s)
        correct += int(c)
        count += int(n)
    return total, correct, count


def eval_summary(total: float, correct: int, count: int) -> dict[str, float | None]:
    """``evaluate``'s dict from the sums of ``eval_sums``."""
    if count == 0:
        return {"loss": None, "perplexity": None, "accuracy": None, "tokens": 0}
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "accuracy": correct / count, "tokens": count}


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    epochs: int = 2
    batch_size: int = 32
    lr: float = 2e-3
    patience: int = 3
    grad_clip: float = 1.0
    max_windows: int = 0  # training windows per epoch (0: all)
    max_eval_windows: int = 0  # validation windows (0: all)
    seed: int = 2026
    precision: str = "fp32"  # fp32 | bf16 | fp16 (``pipeline.training.precision``)


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` of ``state`` (state dicts, tensors, numbers, strings and plain containers:
    what ``load_checkpoint`` accepts) through a buffer, written atomically: the same state gives
    the same bytes, and a crash never leaves half a file."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


# ---------------------------------------------------------------------------------------------
# resume digests


def run_digest(doc: dict) -> str:
    """16 hex digits of the SHA-256 of ``doc`` as canonical JSON (sorted keys): the digest of what
    a training run's result depends on (params but those that only continue a run, input
    digests). A run resumes only from checkpoints made under the same digest."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def resume_fields(section, *, continuing: Sequence[str] = ()) -> dict:
    """``dataclasses.asdict(section)`` without the fields in ``continuing`` (step or epoch counts,
    checkpoint intervals: raising them continues a run; any other change starts a new one)."""
    doc = dataclasses.asdict(section)
    for key in continuing:
        doc.pop(key)
    return doc


def file_digest(path: Path) -> str:
    """The full SHA-256 (hex) of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json_dict(path: Path) -> dict | None:
    """A JSON object from ``path``, or None where it is absent, unreadable or not an object."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def resume_config(config_path: Path, digest: str, *, resume: bool, stale: Iterable[Path]) -> dict | None:
    """The previous run's ``config.json`` when ``resume`` and its ``digest`` matches; otherwise
    None, after removing the ``stale`` files (checkpoints, metrics) so the run starts afresh."""
    old = read_json_dict(config_path) if resume else None
    if old is not None and old.get("digest") == digest:
        return old
    for p in stale:
        Path(p).unlink(missing_ok=True)
    return None


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; a clear error where the device is not there."""
    from pipeline.errors import ParamsError

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ParamsError(f"device={name!r} is not a torch device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParamsError(f"device={name!r}: no CUDA device is available on this machine")
        # cuBLAS needs this for deterministic algorithms (torch.use_deterministic_algorithms)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif device.type != "cpu":
        raise ParamsError(f"device={name!r} is not supported (use cpu, cuda or cuda:N)")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def load_checkpoint(path: Path) -> dict:
    """A checkpoint, loaded with ``torch.load(..., weights_only=True)``: tensors, numbers,
    strings and plain containers only, so a file from elsewhere cannot run code when loaded.

    Raises
    ------
    UnsafeFileError
        The file pickles anything else (a class, a function, a numpy object...): refused, with
        the global it names; or it is not a torch checkpoint at all.
    """
    import pickle
    import re

    from pipeline.errors import UnsafeFileError

    import zipfile

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise UnsafeFileError(path, f"not a readable torch checkpoint ({exc.strerror})") from None
    if head != b"PK\x03\x04" or not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise UnsafeFileError(path, "not a readable torch checkpoint (not the zip archive torch.save writes)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global (or the pickle is broken)
        names = re.findall(r"GLOBAL ([\w.]+)", str(exc))
        what = f"the Python object {names[0]}" if names else "objects other than tensors and plain containers"
        raise UnsafeFileError(path, f"refused: the checkpoint pickles {what}; checkpoints are loaded with "
                                    "weights_only=True (state dicts of tensors, numbers and lists only)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:  # not a torch zip / truncated / unreadable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeFileError(path, f"not a readable torch checkpoint ({first})") from None


# ---------------------------------------------------------------------------------------------
# metrics, curves, tables


def uniform_rows(history: list[dict]) -> list[dict]:
    """Every row with every key (null where a row lacks one): ``dvc plots`` fails on rows whose
    keys differ ("argument of type 'NoneType' is not iterable")."""
    keys: dict[str, None] = {}
    for row in history:
        keys.update(dict.fromkeys(row))
    return [{k: row.get(k) for k in keys} for row in history]


def write_metrics(path: Path, history: list[dict]) -> None:
    """``metrics.json``: the history as a JSON list, one object per logged step or epoch, every
    row with every key (``uniform_rows``); no wall-clock times, so a rerun writes the same bytes."""
    atomic_write_bytes(Path(path), (json.dumps(uniform_rows(history), indent=1) + "\n").encode())


@dataclass(frozen=True)
class Panel:
    """One quantity of a loss-curve figure: its y-axis label and its curves as
    ``(history key, legend label)``; ``log``: None picks a log scale where the positive values
    span more than two decades."""

    ylabel: str
    curves: tuple[tuple[str, str], ...]
    log: bool | None = None


def _wants_log(values: list[float]) -> bool:
    if not values or min(values) <= 0:
        return False
    return max(values) / min(values) > 100.0


def plot_curves(path: Path, history: list[dict], panels: Sequence[Panel], *, x: str = "step",
                xlabel: str | None = None, title: str = "") -> Path:
    """The loss curves of a run: one panel per quantity (stacked, sharing the x axis ``x``), each
    with labelled axes and a legend; rows without a key (or with None) leave a gap. Written with
    ``pipeline.figures.save``: the same history gives the same PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from pipeline import figures

    panels = [p for p in panels if any(h.get(k) is not None for h in history for k, _ in p.curves)]
    fig, axes = plt.subplots(max(len(panels), 1), 1, figsize=(6.5, 1.2 + 2.3 * max(len(panels), 1)),
                             sharex=True, squeeze=False)
    xs = [h[x] for h in history]
    many = len(history) > 30
    for ax, panel in zip(axes[:, 0], panels):
        values = []
        for key, label in panel.curves:
            pts = [(xv, float(h[key])) for xv, h in zip(xs, history) if h.get(key) is not None]
            if not pts:
                continue
            values += [v for _, v in pts if math.isfinite(v)]
            ax.plot(*zip(*pts), "-" if many else "o-", lw=1.2, ms=3, label=label)
        if (panel.log if panel.log is not None else _wants_log(values)) and values and min(values) > 0:
            ax.set_yscale("log")
        ax.set_ylabel(panel.ylabel, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8, loc="best", frameon=False)
    axes[-1, 0].set_xlabel(xlabel or x, fontsize=9)
    axes[-1, 0].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # steps and epochs
    if title:
        axes[0, 0].set_title(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return figures.save(fig, Path(path))


def fmt_cell(value, digits: int = 4) -> str:
    """A table cell: ``-`` for None, floats rounded to ``digits`` decimals, anything else as str."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Iterable[Sequence], columns: Sequence[str], *, digits: int | Sequence[int] = 4) -> str:
    """A markdown table: a header of ``columns``, then one line per row (cells by ``fmt_cell``;
    ``digits`` for every column or one per column). No trailing newline."""
    per = [digits] * len(columns) if isinstance(digits, int) else list(digits)
    if len(per) != len(columns):
        raise ValueError(f"{len(per)} digits for {len(columns)} columns")
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for row in rows:
        row = list(row)
        if len(row) != len(columns):
            raise ValueError(f"a row of {len(row)} cells for {len(columns)} columns")
        lines.append("| " + " | ".join(fmt_cell(v, d) for v, d in zip(row, per)) + " |")
    return "\n".join(lines)


def _distributed_step(ctx, net: torch.nn.Module, batch: torch.Tensor, train_step: Callable,
                      count: Callable[[torch.Tensor], int], amp) -> tuple[torch.Tensor, float]:
    """This rank's part of one global batch: forward and backward of its rows (DDP averages the
    gradients over the ranks during ``backward``), the loss weighted by ``world * local count /
    global count`` so that the average is the global batch's gradient. A rank left without rows
    (a last batch smaller than the world) runs one row with weight 0, so every rank joins the
    gradient all-reduce. ``amp``: the run's ``precision.Precision`` (autocast, loss scaling).
    Returns (the local mean loss, its share of the global batch)."""
    local = ctx.shard(batch)
    k = float(count(local)) if len(local) else 0.0
    (k_all,) = ctx.all_sum([k])
    share = k / k_all if k_all > 0 else 0.0
    with amp.autocast():
        loss = train_step(net, local if len(local) else batch[:1])
    with ctx.collective("averaging gradients"):
        amp.backward(loss * (share * ctx.world))
    return loss, share


def fit(model: torch.nn.Module, *, train: np.ndarray, valid: np.ndarray, cfg: FitConfig, out: Path,
        train_step: Callable, loss_fn: Callable, resume: bool = True,
        log: Callable[[str], None] | None = None, count: Callable[[torch.Tensor], int] = len) -> dict:
    """Train ``model`` on windows ``train`` (rows of token ids), early-stopping on ``valid``.

    ``train_step(model, batch) -> loss tensor`` (mean over tokens; teacher forcing);
    ``loss_fn`` as in ``evaluate``. Writes ``out/checkpoints/{last,best}.pt`` and
    ``out/metrics.json``. With no validation windows, the training loss stands in for it
    (recorded as ``valid_source: train``). Returns a summary dict.

    Under ``torchrun`` (``pipeline.training.distributed``): every global batch is split across the
    ranks (``rows[rank::world]``), the model is wrapped in DistributedDataParallel, and each rank's
    loss is weighted by its share of the batch's ``count`` (what ``train_step`` averages over: rows
    by default, non-PAD target tokens for the LSTM), so the averaged gradient is the global batch's;
    validation is split likewise and its sums all-reduced; rank 0 alone writes checkpoints and
    metrics. Dropout draws from a stream seeded per (seed, epoch, rank) there. Without torchrun this
    is the single-process loop, unchanged.
    """
    from pipeline.training import distributed
    from pipeline.training.precision import Precision

    ctx = distributed.current()
    if not ctx.is_main:
        log = None
    out = Path(out)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    amp = Precision.of(cfg.precision, model_device(model))
    start, best, bad, history, best_epoch = 1, math.inf, 0, [], 0
    last = ckpt_dir / "last.pt"
    resumed = False
    if resume and last.exists():
        state = load_checkpoint(last)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start, best, bad = int(state["epoch"]) + 1, float(state["best"]), int(state["bad_epochs"])
        history, best_epoch = list(state["history"]), int(state["best_epoch"])
        amp.load(state)
        resumed = True
    net = ctx.wrap(model)  # DistributedDataParallel under torchrun, the model itself otherwise
    stopped_early = False
    bar = training_bar(Path(out).name, cfg.epochs, start - 1, log, unit="epoch")
    for epoch in range(start, cfg.epochs + 1):
        if bad >= cfg.patience:
            stopped_early = True
            break
        model.train()
        total, n = 0.0, 0
        if ctx.active:
            torch.manual_seed(int(np.random.SeedSequence([cfg.seed, epoch, ctx.rank]).generate_state(1)[0]))
        for batch in batches(train, cfg.batch_size, seed=cfg.seed * 1000 + epoch, limit=cfg.max_windows):
            optimizer.zero_grad()
            if ctx.active:
                loss, share = _distributed_step(ctx, net, batch, train_step, count, amp)
            else:
                with amp.autocast():
                    loss = train_step(model, batch)
                amp.backward(loss)
                share = 1.0
            amp.step(optimizer, model.parameters(), cfg.grad_clip)
            total += float(loss.detach()) * share * len(batch)
            n += len(batch)
        if ctx.active:
            total = ctx.all_sum([total])[0]
        train_loss = total / max(n, 1)
        if ctx.active:
            sums = eval_sums(model, (ctx.shard(b) for b in batches(valid, cfg.batch_size, limit=cfg.max_eval_windows)
                                     if len(ctx.shard(b))), loss_fn)
            loss_sum, correct, tokens = ctx.all_sum(sums)
            ev = eval_summary(loss_sum, int(round(correct)), int(round(tokens)))
        else:
            ev = evaluate(model, batches(valid, cfg.batch_size, limit=cfg.max_eval_windows), loss_fn)
        row = {"epoch": epoch, "train_loss": train_loss, "valid_loss": ev["loss"],
               "valid_perplexity": ev["perplexity"], "valid_accuracy": ev["accuracy"]}
        history.append(row)
        bar.step(note=f"valid {ev['loss']:.3f}" if ev["loss"] is not None else None)
        watch = ev["loss"] if ev["loss"] is not None else train_loss
        if watch < best:
            best, bad, best_epoch = watch, 0, epoch
            if ctx.is_main:
                save_checkpoint(ckpt_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch})
        else:
            bad += 1
        if ctx.is_main:
            save_checkpoint(last, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                                   "rng": torch.get_rng_state(), "best": best, "bad_epochs": bad,
                                   "best_epoch": best_epoch, "history": history, **amp.state()})
            write_metrics(out / "metrics.json", history)
        ctx.barrier()
        if log:
            log(f"epoch {epoch}: train {train_loss:.4f}, valid "
                + ("-" if ev["loss"] is None else f"{ev['loss']:.4f}"))
    bar.close()
    if ctx.is_main:
        if not (ckpt_dir / "best.pt").exists():  # zero epochs asked: keep the initial weights
            save_checkpoint(ckpt_dir / "best.pt", {"model": model.state_dict(), "epoch": 0})
        write_metrics(out / "metrics.json", history)
    ctx.barrier()
    return {"epochs_run": len(history), "best_epoch": best_epoch, "best_loss": None if math.isinf(best) else best,
            "stopped_early": stopped_early, "resumed": resumed,
            "valid_source": "valid" if len(valid) else "train", "history": history}
