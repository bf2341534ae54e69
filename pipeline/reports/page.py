"""``index.html``: the report as a web page that opens from disk, with no network and no script.

Beside the page, ``assets/`` holds everything it shows: the data figures (``assets/data/``), one
curve figure per model family (``assets/curves/``), copies of the sample pictures and one MP3 per
sample (``assets/samples/<family>/<part>/``). Links to the sample MIDI/WAV files themselves are
relative (``../models/...``), so they work inside the workspace.

Per model family: its published reference and whether this run is comparable with it
(:mod:`~pipeline.reports.references`), the training curves (one panel per quantity), the family's
own evaluation tables (its ``evaluation.md``, models beside the training data), and per variant its
samples: piano-roll or spectrogram, an ``<audio>`` player, the file. Run metadata: the pipeline
version, the params digest, the synthesiser and SoundFont, and each model's recorded settings.

Nothing depends on time or host beyond what the outputs record: the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline import __version__
from pipeline.files import atomic_write_bytes
from pipeline.report import FAMILIES, _family_order, find_parts
from pipeline.reports import media, plots, references

AUDIO_SUFFIXES = (".wav", ".flac")
MIDI_SUFFIXES = (".mid", ".midi")

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2329;background:#f6f7f9}
header{background:#1f3b57;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:24px}
header p{margin:0;opacity:.85}nav{margin-top:10px}nav a{color:#cfe3ff;margin-right:14px;text-decoration:none}
main{max-width:1280px;margin:0 auto;padding:8px 32px 48px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:8px 22px 18px;margin:18px 0}
h2{font-size:21px;border-bottom:2px solid #1f3b57;padding-bottom:4px}h3{font-size:17px;margin-top:22px}h4{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}th,td{border:1px solid #d5d9de;padding:3px 8px;text-align:right}
th{background:#eef1f4}td:first-child,th:first-child{text-align:left}tr.data td{background:#fff8e1;font-weight:600}
table.meta td,table.ref td{text-align:left}code{background:#eef1f4;padding:0 3px;border-radius:3px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:14px}
figure{margin:0}figure img{max-width:100%;border:1px solid #e3e6ea}figcaption{font-size:12.5px;color:#555}
.curves img{max-width:100%}
.samples{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
.sample{border:1px solid #e3e6ea;border-radius:6px;padding:8px;background:#fbfcfd}
.sample img{width:100%;display:block}.sample audio{width:100%;margin-top:6px}.sample .name{font-size:13px;font-weight:600}
.row{display:flex;flex-wrap:wrap;gap:4px 22px;align-items:flex-start}.row h6{font-size:13.5px;margin:8px 0 2px}
.bad{color:#a33}.ok{color:#2a7a3b}.muted{color:#666;font-size:13px}
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _inline(text: str) -> str:
    out = []
    for i, piece in enumerate(re.split(r"`([^`]*)`", text)):
        out.append(f"<code>{_e(piece)}</code>" if i % 2 else _e(piece))
    s = "".join(out)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)


def markdown_html(text: str, *, demote: int = 0) -> str:
    """The Markdown the stages write (headings, pipe tables, paragraphs, lists) as HTML."""
    out: list[str] = []
    lines = text.rstrip().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
            continue
        if line.startswith("#"):
            level = min(6, len(line) - len(line.lstrip("#")) + demote)
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            body = [r for r in rows[1:] if not all(re.fullmatch(r":?-+:?", c) for c in r)]
            t = ["<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0]) + "</tr></thead><tbody>"]
            for r in body:
                cls = ' class="data"' if r and r[0].lower() in ("data", "training data") else ""
                t.append(f"<tr{cls}>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>")
            out.append("".join(t) + "</tbody></table>")
        elif re.match(r"^\s*[-*] ", line):
            items = []
            while i < len(lines) and re.match(r"^\s*[-*] ", lines[i]):
                items.append(f"<li>{_inline(lines[i].strip()[2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith("#") \
                    and not lines[i].lstrip().startswith("|"):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(_side_by_side(out))


def _side_by_side(chunks: list[str]) -> list[str]:
    """Runs of (deepest heading, table) pairs side by side: MuseGAN's one table per metric fit a row."""
    levels = [int(c[2]) for c in chunks if re.match(r"<h[1-6]>", c)]
    if not levels or max(levels) < 5:
        return chunks
    deepest = f"<h{max(levels)}>"
    out: list[str] = []
    row: list[str] = []
    i = 0
    while i < len(chunks):
        if chunks[i].startswith(deepest) and i + 1 < len(chunks) and chunks[i + 1].startswith("<table>"):
            row.append(f'<div class="cell">{chunks[i]}{chunks[i + 1]}</div>')
            i += 2
            continue
        if row:
            out.append('<div class="row">' + "".join(row) + "</div>")
            row = []
        out.append(chunks[i])
        i += 1
    if row:
        out.append('<div class="row">' + "".join(row) + "</div>")
    return out


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


