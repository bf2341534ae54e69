"""`pipeline inspect PATH`: what a shard, manifest or song file holds, in a few lines (and a plot).

Recognised by content, not by name alone: a manifest (Parquet with a ``status`` column), a 5-D
piano-roll tensor shard (Parquet with ``bar``/``step``/``pitch``/``track``), a token shard (Parquet
with ``tokens``), an audio shard (Parquet with an ``audio`` struct column), an NPZ in MuseGAN's
``shape`` + ``nonzero`` format, a pypianoroll song NPZ (``info.json`` inside), or a folder (each
file it holds, with its kind and size).
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline import schema as shard_schema
from pipeline.errors import PipelineError
from pipeline.io.npz import load_npz


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def kind_of(path: Path) -> str:
    """manifest | tensors | tokens | audio | musegan-npz | song-npz | folder | unknown."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
        if "status" in names:
            return "manifest"
        if {"bar", "step", "pitch", "track"} <= names:
            return "tensors"
        if "tokens" in names:
            return "tokens"
        if "audio" in names:
            return "audio"
        return "parquet"
    if path.suffix == ".npz":
        try:
            with zipfile.ZipFile(path) as zf:
                members = set(zf.namelist())
        except zipfile.BadZipFile:
            return "unknown"
        if "info.json" in members:
            return "song-npz"
        if {"shape.npy", "nonzero.npy"} <= members:
            return "musegan-npz"
        return "npz"
    return "unknown"


