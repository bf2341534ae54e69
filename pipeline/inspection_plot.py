"""`pipeline inspect PATH --plot OUT.png`: the piano-roll of a song, tensor or phrase shard item (a
chosen song, bars and tracks) or the spectrogram of an audio shard's clip.

This module chooses and reads what to draw (the files are recognised by
:mod:`pipeline.inspection`); :mod:`pipeline.figures` draws it.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ParamsError, PipelineError, SchemaError
from pipeline.formats.song_npz import read_song
from pipeline.inspection import Found, folder_schema, sniff

#: the kinds ``--plot`` draws
ROLL_KINDS = ("song-npz", "tensor-parquet", "tensor-npz", "phrase-parquet", "phrase-npz", "musegan-npz")
AUDIO_KINDS = ("audio-parquet", "audio-npz")
#: the bars --plot draws when --bars is not given
DEFAULT_BARS = 8


@dataclass
class _Roll:
    """A piano-roll item ready to cut into a window: cells in absolute time steps."""

    label: str
    resolution: int
    bar_starts: np.ndarray  # (n_bars + 1,)
    track_names: list[str]
    track: np.ndarray
    time: np.ndarray
    pitch: np.ndarray  # MIDI pitch
    velocity: np.ndarray
    max_velocity: int = 127  # 1: binarised (phrases)

    @property
    def n_bars(self) -> int:
        return len(self.bar_starts) - 1


def _is_index(text: str) -> bool:
    return re.fullmatch(r"\d+", text) is not None


def _pick(song: str | None, ids: list[str], *, what: str, path: Path) -> int:
    """The row --song names: an id (its first row) or an index; the first row by default."""
    n = len(ids)
    if n == 0:
        raise PipelineError(f"{path}: holds no {what}s: nothing to plot")
    if song is None:
        return 0
    if song in ids:
        return ids.index(song)
    if _is_index(song):
        if int(song) < n:
            return int(song)
        raise ParamsError(f"--song {song}: out of range: {path.name} holds {n} {what}s (indices 0..{n - 1})")
    raise ParamsError(f"--song {song!r}: no song of that id in {path.name}, and not an index 0..{n - 1}")


def _doc_int(doc: dict | None, key: str, default: int, *, minimum: int = 1) -> int:
    """An integer of the folder's schema, ``default`` (LPD's convention) when absent or odd."""
    value = doc.get(key) if doc else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= minimum else default


def _tracks_from(doc: dict | None, n: int) -> list[str]:
    if doc and isinstance(doc.get("track_order"), list) and len(doc["track_order"]) >= n:
        return [str(t) for t in doc["track_order"]]
    from pipeline.symbolic.lpd import TRACK_SETS

    for spec in TRACK_SETS.values():
        if len(spec) >= n:
            return [t[0] for t in spec]
    return [f"track {k}" for k in range(n)]


def _roll_of(path: Path, found: Found, song: str | None) -> _Roll:
    kind = found.kind
    if kind == "song-npz":
        s = read_song(path)
        if song is not None and song not in ("0", s.name, path.stem):
            raise ParamsError(f"--song {song!r}: {path.name} holds one song ({s.name}): use 0, that id, or leave "
                              "--song out")
        def cat(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts or [np.zeros(0, np.int64)])

        return _Roll("" if s.name == path.stem else f"song {s.name}", s.resolution, s.bar_starts,
                     [t.name for t in s.tracks], cat([np.full(len(t.time), k) for k, t in enumerate(s.tracks)]),
                     cat([t.time for t in s.tracks]), cat([t.pitch for t in s.tracks]),
                     cat([t.velocity for t in s.tracks]))
    doc = folder_schema(path)
    if kind == "tensor-parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        ids = pf.read(columns=["id"]).column("id").to_pylist()
        i = _pick(song, ids, what="song", path=path)
        row = _parquet_row(pf, i)
        bar_steps = _doc_int(doc, "bar_steps", 96)
        resolution = _doc_int(doc, "resolution", bar_steps // 4)
        bar, step = np.asarray(row["bar"], np.int64), np.asarray(row["step"], np.int64)
        track = np.asarray(row["track"], np.int64)
        names = _tracks_from(doc, int(track.max()) + 1 if len(track) else 5)
        return _Roll(f"song {ids[i]} (#{i} of {len(ids)})", resolution,
                     np.arange(int(row["n_bars"]) + 1, dtype=np.int64) * bar_steps, names, track,
                     bar * bar_steps + step, np.asarray(row["pitch"], np.int64), np.asarray(row["velocity"], np.int64))
    if kind == "phrase-parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        ids = pf.read(columns=["id"]).column("id").to_pylist()
        i = _pick(song, ids, what="phrase", path=path)
        row = _parquet_row(pf, i)
        shape = doc.get("tensor_shape") if doc else None
        ok = isinstance(shape, list) and len(shape) == 5 and all(isinstance(x, int) for x in shape[1:])
        bars, steps = (shape[1], shape[2]) if ok else (4, 48)
        low = _doc_int(doc, "lowest_pitch", 24, minimum=0)
        resolution = _doc_int(doc, "resolution", steps // 4)
        bar, step = np.asarray(row["bar"], np.int64), np.asarray(row["step"], np.int64)
        track = np.asarray(row["track"], np.int64)
        first = int(row["first_bar"])
        return _Roll(f"phrase {i} of {len(ids)} (song {ids[i]}, its bars {first}-{first + bars - 1})", resolution,
                     np.arange(bars + 1, dtype=np.int64) * steps, _tracks_from(doc, 5), track, bar * steps + step,
                     np.asarray(row["pitch"], np.int64) + low, np.ones(len(bar), np.int64), 1)
    # tensor-npz, phrase-npz, musegan-npz: shape + nonzero
    if kind == "tensor-npz":
        from pipeline.formats.npz import load_npz

        z = load_npz(path, [k for k in ("shape", "nonzero", "ids", "n_bars", "velocity") if k in found.meta])
    else:
        from pipeline.formats.phrase_shards import read_phrase_npz

        ph = read_phrase_npz(path)
        z = {"shape": ph.shape, "nonzero": ph.nonzero,
             **{k: getattr(ph, k) for k in ("ids", "first_bar") if k in found.meta}}
    shape = [int(x) for x in z["shape"]]
    n_items, bars, steps, n_pitches, n_tracks = shape
    ids = [str(x) for x in z["ids"]] if "ids" in z else [str(k) for k in range(n_items)]
    what = "song" if kind == "tensor-npz" else "phrase"
    i = _pick(song, ids, what=what, path=path)
    nz = z["nonzero"]
    sel = nz[0] == i
    bar, step, pitch, track = (nz[r][sel].astype(np.int64) for r in (1, 2, 3, 4))
    if kind == "tensor-npz":
        n_bars = int(z["n_bars"][i]) if "n_bars" in z else bars
        vel = z["velocity"][sel].astype(np.int64) if "velocity" in z else np.ones(len(bar), np.int64)
        resolution = _doc_int(doc, "resolution", steps // 4)
        return _Roll(f"song {ids[i]} (#{i} of {len(ids)})", resolution,
                     np.arange(n_bars + 1, dtype=np.int64) * steps, _tracks_from(doc, n_tracks), track,
                     bar * steps + step, pitch, vel, 127 if "velocity" in z else 1)
    if kind != "phrase-npz":
        doc = None  # MuseGAN's own data: no schema; 84 pitches are MuseGAN's 24..107
    low = _doc_int(doc, "lowest_pitch", 24 if n_pitches == 84 else 0, minimum=0)
    resolution = _doc_int(doc, "resolution", steps // 4)
    first = int(z["first_bar"][i]) if "first_bar" in z else 0
    label = (f"phrase {i} of {n_items} (song {ids[i]}, its bars {first}-{first + bars - 1})" if "first_bar" in z
             else f"item {i} of {n_items}")
    return _Roll(label, resolution, np.arange(bars + 1, dtype=np.int64) * steps,
                 _tracks_from(doc, n_tracks), track, bar * steps + step,
                 pitch + low, np.ones(len(bar), np.int64), 1)


def _parquet_row(pf, i: int) -> dict:
    """Row ``i`` of a Parquet file, reading only the row group that holds it."""
    at = 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if i < at + n:
            return pf.read_row_group(g).slice(i - at, 1).to_pylist()[0]
        at += n
    raise IndexError(i)  # _pick keeps i in range


def parse_bars(text: str | None) -> tuple[int, int | None] | None:
    """``--bars``: ``A:B`` (0-based, B excluded), ``A:`` (to the end), ``:B`` or ``A`` (one bar)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d*)\s*(:?)\s*(\d*)\s*", text)
    if not m or (not m.group(2) and not m.group(1)) or (m.group(2) and not (m.group(1) or m.group(3))):
        raise ParamsError(f"--bars {text!r}: expected A:B (0-based bar indices, B excluded), A:, :B or A, "
                          "e.g. --bars 8:16")
    a = int(m.group(1)) if m.group(1) else 0
    b = (int(m.group(3)) if m.group(3) else None) if m.group(2) else a + 1
    if b is not None and b <= a:
        raise ParamsError(f"--bars {text!r}: the end ({b}) must be after the start ({a}); B is excluded")
    return a, b


