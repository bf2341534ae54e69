"""One Markdown page over everything the pipeline made: data summaries, and per model family and
variant the metrics against the training data, the loss curves, sample piano-rolls / spectrograms and
links to the sample MIDI and WAV files.

The report reads only files the stages already write, so it knows no family's internals:

- data: ``<datasets>/{lpd,phrases,audio}/summary.json`` and ``<datasets>/vocab/<kind>/summary.json``;
- models: every folder under ``<datasets>/models/`` is a family (``lstm``, ``musegan``, ``vqvae``,
  ``jukebox``, ...); inside it, the family folder itself and each sub-folder (one level down) that holds
  a ``metrics.json``, an ``evaluation.md`` or a ``samples/`` folder is a *part* (a variant, a level);
- a part's ``evaluation.md`` (the family's own table: model and training data side by side) is
  included with its headings demoted; its ``metrics.json`` (a list of per-step or per-epoch objects,
  the file ``dvc plots`` draws) goes into the family's curve figure, the report page's
  (``<out>/<family>_curves.png``, ``pipeline.reports.plots.curves``: one panel per quantity, a line per
  part); its samples' PNGs are embedded and its ``.mid`` / ``.wav`` files
  linked, with paths relative to the report so that the page works where it lies.

Nothing in the page depends on time or host, so the same outputs give the same bytes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.files import atomic_write_bytes

#: known families, in report order, with their titles; others follow in name order
FAMILIES = {
    "lstm": "LSTM note models",
    "musegan": "MuseGAN family",
    "vqvae": "Jukebox VQ-VAE",
    "jukebox": "Jukebox prior, upsamplers and samples",
}
SAMPLE_MEDIA = (".mid", ".midi", ".wav", ".flac")


@dataclass
class Part:
    name: str  # "" for the family folder itself
    path: Path
    evaluation: Path | None = None
    metrics: Path | None = None
    images: list[Path] = field(default_factory=list)
    media: list[Path] = field(default_factory=list)


def _samples(folder: Path) -> tuple[list[Path], list[Path]]:
    s = folder / "samples"
    if not s.is_dir():
        return [], []
    files = sorted(p for p in s.rglob("*") if p.is_file())
    return ([p for p in files if p.suffix.lower() == ".png"],
            [p for p in files if p.suffix.lower() in SAMPLE_MEDIA])


def find_parts(family_dir: Path) -> list[Part]:
    """The family folder and its direct sub-folders that hold an evaluation, curves or samples."""
    parts = []
    for folder in [family_dir, *sorted(p for p in family_dir.iterdir() if p.is_dir())]:
        if folder != family_dir and folder.name in ("samples", "checkpoints"):
            continue
        ev = folder / "evaluation.md"
        me = folder / "metrics.json"
        images, media = _samples(folder)
        if ev.is_file() or me.is_file() or images or media:
            parts.append(Part("" if folder == family_dir else folder.name, folder,
                              ev if ev.is_file() else None, me if me.is_file() else None, images, media))
    return parts


def plot_curves(parts: list[Part], path: Path, title: str) -> bool:
    """The family's training curves (the report page's figure: one panel per quantity, held-out
    dashed, log scale where values span decades); False when there is nothing to draw."""
    from pipeline.reports.plots import curves

    return curves(parts, path, title) is not None


def _demote(markdown: str, levels: int = 2) -> str:
    lines = []
    for line in markdown.rstrip().splitlines():
        if line.startswith("#"):
            line = "#" * levels + line
        lines.append(line)
    return "\n".join(lines)


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _data_section(root: Path, out: Path) -> list[str]:
    rows = []

    def load(p: Path) -> dict | None:
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    lpd = load(root / "lpd" / "summary.json")
    if lpd:
        s = lpd.get("status", {})
        rows.append(("build_lpd", lpd.get("files"), s, f"{lpd.get('songs')} songs, {lpd.get('bars')} bars"))
    for kind_dir in sorted((root / "vocab").glob("*/summary.json")) if (root / "vocab").is_dir() else []:
        v = load(kind_dir)
        if v:
            rows.append((f"build_vocab ({kind_dir.parent.name})", v.get("files"), v.get("status", {}),
                         f"{v.get('tokens')} tokens, {v.get('vocab_size')} ids"))
    audio = load(root / "audio" / "summary.json")
    if audio:
        rows.append(("render_audio", audio.get("files"), audio.get("status", {}),
                     f"{audio.get('clips')} clips, {audio.get('hours')} h"))
    phrases = load(root / "phrases" / "summary.json")
    if phrases:
        n = phrases.get("phrases", {})
        rows.append(("build_phrases", phrases.get("songs"), {},
                     f"{n.get('train')} train / {n.get('valid')} valid / {n.get('test')} test phrases"))
    if not rows:
        return []
    lines = ["## Data", "", "| stage | inputs | ok | recovered | skipped | error | made |", "|---|---|---|---|---|---|---|"]
    for name, files, s, made in rows:
        cells = [str(s.get(k, "")) for k in ("ok", "recovered", "skipped", "error")]
        lines.append(f"| {name} | {files} | " + " | ".join(cells) + f" | {made} |")
    return lines + [""]


def _family_order(models: Path) -> list[Path]:
    dirs = {p.name: p for p in models.iterdir() if p.is_dir()} if models.is_dir() else {}
    known = [dirs[k] for k in FAMILIES if k in dirs]
    return known + [dirs[k] for k in sorted(dirs) if k not in FAMILIES]


def build_report(datasets: Path, out: Path, *, images_per_part: int = 2, links_per_part: int = 8) -> dict:
    """Write ``<out>/report.md`` and ``<out>/<family>_curves.png``; returns a small summary."""
    shown_root = Path(datasets).as_posix()
    datasets = Path(datasets).resolve()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# lakh-pipeline report", "",
             f"Made by `pipeline report` from `{shown_root}`: the data each stage made, and for every "
             "model family and variant the metrics next to the training data's, the loss curves, sample "
             "piano-rolls or spectrograms, and links to the sample files. Paths are relative to this page.", ""]
    lines += _data_section(datasets, out)
    summary = {"families": {}}
    for fam in _family_order(datasets / "models"):
        parts = find_parts(fam)
        if not parts:
            continue
        lines += [f"## {FAMILIES.get(fam.name, fam.name)}", ""]
        curves = out / f"{fam.name}_curves.png"
        if plot_curves(parts, curves, FAMILIES.get(fam.name, fam.name)):
            lines += [f"![{fam.name} training curves]({curves.name})", ""]
        elif curves.exists():
            curves.unlink()
        for part in parts:
            evaluation = part.evaluation.read_text() if part.evaluation is not None else ""
            if part.name and not evaluation.startswith("#"):
                lines += [f"### {part.name}", ""]
            if evaluation:
                lines += [_demote(evaluation, 2 if part.name else 1), ""]
            shown = part.images[:images_per_part]
            if shown:
                lines += [" ".join(f"![{p.stem}]({_rel(p, out)})" for p in shown), ""]
            if part.media:
                links = [f"[{_rel(p, part.path / 'samples')}]({_rel(p, out)})" for p in part.media[:links_per_part]]
                more = len(part.media) - links_per_part
                lines += ["Samples: " + ", ".join(links) + (f" and {more} more" if more > 0 else ""), ""]
        summary["families"][fam.name] = {"parts": [p.name or fam.name for p in parts],
                                         "samples": sum(len(p.media) for p in parts)}
    text = "\n".join(lines).rstrip() + "\n"
    atomic_write_bytes(out / "report.md", text.encode())
    summary["report"] = str(out / "report.md")
    return summary
