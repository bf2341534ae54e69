"""Song NPZ: one song's piano-roll in pypianoroll's NPZ format (what ``pypianoroll.load`` 1.0
reads, and the LPD layout), build_lpd's ``songs/<id[0]>/<id>.npz``: its writer
(:func:`pianoroll_npz_bytes`), its ``schema.json`` (:func:`song_schema_document`, kind
:data:`SONGS`) and its reader (:func:`read_song`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline import schema as shard_schema
from pipeline.errors import SchemaError
from pipeline.formats.npz import load_npz, npz_bytes

SONGS = shard_schema.register(shard_schema.Kind(
    "lakh-pipeline/song-pianorolls", 1, (1,), "build_lpd", ("songs/schema.json", "schema.json", "../schema.json"),
    ("track_order", "resolution")))


_PITCHES = np.arange(129, dtype=np.uint8)  # column bounds 0..128, uint8 like the pitches (no cast of them)


def pianoroll_npz_bytes(pr, name: str) -> bytes:
    """A ``Pianoroll`` in pypianoroll's NPZ format (what ``pypianoroll.load`` 1.0 reads, and the
    LPD layout): ``tempo``, ``downbeat``, ``pianoroll_<i>_csc_{data,indices,indptr,shape}`` per
    track and an ``info.json`` with resolution, name, program, is_drum and track names."""
    arrays: dict[str, np.ndarray] = {
        "tempo": np.asarray(pr.tempo, np.float64),
        "downbeat": np.asarray(pr.downbeat, bool),
    }
    info: dict = {"resolution": pr.resolution, "beat_resolution": pr.resolution, "name": name}
    # cells are sorted by (track, pitch, time): each track is one slice, already in CSC order
    bounds = np.searchsorted(pr.cell_track, np.arange(pr.n_tracks + 1, dtype=np.uint8))
    shape = np.array([pr.n_steps, 128], np.int64)
    for k in range(pr.n_tracks):
        lo, hi = bounds[k], bounds[k + 1]
        # the track's pitches ascend (CSC order): column pointers by binary search, no counting pass
        indptr = np.searchsorted(pr.cell_pitch[lo:hi], _PITCHES).astype(np.int32)
        arrays[f"pianoroll_{k}_csc_data"] = np.asarray(pr.cell_velocity[lo:hi], np.uint8)
        arrays[f"pianoroll_{k}_csc_indices"] = np.asarray(pr.cell_time[lo:hi], np.int32)
        arrays[f"pianoroll_{k}_csc_indptr"] = indptr
        arrays[f"pianoroll_{k}_csc_shape"] = shape
        info[str(k)] = {"program": pr.track_programs[k], "is_drum": pr.track_is_drum[k], "name": pr.track_names[k]}
    return npz_bytes(arrays, {"info.json": json.dumps(info, sort_keys=True).encode()})


def song_schema_document(*, tracks: Sequence[str], programs: Sequence[int], resolution: int, semantics: str) -> dict:
    """The ``songs/schema.json``: one pypianoroll 1.0 NPZ per song (``songs/<id[0]>/<id>.npz``)."""
    n = len(tracks)
    arrays = {"tempo": ("float64", ["steps"], "tempo (qpm) at each time step (each beat's tempo over its steps)"),
              "downbeat": ("bool", ["steps"], "True at the first step of each bar")}
    for k in range(n):
        arrays[f"pianoroll_{k}_csc_data"] = ("uint8", ["nnz_k"], f"velocities of track {k} ({tracks[k]}), CSC")
        arrays[f"pianoroll_{k}_csc_indices"] = ("int32", ["nnz_k"], "time step of each value (CSC row index)")
        arrays[f"pianoroll_{k}_csc_indptr"] = ("int32", [129], "CSC column pointers, one column per MIDI pitch")
        arrays[f"pianoroll_{k}_csc_shape"] = ("int64", [2], "(steps, 128)")
    return {
        **shard_schema.uniform(
            SONGS,
            fields={**{name: meaning for name, (_, _, meaning) in arrays.items()},
                    "info.json": "JSON: resolution, name (the song id) and per track index "
                                 "{program, is_drum, name}"},
            dtypes={"npz": {name: dtype for name, (dtype, _, _) in arrays.items()}},
            shapes={"item": ["steps", 128, n], "npz": {name: shape for name, (_, shape, _) in arrays.items()}},
            track_order=tracks, resolution=resolution, resolution_unit="time steps per beat", vocabulary=None),
        "files": {"npz": "<id[0]>/<id>.npz (id: MD5 of the MIDI file's bytes)"},
        "format": "pypianoroll 1.0 NPZ (pypianoroll.load reads it); dense track k: "
                  "scipy.sparse.csc_matrix((data, indices, indptr), shape=shape).toarray()",
        "track_programs": list(programs),
        "semantics": semantics,
    }


@dataclass
class SongTrack:
    name: str
    program: int
    is_drum: bool
    time: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray


@dataclass
class Song:
    name: str
    resolution: int
    steps: int
    bar_starts: np.ndarray  # (n_bars + 1,) time step of each bar line, then the end
    tracks: list[SongTrack]
    has_downbeats: bool = True
    tempo: np.ndarray | None = None

    @property
    def n_bars(self) -> int:
        return len(self.bar_starts) - 1


def read_song(path: Path) -> Song:
    """A song NPZ (pypianoroll 1.0 / LPD layout) as sparse cells per track; never unpickles."""
    z = load_npz(path)
    try:
        info = json.loads(bytes(z["info.json"]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise SchemaError(path, "info.json is not valid JSON") from None
    if not isinstance(info, dict):
        raise SchemaError(path, "info.json is not a JSON object")
    resolution = int(info.get("resolution") or info.get("beat_resolution") or 24)
    tracks = []
    steps = int(z["tempo"].shape[0]) if "tempo" in z else 0
    k = 0
    while str(k) in info or f"pianoroll_{k}_csc_data" in z:
        keys = [f"pianoroll_{k}_csc_{p}" for p in ("data", "indices", "indptr", "shape")]
        missing = [key for key in keys if key not in z]
        if missing:
            raise SchemaError(path, f"track {k} lacks arrays {missing}")
        data, indices, indptr, shape = (z[key] for key in keys)
        if len(shape) != 2 or int(shape[1]) > 128 or len(indptr) != int(shape[1]) + 1 or len(data) != len(indices) \
                or (len(indptr) and int(indptr[-1]) != len(data)):
            raise SchemaError(path, f"track {k} is not a valid CSC piano-roll",
                              expected="indptr of pitches + 1, data and indices of indptr[-1]",
                              found=f"shape {shape.tolist()}, {len(indptr)} indptr, {len(data)} data, "
                                    f"{len(indices)} indices")
        meta = info.get(str(k), {}) if isinstance(info.get(str(k)), dict) else {}
        pitch = np.repeat(np.arange(int(shape[1])), np.diff(indptr.astype(np.int64)))
        tracks.append(SongTrack(str(meta.get("name", f"track {k}")), int(meta.get("program", 0)),
                             bool(meta.get("is_drum", False)), indices.astype(np.int64), pitch,
                             data.astype(np.int64)))
        steps = max(steps, int(shape[0]))
        k += 1
    downbeat = np.flatnonzero(z["downbeat"]) if "downbeat" in z else np.zeros(0, np.int64)
    has = len(downbeat) > 0
    starts = downbeat if has else np.arange(0, steps, 4 * resolution)
    bar_starts = np.append(starts, steps).astype(np.int64) if steps else np.zeros(1, np.int64)
    return Song(str(info.get("name") or path.stem), resolution, steps, bar_starts, tracks, has,
                 z["tempo"] if "tempo" in z else None)
