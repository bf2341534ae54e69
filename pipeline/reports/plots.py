"""The page's figures: data plots from the manifests, training curves per model family.

One PNG per quantity (a data figure) or one panel per quantity (a family's curves), labelled
axes, a log axis where the values span two decades or more. Each function returns the figures it
wrote as ``(file name, caption)``; a quantity with no data is left out. Cheap at any scale: the
manifests are read column by column, the pitch histograms stop after :data:`PITCH_CELLS` cells.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.figures import PITCH_CLASSES, save

FAMILY_COLUMNS = ("drums", "piano", "guitar", "bass", "strings")
#: the pitch histograms read the tensor shards' cells until they have this many
PITCH_CELLS = 20_000_000
X_KEYS = ("step", "epoch", "iteration")
STATUSES = (("ok", "#4c9f70"), ("recovered", "#e0b000"), ("skipped", "#999999"), ("error", "#c0392b"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def spans_decades(values) -> bool:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    return len(v) > 1 and bool((v > 0).all()) and v.max() / v.min() >= 100


def _manifest(path: Path, columns: list[str]) -> dict[str, list] | None:
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    names = set(pq.read_schema(path).names)
    cols = [c for c in columns if c in names]
    if "status" not in names:
        return pq.read_table(path, columns=cols).to_pydict()
    table = pq.read_table(path, columns=sorted(set(cols) | {"status"})).to_pydict()
    keep = [i for i, s in enumerate(table["status"]) if s in ("ok", "recovered")]
    return {k: [v[i] for i in keep] for k, v in table.items()}


def _fig(w: float = 4.6, h: float = 3.0):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(w, h))
    return fig, ax


def _finish(fig, ax, path: Path, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, linewidth=0.5)
    fig.tight_layout()
    save(fig, path, dpi=90)


def _hist(values, path: Path, *, title: str, xlabel: str, bins: int = 30) -> bool:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if not len(v):
        return False
    fig, ax = _fig()
    if spans_decades(v):
        edges = np.geomspace(v.min(), v.max(), bins + 1)
        ax.set_xscale("log")
        xlabel += " (log scale)"
    else:
        edges = bins
    ax.hist(v, bins=edges, color="#3b6ea5", edgecolor="white", linewidth=0.4)
    ax.axvline(float(np.median(v)), color="#c0392b", linewidth=1, label=f"median {np.median(v):.4g}")
    ax.legend(fontsize=7)
    _finish(fig, ax, path, title, xlabel, "songs")
    return True


def status_rows(datasets: Path) -> list[tuple[str, dict]]:
    rows = []
    for name, p in [("build_lpd", datasets / "lpd" / "summary.json"),
                    *((f"build_vocab ({q.parent.name})", q) for q in sorted((datasets / "vocab").glob("*/summary.json"))),
                    ("render_audio", datasets / "audio" / "summary.json")]:
        try:
            s = json.loads(p.read_text()).get("status") or {}
        except (OSError, ValueError):
            continue
        rows.append((name, s))
    return rows


def data_figures(datasets: Path, out: Path) -> list[tuple[str, str]]:
    """The data figures, written to ``out/`` (a folder); returns ``[(file name, caption), ...]``."""
    out.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, str]] = []
    plt = _plt()

    rows = status_rows(datasets)
    if rows:
        fig, ax = _fig(4.6, max(1.8, 0.8 + 0.35 * len(rows)))
        names = [r[0] for r in rows][::-1]
        left = np.zeros(len(rows))
        for status, color in STATUSES:
            counts = np.array([r[1].get(status, 0) for r in rows][::-1], dtype=float)
            ax.barh(names, counts, left=left, color=color, label=status)
            left += counts
        ax.legend(fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
        _finish(fig, ax, out / "status.png", "", "input files", "")
        made.append(("status.png", "Input files per stage and status (manifest summaries)."))

    lpd = _manifest(datasets / "lpd" / "manifest.parquet",
                    ["n_bars", "duration", "tempo_min", "tempo_max", "time_signatures",
                     *(f"notes_{f}" for f in FAMILY_COLUMNS)])
    if lpd:
        if _hist(lpd.get("n_bars", []), out / "song_bars.png", title="Song length", xlabel="bars"):
            made.append(("song_bars.png", "Bars per song (build_lpd manifest)."))
        if _hist(lpd.get("duration", []), out / "song_seconds.png", title="Song duration", xlabel="seconds"):
            made.append(("song_seconds.png", "Duration per song in seconds (build_lpd manifest)."))
        tmin = [t for t in lpd.get("tempo_min", []) if t]
        tmax = [t for t in lpd.get("tempo_max", []) if t]
        if tmin:
            fig, ax = _fig()
            lo, hi = min(tmin + tmax), max(tmin + tmax)
            edges = np.linspace(lo, hi + 1e-9, 31)
            ax.hist(tmin, bins=edges, alpha=0.6, label="slowest tempo of the song", color="#3b6ea5")
            ax.hist(tmax, bins=edges, alpha=0.6, label="fastest tempo of the song", color="#e08a2c")
            ax.legend(fontsize=7)
            _finish(fig, ax, out / "tempo.png", "Tempo", "tempo (BPM)", "songs")
            made.append(("tempo.png", "Slowest and fastest tempo per song (build_lpd manifest)."))
        meters = Counter(m for ms in lpd.get("time_signatures", []) for m in set(ms or []))
        if meters:
            top = sorted(meters.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
            fig, ax = _fig()
            ax.bar([k for k, _ in top], [v for _, v in top], color="#3b6ea5")
            ax.tick_params(axis="x", rotation=45)
            _finish(fig, ax, out / "meter.png", "Meter", "time signature", "songs using it")
            made.append(("meter.png", "Songs per time signature (a song with two meters counts twice; build_lpd manifest)."))
        notes = {f: [n for n in lpd.get(f"notes_{f}", []) if n] for f in FAMILY_COLUMNS}
        notes = {f: v for f, v in notes.items() if v}
        if notes:
            fig, ax = _fig()
            ax.boxplot(list(notes.values()), showfliers=True, flierprops={"markersize": 2})
            ax.set_xticks(range(1, len(notes) + 1), [f"{f}\n({len(v)} songs)" for f, v in notes.items()])
            log = spans_decades([x for v in notes.values() for x in v])
            if log:
                ax.set_yscale("log")
            _finish(fig, ax, out / "notes_per_family.png", "Notes per track family",
                    "track family (songs that have it)", "notes per song" + (" (log scale)" if log else ""))
            made.append(("notes_per_family.png", "Notes per song in each LPD track family, over the songs "
                         "that have the family (build_lpd manifest)."))

    pitch = pitch_histograms(datasets / "lpd" / "tensors")
    if pitch is not None:
        hist, names, songs = pitch
        fig, axes = plt.subplots(len(names), 1, figsize=(4.6, 0.9 + 0.75 * len(names)), sharex=True, squeeze=False)
        for ax, name, h in zip(axes[:, 0], names, hist):
            total = h.sum()
            ax.bar(np.arange(128), h / total if total else h, width=1.0, color="#3b6ea5")
            ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3, linewidth=0.5)
        lo = int(min((np.flatnonzero(h).min() for h in hist if h.any()), default=24))
        hi = int(max((np.flatnonzero(h).max() for h in hist if h.any()), default=108))
        ax = axes[-1, 0]
        ax.set_xlim(lo - 1, hi + 1)
        ticks = [p for p in range(lo, hi + 1) if p % 12 == 0]
        ax.set_xticks(ticks, [f"{PITCH_CLASSES[p % 12]}{p // 12 - 1}" for p in ticks])
        ax.set_xlabel("MIDI pitch (drums: GM drum sound)", fontsize=9)
        fig.suptitle("Pitch per track family (share of sounding steps)", fontsize=10)
        fig.tight_layout()
        save(fig, out / "pitch_per_family.png", dpi=90)
        made.append(("pitch_per_family.png", f"Share of sounding time steps per pitch in each track family "
                     f"(LPD tensors, {songs} songs)."))

    vocab = {}
    for m in sorted((datasets / "vocab").glob("*/manifest.parquet")):
        doc = _manifest(m, ["n_tokens"])
        if doc and doc.get("n_tokens"):
            vocab[m.parent.name] = [n for n in doc["n_tokens"] if n]
    if vocab:
        fig, ax = _fig()
        allv = [x for v in vocab.values() for x in v]
        log = spans_decades(allv)
        edges = np.geomspace(min(allv), max(allv), 31) if log else np.linspace(min(allv), max(allv) + 1, 31)
        for k, v in vocab.items():
            ax.hist(v, bins=edges, histtype="step", linewidth=1.2, label=k)
        if log:
            ax.set_xscale("log")
        ax.legend(fontsize=7)
        _finish(fig, ax, out / "tokens_per_song.png", "Tokens per song", "tokens" + (" (log scale)" if log else ""), "songs")
        made.append(("tokens_per_song.png", "Tokens per song for each vocabulary (build_vocab manifests)."))

    phrases = _manifest(datasets / "phrases" / "manifest.parquet", ["split", "reason"])
    if phrases and phrases.get("reason"):
        counts = Counter((s, (r or "").split(":")[0]) for s, r in zip(phrases["split"], phrases["reason"]))
        splits = [s for s in ("train", "valid", "test") if any(k[0] == s for k in counts)]
        reasons = sorted({k[1] for k in counts})
        fig, ax = _fig()
        bottom = np.zeros(len(splits))
        for r in reasons:
            c = np.array([counts.get((s, r), 0) for s in splits], dtype=float)
            ax.bar(splits, c, bottom=bottom, label=r)
            bottom += c
        ax.legend(fontsize=7)
        _finish(fig, ax, out / "phrases.png", "Candidate phrases", "split", "4-bar candidates")
        made.append(("phrases.png", "Candidate phrases per split, by what build_phrases decided (phrases manifest)."))

    audio = _manifest(datasets / "audio" / "manifest.parquet", ["duration"])
    if audio and _hist(audio.get("duration", []), out / "audio_seconds.png", title="Rendered audio", xlabel="seconds"):
        made.append(("audio_seconds.png", "Seconds of audio per song (render_audio manifest)."))
    return made


def pitch_histograms(tensors: Path) -> tuple[np.ndarray, list[str], int] | None:
    """``(hist (tracks, 128), track names, songs read)`` from the tensor shards' Parquet cells."""
    files = sorted(tensors.glob("*.parquet")) if tensors.is_dir() else []
    if not files:
        return None
    import pyarrow.parquet as pq

    names: list[str] = []
    try:
        names = [str(t) for t in json.loads((tensors / "schema.json").read_text()).get("track_order", [])]
    except (OSError, ValueError):
        pass
    hist = np.zeros((max(len(names), 1), 128), np.int64)
    cells = songs = 0
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(columns=["track", "pitch"], batch_size=32):
            track = np.asarray(batch.column("track").flatten(), dtype=np.int64)
            pitch = np.asarray(batch.column("pitch").flatten(), dtype=np.int64)
            if len(track) and track.max() >= len(hist):
                hist = np.vstack([hist, np.zeros((int(track.max()) + 1 - len(hist), 128), np.int64)])
            np.add.at(hist, (track, pitch), 1)
            cells += len(track)
            songs += batch.num_rows
            if cells >= PITCH_CELLS:
                break
        if cells >= PITCH_CELLS:
            break
    if not cells:
        return None
    names = (names + [f"track {i}" for i in range(len(names), len(hist))])[: len(hist)]
    return hist, names, songs


