"""Stages train_jukebox_prior / train_jukebox_upsampler / sample_jukebox / evaluate_jukebox
(``pipeline train jukebox --part prior|upsampler``, ``pipeline sample|evaluate jukebox``): the Jukebox
prior, its upsamplers, three ways to sample, and one report (Dhariwal et al. 2020), over the codes of the
VQ-VAE that stage ``vqvae`` trains (read through :mod:`pipeline.training.vqvae`: ``load_vqvae``,
``load_clips``, ``evaluate_vqvae``).

One params section ``jukebox`` (``prior``, ``upsampler``, ``train``, ``sample``, ``evaluate``);
outputs under ``out`` (``datasets/models/jukebox/``):

- ``prior/`` (top level) and ``upsampler_<level>/`` (every lower level): ``checkpoints/last.pt``
  (+ ``config.json``: the model config, the VQ-VAE's digest and the digest a resume must match),
  ``metrics.json`` (one row per step: bits per token, for ``dvc plots``), ``loss.png``, ``train.json``.
  Training codes: ``train.clips`` training clips of ``train.clip_samples`` samples
  (``load_clips(split="train", seed=train.seed)``' crops, made and encoded a chunk at a time by
  ``encode_to_disk``) in memory-mapped scratch files for the run (memory flat in ``train.clips``).
- ``samples/<mode>/`` for ``ancestral`` (one top-level window, then every upsampler), ``windowed``
  (``sample.seconds`` of audio: overlapping top-level windows every ``hop_fraction * context``
  codes) and ``primed`` (the first ``sample.prompt_seconds`` of a WAV file, or of held-out clips,
  encoded at every level and continued): ``level_<l>/sample_NN.wav`` + ``.png`` (spectrogram) of
  every level's codes decoded by that level's decoder (level 0 is the final audio),
  ``codes.npz`` (``level_<l>``: (n, T_l) int32), ``samples.json`` (windows, counts, codebook use).
- ``evaluation.json`` + ``evaluation.md``: per VQ-VAE level the numbers of ``evaluate_vqvae`` on
  held-out clips, the held-out bits per token of the prior and each upsampler (next to log2 K of a
  uniform model and the last training steps' bits), and the codebook use of the samples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np

from pipeline import figures, numerics
from pipeline.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range, params_section
from pipeline.errors import ParamsError, StageError
from pipeline.files import atomic_write_bytes, write_json
from pipeline.metrics.headline import jukebox_scores
from pipeline.names import ATTENTION_KINDS, JUKEBOX_MODES, Precision

SAMPLE_RATE = 44100  # render_audio's rate; the VQ-VAE's config.json ``sample_rate`` wins where it has one


@dataclass(frozen=True, kw_only=True)
@params_section("jukebox.prior")
class PriorParams:
    width: PositiveInt  # a multiple of heads
    layers: PositiveInt
    heads: PositiveInt
    context: PositiveInt  # codes per window
    blocksize: PositiveInt  # codes per row of the factorized attention
    pattern: tuple[str, ...]  # attention kinds (pipeline.names.ATTENTION_KINDS), cycled over the layers
    mlp_ratio: PositiveFloat
    dropout: Annotated[float, Range(0, 1, hi_open=True)]


@dataclass(frozen=True, kw_only=True)
@params_section("jukebox.upsampler")
class UpsamplerParams(PriorParams):
    cond_depth: NonNegativeInt  # dilated residual blocks per upsampling step of the conditioner
    cond_dilation_growth: PositiveInt
    cond_dilation_cycle: NonNegativeInt  # 0: no cycle
    cond_width: NonNegativeInt  # 0: width


@dataclass(frozen=True, kw_only=True)
@params_section("jukebox.train")
class TrainParams:
    prior_steps: NonNegativeInt
    upsampler_steps: NonNegativeInt
    batch_size: PositiveInt
    lr: PositiveFloat
    warmup: NonNegativeInt
    grad_clip: NonNegativeFloat
    clips: PositiveInt  # training clips to encode
    clip_samples: PositiveInt  # samples per clip (a multiple of the top hop length)
    seed: int  # clips, crops, initialisation
    threads: NonNegativeInt  # torch threads (0: torch's default); fix it for bit-identical reruns across machines
    checkpoint_every: PositiveInt
    precision: Precision  # fp32 | bf16 (CPU or CUDA autocast) | fp16 (CUDA, with loss scaling)
    compile: bool  # torch.compile where it pays (the transformer's forward in training and evaluation)


@dataclass(frozen=True, kw_only=True)
@params_section("jukebox.sample")
class SampleParams:
    n: PositiveInt
    seconds: PositiveFloat  # windowed and primed; ancestral: at most one top-level window
    temperature: Annotated[float, Range(0, note="0: greedy")]
    hop_fraction: Annotated[float, Range(0, 1, lo_open=True)]  # top level: a new window every hop_fraction * context codes
    upsampler_hop_fraction: Annotated[float, Range(0, 1, lo_open=True)]
    prompt_seconds: PositiveFloat  # primed: seconds of the prompt kept (rounded down to the top hop)
    prompt: str  # primed: a WAV/FLAC file; empty: held-out clips
    seed: int


@dataclass(frozen=True, kw_only=True)
@params_section("jukebox.evaluate")
class EvalParams:
    clips: PositiveInt  # held-out clips
    clip_samples: PositiveInt
    seed: int


@dataclass(frozen=True, kw_only=True)
@params_section("jukebox")
class Params:
    prior: PriorParams
    upsampler: UpsamplerParams
    train: TrainParams
    sample: SampleParams
    evaluate: EvalParams

    def __post_init__(self) -> None:
        for name, m in (("prior", self.prior), ("upsampler", self.upsampler)):
            if m.width % m.heads:
                raise ParamsError(f"jukebox.{name}.width={m.width} must be a multiple of heads={m.heads}")
            if not m.pattern or any(k not in ATTENTION_KINDS for k in m.pattern):
                raise ParamsError(f"jukebox.{name}.pattern={list(m.pattern)} must list attention kinds "
                                  f"out of {', '.join(ATTENTION_KINDS)}")
        s = self.sample
        if s.prompt_seconds >= s.seconds:
            raise ParamsError(f"jukebox.sample.prompt_seconds={s.prompt_seconds} must be shorter than seconds={s.seconds}")


def Params_from_dict(doc: dict) -> Params:  # noqa: N802 - reads back asdict(Params)
    from pipeline.config import from_dict

    return from_dict(Params, doc, section="jukebox")


def _clean(x):
    """JSON-safe: numpy scalars to Python numbers, NaN and infinities to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


