"""Published references per model family, and whether this run can be compared with them.

A reference names its source and the setting its numbers were measured in; :func:`verdict` reads
this run's setting from the family's own files and says why the two are not comparable. A
reference's numbers are shown only where the run is comparable; otherwise the page gives the
source and the reason, so no one reads a paper's number beside ours as a like-for-like comparison.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.metrics import musegan_reference


@dataclass(frozen=True)
class Reference:
    quantities: str  # what the source reports
    source: str  # citation
    url: str
    setting: str  # the setting the source's numbers come from


MUSEGAN = Reference(  # one source of the paper's reference: pipeline/metrics/musegan_reference.py
    "EB, UPC, QN, DP (per track), TD (per track pair), official definitions",
    f"{musegan_reference.SOURCE['citation']}: {musegan_reference.SOURCE['tables']}",
    musegan_reference.SOURCE["url"],
    musegan_reference.SETTING)
JUKEBOX = Reference(
    "VQ-VAE spectral convergence and codebook use per level; prior bits per token",
    "Dhariwal et al.: Jukebox: A Generative Model for Music, 2020",
    "https://arxiv.org/abs/2005.00341",
    "1.2 million songs at 44.1 kHz, hop lengths 8, 32 and 128, 2048 codes per level, "
    "priors of 1 to 5 billion parameters")
LSTM = Reference(
    "held-out cross-entropy of a note-level LSTM",
    "none published for this vocabulary (the music21 note/chord recipe)",
    "",
    "")

REFERENCES = {"musegan": MUSEGAN, "jukebox": JUKEBOX, "vqvae": JUKEBOX, "lstm": LSTM}


def load_doc(path: Path) -> dict:
    """A JSON object from ``path``; ``{}`` when it is missing, unreadable or not an object (the page
    shows what the stages wrote and leaves out what they did not)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _songs(datasets: Path) -> str:
    lpd = load_doc(datasets / "lpd" / "summary.json")
    return f"{lpd['songs']} songs" if "songs" in lpd else "this corpus"


def verdict(family: str, family_dir: Path, datasets: Path) -> tuple[str, str] | None:
    """``(this run's setting, 'comparable' or 'not comparable: why')`` for a family with a
    reference, else ``None``."""
    if family == "musegan":
        ev = load_doc(family_dir / "evaluation.json")
        spb = ev.get("steps_per_bar")
        phrases = (ev.get("data") or {}).get("phrases")
        ours = f"{phrases} phrases of {_songs(datasets)}, {spb} steps per bar"
        res = ev.get("resolution")
        if isinstance(res, dict) and res.get("official") != spb:
            ours += f" (held to {res.get('official')} for the official tables)"
        given = (ev.get("reference") or {}).get("not_comparable")
        if isinstance(given, list) and given:  # the evaluate stage's own reasons
            return ours, "not comparable: " + "; ".join(map(str, given))
        reasons = []
        if spb != 96:
            reasons.append(f"{spb} steps per bar (the paper: 96; QN and DP depend on the resolution)")
        reasons.append(f"trained on {_songs(datasets)}, not the paper's LPD-cleansed songs")
        return ours, "not comparable: " + "; ".join(reasons)
    if family in ("jukebox", "vqvae"):
        vq = load_doc(datasets / "models" / "jukebox" / "evaluation.json").get("vqvae") or {}
        cfg = load_doc(datasets / "models" / "vqvae" / "config.json")
        bins = vq.get("codebook_size") or (cfg.get("model_kwargs") or {}).get("codebook_size")
        hops = vq.get("hop_lengths") or cfg.get("hop_lengths")
        ours = f"SoundFont renders of {_songs(datasets)}, hop lengths {hops}, {bins} codes per level"
        reasons = []
        if bins != 2048:
            reasons.append(f"{bins} codes per level (the paper: 2048; bits per token are bounded by log2 of it)")
        reasons.append(f"{_songs(datasets)} of synthesised MIDI (the paper: 1.2 million recorded songs)")
        return ours, "not comparable: " + "; ".join(reasons)
    if family == "lstm":
        return "the notes vocabulary", "no published reference: compare the samples with the data rows"
    return None
