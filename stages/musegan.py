"""Stages train_musegan / sample_musegan / evaluate_musegan: MuseGAN's six generators on the phrases.

Variants (``pipeline.models.musegan``): jamming, composer, hybrid, temporal (track-unconditional),
track_conditional and musegan (the full model). One params section ``musegan`` (model sizes with
a ``width`` knob, WGAN-GP training, sampling, evaluation); input ``datasets/phrases`` (build_phrases:
``npz/<split>.npz`` with ``shape`` + ``nonzero``, ``schema.json``); outputs under
``out`` (``datasets/models/musegan/<variant>``):

- ``train``: ``checkpoints/last.pt`` (+ ``config.json``: the digest a resume must match, the data's
  dimensions and track names), ``metrics.json`` (one object per generator step, for
  ``dvc plots``), ``loss.png``, ``train.json``.
- ``sample``: ``samples/samples.npz`` (``sample.n`` binarised phrases in the phrase NPZ format:
  ``shape``, ``nonzero``; track_conditional adds the given phrases' ``ids`` and ``first_bar``),
  ``samples/sample_NN.mid`` + ``.png`` for the first ``sample.files``, ``samples/samples.json``.
  ``--song ID`` (track_conditional): accompaniment for every phrase of that song, written to
  ``accompaniment/<ID>/`` instead.
- ``evaluate`` (all variants at once, ``out``: the family's folder ``datasets/models/musegan``):
  ``evaluation.json`` and ``evaluation.md``:
  EB, UPC, QN, DP and TD of the training data and of each variant's samples, under both metric
  definitions (``corrected`` and ``official``: the official code's own).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from pipeline import numerics
from pipeline.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range, params_section
from pipeline.errors import ParamsError, StageError
from pipeline.files import atomic_write_bytes, write_json
from pipeline.formats.phrase_shards import TRACKS
from pipeline.metrics.headline import musegan_scores
from pipeline.metrics.musegan import OFFICIAL_STEPS_PER_BAR
from pipeline.names import MUSEGAN_VARIANTS, Precision
from pipeline.splits import SPLITS, Split
DEFINITIONS = ("corrected", "official")


@dataclass(frozen=True, kw_only=True)
@params_section("musegan.model")
class ModelParams:
    z_dim: int  # input size of every bar generator (paper: 128), a positive multiple of 4
    width: PositiveFloat  # multiplies every channel count (1: the paper's / official sizes)
    condition_track: str  # the given track of track_conditional


Beta = Annotated[float, Range(0, 1, hi_open=True)]


@dataclass(frozen=True, kw_only=True)
@params_section("musegan.train")
class TrainParams:
    steps: NonNegativeInt  # generator updates
    batch_size: PositiveInt
    lr: PositiveFloat
    beta1: Beta
    beta2: Beta
    n_critic: PositiveInt  # critic updates per generator update
    gp_weight: NonNegativeFloat
    seed: int
    threads: NonNegativeInt  # torch threads (0: torch's default); fix it for bit-identical reruns across machines
    checkpoint_every: PositiveInt  # generator steps between checkpoints (last.pt)
    critic_schedule: Literal["fixed", "v1"]  # fixed: n_critic per step; v1: the official v1 code's 100-update bursts
    precision: Precision  # fp32 | bf16 (CPU or CUDA autocast) | fp16 (CUDA, with loss scaling)


def _train_doc(t: TrainParams) -> dict:
    """``asdict(t)``, without ``critic_schedule`` when it is "fixed" and ``precision`` when "fp32" (the
    behaviour before the options existed): a default run keeps the ``config.json`` it had, byte for byte."""
    from pipeline.training.precision import digest_fields

    doc = digest_fields(dataclasses.asdict(t))
    if doc["critic_schedule"] == "fixed":
        del doc["critic_schedule"]
    return doc


@dataclass(frozen=True, kw_only=True)
@params_section("musegan.sample")
class SampleParams:
    n: NonNegativeInt  # phrases in samples.npz (what evaluate measures)
    files: NonNegativeInt  # of which written as MIDI + PNG
    tempo: PositiveFloat  # bpm of the MIDI files (official: 100)
    seed: int
    condition_split: Split  # track_conditional: the given phrases


@dataclass(frozen=True, kw_only=True)
@params_section("musegan.evaluate")
class EvalParams:
    data_split: Split  # the data row of the table
    data_phrases: Annotated[int, Range(0, note="0: all")]  # 0: all phrases of data_split; else that many, evenly spread
    qn_min_steps: int | None  # QN: shortest qualified note in steps (null: the definition's default)
    dp_tolerance: float | None  # DP: credit of a drum onset one step off the grid (null: 0.3)


@dataclass(frozen=True, kw_only=True)
@params_section("musegan")
class Params:
    model: ModelParams
    train: TrainParams
    sample: SampleParams
    evaluate: EvalParams

    def __post_init__(self) -> None:
        m, e = self.model, self.evaluate
        if m.z_dim < 4 or m.z_dim % 4:
            raise ParamsError(f"musegan.model.z_dim={m.z_dim} must be a positive multiple of 4 "
                              "(the full model splits it in four)")
        if e.qn_min_steps is not None and (isinstance(e.qn_min_steps, bool) or not isinstance(e.qn_min_steps, int)
                                           or e.qn_min_steps < 1):
            raise ParamsError(f"musegan.evaluate.qn_min_steps={e.qn_min_steps!r} must be a positive integer or null")
        if e.dp_tolerance is not None and (isinstance(e.dp_tolerance, bool) or not isinstance(e.dp_tolerance, (int, float))
                                           or not 0.0 <= e.dp_tolerance <= 1.0):
            raise ParamsError(f"musegan.evaluate.dp_tolerance={e.dp_tolerance!r} must be a number from 0 to 1 or null")


def params_from_dict(doc: dict) -> Params:
    from pipeline.config import from_dict

    return from_dict(Params, doc, section="musegan")


def check_variant(variant: str) -> str:
    if variant not in MUSEGAN_VARIANTS:
        raise ParamsError(f"variant={variant!r} must be one of {', '.join(MUSEGAN_VARIANTS)}")
    return variant


# ---------------------------------------------------------------------------------------------
# data


def phrase_schema(phrases: Path) -> dict:
    """Track names and lowest pitch of the phrase data (schema.json; LPD-5 and 24 when absent)."""
    path = Path(phrases) / "schema.json"
    doc = {}
    if path.exists():
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise StageError(f"{path}: not valid JSON ({exc.msg})") from None
    return {"track_names": tuple(doc.get("track_order", TRACKS)), "lowest_pitch": int(doc.get("lowest_pitch", 24))}


def load_split(phrases: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bool phrases (n, bars, steps, pitches, tracks), ids, first_bar) of ``npz/<split>.npz``."""
    from pipeline.formats.phrase_shards import read_phrase_npz

    path = Path(phrases) / "npz" / f"{split}.npz"
    if not path.exists():
        raise StageError(f"{path}: missing (run `pipeline build-phrases` first)")
    z = read_phrase_npz(path)  # SchemaError / UnsafeFileError: one line naming the file
    return z.dense(), z.ids, z.first_bar


