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


def main() -> None:
    try:
        app()
    except PipelineError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