def describe(path: Path) -> list[str]:
    """Lines that say what ``path`` holds (for a shard, also whether its folder's ``schema.json``
    is one this version reads; for a folder, every ``schema.json`` under it)."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: no such file or folder")
    lines = _describe(path)
    if path.is_file() and kind_of(path) in ("tensors", "tokens", "audio", "musegan-npz"):
        # the schema.json of the shard's folder (or of its parent: audio/, phrases/), when there is one
        for folder in (path.parent, path.parent.parent):
            if (folder / "schema.json").is_file():
                lines += shard_schema.describe(folder, recursive=False)
                break
    return lines


def _describe(path: Path) -> list[str]:
    kind = kind_of(path)
    head = f"{path} ({kind}, {_size(path.stat().st_size)})" if path.is_file() else f"{path} (folder)"
    lines = [head]
    if kind == "folder":
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        total = sum(p.stat().st_size for p in files)
        lines.append(f"  {len(files)} files, {_size(total)}")
        by_kind = Counter(kind_of(p) for p in files if p.suffix in (".parquet", ".npz"))
        for k, n in sorted(by_kind.items()):
            lines.append(f"  {k}: {n}")
        return lines + shard_schema.describe(path)
    if kind == "manifest":
        import pyarrow.parquet as pq

        t = pq.read_table(path).to_pandas()
        lines.append(f"  {len(t)} input files")
        for status, n in t["status"].value_counts().sort_index().items():
            lines.append(f"  {status}: {n}")
        codes = t["code"].dropna().value_counts()
        for code, n in codes.sort_index().items():
            lines.append(f"    {code}: {n}")
        return lines
    if kind == "tensors":
        import pyarrow.parquet as pq

        t = pq.read_table(path, columns=["id", "n_bars", "bar"])
        n_bars = np.asarray(t.column("n_bars").to_numpy())
        nnz = int(sum(len(v) for v in t.column("bar").to_pylist()))
        lines.append(f"  {t.num_rows} songs, {int(n_bars.sum())} bars (min {n_bars.min() if len(n_bars) else 0}, "
                     f"max {n_bars.max() if len(n_bars) else 0}), {nnz} non-zero cells")
        return lines
    if kind == "tokens":
        import pyarrow.parquet as pq

        t = pq.read_table(path, columns=["id", "stream", "split", "tokens"]).to_pandas()
        n_tokens = int(t["tokens"].map(len).sum())
        lines.append(f"  {t['id'].nunique()} songs, {len(t)} streams, {n_tokens} tokens")
        for split, n in t["split"].value_counts().sort_index().items():
            lines.append(f"  {split}: {n} streams")
        return lines
    if kind == "audio":
        import pyarrow.parquet as pq

        meta = pq.read_metadata(path)
        t = pq.read_table(path, columns=[c for c in ("id", "duration", "sample_rate", "channels")
                                         if c in pq.read_schema(path).names]).to_pandas()
        lines.append(f"  {len(t)} clips of {t['id'].nunique()} songs, {t['duration'].sum() / 3600:.3f} h, "
                     f"{sorted(set(t['sample_rate']))} Hz, channels {sorted(set(t['channels']))}, "
                     f"{meta.num_row_groups} row groups")
        return lines
    if kind == "musegan-npz":
        z = load_npz(path, ["shape", "nonzero"])  # never unpickles: a clear error for an object array
        shape = tuple(int(x) for x in z["shape"])
        nnz = z["nonzero"].shape[1]
        cells = int(np.prod(shape, dtype=np.float64)) or 1
        lines.append(f"  shape {shape}, {nnz} non-zero ({100 * nnz / cells:.3f}% dense)")
        return lines
    if kind == "song-npz":
        z = load_npz(path)
        info = json.loads(z["info.json"].decode())
        steps = int(z["tempo"].shape[0])
        bars = int(z["downbeat"].sum()) if "downbeat" in z else 0
        tracks = []
        k = 0
        while str(k) in info:
            tracks.append((info[str(k)]["name"], int(z[f"pianoroll_{k}_csc_data"].shape[0])))
            k += 1
        lines.append(f"  {steps} steps at {info.get('resolution')} per beat, {bars} bars")
        for name, nnz in tracks:
            lines.append(f"  {name}: {nnz} non-zero steps")
        return lines
    return lines


def plot(path: Path, out: Path) -> Path:
    """A PNG: the piano-roll of a song NPZ (one panel per track) or the first song of a tensor
    shard, or the spectrogram of the first clip of an audio shard."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path, out = Path(path), Path(out)
    kind = kind_of(path)
    if kind == "song-npz":
        import pypianoroll

        mt = pypianoroll.load(path)
        rolls = [t.pianoroll for t in mt.tracks]
        names = [t.name for t in mt.tracks]
        bars = np.flatnonzero(mt.downbeat)
    elif kind == "tensors":
        import pyarrow.parquet as pq

        row = pq.read_table(path).slice(0, 1).to_pylist()[0]
        n_bars = min(int(row["n_bars"]), 16)
        x = np.zeros((n_bars * 96, 128, 5), np.uint8)
        for b, s, p, t, v in zip(row["bar"], row["step"], row["pitch"], row["track"], row["velocity"]):
            if b < n_bars:
                x[b * 96 + s, p, t] = v
        rolls = [x[:, :, k] for k in range(5)]
        names = ["Drums", "Piano", "Guitar", "Bass", "Strings"]
        bars = np.arange(0, n_bars * 96, 96)
    elif kind == "audio":
        import io

        import pyarrow.parquet as pq
        import soundfile as sf

        row = pq.read_table(path, columns=["id", "audio"]).slice(0, 1).to_pylist()[0]
        audio, sr = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="float32", always_2d=True)
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.specgram(audio.mean(axis=1), NFFT=2048, Fs=sr, noverlap=1536, cmap="magma")
        ax.set_xlabel("s")
        ax.set_ylabel("Hz")
        ax.set_title(f"{row['id'][:12]}: first clip")
        fig.tight_layout()
        fig.savefig(out, dpi=100)
        plt.close(fig)
        return out
    else:
        raise PipelineError(f"{path}: --plot draws song NPZs, tensor shards and audio shards, not {kind}")
    fig, axes = plt.subplots(len(rolls), 1, figsize=(10, 1.4 * len(rolls)), sharex=True)
    for ax, roll, name in zip(np.atleast_1d(axes), rolls, names):
        ax.imshow(roll.T, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest")
        for b in bars:
            ax.axvline(b, color="tab:blue", lw=0.3)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        ax.set_yticks([])
    np.atleast_1d(axes)[-1].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
