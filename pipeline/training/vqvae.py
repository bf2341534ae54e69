"""The VQ-VAE family: audio clips -> seeded crops, data statistics, and the step-based training loop.

Data. The audio shards (``render_audio`` / ``ingest_audio``: one FLAC clip per Parquet row) are
split by song: ``heldout`` when the first 8 bytes of ``sha256(song id)``, read as a big-endian
integer over 2**64, fall below ``heldout_fraction``, else ``train`` (the rule of build_vocab's
``test`` split). A :class:`ClipBank` gives one split's clips as 16-bit PCM (the FLAC samples; float
values are ``pcm / 32768`` exactly as soundfile reads them), decoding only the frames a crop takes
(the FLAC bytes wait in a scratch file; memory holds an index of a few ints per clip). A crop is ``samples`` frames from a random start inside the clip's real audio
(``valid_samples``; zero-padded when the clip is shorter than the crop); a stereo clip is mixed
down as Jukebox does, ``x = m*L + (1-m)*R``, ``m ~ U(0, 1)`` per crop.

- Training batches: step ``s`` draws clip indices, starts and ``m`` from
  ``default_rng([seed, 1, s])``: a batch depends on the seed and the step only, so a resumed run
  sees the batches of an uninterrupted one.
- Fixed crops (:func:`fixed_crops`, held-out evaluation): crop ``j`` takes clip ``order[j % n]``
  (``order`` a permutation from ``default_rng([seed, 2])``, or the clips in order when every clip
  is asked for once), its start from ``default_rng([seed, 3, j])``, and ``m`` from the per-song
  generator of ``AudioClips`` (``default_rng([seed, int(id[:8], 16), clip, j // n])``).

Training (:func:`train`): Adam, one seeded batch per step; the codebooks' restarts draw from a
``torch.Generator`` seeded with ``seed`` whose state is checkpointed. Every ``log_every`` steps a
row of mean losses goes to ``metrics.json``; every ``valid_every`` steps the held-out loss is
measured (``best.pt`` when it improves) and ``last.pt`` is written (model, optimizer, step,
generator state, running sums, history); ``last.pt`` is written at the end too. A run resumes
from ``last.pt``.

Under ``torchrun`` (``pipeline.training.distributed``) every step's global batch (drawn as above)
is split across the ranks, ``rows[rank::world]`` (``batch_size`` must divide by the world size:
equal shares, so the mean of the ranks' mean-loss gradients, which DistributedDataParallel takes,
is the global batch's). The codebooks are updated outside autograd, so DDP does not keep them
together: every rank gathers the encoder outputs and their codes from all the ranks, back in the
order of the global batch (:func:`global_codebooks`), and runs the EMA update and the restarts
(the same seeded generator on every rank) on the global batch, as one process would: the
codebooks stay identical across the ranks. The held-out loss is measured by every rank on all
the crops (the same weights, the same numbers: every rank takes the same ``best.pt`` decision);
the logged training losses are the means over the ranks; rank 0 alone writes checkpoints and
``metrics.json``. Checkpoints hold the unwrapped model, so a run resumes on any world size.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from pipeline.progress import training_bar
from pipeline.errors import ParamsError, StageError
from pipeline.splits import CLIP_SPLITS, heldout_split
from pipeline.training.precision import Precision, to_device
from pipeline.training.solver import Panel, load_checkpoint, save_checkpoint, write_metrics

# ---------------------------------------------------------------------------------------------
# data


class FlacClips:
    """Clips kept as their FLAC bytes in an uncompressed scratch file (``scratch``: default the
    system's temporary folder; removed when the object is collected in the process that made it),
    with only ``(start, length)`` and ``(channels, frames)`` per clip in memory: ``clips[i]`` decodes
    clip ``i`` alone, int16 ``(channels, frames)``, exactly as ``soundfile.read(dtype="int16")``.
    The file is reopened per process, so a copy in a DataLoader worker reads it too."""

    def __init__(self, scratch: Path | None = None) -> None:
        import os
        import tempfile
        import weakref

        fd, self._path = tempfile.mkstemp(prefix="clips-", suffix=".flac", dir=scratch)
        self._writer = os.fdopen(fd, "wb")
        self._finalizer = weakref.finalize(self, _remove_file, self._path, os.getpid())
        self._where: list[tuple[int, int]] = []
        self._shapes: list[tuple[int, int]] = []
        self.where = np.zeros((0, 2), np.int64)
        self.shapes = np.zeros((0, 2), np.int64)
        self._size = 0
        self._fd = self._pid = None

    def append(self, blob: bytes, channels: int, frames: int) -> None:
        self._writer.write(blob)
        self._where.append((self._size, len(blob)))
        self._shapes.append((channels, frames))
        self._size += len(blob)

    def freeze(self, order) -> "FlacClips":
        """Done appending; the clips in ``order`` (indexes into the appended ones)."""
        self._writer.close()
        order = np.asarray(order, np.int64)
        self.where = np.array(self._where, np.int64).reshape(-1, 2)[order]
        self.shapes = np.array(self._shapes, np.int64).reshape(-1, 2)[order]
        self._where = self._shapes = []
        return self

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_writer": None, "_finalizer": None, "_fd": None, "_pid": None}

    def __len__(self) -> int:
        return len(self.where)

    def _blob(self, i: int) -> io.BytesIO:
        import os

        if self._pid != os.getpid() or self._fd is None:
            self._fd, self._pid = os.open(self._path, os.O_RDONLY), os.getpid()
        start, length = (int(v) for v in self.where[i])
        return io.BytesIO(os.pread(self._fd, length, start))

    def __getitem__(self, i: int) -> np.ndarray:
        import soundfile as sf

        pcm, _ = sf.read(self._blob(i), dtype="int16", always_2d=True)
        return np.ascontiguousarray(pcm.T)

    def frames(self, i: int, start: int, count: int) -> np.ndarray:
        """``clips[i][:, start:start + count]``, decoding only those frames (FLAC seeks to the sample)."""
        import soundfile as sf

        channels, frames = (int(v) for v in self.shapes[i])
        if start >= frames or count <= 0:
            return np.zeros((channels, 0), np.int16)
        with sf.SoundFile(self._blob(i)) as f:
            f.seek(start)
            pcm = f.read(min(count, frames - start), dtype="int16", always_2d=True)
        return np.ascontiguousarray(pcm.T)


def _remove_file(path: str, pid: int) -> None:
    import os

    if os.getpid() == pid:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


@dataclass
class ClipBank:
    """One split's clips: ``pcm[i]`` int16 ``(channels, samples)``, ``ids[i]``, ``clips[i]``, ``valid[i]``.

    ``pcm`` is a list of arrays, or (``read_clips``) a :class:`FlacClips` that decodes the one clip a
    crop asks for, so that a bank's memory does not grow with its clips' audio."""

    ids: list[str]
    clips: list[int]
    valid: list[int]
    pcm: list[np.ndarray]
    sample_rate: int

    def __len__(self) -> int:
        return len(self.ids)

    def shape(self, i: int) -> tuple[int, int]:
        """(channels, frames) of clip ``i`` (without decoding it)."""
        if isinstance(self.pcm, FlacClips):
            return tuple(int(v) for v in self.pcm.shapes[i])
        return self.pcm[i].shape

    def keys_digest(self) -> str:
        blob = "\n".join(f"{i}/{c}/{v}/{self.shape(k)}"
                         for k, (i, c, v) in enumerate(zip(self.ids, self.clips, self.valid)))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def crop(self, i: int, start: int, samples: int, m: float) -> np.ndarray:
        """Frames ``start .. start + samples`` of clip ``i``, float32, mixed down with weight ``m`` when stereo."""
        if isinstance(self.pcm, FlacClips):
            pcm = self.pcm.frames(i, start, samples)  # decodes the crop's frames only
        else:
            pcm = self.pcm[i][:, start:start + samples]
        x = pcm.astype(np.float32) / np.float32(32768.0)
        if x.shape[0] == 1:
            y = x[0]
        else:
            w = np.float32(m)
            y = w * x[0] + (np.float32(1) - w) * x[1]
        if len(y) < samples:
            y = np.concatenate([y, np.zeros(samples - len(y), np.float32)])
        return y

    def max_start(self, i: int, samples: int) -> int:
        return max(max(self.valid[i], samples) - samples, 0) if self.shape(i)[1] >= samples else 0


def read_clips(audio_dir: Path, *, split: str, heldout_fraction: float) -> ClipBank:
    """Every clip of ``split`` from ``<audio_dir>/parquet/*.parquet``, sorted by (song id, clip).

    The shards are read one row group at a time; each clip's FLAC bytes go to a scratch file
    (:class:`FlacClips`: each clip is decoded once here, to check it and take its shape, and again
    when a crop asks for it), so memory holds the index, not the audio."""
    import pyarrow.parquet as pq
    import soundfile as sf

    from pipeline.data.pianoroll import shard_paths

    if split not in CLIP_SPLITS:
        raise StageError(f"split={split!r} must be one of {', '.join(CLIP_SPLITS)}")
    audio_dir = Path(audio_dir)
    if not audio_dir.exists():
        raise StageError(f"{audio_dir}: no audio folder (run `pipeline render-audio` or `pipeline ingest-audio` first)")
    try:
        paths = shard_paths(audio_dir, "parquet")
    except FileNotFoundError:
        raise StageError(f"{audio_dir}: no audio shards (parquet/*.parquet)") from None
    rows = []
    rates = set()
    bank = FlacClips()
    for path in paths:
        try:
            pf = pq.ParquetFile(path)
            groups = range(pf.metadata.num_row_groups)
        except Exception as exc:
            raise StageError(f"{path}: not an audio shard ({exc.__class__.__name__}: {exc})") from None
        r = -1
        for g in groups:
            try:
                t = pf.read_row_group(g, columns=["id", "clip", "valid_samples", "audio"])
            except Exception as exc:
                raise StageError(f"{path}: not an audio shard ({exc.__class__.__name__}: {exc})") from None
            ids, clips = t.column("id").to_pylist(), t.column("clip").to_pylist()
            valid = t.column("valid_samples").to_pylist()
            audio = t.column("audio")
            for k, (sid, c) in enumerate(zip(ids, clips)):
                r += 1
                if heldout_split(sid, heldout_fraction) != split:
                    continue
                blob = audio[k]["bytes"].as_py()
                try:  # decoded once here (checked and measured), then dropped until a crop needs it
                    pcm, rate = sf.read(io.BytesIO(blob), dtype="int16", always_2d=True)
                except Exception as exc:
                    raise StageError(f"{path}: row {r} (song {sid}, clip {c}): undecodable FLAC ({exc})") from None
                rates.add(int(rate))
                rows.append((sid, int(c), int(valid[k]), len(rows)))
                bank.append(blob, int(pcm.shape[1]), int(pcm.shape[0]))
    if len(rates) > 1:
        raise StageError(f"{audio_dir}: clips at several sample rates {sorted(rates)}")
    rows.sort(key=lambda r: (r[0], r[1]))
    return ClipBank(ids=[r[0] for r in rows], clips=[r[1] for r in rows], valid=[r[2] for r in rows],
                    pcm=bank.freeze([r[3] for r in rows]), sample_rate=rates.pop() if rates else 44100)


def step_batch(bank: ClipBank, *, step: int, batch_size: int, samples: int, seed: int) -> torch.Tensor:
    """The training batch of ``step``: ``(batch_size, samples)`` float32, from ``default_rng([seed, 1, step])``."""
    rng = np.random.default_rng([seed, 1, step])
    idx = rng.integers(0, len(bank), size=batch_size)
    out = np.empty((batch_size, samples), np.float32)
    for j, i in enumerate(idx):
        start = int(rng.integers(0, bank.max_start(int(i), samples) + 1))
        out[j] = bank.crop(int(i), start, samples, float(rng.uniform()))
    return torch.from_numpy(out)


def fixed_crops(bank: ClipBank, *, samples: int, n: int | None, seed: int) -> torch.Tensor:
    """``n`` crops (every clip once, in order, when ``n`` is None) -> ``(n, samples)`` float32."""
    chunks = list(iter_fixed_crops(bank, samples=samples, n=n, seed=seed))
    return torch.cat(chunks) if chunks else torch.zeros((0, samples))


def fixed_crop_count(bank: ClipBank, n: int | None) -> int:
    return len(bank) if n is None else n


def iter_fixed_crops(bank: ClipBank, *, samples: int, n: int | None, seed: int,
                     chunk: int = 64) -> Iterator[torch.Tensor]:
    """``fixed_crops`` ``chunk`` rows at a time (the same rows, in order): memory of one chunk,
    whatever ``n``."""
    from pipeline.audio.downmix import song_rng

    count = len(bank)
    if n is None:
        n, order = count, np.arange(count)
    else:
        order = np.random.default_rng([seed, 2]).permutation(count)
    if n and not count:
        raise StageError("no clips to crop from (an empty split)")
    for first in range(0, n, chunk):
        out = np.empty((min(chunk, n - first), samples), np.float32)
        for j in range(first, first + len(out)):
            i = int(order[j % count])
            start = int(np.random.default_rng([seed, 3, j]).integers(0, bank.max_start(i, samples) + 1))
            m = float(song_rng(seed, bank.ids[i], bank.clips[i], j // count).uniform())
            out[j - first] = bank.crop(i, start, samples, m)
        yield torch.from_numpy(out)


def data_stats(bank: ClipBank, stft: tuple[tuple[int, int, int], ...], *, samples: int, crops: int,
               seed: int) -> dict:
    """The loss normalisers: mean and variance of the audio over the real samples of every clip
    (stereo clips mixed with their per-song ``m`` of round 0), and the RMS STFT magnitude per
    resolution over ``crops`` seeded crops of ``samples`` (:func:`fixed_crops`; cheaper than
    whole clips, and the loss sees crops)."""
    from pipeline.audio.downmix import song_rng
    from pipeline.models.vqvae import stft_magnitude

    total = total_sq = 0.0
    n = 0
    for i in range(len(bank)):
        v = min(max(bank.valid[i], 1), bank.shape(i)[1])
        m = float(song_rng(seed, bank.ids[i], bank.clips[i], 0).uniform())
        x = bank.crop(i, 0, v, m).astype(np.float64)
        total += float(x.sum())
        total_sq += float((x * x).sum())
        n += len(x)
    if n == 0:
        raise StageError("no audio to measure (an empty training split)")
    mean = total / n
    var = total_sq / n - mean * mean
    if not var > 0:
        raise StageError("the training audio is silent (variance 0): nothing to learn")
    xs = fixed_crops(bank, samples=samples, n=crops, seed=seed)
    spec_rms = []
    with torch.no_grad():
        for n_fft, hop, win in stft:
            sq, count = 0.0, 0
            for j in range(0, len(xs), 16):
                s = stft_magnitude(xs[j:j + 16], n_fft, hop, win).double()
                sq += float((s * s).sum())
                count += s.numel()
            spec_rms.append(math.sqrt(sq / count) if sq > 0 else 1.0)
    return {"data_var": var, "data_mean": mean, "spec_rms": spec_rms, "samples": n, "spec_crops": int(len(xs))}


# ---------------------------------------------------------------------------------------------
# training


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    steps: int = 200
    batch_size: int = 4
    crop_samples: int = 16384
    lr: float = 3e-4
    grad_clip: float = 0.0
    log_every: int = 10
    valid_every: int = 50
    seed: int = 2026
    precision: str = "fp32"  # fp32 | bf16 | fp16 (``pipeline.training.precision``)
    compile: bool = False  # torch.compile the encoders and decoders (in place)


class _GlobalBottleneck:
    """Mixed in before an ``EMABottleneck`` class (:func:`global_codebooks`): in a distributed
    training step, ``init_codebook`` and ``update`` see the rows of every rank, gathered and put
    back in the order of the global batch (rank ``r`` holds its rows ``r, r + W, r + 2W, ...``), so
    the EMA sums and counts, and the restarts drawn from them, are those of one process on the
    global batch, on every rank alike."""

    def forward(self, z, *, update: bool, generator=None):
        self._local = (int(z.shape[0]), int(z.shape[2]))  # (batch rows, time steps) of this rank
        return super().forward(z, update=update, generator=generator)

    def _gathered(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        from pipeline.training import distributed

        ctx = distributed.current()
        if not ctx.active:
            return x
        b, t = self._local
        parts = [torch.empty_like(x) for _ in range(ctx.world)]
        with ctx.collective("gathering the codebook statistics"):
            dist.all_gather(parts, x.contiguous())
        rows = torch.stack([p.reshape(b, t, *x.shape[1:]) for p in parts], 1)  # (b, world, t, ...)
        return rows.reshape(b * ctx.world * t, *x.shape[1:])

    def init_codebook(self, x, generator=None):
        return super().init_codebook(self._gathered(x), generator)

    def update(self, x, codes, generator=None):
        return super().update(self._gathered(x), self._gathered(codes), generator)


def global_codebooks(model) -> None:
    """Make ``model``'s codebooks train on the global batch when distributed (in place; nothing
    for a single process). The state dict keys stay the same."""
    from pipeline.models.vqvae import EMABottleneck
    from pipeline.training import distributed

    if not distributed.current().active:
        return
    for m in model.modules():
        if isinstance(m, EMABottleneck) and not isinstance(m, _GlobalBottleneck):
            m.__class__ = type(f"Global{type(m).__name__}", (_GlobalBottleneck, type(m)), {})


@torch.no_grad()
def valid_loss(model, clips: torch.Tensor, batch_size: int) -> dict[str, float]:
    """Mean losses (eval mode: codebooks untouched) over ``clips`` in batches."""
    was = model.training
    model.eval()
    device = model.data_var.device
    sums: dict[str, float] = {}
    n = 0
    for i in range(0, len(clips), batch_size):
        x = clips[i:i + batch_size].to(device)
        _, losses, _ = model(x)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(x)
        n += len(x)
    model.train(was)
    return {k: v / max(n, 1) for k, v in sums.items()}


def train(model, bank: ClipBank, *, valid: torch.Tensor, cfg: TrainConfig, out: Path, resume: bool = True,
          log: Callable[[str], None] | None = None) -> dict:
    """Train ``model`` (already on its device, data statistics set) for ``cfg.steps`` steps.

    Writes ``out/checkpoints/{last,best}.pt`` and ``out/metrics.json``; returns a summary with the
    history (rows of ``metrics.json``). Under ``torchrun``: see the module's docstring."""
    from pipeline.training import distributed

    ctx = distributed.current()
    if not ctx.is_main:
        log = None
    if ctx.active and cfg.batch_size % ctx.world:
        raise StageError(f"vqvae.train.batch_size={cfg.batch_size} does not split over {ctx.world} processes "
                         "(use a multiple of the world size)")
    out = Path(out)
    ckpt = out / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    device = model.data_var.device
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    amp = Precision.of(cfg.precision, device)
    if cfg.compile:  # the convolutions; the bottleneck's data-dependent restarts stay eager
        for m in (*model.encoders, *model.decoders):
            m.compile()
    gen = torch.Generator().manual_seed(cfg.seed)
    step, best, best_step, history = 0, math.inf, 0, []
    acc: dict[str, float] = {}
    acc_n = 0
    resumed = False
    last = ckpt / "last.pt"
    if resume and last.exists():
        state = load_checkpoint(last)  # weights_only, and one clear error for a damaged file
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, best, best_step = int(state["step"]), float(state["best"]), int(state["best_step"])
        history = list(state["history"])
        acc, acc_n = {k: float(v) for k, v in state["acc"].items()}, int(state["acc_n"])
        amp.load(state)
        resumed = True

    def rank_mean(sums: dict[str, float]) -> dict[str, float]:
        """Per-rank sums -> their means over the ranks (equal shares: the global batch's)."""
        if not ctx.active or not sums:
            return sums
        keys = sorted(sums)
        return {k: v / ctx.world for k, v in zip(keys, ctx.all_sum([sums[k] for k in keys]))}

    def save_last() -> None:
        nonlocal acc
        acc = rank_mean(acc)  # every rank holds the global sums, and goes on adding its own
        if ctx.is_main:
            save_checkpoint(last, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                                   "generator": gen.get_state(), "best": best, "best_step": best_step,
                                   "history": history, "acc": acc, "acc_n": acc_n, **amp.state()})
        ctx.barrier()

    global_codebooks(model)
    net = ctx.wrap(model)  # DistributedDataParallel under torchrun, the model itself otherwise
    model.train()
    bar = training_bar("vqvae", cfg.steps, step, log)
    while step < cfg.steps:
        step += 1
        x = to_device(ctx.shard(step_batch(bank, step=step, batch_size=cfg.batch_size, samples=cfg.crop_samples,
                                           seed=cfg.seed)), device)
        optimizer.zero_grad()
        with amp.autocast():  # the model keeps its codebooks and losses in fp32 inside
            _, losses, metrics = net(x, generator=gen)
        with ctx.collective(f"averaging gradients (step {step})"):
            amp.backward(losses["loss"])
        amp.step(optimizer, model.parameters(), cfg.grad_clip)
        for k, v in losses.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        for k, v in metrics.items():
            acc[k] = acc.get(k, 0.0) + float(v)
        acc_n += 1
        bar.step(note=f"loss {float(losses['loss'].detach()):.3f}")
        if step % cfg.log_every == 0:
            row = {"step": step, **rank_mean({k: v / acc_n for k, v in sorted(acc.items())})}
            acc, acc_n = {}, 0
            if step % cfg.valid_every == 0:
                v = valid_loss(model, valid, cfg.batch_size)
                row.update({f"valid_{k}": val for k, val in sorted(v.items())})
                if v["loss"] < best:
                    best, best_step = v["loss"], step
                    if ctx.is_main:
                        save_checkpoint(ckpt / "best.pt", {"model": model.state_dict(), "step": step})
            history.append(row)
            if log:
                log(f"step {step}: loss {row['loss']:.4f}" + (f", valid {row['valid_loss']:.4f}" if "valid_loss" in row else ""))
            if step % cfg.valid_every == 0:
                save_last()
                if ctx.is_main:
                    write_metrics(out / "metrics.json", history)
    bar.close()
    save_last()
    if ctx.is_main:
        if not (ckpt / "best.pt").exists():  # no validation point reached: the final weights stand in
            save_checkpoint(ckpt / "best.pt", {"model": model.state_dict(), "step": step})
        write_metrics(out / "metrics.json", history)
    ctx.barrier()
    return {"steps_run": step, "best_step": best_step, "best_valid_loss": None if math.isinf(best) else best,
            "resumed": resumed, "history": history}


#: the panels of ``loss.png`` (``solver.plot_curves``): training losses summed over levels, with
#: the held-out loss where a validation step logged one
LOSS_PANELS = (
    Panel("loss (all terms)", (("loss", "train"), ("valid_loss", "held-out"))),
    Panel("reconstruction loss", (("recons", "train"), ("valid_recons", "held-out"))),
    Panel("spectral loss", (("spectral", "train"), ("valid_spectral", "held-out"))),
    Panel("commitment loss", (("commit", "train"), ("valid_commit", "held-out"))),
)


# ---------------------------------------------------------------------------------------------
# a trained VQ-VAE, fixed crops of one split, evaluation (stages vqvae and jukebox)


def build_model(kwargs: dict):
    """A ``VQVAE`` from the JSON-friendly keyword arguments that ``config.json`` stores (``model_kwargs``)."""
    from pipeline.models.vqvae import VQVAE

    kw = dict(kwargs)
    kw["hop_lengths"] = tuple(kw["hop_lengths"])
    kw["stft"] = tuple(tuple(r) for r in kw["stft"])
    return VQVAE(**kw)


def load_vqvae(model_dir: Path, device: str = "cpu"):
    """The trained VQ-VAE of ``model_dir`` (``datasets/models/vqvae``) in eval mode on ``device``:
    built from ``config.json``, weights from ``checkpoints/best.pt`` (else ``last.pt``); its
    ``sample_rate`` attribute is that of the training audio."""
    from pipeline.training.solver import load_checkpoint, resolve_device

    model_dir = Path(model_dir)
    cfg_path = model_dir / "config.json"
    ckpts = [model_dir / "checkpoints" / n for n in ("best.pt", "last.pt")]
    found = [p for p in ckpts if p.exists()]
    if not cfg_path.exists() or not found:
        raise StageError(f"{model_dir}: no trained VQ-VAE (config.json and checkpoints/best.pt or last.pt); "
                         f"run `pipeline train vqvae` first")
    try:
        cfg = json.loads(cfg_path.read_text())
        model = build_model(cfg["model_kwargs"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StageError(f"{cfg_path}: not a VQ-VAE config ({exc.__class__.__name__}: {exc})") from None
    state = load_checkpoint(found[0])  # UnsafeFileError, one line, for a foreign or damaged file
    try:
        model.load_state_dict(state["model"])
    except Exception as exc:  # a truncated file, another model's weights
        raise StageError(f"{found[0]}: cannot load VQ-VAE weights ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0][:200]})") from None
    model.sample_rate = int(cfg.get("sample_rate", 44100))  # of the audio it was trained on
    model.to(resolve_device(device))
    model.eval()
    return model


def clip_bank(audio_dir: Path, *, split: str, heldout_fraction: float, n: int | None = None) -> ClipBank:
    """The checked ``ClipBank`` of one split (``load_clips``' first half)."""
    if split not in CLIP_SPLITS:
        raise ParamsError(f"split={split!r} must be one of {', '.join(CLIP_SPLITS)}")
    bank = read_clips(audio_dir, split=split, heldout_fraction=heldout_fraction)
    if not len(bank) and n != 0:
        raise StageError(f"{audio_dir}: no {split} clips (heldout_fraction={heldout_fraction})")
    return bank


def load_clips(audio_dir: Path, *, split: str, samples: int, n: int | None, seed: int, heldout_fraction: float):
    """Seeded mono crops of one split of the audio shards -> float32 tensor ``(N, samples)``.

    ``split``: ``train`` or ``heldout`` (songs whose ``sha256(id)[:8] / 2**64 < heldout_fraction``,
    the ``vqvae.heldout_fraction`` the VQ-VAE was trained with). ``n``: None takes every clip
    of the split once (sorted by song id and clip); otherwise ``n`` crops of a seeded order of
    the clips (cycling when ``n`` exceeds them). Starts are drawn inside the real audio of each
    clip; stereo clips are mixed down with Jukebox's random weight (per song, clip and round,
    as ``AudioClips``). The same arguments always give the same tensor (``iter_fixed_crops`` over
    ``clip_bank`` gives it chunk by chunk).
    """
    if split not in CLIP_SPLITS:
        raise ParamsError(f"split={split!r} must be one of {', '.join(CLIP_SPLITS)}")
    if samples < 1 or (n is not None and n < 0):
        raise ParamsError(f"samples={samples} must be positive and n={n} >= 0 (or None)")
    bank = clip_bank(audio_dir, split=split, heldout_fraction=heldout_fraction, n=n)
    return fixed_crops(bank, samples=samples, n=n, seed=seed)


def evaluate_vqvae(model, clips, *, batch_size: int = 8) -> dict:
    """Per level, on ``clips`` ``(N, T)`` (T a multiple of the largest hop):

    ``{"level_<l>": {"level", "hop", "clips", "samples", "spectral_convergence_db", "recon_mse",
    "recon_l2_normalised", "codebook_usage", "perplexity", "codes_used"}}`` — spectral convergence
    pooled over the clips at Jukebox's STFT (2048 / 256 / 1536), MSE, MSE over the training
    data's variance, fraction of the codebook used, and ``exp`` of the entropy of the codes.
    """
    from pipeline.metrics import audio as am

    clips = torch.as_tensor(clips, dtype=torch.float32)
    if clips.dim() != 2 or not len(clips):
        raise ParamsError(f"clips must be a non-empty (N, T) tensor, got shape {tuple(clips.shape)}")
    codes: list[list[np.ndarray]] = [[] for _ in range(model.levels)]
    recon: list[list[np.ndarray]] = [[] for _ in range(model.levels)]
    with torch.no_grad():
        for i in range(0, len(clips), batch_size):
            zs = model.encode(clips[i:i + batch_size])
            for l, z in enumerate(zs):
                codes[l].append(z.cpu().numpy())
                recon[l].append(model.decode(z, l).cpu().numpy())
    x = clips.numpy().astype(np.float64)
    var = float(model.data_var)
    out = {}
    for l, hop in enumerate(model.hop_lengths):
        y = np.concatenate(recon[l]).astype(np.float64)
        c = np.concatenate(codes[l])
        out[f"level_{l}"] = {
            "level": l, "hop": int(hop), "clips": int(len(x)), "samples": int(x.shape[1]),
            "spectral_convergence_db": am.spectral_convergence_db(x, y),
            "recon_mse": am.reconstruction_mse(x, y),
            "recon_l2_normalised": am.normalised_l2(x, y, data_var=var),
            "codebook_usage": am.codebook_usage(c, model.codebook_size),
            "perplexity": am.code_perplexity(c, model.codebook_size),
            "codes_used": int(np.count_nonzero(am.code_histogram(c, model.codebook_size))),
        }
    return out
