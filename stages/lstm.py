"""Stages train_lstm / sample_lstm / evaluate_lstm: next-token LSTM models on the token shards.

Two variants (``lstm``: stacked LSTM; ``lstm_attention``: + causal attention over the window's
LSTM outputs), one params section ``lstm`` (sizes, training, sampling, evaluation), outputs under
``out`` (``datasets/models/lstm/<variant>``), the argument of every ``run_*``:

- ``train``: ``checkpoints/{last,best}.pt`` (+ ``config.json``: the digest a resume must match),
  ``metrics.json`` (one object per epoch, for ``dvc plots``), ``loss.png``, ``train.json``.
- ``sample``: ``samples/sample_NN.mid`` + ``.png`` (piano-roll), ``samples/samples.json``.
- ``evaluate``: ``evaluation.json`` (valid/test cross-entropy, perplexity, accuracy; UPC/QN/EB of
  the samples next to those of the data) and ``evaluation.md``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from pipeline import figures, numerics
from pipeline.config import NonNegativeInt, PositiveFloat, PositiveInt, Range, params_section
from pipeline.errors import ParamsError, PipelineError
from pipeline.files import atomic_write_bytes, write_json
from pipeline.metrics.headline import lstm_scores
from pipeline.names import LSTM_VARIANTS, Precision, VocabKind


@dataclass(frozen=True, kw_only=True)
@params_section("lstm.model")
class ModelParams:
    embedding: NonNegativeInt  # 0: one-hot input
    hidden: PositiveInt
    layers: PositiveInt
    dropout: Annotated[float, Range(0, 1, hi_open=True)]
    attention_dim: PositiveInt  # lstm_attention only


@dataclass(frozen=True, kw_only=True)
@params_section("lstm.train")
class TrainParams:
    window: PositiveInt  # input tokens per window (windows of window + 1 ids are cut)
    stride: PositiveInt
    batch_size: PositiveInt
    epochs: NonNegativeInt
    lr: PositiveFloat
    patience: PositiveInt  # early stopping: epochs without a better validation loss
    grad_clip: float
    max_windows: NonNegativeInt  # training windows per epoch, drawn anew each epoch (0: all)
    max_eval_windows: NonNegativeInt  # validation / test windows (evenly spread; 0: all)
    seed: int
    threads: NonNegativeInt  # torch threads (0: torch's default); fix it for bit-identical reruns across machines
    precision: Precision  # fp32 | bf16 (CPU or CUDA autocast) | fp16 (CUDA, with loss scaling)


@dataclass(frozen=True, kw_only=True)
@params_section("lstm.sample")
class SampleParams:
    n: NonNegativeInt
    length: PositiveInt  # generated tokens per sample (fewer when EOS comes first)
    prime: Literal["test", "bos"]  # seed window from a held-out (test) song, or BOS only
    prime_length: NonNegativeInt
    temperature: Annotated[float, Range(0, note="0: greedy")]
    top_k: NonNegativeInt
    top_p: Annotated[float, Range(0, 1, lo_open=True)]
    seed: int


@dataclass(frozen=True, kw_only=True)
@params_section("lstm.evaluate")
class EvalParams:
    data_songs: int  # test-split songs (valid, then train, when short) for the data's UPC/QN/EB
    data_tokens: int  # cut each song to this many tokens before measuring (0: the samples' length)


@dataclass(frozen=True, kw_only=True)
@params_section("lstm")
class Params:
    vocab: VocabKind
    model: ModelParams
    train: TrainParams
    sample: SampleParams
    evaluate: EvalParams


def _check_variant(variant: str) -> bool:
    if variant not in LSTM_VARIANTS:
        raise ParamsError(f"variant={variant!r} must be one of {', '.join(LSTM_VARIANTS)}")
    return variant == "lstm_attention"


def _load_vocab(vocab_dir: Path):
    from pipeline.formats.vocab import load_vocabulary

    return load_vocabulary(Path(vocab_dir) / "vocab.json")


def _model(params: Params, variant: str, vocab_size: int):
    from pipeline.training import lstm as fam

    m = params.model
    return fam.build_model(vocab_size, embedding=m.embedding, hidden=m.hidden, layers=m.layers,
                           dropout=m.dropout, attention=_check_variant(variant), attention_dim=m.attention_dim)


def _digest(params: Params, variant: str, vocab_hash: str) -> str:
    """The resume digest: more epochs continue a run; everything else starts a new one."""
    from pipeline.training.precision import digest_fields
    from pipeline.training.solver import resume_fields, run_digest

    return run_digest({"variant": variant, "vocab_hash": vocab_hash, "model": dataclasses.asdict(params.model),
                       "train": digest_fields(resume_fields(params.train, continuing=("epochs",)))})


# ---------------------------------------------------------------------------------------------
# train


def run_train(*, vocab_dir: Path, out: Path, variant: str, params: Params, resume: bool = True,
              log=None, device: str = "cpu") -> dict:
    """Train one variant; resumes from ``out/checkpoints/last.pt`` when it was made with the same
    variant, vocabulary and model/train params (otherwise starts afresh)."""
    from pipeline.training import distributed
    from pipeline.training import lstm as fam
    from pipeline.training.solver import FitConfig, fit, plot_curves, resume_config, seed_everything

    _check_variant(variant)
    ctx = distributed.setup(device)  # under torchrun: join the group (this rank's device); else nothing
    device = ctx.device
    out = Path(out)
    vocab = _load_vocab(vocab_dir)
    if vocab.config.get("kind") != params.vocab:
        raise ParamsError(f"{vocab_dir}: a {vocab.config.get('kind')} vocabulary, but lstm.vocab={params.vocab}")
    t = params.train
    shards = Path(vocab_dir) / "shards"
    # windows read batch by batch from the shards (an index in memory, not the windows)
    train = fam.SongWindows(shards, vocab, "train", t.window, t.stride)
    valid = fam.SongWindows(shards, vocab, "valid", t.window, t.stride)
    if len(train) == 0:
        raise PipelineError(f"{shards}: no training window of {t.window + 1} tokens (lower lstm.train.window)")
    digest = _digest(params, variant, vocab.hash)
    ckpt = out / "checkpoints"
    cfg_path = ckpt / "config.json"
    if ctx.is_main:  # rank 0 alone writes; the others wait until the stale checkpoints are gone
        resume_config(cfg_path, digest, resume=resume, stale=(ckpt / "last.pt", ckpt / "best.pt"))
        write_json(cfg_path, {"digest": digest, "variant": variant, "vocab_hash": vocab.hash,
                               "vocab_size": len(vocab), "params": dataclasses.asdict(params)})
    ctx.barrier()
    seed_everything(t.seed, threads=t.threads)
    from pipeline.training.solver import resolve_device

    model = _model(params, variant, len(vocab)).to(resolve_device(device))
    t0 = time.perf_counter()
    res = fit(model, train=train, valid=valid, out=out, train_step=fam.step, loss_fn=fam.loss_sums, resume=resume,
              cfg=FitConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, patience=t.patience,
                            grad_clip=t.grad_clip, max_windows=t.max_windows, max_eval_windows=t.max_eval_windows,
                            seed=t.seed, precision=t.precision), log=log, count=fam.target_tokens)
    seconds = time.perf_counter() - t0
    if res["history"] and ctx.is_main:
        plot_curves(out / "loss.png", res["history"], fam.LOSS_PANELS, x="epoch",
                    title=f"{variant} on {params.vocab}")
    summary = {"variant": variant, "vocab": params.vocab, "vocab_size": len(vocab),
               "parameters": sum(p.numel() for p in model.parameters()),
               "train_windows": int(len(train)), "valid_windows": int(len(valid)),
               **{k: v for k, v in res.items() if k != "history"},
               "final_train_loss": res["history"][-1]["train_loss"] if res["history"] else None,
               "final_valid_loss": res["history"][-1]["valid_loss"] if res["history"] else None,
               "seconds": round(seconds, 2)}
    # wall time goes to the caller (and the CLI line), never into a tracked output
    if ctx.is_main:
        write_json(out / "train.json", {**{k: v for k, v in summary.items() if k != "seconds"},
                                         "numerics": numerics.record()})
    ctx.barrier()
    return summary


# ---------------------------------------------------------------------------------------------
# sample


def _load_best(params: Params, variant: str, model_dir: Path, vocab, device: str = "cpu"):
    from pipeline.training.solver import load_checkpoint, resolve_device

    cfg_path = Path(model_dir) / "checkpoints" / "config.json"
    if not cfg_path.exists():
        raise PipelineError(f"{model_dir}: no trained model (run `pipeline train lstm` first)")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("vocab_hash") != vocab.hash:
        raise PipelineError(f"{model_dir}: trained with vocabulary {str(cfg.get('vocab_hash'))[:12]}, "
                            f"not {vocab.hash[:12]}")
    saved = Params_from_dict(cfg["params"])
    model = _model(saved, variant, len(vocab))
    model.load_state_dict(load_checkpoint(Path(model_dir) / "checkpoints" / "best.pt")["model"])
    model.to(resolve_device(device))
    model.eval()
    return model, saved


def Params_from_dict(doc: dict) -> Params:  # noqa: N802 - reads back asdict(Params)
    from pipeline.config import from_dict

    return from_dict(Params, doc, section="lstm")


def midi_pianoroll(raw: bytes):
    """MIDI bytes -> (non-drum (n_steps, 128) bool roll, bar starts) on the 24-steps-per-beat grid,
    or None when nothing can be drawn."""
    from pipeline.errors import MidiError
    from pipeline.io.midi import read_midi
    from pipeline.symbolic.lpd import to_pianoroll

    try:
        pr = to_pianoroll(read_midi(raw), resolution=24, tracks="lpd5")
    except MidiError:
        return None
    roll = np.zeros((pr.n_steps, 128), bool)
    for k in range(pr.n_tracks):
        if not pr.track_is_drum[k]:
            roll |= pr.dense(k) > 0
    return roll, pr.bar_starts


def save_pianoroll_png(path: Path, roll: np.ndarray, bar_starts, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.5))
    if roll.any():
        pitches = np.flatnonzero(roll.any(axis=0))
        lo, hi = max(int(pitches.min()) - 2, 0), min(int(pitches.max()) + 3, 128)
    else:
        lo, hi = 48, 84
    ax.imshow(roll[:, lo:hi].T, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
              extent=(0, roll.shape[0], lo, hi))
    for b in bar_starts:
        ax.axvline(b, color="tab:blue", lw=0.4, alpha=0.5)
    ax.set_xlabel("step (24 per beat)")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figures.save(fig, Path(path), dpi=90)


def _held_out(shards: Path, vocab) -> list[tuple[str, np.ndarray]]:
    from pipeline.training import lstm as fam

    for split in ("test", "valid", "train"):
        seqs = fam.song_sequences(shards, vocab, split)
        if seqs:
            return [(f"{split}:{k}", s) for k, s in seqs]
    return []


def run_sample(*, vocab_dir: Path, out: Path, variant: str, params: Params, device: str = "cpu") -> dict:
    """Generate ``sample.n`` pieces with the model that ``run_train`` wrote into ``out``: MIDI through
    the vocabulary's decoder and a piano-roll PNG each, into ``<out>/samples``."""
    import torch

    from pipeline.training import lstm as fam
    from pipeline.training.solver import seed_everything

    _check_variant(variant)
    vocab = _load_vocab(vocab_dir)
    model, saved = _load_best(params, variant, out, vocab, device)
    s = params.sample
    seed_everything(s.seed, threads=saved.train.threads)
    gen = torch.Generator().manual_seed(s.seed)
    out = Path(out) / "samples"
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("sample_*.mid")) + list(out.glob("sample_*.png")):
        old.unlink()
    held = _held_out(Path(vocab_dir) / "shards", vocab) if s.prime == "test" else []
    rows = []
    for i in range(s.n):
        if held:
            key, seq = held[i % len(held)]
            prime = seq[: max(s.prime_length, 1)]
        else:
            key, prime = "bos", np.array([fam.BOS])
        ids = fam.sample(model, prime, length=s.length, context=saved.train.window, temperature=s.temperature,
                         top_k=s.top_k, top_p=s.top_p, generator=gen)
        full = np.concatenate([prime, ids])
        raw = fam.tokens_to_midi(full, vocab)
        name = f"sample_{i:02d}"
        atomic_write_bytes(out / f"{name}.mid", raw)
        pr = midi_pianoroll(raw)
        if pr is not None:
            save_pianoroll_png(out / f"{name}.png", pr[0], pr[1], title=f"{variant} {name} (prime: {key})")
        rows.append({"file": f"{name}.mid", "prime": key, "prime_tokens": int(len(prime)),
                     "generated_tokens": int(len(ids)), "tokens": [int(x) for x in full],
                     "generated_text": " ".join(vocab.strings(ids[:64]))})
    doc = {"variant": variant, "vocab": params.vocab, "vocab_hash": vocab.hash,
           "sample": dataclasses.asdict(s), "samples": rows}
    write_json(out / "samples.json", doc)
    return {"variant": variant, "samples": len(rows), "out": str(out),
            "generated_tokens": sum(r["generated_tokens"] for r in rows)}