@dataclass
class Render:
    """How MIDI samples are heard: FluidSynth settings (``pipeline.audio.render.SynthSettings``)
    and ``render_audio``'s trimming rule."""

    settings: object
    release_tail: float
    silence_db: float


def params_digest(params: dict | None) -> str:
    if not params:
        return "-"
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _meta_table(rows: list[tuple[str, str]]) -> str:
    return '<table class="meta"><tbody>' + "".join(
        f"<tr><td>{_e(k)}</td><td>{v}</td></tr>" for k, v in rows) + "</tbody></table>"


def _model_meta(datasets: Path) -> list[tuple[str, str]]:
    rows = []
    models = datasets / "models"
    for fam in _family_order(models):
        for tj in sorted(fam.rglob("train.json")):
            if "checkpoints" in tj.parts or "samples" in tj.parts:
                continue
            doc = references.load_doc(tj)
            bits = []
            for key in ("steps_run", "epochs_run", "best_step", "digest", "vocab", "variant", "level", "context"):
                if key in doc and not isinstance(doc[key], (dict, list)):
                    bits.append(f"{key} {doc[key]}")
            if isinstance(doc.get("parameters"), dict):
                bits.append("parameters " + ", ".join(f"{k} {v:,}" for k, v in doc["parameters"].items()
                                                       if isinstance(v, int)))
            elif isinstance(doc.get("parameters"), int):
                bits.append(f"parameters {doc['parameters']:,}")
            num = doc.get("numerics") or {}
            if num:
                bits.append(f"numerics {num.get('level')}{' pinned' if num.get('pinned') else ''}")
            rows.append((_rel(tj.parent, models), _e("; ".join(bits) or "-")))
    return rows


def _figure(src: str, caption: str, alt: str) -> str:
    return (f'<figure><a href="{_e(src)}"><img src="{_e(src)}" alt="{_e(alt)}" loading="eager"></a>'
            f"<figcaption>{_inline(caption)}</figcaption></figure>")


def _samples(part, fam: str, out: Path, assets: Path, render: Render | None) -> tuple[str, int, int]:
    """The part's sample cards; returns (html, players, media files without a player)."""
    folder = part.path / "samples"
    images = {p.with_suffix(""): p for p in part.images}
    dest = assets / "samples" / fam / (part.name or fam)
    cards, players, silent = [], 0, 0
    keys = sorted({p.with_suffix("") for p in part.media} | set(images))
    media_by_key = {p.with_suffix(""): p for p in part.media}
    for key in keys:
        name = _rel(key, folder)
        flat = name.replace("/", "_")
        body = [f'<div class="name">{_e(name)}</div>']
        if key in images:
            img = dest / (flat + ".png")
            img.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(images[key], img)
            body.append(f'<a href="{_e(_rel(img, out))}"><img src="{_e(_rel(img, out))}" alt="{_e(fam)} {_e(name)}"></a>')
        src = media_by_key.get(key)
        if src is not None:
            mp3 = dest / (flat + media.SUFFIX)
            mp3.parent.mkdir(parents=True, exist_ok=True)
            if src.suffix.lower() in AUDIO_SUFFIXES:
                audio, rate = media.read_audio(src)
                media.encode(audio, rate, mp3)
            elif render is not None:
                media.encode(media.render(src, render.settings, release_tail=render.release_tail,
                                          silence_db=render.silence_db), render.settings.sample_rate, mp3)
            else:
                mp3 = None
            if mp3 is not None:
                players += 1
                body.append(f'<audio controls preload="metadata" src="{_e(_rel(mp3, out))}" '
                            f'type="{media.MIME}"></audio>')
            else:
                silent += 1
                body.append('<div class="muted">not rendered (no synthesiser settings given)</div>')
            body.append(f'<div class="muted"><a href="{_e(_rel(src, out))}">{_e(src.name)}</a></div>')
        cards.append('<div class="sample">' + "".join(body) + "</div>")
    if not cards:
        return "", 0, 0
    return '<div class="samples">' + "\n".join(cards) + "</div>", players, silent


def _reference(fam: str, fam_dir: Path, datasets: Path) -> str:
    ref = references.REFERENCES.get(fam)
    v = references.verdict(fam, fam_dir, datasets)
    if ref is None or v is None:
        return ""
    ours, judgement = v
    cls = "ok" if judgement == "comparable" else "bad"
    src = f'<a href="{_e(ref.url)}">{_e(ref.source)}</a>' if ref.url else _e(ref.source)
    rows = [("reported there", _e(ref.quantities)), ("source", src)]
    if ref.setting:
        rows.append(("its setting", _e(ref.setting)))
    rows += [("this run", _e(ours)), ("comparison", f'<span class="{cls}">{_e(judgement)}</span>')]
    note = ("" if judgement == "comparable" or not ref.url else
            '<p class="muted">The source\'s numbers are left out: beside these they would read as a '
            "like-for-like comparison. The tables below compare the models with this run's own training data "
            "(highlighted rows).</p>")
    return "<h3>Reference</h3>" + _meta_table(rows).replace('class="meta"', 'class="ref"') + note


