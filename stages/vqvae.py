"""Stage train_vqvae: the Jukebox-style multi-level VQ-VAE on the audio shards.

One params section ``vqvae`` (model sizes, training, the held-out fraction); outputs under
``out`` (``datasets/models/vqvae``):

- ``config.json``: everything ``pipeline.training.vqvae.load_vqvae`` needs to rebuild the model
  (``model_kwargs``), the params, the data statistics that normalise the losses, the split, and
  the digest that a resume must match.
- ``checkpoints/last.pt`` (model, optimizer, step, restart-generator state, history; a run
  resumes from it) and ``checkpoints/best.pt`` (the weights with the lowest held-out loss).
- ``metrics.json`` (one row per ``log_every`` steps: mean training losses per level, codebook
  statistics, and the held-out losses every ``valid_every`` steps; ``dvc plots`` reads it),
  ``loss.png``, ``train.json`` (summary + the held-out evaluation of ``best.pt`` per level).

Interface for the prior / upsampler stages, in :mod:`pipeline.training.vqvae`: ``load_vqvae``,
``load_clips``, ``evaluate_vqvae`` (and ``VQVAE.encode`` / ``VQVAE.decode``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np

from pipeline import numerics
from pipeline.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range, params_section
from pipeline.errors import ParamsError, StageError
from pipeline.files import write_json
from pipeline.names import Precision


@dataclass(frozen=True, kw_only=True)
@params_section("vqvae.model")
class ModelParams:
    hop_lengths: tuple[int, ...]  # samples per code, bottom level first
    stride: int  # of every strided conv; each hop ratio must be a power of it
    width: PositiveInt
    depth: PositiveInt  # residual blocks per Resnet1D
    dilation_growth: PositiveInt
    codebook_size: Annotated[int, Range(2)]
    code_width: PositiveInt
    mu: Annotated[float, Range(0, 1, hi_open=True)]  # EMA decay of the codebooks
    commit: NonNegativeFloat
    restart_threshold: NonNegativeFloat  # running count under which a code is restarted


@dataclass(frozen=True, kw_only=True)
@params_section("vqvae.train")
class TrainParams:
    crop_samples: int  # a multiple of the largest hop
    batch_size: PositiveInt
    steps: NonNegativeInt
    lr: PositiveFloat
    spectral_weight: NonNegativeFloat
    stft_n_fft: tuple[int, ...]  # resolutions of the multi-resolution STFT loss
    stft_hop: tuple[int, ...]
    stft_window: tuple[int, ...]
    grad_clip: NonNegativeFloat  # 0: off
    log_every: PositiveInt  # steps per metrics.json row
    valid_every: PositiveInt  # held-out loss, best.pt and last.pt (a multiple of log_every)
    valid_crops: PositiveInt  # held-out crops for the validation loss and the final evaluation
    stats_crops: PositiveInt  # training crops that measure the RMS STFT magnitude (spectral loss normaliser)
    seed: int  # weights, crops, downmix weights, codebook restarts
    threads: NonNegativeInt  # torch threads (0: torch's default); fix it for bit-identical reruns
    precision: Precision  # fp32 | bf16 (CPU or CUDA autocast) | fp16 (CUDA, with loss scaling)
    compile: bool  # torch.compile where it pays (the encoders' and decoders' convolutions)


@dataclass(frozen=True, kw_only=True)
@params_section("vqvae")
class Params:
    heldout_fraction: Annotated[float, Range(0, 1, hi_open=True)]  # songs with sha256(id)[:8] / 2**64 below it are held out
    model: ModelParams
    train: TrainParams

    def __post_init__(self) -> None:
        from pipeline.models.vqvae import level_downs

        m = self.model
        try:
            level_downs(m.hop_lengths, m.stride)
        except ValueError as exc:
            raise ParamsError(f"vqvae.model: {exc}") from None
        t = self.train
        top = max(m.hop_lengths)
        if t.crop_samples < top or t.crop_samples % top:
            raise ParamsError(f"vqvae.train.crop_samples={t.crop_samples} must be a positive multiple of the "
                              f"largest hop length {top}")
        if t.valid_every % t.log_every:
            raise ParamsError(f"vqvae.train.valid_every={t.valid_every} must be a multiple of log_every={t.log_every}")
        if not len(t.stft_n_fft) == len(t.stft_hop) == len(t.stft_window) or not t.stft_n_fft:
            raise ParamsError(f"vqvae.train: stft_n_fft={list(t.stft_n_fft)}, stft_hop={list(t.stft_hop)} and "
                              f"stft_window={list(t.stft_window)} must be non-empty lists of the same length")
        for n_fft, hop, win in zip(t.stft_n_fft, t.stft_hop, t.stft_window):
            if not (0 < win <= n_fft and hop > 0):
                raise ParamsError(f"vqvae.train: STFT resolution n_fft={n_fft}, hop={hop}, window={win} needs "
                                  f"0 < window <= n_fft and hop > 0")


def params_from_dict(doc: dict) -> Params:
    from pipeline.config import from_dict

    return from_dict(Params, doc, section="vqvae")


def model_kwargs(params: Params) -> dict:
    """Keyword arguments of ``VQVAE`` (JSON-friendly; stored in config.json)."""
    m, t = params.model, params.train
    return {"hop_lengths": list(m.hop_lengths), "stride": m.stride, "width": m.width, "depth": m.depth,
            "dilation_growth": m.dilation_growth, "codebook_size": m.codebook_size, "code_width": m.code_width,
            "mu": m.mu, "commit": m.commit, "restart_threshold": m.restart_threshold,
            "spectral_weight": t.spectral_weight,
            "stft": [list(r) for r in zip(t.stft_n_fft, t.stft_hop, t.stft_window)]}


def _finite(doc):
    """NaN and infinities -> None (strict JSON has no such numbers)."""
    if isinstance(doc, float):
        return doc if np.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: _finite(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [_finite(v) for v in doc]
    return doc


# ---------------------------------------------------------------------------------------------
# train


def _digest(params: Params, clips_digest: str) -> str:
    """The resume digest: more steps continue a run; everything else (threads too: sums) starts a new one."""
    from pipeline.training.precision import digest_fields
    from pipeline.training.solver import resume_fields, run_digest

    return run_digest({"model": dataclasses.asdict(params.model),
                       "train": digest_fields(resume_fields(params.train, continuing=("steps",))),
                       "heldout_fraction": params.heldout_fraction, "clips": clips_digest})


def run_train(*, audio_dir: Path, out: Path, params: Params, resume: bool = True, log=None,
              device: str = "cpu") -> dict:
    """Train the VQ-VAE on the ``train`` songs of ``audio_dir``; resumes from ``out/checkpoints/last.pt``
    when it was made with the same params (``steps`` aside) and the same clips. Under ``torchrun``
    every rank reads the clips and measures the data statistics (the same numbers), rank 0 alone
    writes; see :mod:`pipeline.training.vqvae`."""
    from pipeline.training import distributed
    from pipeline.training import vqvae as fam
    from pipeline.training.solver import plot_curves, read_json_dict, resolve_device, resume_config, seed_everything

    ctx = distributed.setup(device)  # under torchrun: join the group (this rank's device); else nothing
    device = ctx.device
    out = Path(out)
    t = params.train
    dev = resolve_device(device)
    train_bank = fam.read_clips(audio_dir, split="train", heldout_fraction=params.heldout_fraction)
    if not len(train_bank):
        raise StageError(f"{audio_dir}: no training clips (vqvae.heldout_fraction={params.heldout_fraction})")
    held_bank = fam.read_clips(audio_dir, split="heldout", heldout_fraction=params.heldout_fraction)
    valid_source = "heldout" if len(held_bank) else "train"
    valid = fam.fixed_crops(held_bank if len(held_bank) else train_bank, samples=t.crop_samples,
                            n=t.valid_crops, seed=t.seed)
    clips_digest = train_bank.keys_digest() + held_bank.keys_digest()
    digest = _digest(params, clips_digest)
    ckpt = out / "checkpoints"
    cfg_path = out / "config.json"
    if ctx.active:  # every rank reads the previous config before rank 0 replaces it
        old = read_json_dict(cfg_path) if resume else None
        old = old if old is not None and old.get("digest") == digest else None
        ctx.barrier()
    if ctx.is_main:
        old = resume_config(cfg_path, digest, resume=resume,
                            stale=(ckpt / "last.pt", ckpt / "best.pt", out / "metrics.json"))
    same = old is not None
    stft = tuple(zip(t.stft_n_fft, t.stft_hop, t.stft_window))
    stats = old["data_stats"] if same and "data_stats" in old else fam.data_stats(train_bank, stft, samples=t.crop_samples,
                                                                                crops=t.stats_crops, seed=t.seed)
    kwargs = model_kwargs(params)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(cfg_path, _finite({"digest": digest, "model_kwargs": kwargs, "params": dataclasses.asdict(params),
                               "data_stats": stats, "sample_rate": train_bank.sample_rate,
                               "hop_lengths": list(params.model.hop_lengths),
                               "split": {"rule": "heldout iff sha256(song id)[:8] / 2**64 < heldout_fraction",
                                         "heldout_fraction": params.heldout_fraction,
                                         "train_clips": len(train_bank), "heldout_clips": len(held_bank)}}))
    ctx.barrier()
    seed_everything(t.seed, threads=t.threads)
    model = fam.build_model(kwargs)
    model.set_data_stats(stats["data_var"], stats["spec_rms"])
    model.to(dev)
    t0 = time.perf_counter()
    cfg = fam.TrainConfig(steps=t.steps, batch_size=t.batch_size, crop_samples=t.crop_samples, lr=t.lr,
                          grad_clip=t.grad_clip, log_every=t.log_every, valid_every=t.valid_every, seed=t.seed,
                          precision=t.precision, compile=t.compile)
    res = fam.train(model, train_bank, valid=valid, cfg=cfg, out=out, resume=same, log=log)
    train_seconds = time.perf_counter() - t0
    if not ctx.is_main:  # rank 0 evaluates, plots and writes train.json
        ctx.barrier()
        return {**res, "seconds": round(time.perf_counter() - t0, 2), "train_seconds": round(train_seconds, 2)}
    if res["history"]:
        plot_curves(out / "loss.png", res["history"], fam.LOSS_PANELS,
                    title=f"VQ-VAE hops {'/'.join(map(str, params.model.hop_lengths))}, width {params.model.width}")
    best = fam.load_vqvae(out, device=device)
    evaluation = fam.evaluate_vqvae(best, valid, batch_size=t.batch_size)
    hist = res.pop("history")
    summary = {"parameters": sum(p.numel() for p in model.parameters()), "hop_lengths": list(params.model.hop_lengths),
               "train_clips": len(train_bank), "heldout_clips": len(held_bank), "valid_source": valid_source,
               "valid_crops": int(len(valid)), "crop_seconds": t.crop_samples / train_bank.sample_rate, **res,
               "final": {k: v for k, v in hist[-1].items()} if hist else None,
               "evaluation": evaluation}
    # tracked: neither wall time nor whether the run was resumed (a resumed run gives the same bytes)
    write_json(out / "train.json", _finite({**{k: v for k, v in summary.items() if k != "resumed"},
                                     "numerics": numerics.record()}))
    ctx.barrier()
    return {**summary, "seconds": round(time.perf_counter() - t0, 2), "train_seconds": round(train_seconds, 2)}
