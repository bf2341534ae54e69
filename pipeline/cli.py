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


def main() -> None:
    try:
        app()
    except PipelineError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