def build_page(datasets: Path, out: Path, *, render: Render | None = None, params: dict | None = None) -> dict:
    """Write ``<out>/index.html`` and ``<out>/assets/``; returns ``{"page", "players", "images"}``."""
    shown_root = Path(datasets).as_posix()
    datasets = Path(datasets).resolve()
    out = Path(out).resolve()
    assets = out / "assets"
    if assets.exists():
        shutil.rmtree(assets)  # nothing stale: the folder holds only this run's files
    assets.mkdir(parents=True)

    figs = plots.data_figures(datasets, assets / "data")
    stats = {"players": 0, "silent": 0}
    nav = [("data", "Data")]
    sections: list[str] = []

    data_html = ["<section id=\"data\"><h2>Data</h2>"]
    rows = plots.status_rows(datasets)
    summary_md = "\n".join(_data_markdown(datasets))
    if summary_md:
        data_html.append(markdown_html(summary_md.replace("## Data\n", "", 1)))
    if figs:
        data_html.append('<div class="grid">' + "\n".join(
            _figure(_rel(assets / "data" / f, out), cap, f) for f, cap in figs) + "</div>")
    elif not rows:
        data_html.append('<p class="muted">No data stage has written a summary yet.</p>')
    data_html.append("</section>")
    sections.append("\n".join(data_html))

    for fam_dir in _family_order(datasets / "models"):
        parts = find_parts(fam_dir)
        if not parts:
            continue
        fam = fam_dir.name
        title = FAMILIES.get(fam, fam)
        nav.append((f"family-{_slug(fam)}", title))
        body = [f'<section id="family-{_slug(fam)}"><h2>{_e(title)}</h2>', _reference(fam, fam_dir, datasets)]
        curve = assets / "curves" / f"{fam}.png"
        curve.parent.mkdir(parents=True, exist_ok=True)
        drawn = plots.curves(parts, curve, title)
        if drawn is not None:
            xlabel, held_out = drawn
            body.append('<h3>Training curves</h3><figure class="curves">'
                        f'<img src="{_e(_rel(curve, out))}" alt="{_e(fam)} training curves">'
                        f"<figcaption>One panel per quantity of the <code>metrics.json</code> files against "
                        f"{_e(xlabel)}{'; dashed: held-out values' if held_out else ''}; a log axis where the "
                        "values span two decades.</figcaption></figure>")
        for part in parts:
            evaluation = part.evaluation.read_text() if part.evaluation is not None else ""
            sample_html, players, silent = _samples(part, fam, out, assets, render)
            stats["players"] += players
            stats["silent"] += silent
            if not evaluation and not sample_html:
                continue
            if part.name and not evaluation.startswith("#"):
                body.append(f"<h3>{_e(part.name)}</h3>")
            if evaluation:
                body.append(markdown_html(evaluation, demote=2))
            if sample_html:
                body.append(f"<h4>Samples ({_e(part.name or fam)})</h4>" + sample_html)
        body.append("</section>")
        sections.append("\n".join(b for b in body if b))

    synth = "-"
    if render is not None:
        s = render.settings
        synth = (f"{_e(s.synth)}, SoundFont {_e(s.soundfont)} (sha256 {_e(s.soundfont_sha256[:16])}), "
                 f"{s.sample_rate} Hz, gain {s.gain}, reverb {'on' if s.reverb else 'off'}, "
                 f"chorus {'on' if s.chorus else 'off'}; players: mono MP3 at {media.RATE} Hz")
    run = [("pipeline version", _e(__version__)), ("params digest", f"<code>{params_digest(params)}</code> "
           "(sha256 of the params file's sections)"), ("workspace", f"<code>{_e(shown_root)}</code>"),
           ("MIDI samples heard through", synth), *_model_meta(datasets)]
    run_html = ('<section id="run"><h2>Run</h2>' + _meta_table(run) + "</section>")

    page = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>lakh-pipeline report</title>", f"<style>{CSS.strip()}</style></head><body>",
            "<header><h1>lakh-pipeline report</h1><p>The data each stage made and, per model family, the "
            "training curves, the evaluation beside the training data and the published reference, and every "
            "sample to look at and listen to.</p><nav>"
            + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in [*nav, ("run", "Run")]) + "</nav></header><main>",
            *sections, run_html, "</main></body></html>", ""]
    atomic_write_bytes(out / "index.html", "\n".join(page).encode())
    return {"page": str(out / "index.html"), "players": stats["players"], "not_rendered": stats["silent"],
            "figures": len(figs)}


def _data_markdown(datasets: Path) -> list[str]:
    from pipeline.report import _data_section

    return _data_section(datasets, datasets)