def _quantity(key: str) -> tuple[str, str]:
    """``valid_recons_l1`` -> (``recons``, ``valid l1``): the panel and the line's suffix."""
    m = re.match(r"^(train_|valid_)?(.*?)(?:_l(\d+))?$", key)
    split, name, level = m.group(1), m.group(2), m.group(3)
    label = " ".join(x for x in ((split or "").rstrip("_"), f"l{level}" if level else "") if x)
    return name, label


def _rows(path: Path) -> list[dict]:
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if isinstance(rows, dict):
        rows = next((v for v in rows.values() if isinstance(v, list)), [rows])
    return [r for r in rows if isinstance(r, dict)]


def curves(parts, path: Path, title: str) -> tuple[str, bool] | None:
    """One panel per quantity of the parts' ``metrics.json`` (lines: part, train/valid, level);
    returns ``(x label, whether held-out lines are drawn)``, or ``None`` when there is nothing to draw."""
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
    xlabel = ""
    for part in parts:
        if part.metrics is None:
            continue
        rows = _rows(part.metrics)
        xkey = next((k for k in X_KEYS if rows and all(k in r for r in rows)), "")
        xlabel = xlabel or xkey or "row"
        for i, r in enumerate(rows):
            x = float(r[xkey]) if xkey else float(i)
            for k, v in r.items():
                if k in X_KEYS or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    continue
                q, suffix = _quantity(k)
                label = " ".join(s for s in (part.name, suffix) if s) or q
                panels.setdefault(q, {}).setdefault(label, []).append((x, float(v)))
    if not panels:
        return None
    plt = _plt()
    n = len(panels)
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.3 * cols, 3.0 * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines = sorted({" ".join(w for w in label.split() if w not in ("train", "valid"))
                    for series in panels.values() for label in series})
    colour = {line: colours[i % len(colours)] for i, line in enumerate(lines)}
    for ax, q in zip(axes.ravel(), sorted(panels)):
        series = panels[q]
        for label in sorted(series):
            xs, ys = zip(*series[label])
            words = label.split()
            ax.plot(xs, ys, label=label, linewidth=1.0, marker="." if len(xs) < 30 else None,
                    linestyle="--" if "valid" in words else "-",
                    color=colour[" ".join(w for w in words if w not in ("train", "valid"))])
        log = spans_decades([y for s in series.values() for _, y in s])
        if log:
            ax.set_yscale("log")
        ax.set_title(q.replace("_", " "), fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(q.replace("_", " ") + (" (log scale)" if log else ""), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, linewidth=0.5)
        if len(series) > 1 or next(iter(series)) != q:
            ax.legend(fontsize=6, ncol=2 if len(series) > 6 else 1)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save(fig, path, dpi=90)
    return xlabel, any("valid" in label.split() for series in panels.values() for label in series)
