"""The published MuseGAN reference: source, setting and (where found) the training-data rows.

One place for the paper's reference values, read by the evaluate_musegan stage (``evaluation.json``
and ``evaluation.md``) and by the report page (``pipeline.reports.references``).

``TRAINING_DATA`` is meant to hold the "training data" rows of Tables 1 and 2 of Dong et al. (2018),
keyed like :func:`pipeline.metrics.musegan.compute_metrics` (``{"EB": {track: v}, ..., "TD":
{"A-B": v}}``), copied from a named version of the paper. It is ``None``: the numbers were not
found in a source text that could be read when this file was written (searched: renderings of the
arXiv text and the official repository salu133445/musegan, whose ``docs/pdf`` holds the paper only
as a PDF). Numbers typed from memory are not accepted here; add them with ``SOURCE["version"]``
naming the paper version and table they come from.
"""

from __future__ import annotations

SOURCE = {
    "citation": "Dong, Hsiao, Yang, Yang: MuseGAN: Multi-track Sequential Generative Adversarial Networks "
                "for Symbolic Music Generation and Accompaniment, AAAI 2018",
    "url": "https://arxiv.org/abs/1709.06298",
    "tables": "Table 1 (EB, UPC, QN, DP per track) and Table 2 (TD per track pair), rows 'training data'",
    "version": None,  # the arXiv version / proceedings the values were copied from (none yet)
    "definition": "official",  # the v1 code's metrics (pipeline.metrics.musegan, definition='official')
    "steps_per_bar": 96,
}

#: what the paper's numbers were measured on
SETTING = ("LPD-cleansed (a cleansed subset of the Lakh Pianoroll Dataset), 4-bar phrases at 96 steps per "
           "bar, 84 pitches, 5 tracks; the official layer sizes (v1/config.py: batch 64, Adam 2e-4, 20 epochs)")

#: the training-data rows, or None where no source text was found (see the module docstring)
TRAINING_DATA: dict | None = None

MISSING = ("the paper's training-data values are not stored: they were not found in a readable source "
           "text (see pipeline/metrics/musegan_reference.py)")


def reference() -> dict:
    """The reference as JSON-ready data: source, setting, values (None where not stored)."""
    doc = {**SOURCE, "setting": SETTING, "training_data": TRAINING_DATA}
    if TRAINING_DATA is None:
        doc["missing"] = MISSING
    return doc
