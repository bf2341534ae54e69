"""Stage report: one Markdown page (+ curve PNGs) over the data summaries and every model family.

``pipeline report`` reads what the other stages wrote under ``datasets/`` (summaries, each family's
``evaluation.md``, ``metrics.json`` curves and ``samples/``) and writes ``datasets/report/report.md``
with ``<family>_curves.png`` beside it. See :mod:`pipeline.report` for what it picks up.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import StageError
from pipeline.report import build_report


def run(*, datasets: Path, out: Path, images_per_part: int = 2, links_per_part: int = 8) -> dict:
    datasets = Path(datasets)
    if not datasets.is_dir():
        raise StageError(f"no datasets folder at {datasets}: run the data stages first (dvc repro)")
    if images_per_part < 0 or links_per_part < 0:
        raise StageError(f"images_per_part={images_per_part} and links_per_part={links_per_part} must be >= 0")
    return build_report(datasets, out, images_per_part=images_per_part, links_per_part=links_per_part)
