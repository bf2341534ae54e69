"""Stage report: the report page (``index.html`` + ``assets/``) and the Markdown page (+ curve PNGs)
over the data summaries and manifests and every model family.

``pipeline report`` reads what the other stages wrote under ``datasets/`` (summaries, manifests, the
LPD tensors, each family's ``evaluation.md``, ``metrics.json`` curves and ``samples/``) and writes
into ``datasets/report``: ``report.md`` with ``<family>_curves.png`` beside it (see
:mod:`pipeline.report`), and ``index.html`` with its ``assets/`` folder, where every sample has an
``<audio>`` player, the MIDI ones rendered with ``render_audio``'s FluidSynth settings (see
:mod:`pipeline.reports.page`).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import StageError
from pipeline.report import build_report
from pipeline.reports.page import Render, build_page

#: the ``render_audio`` keys the page's MIDI players use
RENDER_KEYS = ("soundfont", "sample_rate", "gain", "reverb", "chorus", "period_size", "polyphony",
               "release_tail", "silence_db")


def run(*, datasets: Path, out: Path, images_per_part: int = 2, links_per_part: int = 8,
        render: dict | None = None, params: dict | None = None) -> dict:
    """``render``: the ``render_audio`` params section (the :data:`RENDER_KEYS` are used) for the
    MIDI samples' players (``None``: MIDI samples get no player); ``params``: the whole params file,
    for the page's digest."""
    datasets = Path(datasets)
    if not datasets.is_dir():
        raise StageError(f"no datasets folder at {datasets}: run the data stages first (dvc repro)")
    if images_per_part < 0 or links_per_part < 0:
        raise StageError(f"images_per_part={images_per_part} and links_per_part={links_per_part} must be >= 0")
    synth = None
    if render is not None:
        from pipeline.audio.render import make_settings

        missing = [k for k in RENDER_KEYS if k not in render]
        if missing:
            raise StageError(f"render_audio section: missing {', '.join(missing)} (the report renders MIDI samples with it)")

        settings = make_settings(**{k: render[k] for k in RENDER_KEYS[:7]})
        synth = Render(settings, float(render["release_tail"]), float(render["silence_db"]))
    summary = build_report(datasets, out, images_per_part=images_per_part, links_per_part=links_per_part)
    summary.update(build_page(datasets, out, render=synth, params=params))
    return summary