def open_split(phrases: Path, split: str):
    """The phrases of ``npz/<split>.npz`` as :class:`~pipeline.formats.phrase_shards.PhraseRows`:
    ``rows[idx]`` is the dense bool batch ``load_split(...)[0][idx]``, read without holding the
    split in memory (only per-phrase offsets, ids and first bars)."""
    from pipeline.formats.phrase_shards import PhraseRows

    path = Path(phrases) / "npz" / f"{split}.npz"
    if not path.exists():
        raise StageError(f"{path}: missing (run `pipeline build-phrases` first)")
    return PhraseRows(path)  # SchemaError / UnsafeFileError: one line naming the file


def model_config(params: Params, variant: str, data_shape: tuple[int, ...], track_names: tuple[str, ...]):
    """The model's config for phrases of ``data_shape`` (n, bars, steps, pitches, tracks)."""
    from pipeline.models.musegan import MuseGANConfig

    m = params.model
    if m.condition_track not in track_names:
        raise ParamsError(f"musegan.model.condition_track={m.condition_track!r} must be one of "
                          f"{', '.join(track_names)}")
    if len(track_names) != data_shape[4]:
        raise StageError(f"the phrases have {data_shape[4]} tracks but {len(track_names)} track names")
    try:
        return MuseGANConfig(variant=variant, n_tracks=data_shape[4], n_bars=data_shape[1],
                             steps_per_bar=data_shape[2], n_pitches=data_shape[3], z_dim=m.z_dim, width=m.width,
                             condition_track=track_names.index(m.condition_track))
    except ValueError as exc:
        raise StageError(f"phrases of shape (bars, steps, pitches, tracks) = {tuple(data_shape[1:])}: {exc}") from None


