"""The `pipeline` command: one thin command per stage over plain functions.

Heavy modules are imported inside the commands so that `pipeline --help` stays fast.
Expected failures (PipelineError) print one line and exit 1; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.errors import PipelineError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Lakh MIDI to training-ready shards, and the models that use them.",
)

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read the stage's section from.")]


@app.command()
def corpus(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("datasets/corpus"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Make the built-in corpus: music21 works exported to MIDI and seeded band arrangements."""
    from pipeline.config import load_section
    from stages import corpus as stage

    summary = stage.run(out=out, params=load_section(stage.Params, "corpus", params))
    typer.echo(summary)


@app.command("build-lpd")
def build_lpd(
    source: Annotated[Path, typer.Argument(help="A Lakh folder (lmd_full, lmd_matched, clean_midi...), any folder of .mid/.midi/.rmi files, or a .tar.gz of them.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("datasets/lpd"),
    workers: Annotated[int, typer.Option(envvar="PIPELINE_WORKERS", help="Local worker processes (0: one per core, 1: in this process).")] = 0,
    scheduler: Annotated[Optional[str], typer.Option(envvar="DASK_SCHEDULER_ADDRESS", help="Address of a running dask.distributed scheduler.")] = None,
    match_scores: Annotated[Optional[Path], typer.Option(help="LMD's match_scores.json: marks LPD's matched and cleansed subsets.")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Convert Lakh MIDI into LPD-style piano-rolls and 5-D tensors."""
    from pipeline.config import load_section
    from stages import build_lpd as stage

    summary = stage.run(source=source, out=out, params=load_section(stage.Params, "build_lpd", params),
                        workers=workers, scheduler=scheduler, match_scores=match_scores)
    s = summary["status"]
    typer.echo(f"{summary['files']} files: {s['ok']} ok, {s['recovered']} recovered, {s['skipped']} skipped, "
               f"{s['error']} errors -> {summary['songs']} songs, {summary['bars']} bars in {out}")
    if summary["codes"].get("internal.bug"):
        typer.echo(f"error: {summary['codes']['internal.bug']} file(s) hit a bug (code internal.bug in the manifest)", err=True)
        raise typer.Exit(3)


def _audio_summary(summary: dict, out: Path) -> None:
    s = summary["status"]
    typer.echo(f"{summary['files']} files: {s['ok']} ok, {s['recovered']} recovered, {s['skipped']} skipped, "
               f"{s['error']} errors -> {summary['songs']} songs, {summary['clips']} clips, "
               f"{summary['hours']} h of audio in {out}")
    if summary["codes"].get("internal.bug"):
        typer.echo(f"error: {summary['codes']['internal.bug']} file(s) hit a bug (code internal.bug in the manifest)", err=True)
        raise typer.Exit(3)


@app.command("render-audio")
def render_audio(
    source: Annotated[Path, typer.Argument(help="A Lakh folder, any folder of .mid/.midi/.rmi files, or a .tar.gz of them.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("datasets/audio"),
    workers: Annotated[int, typer.Option(envvar="PIPELINE_WORKERS", help="Local worker processes (0: one per core, 1: in this process).")] = 0,
    scheduler: Annotated[Optional[str], typer.Option(envvar="DASK_SCHEDULER_ADDRESS", help="Address of a running dask.distributed scheduler.")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Render MIDI to 44.1 kHz audio clips with FluidSynth (Parquet in the HF Audio layout + NPZ)."""
    from pipeline.config import load_section
    from stages import render_audio as stage

    summary = stage.run(source=source, out=out, params=load_section(stage.Params, "render_audio", params),
                        workers=workers, scheduler=scheduler)
    _audio_summary(summary, out)


@app.command("ingest-audio")
def ingest_audio(
    folder: Annotated[Path, typer.Argument(help="A folder of WAV/FLAC/MP3 files (any sample rate).")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("datasets/audio_ingest"),
    workers: Annotated[int, typer.Option(envvar="PIPELINE_WORKERS", help="Local worker processes (0: one per core, 1: in this process).")] = 0,
    scheduler: Annotated[Optional[str], typer.Option(envvar="DASK_SCHEDULER_ADDRESS", help="Address of a running dask.distributed scheduler.")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Resample existing recordings to 44.1 kHz, downmix and write them as render-audio's shards."""
    from pipeline.config import load_section
    from stages import ingest_audio as stage

    summary = stage.run(source=folder, out=out, params=load_section(stage.Params, "ingest_audio", params),
                        workers=workers, scheduler=scheduler)
    _audio_summary(summary, out)


@app.command("build-vocab")
def build_vocab(
    source: Annotated[Path, typer.Argument(help="A folder of .mid/.midi/.rmi files (any Lakh layout).")],
    kind: Annotated[str, typer.Option(help="Vocabulary: notes (the music21 recipe), remi or midilike.")] = "remi",
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default datasets/vocab/<kind>).")] = None,
    workers: Annotated[int, typer.Option(envvar="PIPELINE_WORKERS", help="Local worker processes (0: one per core, 1: in this process).")] = 0,
    scheduler: Annotated[Optional[str], typer.Option(envvar="DASK_SCHEDULER_ADDRESS", help="Address of a running dask.distributed scheduler.")] = None,
    vocab: Annotated[Optional[Path], typer.Option(help="Apply this existing vocab.json instead of building one (unknown tokens -> UNK).")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Build a token vocabulary (vocab.json) and token shards (Parquet) for one vocabulary kind."""
    from pipeline.config import load_section
    from pipeline.errors import ParamsError
    from stages import build_vocab as stage

    if kind not in stage.KINDS:
        raise ParamsError(f"--kind={kind!r} must be one of {', '.join(stage.KINDS)}")
    out = out if out is not None else Path("datasets/vocab") / kind
    summary = stage.run(source=source, out=out, kind=kind, params=load_section(stage.Params, "build_vocab", params),
                        workers=workers, scheduler=scheduler, vocab_path=vocab)
    s = summary["status"]
    typer.echo(f"{summary['files']} files: {s['ok']} ok, {s['recovered']} recovered, {s['skipped']} skipped, "
               f"{s['error']} errors -> {summary['songs']} songs, {summary['tokens']} tokens, "
               f"{summary['vocab_size']} ids ({kind}) in {out}")
    if summary["codes"].get("internal.bug"):
        typer.echo(f"error: {summary['codes']['internal.bug']} file(s) hit a bug (code internal.bug in the manifest)", err=True)
        raise typer.Exit(3)


train_app = typer.Typer(no_args_is_help=True, help="Train a model family on the prepared shards.")
sample_app = typer.Typer(no_args_is_help=True, help="Sample from a trained model family.")
evaluate_app = typer.Typer(no_args_is_help=True, help="Evaluate a trained model family and its samples.")
app.add_typer(train_app, name="train")
app.add_typer(sample_app, name="sample")
app.add_typer(evaluate_app, name="evaluate")

LstmVariant = Annotated[str, typer.Option(help="lstm (stacked LSTM) or lstm_attention (+ attention over the window).")]
LstmVocabDir = Annotated[Optional[Path], typer.Option("--vocab-dir", help="Token shards folder (default datasets/vocab/<lstm.vocab>).")]
LstmModels = Annotated[Path, typer.Option("--models", help="Models folder; this family writes <models>/lstm/<variant>.")]


def _lstm_setup(params: Path, vocab_dir: Optional[Path], models: Path, variant: str):
    from pipeline.config import load_section
    from stages import lstm as stage

    p = load_section(stage.Params, "lstm", params)
    return stage, p, (vocab_dir if vocab_dir is not None else Path("datasets/vocab") / p.vocab), models / "lstm" / variant


DeviceOpt = Annotated[str, typer.Option(envvar="PIPELINE_DEVICE", help="torch device: cpu, cuda or cuda:N (not a param: it changes no result on CPU).")]


@train_app.command("lstm")
def train_lstm(variant: LstmVariant = "lstm", vocab_dir: LstmVocabDir = None, models: LstmModels = Path("datasets/models"),
               fresh: Annotated[bool, typer.Option("--fresh", help="Ignore checkpoints and start again.")] = False,
               device: DeviceOpt = "cpu", params: ParamsOpt = Path("params.yaml")) -> None:
    """Train an LSTM next-token model (resumes from its last checkpoint)."""
    stage, p, vd, out = _lstm_setup(params, vocab_dir, models, variant)
    s = stage.run_train(vocab_dir=vd, out=out, variant=variant, params=p, resume=not fresh, log=typer.echo,
                        device=device)
    typer.echo(f"{variant}: {s['epochs_run']} epochs ({s['train_windows']} train / {s['valid_windows']} valid windows), "
               f"best {s['valid_source']} loss {s['best_loss']} at epoch {s['best_epoch']}, {s['seconds']} s -> {out}")


@sample_app.command("lstm")
def sample_lstm(variant: LstmVariant = "lstm", vocab_dir: LstmVocabDir = None, models: LstmModels = Path("datasets/models"),
                device: DeviceOpt = "cpu", params: ParamsOpt = Path("params.yaml")) -> None:
    """Sample MIDI files (and piano-roll PNGs) from a trained LSTM model."""
    stage, p, vd, out = _lstm_setup(params, vocab_dir, models, variant)
    s = stage.run_sample(vocab_dir=vd, model_dir=out, variant=variant, params=p, device=device)
    typer.echo(f"{variant}: {s['samples']} samples, {s['generated_tokens']} tokens -> {s['out']}")


@evaluate_app.command("lstm")
def evaluate_lstm(variant: LstmVariant = "lstm", vocab_dir: LstmVocabDir = None, models: LstmModels = Path("datasets/models"),
                  device: DeviceOpt = "cpu", params: ParamsOpt = Path("params.yaml")) -> None:
    """Cross-entropy, perplexity, accuracy and UPC/QN/EB of an LSTM model (JSON + Markdown report)."""
    stage, p, vd, out = _lstm_setup(params, vocab_dir, models, variant)
    r = stage.run_evaluate(vocab_dir=vd, model_dir=out, variant=variant, params=p, device=device)
    typer.echo(f"{variant}: valid ce {r['valid']['cross_entropy']}, test ce {r['test']['cross_entropy']} -> "
               f"{out / 'evaluation.json'}")


@app.command("build-phrases")
def build_phrases(
    lpd: Annotated[Path, typer.Option(help="build-lpd's output folder (reads its tensors/).")] = Path("datasets/lpd"),
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("datasets/phrases"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Cut LPD-5 tensors into binarised 4-bar phrases (MuseGAN's NPZ format + Parquet shards)."""
    from pipeline.config import load_section
    from stages import build_phrases as stage

    summary = stage.run(lpd=lpd, out=out, params=load_section(stage.Params, "build_phrases", params))
    n = summary["phrases"]
    typer.echo(f"{summary['songs']} songs, {summary['candidates']} candidates -> {n['train']} train, "
               f"{n['valid']} valid, {n['test']} test phrases in {out}")


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="A shard, manifest, song NPZ or output folder.")],
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw a piano-roll or spectrogram PNG here.")] = None,
) -> None:
    """Print what a shard, manifest or song file holds (counts, shapes, statuses, sizes)."""
    from pipeline import inspection

    for line in inspection.describe(path):
        typer.echo(line)
    if plot is not None:
        typer.echo(f"wrote {inspection.plot(path, plot)}")


def main() -> None:
    try:
        app()
    except PipelineError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