# ---------------------------------------------------------------------------------------------
# evaluate


def _mean_metrics(items: list[dict]) -> dict:
    out = {}
    for k in ("UPC", "QN", "EB"):
        vals = [d[k] for d in items if d.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
    out["pieces"] = len(items)
    return out


def _roll_metrics(raw: bytes) -> dict | None:
    from pipeline.metrics.symbolic import all_metrics

    pr = midi_pianoroll(raw)
    if pr is None:
        return None
    return all_metrics(pr[0], pr[1], resolution=24)


def run_evaluate(*, vocab_dir: Path, out: Path, variant: str, params: Params, device: str = "cpu") -> dict:
    """Of the model in ``out`` (``<out>/evaluation.json`` + ``evaluation.md``): valid/test cross-entropy, perplexity and next-token accuracy, and UPC/QN/EB of the samples
    next to the same metrics of held-out songs (tokens -> the same decoder -> piano-roll)."""
    from pipeline.training import lstm as fam
    from pipeline.training.solver import batches, evaluate, seed_everything

    _check_variant(variant)
    vocab = _load_vocab(vocab_dir)
    model, saved = _load_best(params, variant, out, vocab, device)
    seed_everything(saved.train.seed, threads=saved.train.threads)
    t = saved.train
    shards = Path(vocab_dir) / "shards"
    splits = {}
    for split in ("valid", "test"):
        w = fam.make_windows(fam.song_sequences(shards, vocab, split), t.window, t.stride)
        ev = evaluate(model, batches(w, t.batch_size, limit=t.max_eval_windows), fam.loss_sums)
        splits[split] = {"cross_entropy": ev["loss"], "perplexity": ev["perplexity"],
                         "accuracy": ev["accuracy"], "tokens": ev["tokens"], "windows": int(len(w))}
    samples_doc_path = Path(out) / "samples" / "samples.json"
    sample_metrics = []
    sample_lengths = []
    if samples_doc_path.exists():
        sdoc = json.loads(samples_doc_path.read_text())
        for r in sdoc["samples"]:
            p = Path(out) / "samples" / r["file"]
            m = _roll_metrics(p.read_bytes()) if p.exists() else None
            sample_lengths.append(len(r["tokens"]))
            if m is not None:
                sample_metrics.append(m)
    cut = params.evaluate.data_tokens or (int(np.max(sample_lengths)) if sample_lengths else 0)
    data_metrics = []
    for _key, seq in _held_out(shards, vocab)[: params.evaluate.data_songs]:
        m = _roll_metrics(fam.tokens_to_midi(seq[:cut] if cut else seq, vocab))
        if m is not None:
            data_metrics.append(m)
    report = {"variant": variant, "vocab": params.vocab, "valid": splits["valid"], "test": splits["test"],
              "symbolic": {"samples": _mean_metrics(sample_metrics), "data": _mean_metrics(data_metrics),
                           "data_tokens": cut},
              "qn_min_steps": 3, "resolution": 24}
    out = Path(out)
    report["numerics"] = numerics.record()
    write_json(out / "evaluation.json", report)
    write_json(out / "scores.json", lstm_scores(report))
    atomic_write_bytes(out / "evaluation.md", markdown_report(report).encode())
    return report


def markdown_report(r: dict) -> str:
    from pipeline.training.solver import markdown_table

    sym = r["symbolic"]
    return "\n".join([
        f"# {r['variant']} on {r['vocab']}", "",
        markdown_table([(split, r[split]["cross_entropy"], r[split]["perplexity"], r[split]["accuracy"],
                         r[split]["tokens"]) for split in ("valid", "test")],
                       ["split", "cross-entropy (nats/token)", "perplexity", "next-token accuracy", "tokens"],
                       digits=(4, 4, 2, 4, 4)), "",
        markdown_table([(who, sym[who]["UPC"], sym[who]["QN"], sym[who]["EB"], sym[who]["pieces"])
                        for who in ("samples", "data")],
                       ["pieces", "UPC (pitch classes per non-empty bar)", "QN (notes >= 3 steps at 24/beat)",
                        "EB (empty bars)", "n"], digits=3), "",
        f"Data: held-out songs cut to {sym['data_tokens'] or 'all'} tokens, decoded like the samples.", ""])