def _digest(params: Params, variant: str, data_sha: str) -> str:
    """The resume digest: more steps continue a run; everything else starts a new one."""
    from pipeline.training.precision import digest_fields
    from pipeline.training.solver import resume_fields, run_digest

    train = resume_fields(params.train, continuing=("steps", "checkpoint_every"))
    if train["critic_schedule"] == "fixed":  # absent, as before the option existed: old runs still resume
        del train["critic_schedule"]
    return run_digest({"variant": variant, "data": data_sha, "model": dataclasses.asdict(params.model),
                       "train": digest_fields(train)})


# ---------------------------------------------------------------------------------------------
# train


def run_train(*, phrases: Path, out: Path, variant: str, params: Params, resume: bool = True,
              log=None, device: str = "cpu") -> dict:
    """Train one variant on ``phrases/npz/train.npz`` with WGAN-GP; resumes from
    ``out/checkpoints/last.pt`` when it was made with the same variant, data and params (but
    ``train.steps``), otherwise starts afresh."""
    from pipeline.models.musegan import build, count_parameters
    from pipeline.training import musegan as fam
    from pipeline.training.solver import file_digest, plot_curves, resolve_device, resume_config, seed_everything

    from pipeline.training import distributed

    check_variant(variant)
    ctx = distributed.setup(device)  # under torchrun: join the group (this rank's device); else nothing
    dev = resolve_device(ctx.device)
    out = Path(out)
    schema = phrase_schema(phrases)
    npz = Path(phrases) / "npz" / "train.npz"
    x = open_split(phrases, "train")  # batch by batch: memory does not grow with the split (scratch file removed with x)
    t = params.train
    cfg = model_config(params, variant, x.shape, schema["track_names"])
    if len(x) < t.batch_size:
        raise StageError(f"{npz}: {len(x)} training phrases, fewer than musegan.train.batch_size={t.batch_size}")
    data_sha = file_digest(npz)
    digest = _digest(params, variant, data_sha)
    ckpt = out / "checkpoints"
    cfg_path = ckpt / "config.json"
    if ctx.is_main:  # rank 0 alone writes; the others wait until the stale checkpoint is gone
        resume_config(cfg_path, digest, resume=resume, stale=(ckpt / "last.pt",))
        write_json(cfg_path, {"digest": digest, "variant": variant,
                               "params": {**dataclasses.asdict(params), "train": _train_doc(t)},
                               "model": dataclasses.asdict(cfg), "track_names": list(schema["track_names"]),
                               "lowest_pitch": schema["lowest_pitch"],
                               "data": {"phrases": int(len(x)), "sha256": data_sha}})
    ctx.barrier()
    seed_everything(t.seed, threads=t.threads)
    gen, critic = build(cfg)
    gen.to(dev)
    critic.to(dev)
    t0 = time.perf_counter()
    res = fam.train(gen, critic, x, out=out, resume=resume, log=log,
                    cfg=fam.GanConfig(steps=t.steps, batch_size=t.batch_size, lr=t.lr, beta1=t.beta1,
                                      beta2=t.beta2, n_critic=t.n_critic, gp_weight=t.gp_weight, seed=t.seed,
                                      checkpoint_every=t.checkpoint_every, critic_schedule=t.critic_schedule,
                                      precision=t.precision))
    seconds = time.perf_counter() - t0
    if res["history"] and ctx.is_main:
        plot_curves(out / "loss.png", res["history"], fam.LOSS_PANELS, xlabel="generator step",
                    title=f"MuseGAN {variant} (WGAN-GP)")
    summary = {"variant": variant, "phrases": int(len(x)), "shape": list(x.shape[1:]),
               "track_names": list(schema["track_names"]),
               "parameters": {"generator": count_parameters(gen), "critic": count_parameters(critic)},
               **{k: v for k, v in res.items() if k != "history"}, "seconds": round(seconds, 2)}
    # wall time goes to the caller (and the CLI line), never into a tracked output
    if ctx.is_main:
        write_json(out / "train.json", {**{k: v for k, v in summary.items() if k not in ("seconds", "resumed")},
                                         "numerics": numerics.record()})
    ctx.barrier()
    return summary