def parse_tracks(text: str | None) -> list[str] | None:
    """``--tracks``: comma-separated track names (case-insensitive)."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",")]
    if not all(names):
        raise ParamsError(f"--tracks {text!r}: expected comma-separated track names, e.g. --tracks Piano,Bass")
    return list(dict.fromkeys(names))


def _window(roll: _Roll, bars: tuple[int, int | None] | None, text: str | None) -> tuple[int, int]:
    n = roll.n_bars
    if n <= 0:
        raise PipelineError(f"{roll.label or 'the song'}: no bars: nothing to plot")
    if bars is None:
        return 0, min(DEFAULT_BARS, n)
    a, b = bars
    if a >= n:
        raise ParamsError(f"--bars {text!r}: starts at bar {a}, but {roll.label or 'the song'} has {n} bars "
                          f"(0..{n - 1})")
    if b is None:
        return a, n
    if b > n:
        raise ParamsError(f"--bars {text!r}: ends after the last bar: {roll.label or 'the song'} has {n} bars "
                          f"(use B <= {n})")
    return a, b


def _choose_tracks(roll: _Roll, names: list[str] | None, text: str | None) -> list[int]:
    if names is None:
        return list(range(len(roll.track_names)))
    lower = [t.lower() for t in roll.track_names]
    out = []
    for name in names:
        if name.lower() not in lower:
            raise ParamsError(f"--tracks {text!r}: no track {name!r}; this file has {', '.join(roll.track_names)}")
        out.append(lower.index(name.lower()))
    return out


def _clip_of(path: Path, found: Found, song: str | None) -> tuple[np.ndarray, int, str]:
    """(audio (channels, samples) float32, sample rate, title label) of the clip --song picks."""
    if found.kind == "audio-parquet":
        import io

        import pyarrow.parquet as pq
        import soundfile as sf

        pf = pq.ParquetFile(path)
        ids = pf.read(columns=["id"]).column("id").to_pylist()
        i = _pick(song, ids, what="clip", path=path)
        row = _parquet_row(pf, i)
        try:
            x, sr = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            raise SchemaError(path, f"clip {i}: the audio bytes are not readable FLAC ({exc})") from None
        audio = x.T
        valid = int(row.get("valid_samples") or 0)
        start = float(row.get("start_time") or 0.0)
        label = f"song {ids[i]} clip {row['clip']} (row {i} of {len(ids)}), from {start:.2f} s"
    else:
        from pipeline.formats.npz import load_npz

        z = load_npz(path, ["ids", "clip", "valid_samples", "sample_rate"])
        ids = [str(x) for x in z["ids"]]
        i = _pick(song, ids, what="clip", path=path)
        audio = _npz_row(path, "audio", i)
        audio = audio[None, :] if audio.ndim == 1 else audio
        sr = int(z["sample_rate"])
        valid = int(z["valid_samples"][i])
        label = f"song {ids[i]} clip {int(z['clip'][i])} (row {i} of {len(ids)})"
    if 0 < valid < audio.shape[1]:
        audio = audio[:, :valid]  # the rest is zero padding (a song shorter than a clip)
    return audio, int(sr), label


def _npz_row(path: Path, name: str, i: int) -> np.ndarray:
    """Row ``i`` of one array of an NPZ, read without loading the rest (a clip of an audio shard)."""
    fmt = np.lib.format
    try:
        with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as fh:
            version = fmt.read_magic(fh)
            shape, fortran, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(fh)
            if fortran or dtype.hasobject:
                raise SchemaError(path, f"member {name}.npy is not a C-order array of numbers")
            row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            fh.seek(fh.tell() + i * row)
            data = fh.read(row)
    except (zipfile.BadZipFile, EOFError, zlib.error, ValueError) as exc:
        raise SchemaError(path, f"member {name}.npy is damaged ({type(exc).__name__}: {exc})") from None
    if len(data) != row:
        raise SchemaError(path, f"member {name}.npy is truncated (row {i} is cut short)")
    return np.frombuffer(data, dtype).reshape(shape[1:])


def _read(path: Path, read):
    """``read()``, with a failed read of a damaged file (past :func:`sniff`'s checks) as one line."""
    import pyarrow as pa

    try:
        return read()
    except (OSError, pa.ArrowException) as exc:
        raise SchemaError(path, f"cannot read it ({type(exc).__name__}: {' '.join(str(exc).split())})") from None


def check_options(out: Path, *, bars: str | None = None, tracks: str | None = None):
    """The parsed ``bars`` and ``tracks`` (:func:`parse_bars`, :func:`parse_tracks`), once the
    output's format is known to be one :func:`plot` writes; ParamsError otherwise."""
    from pipeline.figures import FORMATS

    if Path(out).suffix.lower() not in FORMATS:
        raise ParamsError(f"--plot {out}: the file name must end in {', '.join(FORMATS)}")
    return parse_bars(bars), parse_tracks(tracks)


def plot(path: Path, out: Path, *, song: str | None = None, bars: str | None = None,
         tracks: str | None = None) -> Path:
    """Draw ``path`` into ``out`` (.png, .svg or .pdf) and return ``out``.

    Piano-rolls (song NPZ, tensor and phrase shards, Parquet or NPZ): ``song`` is a song id or a
    row index in the shard (a phrase index in phrase shards; default: the first); ``bars`` is
    ``A:B`` (0-based, B excluded; default: the first 8 bars); ``tracks`` comma-separated track
    names (default: all). The figure has one panel per track, pitch names on the y axis, bars and
    beats on the x axis with bar lines, and a title naming file, song and bars.

    Audio shards: the spectrogram (librosa, log frequency, dB colour bar) of the clip ``song``
    picks (a song id: its first clip; or a row index).

    Raises
    ------
    ParamsError
        A malformed or out-of-range ``song``, ``bars`` or ``tracks``, or an output format other
        than .png, .svg or .pdf (one line that echoes the value).
    PipelineError
        ``path`` is damaged, foreign, or of a kind that has no plot.
    """
    from pipeline import figures

    path, out = Path(path), Path(out)
    window, names = check_options(out, bars=bars, tracks=tracks)
    if not path.exists():
        raise PipelineError(f"{path}: no such file or folder")
    found = sniff(path)
    if found.kind in AUDIO_KINDS:
        if bars is not None or tracks is not None:
            raise ParamsError(f"--bars and --tracks choose what a piano-roll shows; {path.name} is an audio shard "
                              "(its clip is drawn whole: choose it with --song)")
        audio, sr, label = _read(path, lambda: _clip_of(path, found, song))
        channels = ["mono"] if audio.shape[0] == 1 else ["left", "right"][: audio.shape[0]]
        fig = figures.spectrogram_figure(audio, sr, title=f"{path.name} · {label} · {audio.shape[1] / sr:.2f} s",
                                         channel_names=channels)
    elif found.kind in ROLL_KINDS:
        roll = _read(path, lambda: _roll_of(path, found, song))
        if len(roll.pitch) and (roll.pitch.min() < 0 or roll.pitch.max() > 127):
            raise SchemaError(path, "pitches beyond the MIDI range", expected="0..127",
                              found=f"{roll.pitch.min()}..{roll.pitch.max()}")
        a, b = _window(roll, window, bars)
        chosen = _choose_tracks(roll, names, tracks)
        start, stop = int(roll.bar_starts[a]), int(roll.bar_starts[b])
        keep = (roll.time >= start) & (roll.time < stop)
        panels = [figures.RollPanel(roll.track_names[k], roll.time[keep & (roll.track == k)],
                                    roll.pitch[keep & (roll.track == k)], roll.velocity[keep & (roll.track == k)])
                  for k in chosen]
        which = f"bar {a}" if b == a + 1 else f"bars {a}-{b - 1}"
        title = " · ".join(x for x in (path.name, roll.label, f"{which} of {roll.n_bars}") if x)
        fig = figures.pianoroll_figure(panels, start=start, stop=stop, resolution=roll.resolution,
                                       bar_starts=roll.bar_starts[a:b + 1].tolist(), first_bar=a, title=title,
                                       max_velocity=roll.max_velocity)
    else:
        raise PipelineError(f"{path}: --plot draws piano-rolls (song NPZ, tensor and phrase shards) and audio "
                            f"shards, not a {found.kind}")
    out.parent.mkdir(parents=True, exist_ok=True)
    return figures.save(fig, out)