# ---------------------------------------------------------------------------------------------
# the VQ-VAE side


def _vqvae(vqvae_dir: Path, device: str):
    from pipeline.training.vqvae import load_vqvae

    return load_vqvae(Path(vqvae_dir), device=device)


def vqvae_digest(vq) -> str:
    """A digest of the VQ-VAE's weights, codebooks and hop lengths (what the codes mean)."""
    h = hashlib.sha256(json.dumps(list(vq.hop_lengths)).encode())
    for name, tensor in sorted(vq.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def vqvae_meta(vqvae_dir: Path) -> dict:
    """The VQ-VAE's sample rate and held-out fraction (from its config.json): the prior uses the
    same split of the audio as the VQ-VAE, and writes audio at its rate."""
    path = Path(vqvae_dir) / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        cfg = {}
    params = cfg.get("params") or {}
    return {"sample_rate": int(cfg.get("sample_rate") or SAMPLE_RATE),
            "heldout_fraction": float(params.get("heldout_fraction", 0.1))}


def _clips(audio_dir: Path, *, split: str, samples: int, n: int, seed: int, meta: dict):
    from pipeline.training.vqvae import load_clips

    return load_clips(Path(audio_dir), split=split, samples=samples, n=n, seed=seed,
                      heldout_fraction=meta["heldout_fraction"])


def encode(vq, clips, *, batch: int = 8) -> list[np.ndarray]:
    """Clips ``(N, T)`` -> codes per level, bottom first: ``(N, T // hop_l)`` int64 arrays."""
    import torch

    outs: list[list[np.ndarray]] = [[] for _ in range(vq.levels)]
    with torch.no_grad():
        for i in range(0, len(clips), batch):
            for lvl, c in enumerate(vq.encode(clips[i:i + batch])):
                outs[lvl].append(c.cpu().numpy().astype(np.int64))
    return [np.concatenate(o) if o else np.zeros((0, 0), np.int64) for o in outs]


def encode_to_disk(vq, audio_dir: Path, *, split: str, samples: int, n: int, seed: int, meta: dict,
                   folder: Path, batch: int = 8) -> list[np.ndarray]:
    """``encode(vq, _clips(...))`` without holding the clips or the codes in memory: the same crops
    (``iter_fixed_crops``), encoded ``batch`` at a time as ``encode`` does, into one ``.npy`` per
    level under ``folder`` (int16 codes when the codebook fits, else int32), returned memory-mapped
    read-only. Memory: one chunk of crops; disk: 2 or 4 bytes per code."""
    import torch

    from pipeline.training.vqvae import clip_bank, fixed_crop_count, iter_fixed_crops

    bank = clip_bank(Path(audio_dir), split=split, heldout_fraction=meta["heldout_fraction"], n=n)
    total = fixed_crop_count(bank, n)
    dtype = np.int16 if int(vq.codebook_size) <= np.iinfo(np.int16).max else np.int32
    paths = [Path(folder) / f"codes_level{lvl}.npy" for lvl in range(vq.levels)]
    outs = [np.lib.format.open_memmap(p, mode="w+", dtype=dtype, shape=(total, samples // hop))
            for p, hop in zip(paths, vq.hop_lengths)]
    row = 0
    with torch.no_grad():
        for chunk in iter_fixed_crops(bank, samples=samples, n=n, seed=seed, chunk=8 * batch):
            for i in range(0, len(chunk), batch):
                for lvl, c in enumerate(vq.encode(chunk[i:i + batch])):
                    outs[lvl][row:row + len(c)] = c.cpu().numpy()
                row += min(batch, len(chunk) - i)
    for o in outs:
        o.flush()
    del outs
    return [np.load(p, mmap_mode="r") for p in paths]


def _check_clip_samples(vq, samples: int, key: str) -> None:
    top = max(vq.hop_lengths)
    if samples % top:
        raise ParamsError(f"jukebox.{key}={samples} must be a multiple of the top hop length {top}")


# ---------------------------------------------------------------------------------------------
# models


def level_name(level: int, levels: int) -> str:
    return "prior" if level == levels - 1 else f"upsampler_{level}"


def check_level(vq, level: int) -> None:
    lower = list(range(vq.levels - 1))
    if level not in lower:
        raise ParamsError(f"level={level} must be one of {', '.join(map(str, lower)) or '(none)'}: the levels "
                          f"below the top of the VQ-VAE with hop lengths {tuple(vq.hop_lengths)}")


def model_config(params: Params, vq, level: int):
    """The ``PriorConfig`` of the model of ``level`` (the top prior, or an upsampler)."""
    from pipeline.models.jukebox import PriorConfig

    top = level == vq.levels - 1
    m = params.prior if top else params.upsampler
    section = "prior" if top else "upsampler"
    kw = dict(bins=int(vq.codebook_size), width=m.width, layers=m.layers, heads=m.heads, context=m.context,
              blocksize=m.blocksize, pattern=tuple(m.pattern), mlp_ratio=m.mlp_ratio, dropout=m.dropout)
    if not top:
        hops = vq.hop_lengths
        if hops[level + 1] % hops[level]:
            raise ParamsError(f"VQ-VAE hop lengths {tuple(hops)}: {hops[level + 1]} is not a multiple of {hops[level]}")
        ratio = hops[level + 1] // hops[level]
        if m.context % ratio:
            raise ParamsError(f"jukebox.upsampler.context={m.context} must be a multiple of the hop ratio {ratio} "
                              f"between levels {level} and {level + 1}")
        kw.update(cond_ratio=ratio, cond_depth=params.upsampler.cond_depth,
                  cond_dilation_growth=params.upsampler.cond_dilation_growth,
                  cond_dilation_cycle=params.upsampler.cond_dilation_cycle, cond_width=params.upsampler.cond_width)
    try:
        return PriorConfig(**kw)
    except ValueError as exc:
        raise ParamsError(f"jukebox.{section}: {exc}") from None


def _digest(params: Params, cfg, level: int, vq_digest: str) -> str:
    """The resume digest: more steps continue a run; everything else starts a new one."""
    from pipeline.training.precision import digest_fields
    from pipeline.training.solver import resume_fields, run_digest

    return run_digest({"level": level, "vqvae": vq_digest, "model": dataclasses.asdict(cfg),
                       "train": digest_fields(resume_fields(
                           params.train, continuing=("prior_steps", "upsampler_steps", "checkpoint_every")))})


def load_model(out: Path, level: int, vq, *, device: str = "cpu", vq_digest: str | None = None):
    """The trained prior (top level) or upsampler of ``level`` from ``<out>/<name>``."""
    from pipeline.models.jukebox import JukeboxPrior, PriorConfig
    from pipeline.training.solver import load_checkpoint, resolve_device

    name = level_name(level, vq.levels)
    folder = Path(out) / name
    cfg_path = folder / "checkpoints" / "config.json"
    ckpt = folder / "checkpoints" / "last.pt"
    if not cfg_path.exists() or not ckpt.exists():
        cmd = "pipeline train jukebox --part prior" if name == "prior" else \
            f"pipeline train jukebox --part upsampler --level {level}"
        raise StageError(f"{folder}: no trained {name.replace('_', ' ')} (run `{cmd}` first)")
    cfg = json.loads(cfg_path.read_text())
    want = vq_digest or vqvae_digest(vq)
    if cfg.get("vqvae") != want:
        raise StageError(f"{folder}: trained on the codes of VQ-VAE {cfg.get('vqvae')}, not of {want} "
                         "(train it again)")
    try:
        mc = dict(cfg["model"])
        mc["pattern"] = tuple(mc["pattern"])
        model = JukeboxPrior(PriorConfig(**mc))
    except (KeyError, TypeError, ValueError) as exc:
        raise StageError(f"{cfg_path}: not a Jukebox prior config ({exc.__class__.__name__}: {exc})") from None
    state = load_checkpoint(ckpt)  # weights_only; an unreadable file is a PipelineError
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise StageError(f"{ckpt}: weights do not fit the model of config.json "
                         f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})") from None
    model.to(resolve_device(device))
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------
# train


def _train(*, level: int | None, vqvae_dir: Path, audio_dir: Path, out: Path, params: Params, resume: bool,
            log, device: str) -> dict:
    import torch

    from pipeline.models.jukebox import JukeboxPrior, parameter_count
    from pipeline.training import distributed
    from pipeline.training import jukebox as fam
    from pipeline.training.solver import plot_curves, resolve_device, resume_config, seed_everything

    # under torchrun: join the group (this rank's device); every rank encodes the same clips, rank 0 writes
    ctx = distributed.setup(device)
    device = ctx.device
    dev = resolve_device(device)
    t = params.train
    seed_everything(t.seed, threads=t.threads)
    vq = _vqvae(vqvae_dir, device)
    if level is None:
        level = vq.levels - 1
    else:
        check_level(vq, level)
    top = level == vq.levels - 1
    cfg = model_config(params, vq, level)
    _check_clip_samples(vq, t.clip_samples, "train.clip_samples")
    have = t.clip_samples // vq.hop_lengths[level]
    if have < cfg.context:
        section = "prior" if top else "upsampler"
        raise ParamsError(f"jukebox.train.clip_samples={t.clip_samples} gives {have} codes at level {level} "
                          f"(hop {vq.hop_lengths[level]}), fewer than jukebox.{section}.context={cfg.context}")
    name = level_name(level, vq.levels)
    folder = Path(out) / name
    t0 = time.perf_counter()
    scratch = tempfile.TemporaryDirectory(prefix="jukebox-codes-")  # the codes, memory-mapped until training ends
    codes = encode_to_disk(vq, audio_dir, split="train", samples=t.clip_samples, n=t.clips, seed=t.seed,
                           meta=vqvae_meta(vqvae_dir), folder=Path(scratch.name))
    encode_seconds = time.perf_counter() - t0
    x = codes[level]
    upper = codes[level + 1] if not top else None
    vq_digest = vqvae_digest(vq)
    digest = _digest(params, cfg, level, vq_digest)
    ckpt = folder / "checkpoints"
    cfg_path = ckpt / "config.json"
    if ctx.is_main:  # rank 0 alone writes; the others wait until the stale checkpoint is gone
        resume_config(cfg_path, digest, resume=resume, stale=(ckpt / "last.pt",))
        write_json(cfg_path, _clean({"digest": digest, "level": level, "name": name, "vqvae": vq_digest,
                               "hop_lengths": list(vq.hop_lengths), "model": dataclasses.asdict(cfg),
                               "params": dataclasses.asdict(params)}))
    ctx.barrier()
    torch.manual_seed(t.seed)  # the initial weights do not depend on what encoding drew
    model = JukeboxPrior(cfg).to(dev)
    steps = t.prior_steps if top else t.upsampler_steps
    t1 = time.perf_counter()
    res = fam.train(model, x, upper, out=folder, resume=resume, log=log,
                    cfg=fam.TrainConfig(steps=steps, batch_size=t.batch_size, lr=t.lr, warmup=t.warmup,
                                        grad_clip=t.grad_clip, seed=t.seed, checkpoint_every=t.checkpoint_every,
                                        precision=t.precision, compile=t.compile))
    train_seconds = time.perf_counter() - t1
    n_clips, codes_per_clip = int(len(x)), int(x.shape[1])
    del codes, x, upper
    scratch.cleanup()
    hist = res["history"]
    if hist and ctx.is_main:
        plot_curves(folder / "loss.png", hist, fam.LOSS_PANELS, title=f"jukebox {name} (level {level}, hop {vq.hop_lengths[level]})")
    tail = [h["train_bits"] for h in hist[-10:]]
    summary = {"name": name, "level": level, "hop_length": vq.hop_lengths[level], "bins": cfg.bins,
               "context": cfg.context, "attention": cfg.kinds(), "cond_ratio": cfg.cond_ratio,
               "parameters": parameter_count(model), "train_clips": n_clips, "codes_per_clip": codes_per_clip,
               "steps": len(hist), "first_train_bits": hist[0]["train_bits"] if hist else None,
               "last10_train_bits": float(np.mean(tail)) if tail else None, "uniform_bits": math.log2(cfg.bins),
               "vqvae": vq_digest}
    if ctx.is_main:
        write_json(folder / "train.json", _clean({**summary, "numerics": numerics.record()}))
    ctx.barrier()
    # wall time goes to the caller (and the CLI line), never into a tracked output
    return {**summary, "steps_run": res["steps_run"], "resumed_at": res["resumed_at"], "out": str(folder),
            "encode_seconds": round(encode_seconds, 2), "train_seconds": round(train_seconds, 2)}


def run_train_prior(*, vqvae_dir: Path, audio_dir: Path, out: Path, params: Params, resume: bool = True,
                    log=None, device: str = "cpu") -> dict:
    """Train the top-level prior on the training clips' top-level codes (resumes from ``last.pt``
    when it was made with the same VQ-VAE and params; more steps continue)."""
    return _train(level=None, vqvae_dir=vqvae_dir, audio_dir=audio_dir, out=out, params=params, resume=resume,
                  log=log, device=device)


def run_train_upsampler(*, level: int, vqvae_dir: Path, audio_dir: Path, out: Path, params: Params,
                        resume: bool = True, log=None, device: str = "cpu") -> dict:
    """Train the upsampler of ``level`` (any level below the top): codes of ``level`` conditioned on
    the aligned codes of ``level + 1``."""
    return _train(level=int(level), vqvae_dir=vqvae_dir, audio_dir=audio_dir, out=out, params=params,
                  resume=resume, log=log, device=device)


# ---------------------------------------------------------------------------------------------
# sample


def read_prompt(path: Path, *, samples: int, sr: int) -> np.ndarray:
    """The first ``samples`` samples of an audio file, mono (channel mean), resampled to ``sr``."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise StageError(f"prompt={str(path)!r}: no such file")
    try:
        audio, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise StageError(f"prompt={str(path)!r}: not a readable audio file ({str(exc).splitlines()[0]})") from None
    mono = audio.mean(axis=1)
    if file_sr != sr:
        import soxr

        mono = soxr.resample(mono, file_sr, sr, quality="HQ").astype(np.float32)
    if len(mono) < samples:
        raise StageError(f"prompt={str(path)!r}: {len(mono) / sr:.3f} s long, shorter than the "
                         f"{samples / sr:.3f} s prompt (jukebox.sample.prompt_seconds)")
    return np.ascontiguousarray(mono[:samples], dtype=np.float32)


def wav_bytes(audio: np.ndarray, sr: int) -> bytes:
    """16-bit PCM WAV (clipped to [-1, 1]); the same samples give the same bytes."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(audio, np.float32), -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def save_spectrogram(path: Path, audio: np.ndarray, sr: int, title: str = "", mark: float | None = None) -> None:
    """A spectrogram PNG (``figures.spectrogram_figure``: librosa, log frequency, dB colour bar);
    ``mark``: a dashed line at that time (the end of a prompt)."""
    x = np.asarray(audio, np.float32)
    if not np.any(x):
        x = x + np.float32(1e-12)  # a silent sample still gets a (flat) picture
    fig = figures.spectrogram_figure(x[None, :], sr, title=title, channel_names=["mono"], n_fft=1024, hop_length=256)
    if mark is not None:
        fig.axes[0].axvline(mark, color="white", lw=1.0, ls="--")
    figures.save(fig, Path(path), dpi=90)


def run_sample(*, mode: str, vqvae_dir: Path, audio_dir: Path, out: Path, params: Params,
               prompt: Path | None = None, device: str = "cpu", log=None) -> dict:
    """Sample ``sample.n`` pieces in one mode (ancestral | windowed | primed) with every level's
    model (read from ``out``); writes ``<out>/samples/<mode>/``."""
    import torch

    from pipeline.formats.npz import write_npz
    from pipeline.training import jukebox as fam
    from pipeline.training.solver import seed_everything

    if mode not in JUKEBOX_MODES:
        raise ParamsError(f"mode={mode!r} must be one of {', '.join(JUKEBOX_MODES)}")
    s = params.sample
    # one thread: the per-code steps are too small to gain from more (and two threads on a busy
    # machine are many times slower); a fixed count keeps the bytes the same on every machine
    seed_everything(s.seed, threads=1)
    vq = _vqvae(vqvae_dir, device)
    vq_digest = vqvae_digest(vq)
    models = [load_model(out, lvl, vq, device=device, vq_digest=vq_digest)
              for lvl in range(vq.levels - 1, -1, -1)][::-1]  # the prior first: its error comes first
    meta = vqvae_meta(vqvae_dir)
    sr = meta["sample_rate"]
    hops = list(vq.hop_lengths)
    top_hop = hops[-1]
    top_tokens = max(1, int(round(s.seconds * sr / top_hop)))
    if mode == "ancestral":
        top_tokens = min(top_tokens, models[-1].cfg.context)
    gen = torch.Generator().manual_seed(s.seed)
    prompt_doc = None
    prompt_codes = None
    prompt_audio = None
    if mode == "primed":
        p_samples = int(s.prompt_seconds * sr) // top_hop * top_hop
        if p_samples < top_hop:
            raise ParamsError(f"jukebox.sample.prompt_seconds={s.prompt_seconds} is shorter than one top-level "
                              f"code ({top_hop} samples)")
        src = prompt if prompt is not None else (Path(s.prompt) if s.prompt else None)
        if src is not None:
            one = read_prompt(src, samples=p_samples, sr=sr)
            prompt_audio = np.repeat(one[None], s.n, axis=0)
            prompt_doc = {"source": "file", "file": Path(src).name, "samples": p_samples}
        else:
            clips = _clips(audio_dir, split="heldout", samples=p_samples, n=s.n, seed=s.seed, meta=meta)
            held = clips.cpu().numpy() if hasattr(clips, "cpu") else np.asarray(clips)
            if len(held) == 0:
                raise StageError(f"{audio_dir}: no held-out clip to prime with (give --prompt FILE)")
            prompt_audio = held[np.arange(s.n) % len(held)].astype(np.float32)
            prompt_doc = {"source": "heldout", "clips": int(len(held)), "samples": p_samples}
        prompt_codes = [c.cpu() for c in vq.encode(torch.from_numpy(prompt_audio))]
    hop_fractions = [s.upsampler_hop_fraction] * (vq.levels - 1) + [s.hop_fraction]
    t0 = time.perf_counter()
    codes, windows = fam.sample_hierarchy(models, n=s.n, top_tokens=top_tokens, hop_fractions=hop_fractions,
                                          temperature=s.temperature, generator=gen, prompt=prompt_codes, log=log)
    sample_seconds = time.perf_counter() - t0
    out = Path(out) / "samples" / mode
    out.mkdir(parents=True, exist_ok=True)
    for old in sorted(out.glob("level_*/*")) + sorted(out.glob("prompt_*")):
        old.unlink()
    levels_doc = []
    for lvl in range(vq.levels):
        audio = vq.decode(codes[lvl], lvl).float().cpu().numpy()
        sub = out / f"level_{lvl}"
        for i in range(s.n):
            name = f"sample_{i:02d}"
            atomic_write_bytes(sub / f"{name}.wav", wav_bytes(audio[i], sr))
            save_spectrogram(sub / f"{name}.png", audio[i], sr,
                             title=f"jukebox {mode} {name}: level {lvl} (hop {hops[lvl]})"
                                   + (" - dashed: end of the prompt" if prompt_audio is not None else ""),
                             mark=prompt_audio.shape[1] / sr if prompt_audio is not None else None)
        stats = fam.codebook_stats(codes[lvl].numpy(), int(vq.codebook_size))
        levels_doc.append({"level": lvl, "hop_length": hops[lvl], "codes": int(codes[lvl].shape[1]),
                           "seconds": codes[lvl].shape[1] * hops[lvl] / sr, "windows": windows[lvl],
                           "prompt_codes": int(prompt_codes[lvl].shape[1]) if prompt_codes is not None else 0,
                           "codebook_usage": stats["usage"], "codes_used": stats["used"],
                           "perplexity": stats["perplexity"],
                           "rms": [float(np.sqrt(np.mean(a.astype(np.float64) ** 2))) for a in audio]})
    if prompt_audio is not None:
        for i in range(s.n):
            atomic_write_bytes(out / f"prompt_{i:02d}.wav", wav_bytes(prompt_audio[i], sr))
    write_npz(out / "codes.npz", {f"level_{lvl}": codes[lvl].numpy().astype(np.int32) for lvl in range(vq.levels)})
    doc = {"mode": mode, "n": s.n, "sample_rate": sr, "vqvae": vq_digest, "top_codes": top_tokens,
           "sample": dataclasses.asdict(s), "prompt": prompt_doc, "levels": levels_doc}
    write_json(out / "samples.json", _clean(doc))
    return {"mode": mode, "samples": s.n, "seconds": top_tokens * top_hop / sr, "out": str(out),
            "windows": [len(w) for w in windows], "sample_seconds": round(sample_seconds, 2)}


# ---------------------------------------------------------------------------------------------
# evaluate


def run_evaluate(*, vqvae_dir: Path, audio_dir: Path, out: Path, params: Params, device: str = "cpu") -> dict:
    """VQ-VAE numbers per level, held-out bits per token of every prior, codebook use of the samples;
    ``<out>/evaluation.json`` + ``evaluation.md``."""
    from pipeline.training import jukebox as fam
    from pipeline.training.solver import seed_everything
    from pipeline.training.vqvae import evaluate_vqvae

    e = params.evaluate
    seed_everything(e.seed, threads=params.train.threads)
    vq = _vqvae(vqvae_dir, device)
    vq_digest = vqvae_digest(vq)
    _check_clip_samples(vq, e.clip_samples, "evaluate.clip_samples")
    clips = _clips(audio_dir, split="heldout", samples=e.clip_samples, n=e.clips, seed=e.seed,
                   meta=vqvae_meta(vqvae_dir))
    if len(clips) == 0:
        raise StageError(f"{audio_dir}: no held-out clip to evaluate on")
    vq_report = evaluate_vqvae(vq, clips)
    codes = encode(vq, clips)
    bins = int(vq.codebook_size)
    models = []
    for lvl in range(vq.levels - 1, -1, -1):
        name = level_name(lvl, vq.levels)
        model = load_model(out, lvl, vq, device=device, vq_digest=vq_digest)
        ev = fam.evaluate_bits(model, codes[lvl], codes[lvl + 1] if lvl < vq.levels - 1 else None)
        train_doc_path = Path(out) / name / "train.json"
        train_doc = json.loads(train_doc_path.read_text()) if train_doc_path.exists() else {}
        models.append({"name": name, "level": lvl, "hop_length": vq.hop_lengths[lvl], "context": model.cfg.context,
                       "attention": model.cfg.kinds(), "heldout_bits_per_token": ev["bits_per_token"],
                       "heldout_tokens": ev["tokens"], "heldout_windows": ev["windows"],
                       "uniform_bits": math.log2(bins), "train_bits_last10": train_doc.get("last10_train_bits"),
                       "train_steps": train_doc.get("steps"),
                       "heldout_code_stats": fam.codebook_stats(codes[lvl], bins)})
    samples = {}
    for mode in JUKEBOX_MODES:
        doc_path = Path(out) / "samples" / mode / "samples.json"
        if doc_path.exists():
            sdoc = json.loads(doc_path.read_text())
            samples[mode] = [{k: lv[k] for k in ("level", "codes", "seconds", "codebook_usage", "perplexity")}
                             | {"windows": len(lv["windows"])} for lv in sdoc["levels"]]
    report = {"vqvae": {"digest": vq_digest, "hop_lengths": list(vq.hop_lengths), "codebook_size": bins,
                        "heldout_clips": int(len(clips)), "clip_samples": e.clip_samples, "levels": vq_report},
              "priors": models, "samples": samples}
    report = _clean(report)
    out = Path(out)
    report["numerics"] = numerics.record()
    write_json(out / "evaluation.json", _clean(report))
    for name, scores in jukebox_scores(report).items():
        write_json(out / "scores" / f"{name}.json", _clean(scores))
    atomic_write_bytes(out / "evaluation.md", markdown_report(report).encode())
    return report


VQ_COLUMNS = ("spectral_convergence_db", "recon_mse", "recon_l2_normalised", "codebook_usage", "perplexity",
              "codes_used")


def _level_rows(levels) -> list[tuple[str, dict]]:
    """``evaluate_vqvae``'s per-level numbers as (label, flat dict) rows, whatever their container."""
    if isinstance(levels, dict):
        items = sorted(levels.items(), key=lambda kv: str(kv[0]))
    else:
        items = [(str(i), v) for i, v in enumerate(levels)]
    rows = []
    for key, val in items:
        if isinstance(val, dict):
            label = f"{val['level']} (hop {val['hop']})" if "level" in val and "hop" in val else str(key)
            rows.append((label, {k: v for k, v in val.items() if (isinstance(v, (int, float)) or v is None)
                                 and k not in ("level", "hop", "clips", "samples")}))
    return rows


def markdown_report(r: dict) -> str:
    from pipeline.training.solver import markdown_table

    vq = r["vqvae"]
    lines = ["# Jukebox: VQ-VAE, prior and upsamplers", "",
             f"VQ-VAE `{vq['digest']}`: hop lengths {vq['hop_lengths']}, {vq['codebook_size']} codes per level; "
             f"{vq['heldout_clips']} held-out clips of {vq['clip_samples']} samples.", "", "## VQ-VAE per level", ""]
    rows = _level_rows(vq["levels"])
    if rows:
        keys = {k for _, d in rows for k in d}
        cols = [c for c in VQ_COLUMNS if c in keys] + sorted(keys - set(VQ_COLUMNS))
        lines.append(markdown_table([[label] + [d.get(c) for c in cols] for label, d in rows], ["level", *cols]))
    else:
        lines.append("```\n" + json.dumps(vq["levels"], indent=1, sort_keys=True) + "\n```")
    lines += ["", "## Priors (held-out bits per token)", "",
              markdown_table([(m["name"], m["level"], m["hop_length"], m["context"], ",".join(m["attention"]),
                               m["heldout_bits_per_token"], m["uniform_bits"], m["train_bits_last10"],
                               m["train_steps"], m["heldout_tokens"]) for m in r["priors"]],
                             ["model", "level", "hop", "context", "attention", "held-out bits/token",
                              "uniform (log2 K)", "train bits (last 10 steps)", "steps", "held-out tokens"])]
    if r["samples"]:
        lines += ["", "## Samples (codebook use per level)", "",
                  markdown_table([(mode, lv["level"], lv["codes"], lv["seconds"], lv["windows"], lv["codebook_usage"],
                                   lv["perplexity"]) for mode, levels in r["samples"].items() for lv in levels],
                                 ["mode", "level", "codes", "seconds", "windows", "codebook usage", "perplexity"],
                                 digits=(4, 4, 4, 3, 4, 4, 2))]
    lines.append("")
    return "\n".join(lines)