# ---------------------------------------------------------------------------------------------
# sample


def load_generator(model_dir: Path, variant: str, device: str = "cpu"):
    """(generator in eval mode, config.json) of a trained variant."""
    from pipeline.models.musegan import MuseGANConfig, MuseGANGenerator
    from pipeline.training.solver import load_checkpoint, read_json_dict, resolve_device

    dev = resolve_device(device)
    cfg_path = Path(model_dir) / "checkpoints" / "config.json"
    last = Path(model_dir) / "checkpoints" / "last.pt"
    if not cfg_path.exists() or not last.exists():
        raise StageError(f"{model_dir}: no trained model (run `pipeline train musegan --variant {variant}` first)")
    doc = read_json_dict(cfg_path)
    if doc is None or "model" not in doc or "track_names" not in doc:
        raise StageError(f"{cfg_path}: not a MuseGAN config (train again with --fresh)")
    if doc.get("variant") != variant:
        raise StageError(f"{model_dir}: holds variant {doc.get('variant')!r}, not {variant!r}")
    try:
        gen = MuseGANGenerator(MuseGANConfig(**doc["model"]))
        gen.load_state_dict(load_checkpoint(last)["generator"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise StageError(f"{last}: does not fit its config.json ({str(exc).splitlines()[0]}); "
                         "train again with --fresh") from None
    gen.to(dev)
    gen.eval()
    return gen, doc


def _song_phrases(phrases: Path, song: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    found = []
    for split in SPLITS:
        if not (Path(phrases) / "npz" / f"{split}.npz").exists():
            continue
        x, ids, first = load_split(phrases, split)
        keep = np.flatnonzero(ids == song)
        if len(keep):
            found.append((x[keep], ids[keep], first[keep]))
    if not found:
        raise StageError(f"song {song!r} has no phrase in {Path(phrases) / 'npz'} (ids are the songs' 32-hex ids)")
    x, ids, first = (np.concatenate(a) for a in zip(*found))
    order = np.argsort(first, kind="stable")
    return x[order], ids[order], first[order]


def run_sample(*, phrases: Path, out: Path, variant: str, params: Params, device: str = "cpu",
               song: str | None = None, track: str | None = None) -> dict:
    """With the generator that ``run_train`` wrote into ``out``, generate ``sample.n`` phrases (binarised at 0) into ``samples.npz``, the first ``sample.files``
    also as MIDI (with ``sample.tempo``) and PNG. track_conditional: accompaniment of the phrases of
    ``sample.condition_split`` (in order), or with ``song`` of every phrase of that song."""
    from pipeline.formats.phrase_shards import encode_phrases, write_phrase_npz
    from pipeline.training import musegan as fam

    check_variant(variant)
    if (song is not None or track is not None) and variant != "track_conditional":
        raise ParamsError(f"--song/--track: only the track_conditional variant accompanies a given track, "
                          f"not {variant}")
    gen, doc = load_generator(out, variant, device)
    names = tuple(doc["track_names"])
    c = gen.cfg
    given = names[c.condition_track] if variant == "track_conditional" else None
    if track is not None and track != given:
        raise ParamsError(f"--track={track!r}: this model was trained to accompany {given!r} "
                          f"(musegan.model.condition_track); train another for {track!r}")
    s = params.sample
    condition = ids = first = None
    if variant == "track_conditional":
        if song is not None:
            cx, ids, first = _song_phrases(phrases, song)
            n = len(cx)
        else:
            cx, ids, first = load_split(phrases, s.condition_split)
            if len(cx) == 0:
                raise StageError(f"{phrases}/npz/{s.condition_split}.npz holds no phrase to accompany")
            pick = np.arange(s.n) % len(cx)
            cx, ids, first, n = cx[pick], ids[pick], first[pick], s.n
        if tuple(cx.shape[1:]) != (c.n_bars, c.steps_per_bar, c.n_pitches, c.n_tracks):
            raise StageError(f"phrases of shape {tuple(cx.shape[1:])} do not fit this model "
                             f"{(c.n_bars, c.steps_per_bar, c.n_pitches, c.n_tracks)}")
        condition = cx[..., c.condition_track]
    else:
        n = s.n
    x = fam.generate(gen, n, seed=s.seed, condition=condition)
    out = Path(out) / ("samples" if song is None else f"accompaniment/{song}")
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("sample_*.mid")) + list(out.glob("sample_*.png")):
        old.unlink()
    write_phrase_npz(out / "samples.npz", *encode_phrases(x), ids=ids, first_bar=first)
    rows = []
    n_files = n if song is not None else min(s.files, n)
    for i in range(n_files):
        name = f"sample_{i:02d}"
        atomic_write_bytes(out / f"{name}.mid", fam.phrase_to_midi(
            x[i], track_names=names, steps_per_bar=c.steps_per_bar, lowest_pitch=doc["lowest_pitch"], tempo=s.tempo))
        what = f" (given {given}: {ids[i]} bar {int(first[i])})" if ids is not None else ""
        fam.save_phrase_png(out / f"{name}.png", x[i], track_names=names, lowest_pitch=doc["lowest_pitch"],
                            title=f"MuseGAN {variant} {name}{what}")
        row = {"file": f"{name}.mid", "png": f"{name}.png",
               "active_steps": {t: int(x[i, ..., k].any(-1).sum()) for k, t in enumerate(names)}}
        if ids is not None:
            row.update(given_track=given, id=str(ids[i]), first_bar=int(first[i]))
        rows.append(row)
    write_json(out / "samples.json", {"variant": variant, "sample": dataclasses.asdict(s), "phrases": int(n),
                                       "song": song, "shape": list(x.shape), "track_names": list(names),
                                       "files": rows})
    return {"variant": variant, "phrases": int(n), "files": len(rows), "out": str(out),
            "density": float(x.mean()) if x.size else 0.0}


# ---------------------------------------------------------------------------------------------
# evaluate


def _pick(n: int, k: int) -> np.ndarray:
    if k <= 0 or k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def _not_comparable(report: dict, root: Path, params: Params) -> list[str]:
    """Why these rows cannot be held against the paper's, one reason per item."""
    spb = report["steps_per_bar"]
    reasons = [f"the data are {report['data']['phrases']} phrases of this corpus's {report['data']['split']} split, "
               "not the paper's LPD-cleansed phrases: other songs, so even the training-data rows differ"]
    if report.get("official_held_from"):
        reasons.append(f"the phrases are quantised at {spb} steps per bar; the official tables hold each step "
                       f"{OFFICIAL_STEPS_PER_BAR // spb} times (the same music on the paper's "
                       f"{OFFICIAL_STEPS_PER_BAR}-step grid), but notes and onsets finer than 1/{spb} bar, "
                       "which the paper's data could hold, are already gone")
    elif spb != OFFICIAL_STEPS_PER_BAR:
        reasons.append(f"the phrases have {spb} steps per bar, which cannot be held onto the paper's "
                       f"{OFFICIAL_STEPS_PER_BAR}-step grid: the official tables run at {spb} (QN and DP depend "
                       "on the grid)")
    runs = []
    for v in report["samples"]:
        doc = _read_config(root / v)
        p = (doc or {}).get("params") or {}
        m, t = p.get("model") or dataclasses.asdict(params.model), p.get("train") or _train_doc(params.train)
        runs.append(f"{v}: width {m.get('width')}, {t.get('steps')} generator steps, "
                    f"critic schedule {t.get('critic_schedule', 'fixed')}")
    if runs:
        reasons.append("the models are ours, not the paper's: " + "; ".join(runs)
                       + " (the official v1 code: its layer sizes, width 1.0, and its critic schedule, "
                         "musegan.train.critic_schedule: v1)")
    reasons.append("the bass is not made monophonic here (issue #16 says v1 made it monophonic; "
                   "not checked against the official code, and no option for it)")
    return reasons


def _read_config(model_dir: Path) -> dict | None:
    from pipeline.training.solver import read_json_dict

    return read_json_dict(Path(model_dir) / "checkpoints" / "config.json")


def run_evaluate(*, phrases: Path, out: Path, params: Params, log=None) -> dict:
    """EB, UPC, QN, DP and TD of the data (``evaluate.data_split``) and of the samples of every
    trained variant found under ``out`` (the family's folder, ``datasets/models/musegan``), under
    both metric definitions; writes ``<out>/evaluation.json`` and ``evaluation.md``.

    The corrected definitions run at the phrases' own resolution; the official ones at the official
    resolution, 96 steps per bar: 48-step phrases (data and samples alike) are held onto the
    96-step grid first (``hold_steps``: every step twice, the same music), since the official QN and
    DP depend on the grid. ``resolution`` in the JSON says which table used which. The paper's
    training-data rows (``pipeline.metrics.musegan_reference``) are shown beside ours where they are
    stored, with the reasons the two are not comparable."""
    from pipeline.formats.phrase_shards import read_phrase_npz
    from pipeline.metrics.musegan import compute_metrics, hold_steps
    from pipeline.metrics.musegan_reference import reference

    e = params.evaluate
    schema = phrase_schema(phrases)
    names = schema["track_names"]
    x, _, _ = load_split(phrases, e.data_split)
    x = x[_pick(len(x), e.data_phrases)]
    sources: dict[str, np.ndarray] = {"data": x}
    root = Path(out)
    for v in MUSEGAN_VARIANTS:
        path = root / v / "samples" / "samples.npz"
        if not path.exists():
            continue
        y = read_phrase_npz(path).dense()
        if y.shape[1:] != x.shape[1:]:
            raise StageError(f"{path}: samples of shape {y.shape[1:]}, the data's phrases are {x.shape[1:]}")
        sources[v] = y
    spb = int(x.shape[2])
    # a grid that does not divide 96 (or is finer) cannot be held onto it: official at its own steps
    resolution = {"corrected": spb, "official": OFFICIAL_STEPS_PER_BAR if OFFICIAL_STEPS_PER_BAR % spb == 0 else spb}
    report: dict = {"data": {"split": e.data_split, "phrases": int(len(x))},
                    "samples": {k: int(len(v)) for k, v in sources.items() if k != "data"},
                    "track_names": list(names), "steps_per_bar": spb, "resolution": resolution,
                    "official_held_from": spb if resolution["official"] != spb else None,
                    "qn_min_steps": e.qn_min_steps, "dp_tolerance": e.dp_tolerance}
    for definition in DEFINITIONS:
        report[definition] = {}
        for src, arr in sources.items():
            if definition == "official":
                arr = hold_steps(arr, spb, resolution["official"])
            report[definition][src] = compute_metrics(
                arr, track_names=list(names), drum_track="Drums" if "Drums" in names else None,
                steps_per_bar=resolution[definition], definition=definition, qn_min_steps=e.qn_min_steps,
                dp_tolerance=e.dp_tolerance, lowest_pitch=schema["lowest_pitch"])
            if log:
                log(f"{definition}: {src} ({len(arr)} phrases, {resolution[definition]} steps per bar)")
    report["reference"] = {**reference(), "comparable": False,
                           "not_comparable": _not_comparable(report, root, params)}
    root.mkdir(parents=True, exist_ok=True)
    report["numerics"] = numerics.record()
    write_json(root / "evaluation.json", report)
    for src, scores in musegan_scores(report).items():
        write_json(root / "scores" / f"{src}.json", scores)
    atomic_write_bytes(root / "evaluation.md", markdown_report(report).encode())
    return report


METRIC_TITLES = {
    "EB": "EB: ratio of empty bars",
    "UPC": "UPC: used pitch classes per bar",
    "QN": "QN: ratio of qualified notes",
    "DP": "DP: drum pattern",
    "TD": "TD: tonal distance between tracks",
}


def markdown_report(r: dict) -> str:
    from pipeline.training.solver import markdown_table

    res = r.get("resolution") or {d: r["steps_per_bar"] for d in DEFINITIONS}
    held = r.get("official_held_from")
    lines = ["# MuseGAN: metrics of the training data and of each variant's samples", "",
             f"Data: {r['data']['phrases']} phrases of the {r['data']['split']} split; samples: "
             + (", ".join(f"{k} {n}" for k, n in r["samples"].items()) or "none found")
             + f". The phrases have {r['steps_per_bar']} steps per bar. Generator output binarised at 0 (tanh > 0).",
             "", f"Resolution: the corrected tables at {res['corrected']} steps per bar (the phrases' own); the "
             f"official tables at {res['official']} steps per bar, the official code's"
             + (f" (every {held}-step phrase held onto the {res['official']}-step grid: each step twice, the "
                "same music)." if held else "."), ""]
    for definition in DEFINITIONS:
        block = r[definition]
        sources = list(block)
        lines += [f"## {definition} definitions ({res[definition]} steps per bar)", ""]
        metrics = []
        for src in sources:
            for m in block[src]:
                if m not in metrics and isinstance(block[src][m], dict):
                    metrics.append(m)
        ref = (r.get("reference") or {}).get("training_data") if definition == "official" else None
        for m in metrics:
            cols = []
            for src in sources:
                for k in (block[src].get(m) or {}):
                    if k not in cols:
                        cols.append(k)
            rows = [[src] + [(block[src].get(m) or {}).get(k) for k in cols] for src in sources]
            if ref and isinstance(ref.get(m), dict):
                rows.append(["paper: training data (not comparable)"] + [ref[m].get(k) for k in cols])
            lines += [f"### {METRIC_TITLES.get(m, m)} ({definition}, {res[definition]} steps per bar)", "",
                      markdown_table(rows, ["source", *cols], digits=3), ""]
    ref = r.get("reference")
    if ref:
        lines += ["## The paper's reference", "",
                  f"Source: {ref.get('citation')}, {ref.get('tables')}"
                  + (f", {ref['version']}" if ref.get("version") else "") + f" ({ref.get('url')}).",
                  f"Its setting: {ref.get('setting')}.", ""]
        if ref.get("training_data") is None:
            lines += [f"Values: none here; {ref.get('missing', 'not stored')}.", ""]
        else:
            lines += ["Its training-data rows stand in the official tables above, marked not comparable.", ""]
        lines += ["Not comparable with these rows:", ""] + [f"- {why}" for why in ref.get("not_comparable", [])] + [""]
    return "\n".join(lines)
