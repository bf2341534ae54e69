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
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from pipeline.progress import training_bar
from pipeline.io.npz import atomic_write_bytes


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
    model.eval()
    total, correct, count = 0.0, 0, 0
    for b in batch_iter:
        s, c, n = loss_fn(model, b)
        total += float(s)
        correct += int(c)
        count += int(n)
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


def save_checkpoint(path: Path, state: dict) -> None:
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


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


def write_metrics(path: Path, history: list[dict]) -> None:
    atomic_write_bytes(Path(path), (json.dumps(history, indent=1) + "\n").encode())


def plot_history(path: Path, history: list[dict], title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    if any(h.get("valid_loss") is not None for h in history):
        ax.plot(ep, [h["valid_loss"] if h.get("valid_loss") is not None else float("nan") for h in history],
                "s-", label="valid")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fit(model: torch.nn.Module, *, train: np.ndarray, valid: np.ndarray, cfg: FitConfig, out: Path,
        train_step: Callable, loss_fn: Callable, resume: bool = True,
        log: Callable[[str], None] | None = None) -> dict:
    """Train ``model`` on windows ``train`` (rows of token ids), early-stopping on ``valid``.

    ``train_step(model, batch) -> loss tensor`` (mean over tokens; teacher forcing);
    ``loss_fn`` as in ``evaluate``. Writes ``out/checkpoints/{last,best}.pt`` and
    ``out/metrics.json``. With no validation windows, the training loss stands in for it
    (recorded as ``valid_source: train``). Returns a summary dict.
    """
    out = Path(out)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
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
        resumed = True
    stopped_early = False
    bar = training_bar(Path(out).name, cfg.epochs, start - 1, log, unit="epoch")
    for epoch in range(start, cfg.epochs + 1):
        if bad >= cfg.patience:
            stopped_early = True
            break
        model.train()
        total, n = 0.0, 0
        for batch in batches(train, cfg.batch_size, seed=cfg.seed * 1000 + epoch, limit=cfg.max_windows):
            optimizer.zero_grad()
            loss = train_step(model, batch)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            total += float(loss.detach()) * len(batch)
            n += len(batch)
        train_loss = total / max(n, 1)
        ev = evaluate(model, batches(valid, cfg.batch_size, limit=cfg.max_eval_windows), loss_fn)
        row = {"epoch": epoch, "train_loss": train_loss, "valid_loss": ev["loss"],
               "valid_perplexity": ev["perplexity"], "valid_accuracy": ev["accuracy"]}
        history.append(row)
        bar.step(note=f"valid {ev['loss']:.3f}" if ev["loss"] is not None else None)
        watch = ev["loss"] if ev["loss"] is not None else train_loss
        if watch < best:
            best, bad, best_epoch = watch, 0, epoch
            save_checkpoint(ckpt_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch})
        else:
            bad += 1
        save_checkpoint(last, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                               "rng": torch.get_rng_state(), "best": best, "bad_epochs": bad,
                               "best_epoch": best_epoch, "history": history})
        write_metrics(out / "metrics.json", history)
        if log:
            log(f"epoch {epoch}: train {train_loss:.4f}, valid "
                + ("-" if ev["loss"] is None else f"{ev['loss']:.4f}"))
    bar.close()
    if not (ckpt_dir / "best.pt").exists():  # zero epochs asked: keep the initial weights
        save_checkpoint(ckpt_dir / "best.pt", {"model": model.state_dict(), "epoch": 0})
    write_metrics(out / "metrics.json", history)
    return {"epochs_run": len(history), "best_epoch": best_epoch, "best_loss": None if math.isinf(best) else best,
            "stopped_early": stopped_early, "resumed": resumed,
            "valid_source": "valid" if len(valid) else "train", "history": history}
