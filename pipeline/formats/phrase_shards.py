"""Phrase shards: build_phrases' output, MuseGAN's training data. One home for its writers and
its readers:

- ``npz/<split>.npz``: MuseGAN's ``shape`` + ``nonzero`` format (``shape`` int64 (5,): phrases,
  bars, steps, pitches, tracks; ``nonzero`` (5, nnz) uint16, uint32 beyond 65535 phrases;
  ``ids`` and ``first_bar`` per phrase where known). MuseGAN's samples (``samples.npz``) use the
  same format. Written by :func:`phrase_npz_bytes` / :func:`write_phrase_npz` only, read by
  :func:`read_phrase_npz` only, with one set of checks;
- ``shards/<split>-NNNNN.parquet``: one row per phrase (:func:`phrase_table`, :data:`PARQUET_SCHEMA`);
- ``schema.json`` (:func:`schema_document`), kind :data:`PHRASES`.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline import schema as shard_schema
from pipeline.errors import SchemaError, UnsafeFileError
from pipeline.files import atomic_write_bytes
from pipeline.formats.npz import load_npz, npz_bytes
from pipeline.splits import SPLITS

#: the LPD-5 tracks of every phrase, in order
TRACKS = ("Drums", "Piano", "Guitar", "Bass", "Strings")


PARQUET_SCHEMA = pa.schema([("id", pa.string()), ("first_bar", pa.int32()), ("split", pa.string()),
                            ("index", pa.int32())]
                           + [(f"activity_{t.lower()}", pa.float32()) for t in TRACKS]
                           + [(c, pa.list_(pa.uint8())) for c in ("bar", "step", "pitch", "track")])

PHRASES = shard_schema.register(shard_schema.Kind(
    "lakh-pipeline/phrase-tensors", 1, (1,), "build_phrases", ("schema.json", "../schema.json"),
    ("track_order", "tensor_shape", "lowest_pitch"), parquet_format="phrase_shard",
    parquet_schema=lambda: PARQUET_SCHEMA))


# -- NPZ: shape + nonzero ------------------------------------------------------------------------

def nonzero_dtype(shape) -> type:
    """uint16 while every axis of ``shape`` is at most 65535 long, else uint32."""
    return np.uint16 if max((int(n) for n in shape), default=0) <= 65535 else np.uint32


def encode_phrases(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A bool array -> (``shape`` int64, ``nonzero`` (ndim, nnz) int64)."""
    x = np.asarray(x, bool)
    nz = np.stack(np.nonzero(x)) if x.ndim else np.zeros((0, 0), np.int64)
    return np.asarray(x.shape, np.int64), nz


def decode_phrases(shape: np.ndarray, nonzero: np.ndarray) -> np.ndarray:
    """``shape`` + ``nonzero`` -> a bool array of that shape."""
    x = np.zeros(tuple(int(s) for s in shape), bool)
    x[tuple(np.asarray(nonzero, np.int64))] = True
    return x


def phrase_npz_bytes(shape, nonzero: np.ndarray, *, ids=None, first_bar=None) -> bytes:
    """The NPZ of phrases ``shape`` with cells ``nonzero`` (any integer (5, nnz) array, stored as
    :func:`nonzero_dtype`), and per phrase its song ``ids`` and ``first_bar`` when given."""
    shape = np.asarray(shape, np.int64)
    arrays = {"shape": shape, "nonzero": np.asarray(nonzero).astype(nonzero_dtype(shape), copy=False)}
    if ids is not None:
        ids = [str(i) for i in ids]
        arrays["ids"] = np.array(ids, dtype=f"<U{max([len(i) for i in ids] + [1])}")
    if first_bar is not None:
        arrays["first_bar"] = np.asarray(first_bar, np.int32)
    return npz_bytes(arrays)


def write_phrase_npz(path: Path, shape, nonzero: np.ndarray, *, ids=None, first_bar=None) -> None:
    """Write :func:`phrase_npz_bytes` atomically."""
    atomic_write_bytes(path, phrase_npz_bytes(shape, nonzero, ids=ids, first_bar=first_bar))


@dataclass
class PhraseNpz:
    """A checked phrase NPZ: ``shape`` (5,), ``nonzero`` (5, nnz) integers within ``shape``; ``ids``
    and ``first_bar`` (one per phrase; blanks and zeros where the file has none)."""

    path: Path
    shape: np.ndarray
    nonzero: np.ndarray
    ids: np.ndarray
    first_bar: np.ndarray

    def dense(self) -> np.ndarray:
        """The phrases as a bool (phrases, bars, steps, pitches, tracks) array."""
        return decode_phrases(self.shape, self.nonzero)


def read_phrase_npz(path: Path, *, item_shape=None) -> PhraseNpz:
    """Read and check a phrase NPZ (never unpickling).

    ``item_shape``: the (bars, steps, pitches, tracks) a phrase must have (its ``schema.json``'s).

    Raises
    ------
    UnsafeFileError
        Not an NPZ of plain arrays (see :func:`pipeline.formats.npz.load_npz`).
    SchemaError
        No ``shape`` or ``nonzero``; ``shape`` not 5-D (or not ``item_shape``); ``nonzero`` not an
        integer (5, nnz) array (this package writes unsigned ones; MuseGAN's own data has int64), or
        indexing outside ``shape``; ``ids`` or ``first_bar`` not one per
        phrase.
    """
    path = Path(path)
    z = load_npz(path)
    missing = [k for k in ("shape", "nonzero") if k not in z]
    if missing:
        raise SchemaError(path, f"NPZ lacks arrays {missing}", expected=["shape", "nonzero"], found=sorted(z))
    shape, nonzero = z["shape"], z["nonzero"]
    if shape.shape != (5,) or shape.dtype.kind not in "iu":
        raise SchemaError(path, "shape must be 5 integers: phrases, bars, steps, pitches, tracks",
                          expected="int (5,)", found=f"{shape.dtype} {shape.tolist()}")
    if item_shape is not None and [int(n) for n in shape[1:]] != list(item_shape):
        raise SchemaError(path, "phrase tensor shape differs from schema.json", expected=["phrases", *item_shape],
                          found=shape.tolist())
    if nonzero.dtype.kind not in "iu" or nonzero.ndim != 2 or nonzero.shape[0] != 5:
        raise SchemaError(path, "nonzero must be an integer (5, nnz) array", expected="uint (5, nnz)",
                          found=f"{nonzero.dtype} {nonzero.shape}")
    if nonzero.dtype.kind == "i" and nonzero.size and nonzero.min() < 0:  # MuseGAN's own data: int64
        raise SchemaError(path, "nonzero holds negative indexes", expected=">= 0", found=int(nonzero.min()))
    n = int(shape[0])
    if nonzero.shape[1] and (nonzero.max(axis=1) >= shape).any():
        raise SchemaError(path, "nonzero indexes outside the tensor", expected=shape.tolist(),
                          found=(nonzero.max(axis=1) + 1).tolist())
    ids = z.get("ids", np.full(n, "", "<U1"))
    first_bar = z.get("first_bar", np.zeros(n, np.int32))
    if len(ids) != n or len(first_bar) != n:
        raise SchemaError(path, "ids and first_bar must have one entry per phrase", expected=n,
                          found=(len(ids), len(first_bar)))
    return PhraseNpz(path, shape, nonzero, ids, first_bar)


# -- Parquet shards and schema.json --------------------------------------------------------------

def parquet_bytes(table, metadata: dict[str, str] | None = None) -> bytes:
    """``table`` as build_phrases writes its Parquet files (zstd 1, no dictionary, no statistics)."""
    import pyarrow.parquet as pq

    if metadata:
        table = table.replace_schema_metadata(metadata)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", compression_level=1, use_dictionary=False,
                   write_statistics=False)
    return sink.getvalue()


def phrase_metadata(params) -> dict[str, str]:
    """A phrase shard's key-value metadata (``params``: build_phrases' ``Params``): what a reader
    needs when the file is copied alone."""
    return shard_schema.parquet_metadata(
        "phrase_shard", track_order=list(TRACKS), phrase_bars=params.phrase_bars,
        steps_per_bar=params.steps_per_bar, lowest_pitch=params.lowest_pitch, n_pitches=params.n_pitches,
        pitch_range=[params.lowest_pitch, params.lowest_pitch + params.n_pitches - 1],
        tensor_axes=["phrase", "bar", "step", "pitch", "track"],
        coordinates="row = one phrase; bar, step, pitch (index: MIDI pitch - lowest_pitch), track index its "
                    "binary (phrase_bars, steps_per_bar, n_pitches, tracks) tensor; index is its row in "
                    "npz/<split>.npz")


def phrase_table(rows: list[tuple[str, int, str, int, np.ndarray, np.ndarray]]):
    """The Arrow table of one phrase shard; rows: (song_id, first_bar, split, index in the split's
    NPZ, activity (5,), coords (4, nnz))."""
    offsets = np.zeros(len(rows) + 1, np.int32)
    np.cumsum([r[5].shape[1] for r in rows], out=offsets[1:])
    offsets = pa.array(offsets, pa.int32())
    allc = np.concatenate([r[5] for r in rows], axis=1) if rows else np.zeros((4, 0), np.uint16)
    cols = {
        "id": pa.array([r[0] for r in rows], pa.string()),
        "first_bar": pa.array([r[1] for r in rows], pa.int32()),
        "split": pa.array([r[2] for r in rows], pa.string()),
        "index": pa.array([r[3] for r in rows], pa.int32()),
    }
    for k, name in enumerate(TRACKS):
        cols[f"activity_{name.lower()}"] = pa.array([float(r[4][k]) for r in rows], pa.float32())
    for k, (name, dtype) in enumerate((("bar", np.uint8), ("step", np.uint8), ("pitch", np.uint8),
                                       ("track", np.uint8))):
        cols[name] = pa.ListArray.from_arrays(offsets, pa.array(allc[k].astype(dtype)))
    return pa.table(cols)


def schema_document(params, in_steps: int, input_tracks: str = "lpd5",
                    in_resolution: int | None = None) -> dict:
    """The ``schema.json`` of build_phrases' output (``params``: its ``Params``)."""
    S, P = params.steps_per_bar, params.phrase_bars
    fields = {"id": "song id: MD5 of the MIDI file (the LMD id)", "first_bar": "first bar of the phrase in the song "
              "(a build_lpd bar index)", "split": "train | valid | test, from sha256(id)",
              "index": "row of the phrase in npz/<split>.npz",
              **{f"activity_{t.lower()}": f"fraction of the phrase's steps with a {t} note" for t in TRACKS},
              "bar": "bar of each non-zero cell within the phrase (0..phrase_bars-1)",
              "step": "time step within the bar (0..steps_per_bar-1)",
              "pitch": f"pitch index (MIDI pitch - {params.lowest_pitch})", "track": "index into track_order"}
    uniform = shard_schema.uniform(
        PHRASES, fields=fields,
        dtypes={"parquet": shard_schema.arrow_dtypes(PARQUET_SCHEMA),
                "npz": {"shape": "int64", "nonzero": "uint16 (uint32 beyond 65535 phrases)", "ids": "<U32",
                        "first_bar": "int32"}},
        shapes={"item": [P, S, params.n_pitches, len(TRACKS)],
                "parquet": {c: ["nnz"] for c in ("bar", "step", "pitch", "track")},
                "npz": {"shape": [5], "nonzero": [5, "nnz"], "ids": ["phrases"], "first_bar": ["phrases"]}},
        track_order=TRACKS,
        resolution=None if in_resolution is None else in_resolution * S // in_steps,
        resolution_unit=f"time steps per beat ({S} per bar of 4/4)", vocabulary=None)
    return {
        **uniform,
        "tensor_axes": ["phrase", "bar", "step", "pitch", "track"],
        "tensor_shape": ["phrases", P, S, params.n_pitches, len(TRACKS)],
        "track_order": list(TRACKS),
        "input_tracks": f"{input_tracks} (LPD-17 families merged into LPD-5 as build_lpd's lpd5 does; "
                        "programs 96-103 and 112-127 dropped)",
        "lowest_pitch": params.lowest_pitch,
        "pitches": f"index i is MIDI pitch {params.lowest_pitch} + i "
                   f"({params.lowest_pitch}..{params.lowest_pitch + params.n_pitches - 1})",
        "steps": f"{S} per bar; input step s (of {in_steps}) kept when s % {in_steps // S} == 0, at s // {in_steps // S}",
        "binarised": True,
        "npz": {
            "files": [f"npz/{s}.npz" for s in SPLITS],
            "shape": "int64 (5,): phrases, bars, steps, pitches, tracks",
            "nonzero": "uint16 (uint32 beyond 65535 phrases) (5, nnz): phrase, bar, step, pitch, track; "
                       "x = np.zeros(shape, bool); x[tuple(nonzero)] = True",
            "ids": "unicode (phrases,): song id", "first_bar": "int32 (phrases,): first bar in the song",
        },
        "parquet": {
            "files": "shards/<split>-<input shard>.parquet",
            "row": "one selected phrase",
            "fields": {"id": "string", "first_bar": "int32", "split": "string",
                       "index": "int32: row of the phrase in npz/<split>.npz",
                       **{f"activity_{t.lower()}": "float32: fraction of steps with a note" for t in TRACKS},
                       "bar": "list<uint8>", "step": "list<uint8>", "pitch": "list<uint8> (index, not MIDI)",
                       "track": "list<uint8>"},
        },
        "manifest": "manifest.parquet: one row per candidate phrase: id, first_bar, split, activity_*, "
                    "n_active, selected, reason (selected | inactive:<Track,...> | too_few_families | not_drawn)",
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.__dict__.items()},
    }


# -- lazy rows: one phrase at a time, without the whole NPZ in memory ---------------------------

#: bytes of the deflated ``nonzero`` member decoded at a time while the row index is built
SPILL_CHUNK = 1 << 22


class PhraseRows:
    """The phrases of a phrase NPZ, read one batch at a time.

    ``nonzero`` is deflated inside the NPZ, so no phrase can be read from it without decoding what
    comes before. ``__init__`` therefore streams the member once (``SPILL_CHUNK`` bytes at a time)
    into an uncompressed scratch file (its bar, step, pitch and track rows, ``2 * 4`` bytes per
    non-zero cell with uint16 coordinates) in ``scratch`` (default: the system's temporary folder;
    removed when the object is collected in the process that made it), and keeps only
    ``offsets`` (phrases + 1 int64: where each phrase's cells start), ``ids`` and ``first_bar``.
    ``rows[idx]`` (an int array) is the dense bool ``(len(idx), bars, steps, pitches, tracks)``
    batch, the same as ``read_phrase_npz(path).dense()[idx]``; ``rows[i]`` (an int) one phrase.
    Each phrase costs four ``os.pread`` calls; the file is reopened lazily per process, so the
    object is safe in a ``DataLoader`` with workers. A file whose ``nonzero`` is not ordered by
    phrase (this package always writes it ordered; MuseGAN's own data may not be) is read whole
    once and sorted before it is spilled.

    Raises the errors of :func:`read_phrase_npz` (same checks), one line naming the file.
    """

    def __init__(self, path: Path, *, item_shape=None, scratch: Path | None = None) -> None:
        import tempfile
        import weakref

        self.path = Path(path)
        z = load_npz(self.path, ["shape"] + [k for k in ("ids", "first_bar") if k in _npz_members(self.path)])
        shape = z["shape"]
        if shape.shape != (5,) or shape.dtype.kind not in "iu":
            raise SchemaError(self.path, "shape must be 5 integers: phrases, bars, steps, pitches, tracks",
                              expected="int (5,)", found=f"{shape.dtype} {shape.tolist()}")
        if item_shape is not None and [int(n) for n in shape[1:]] != list(item_shape):
            raise SchemaError(self.path, "phrase tensor shape differs from schema.json",
                              expected=["phrases", *item_shape], found=shape.tolist())
        self.shape = tuple(int(k) for k in shape)
        n = self.shape[0]
        self.ids = z.get("ids", np.full(n, "", "<U1"))
        self.first_bar = z.get("first_bar", np.zeros(n, np.int32))
        if len(self.ids) != n or len(self.first_bar) != n:
            raise SchemaError(self.path, "ids and first_bar must have one entry per phrase", expected=n,
                              found=(len(self.ids), len(self.first_bar)))
        fd, name = tempfile.mkstemp(prefix="phrases-", suffix=".coords", dir=scratch)
        self._scratch = name
        self._finalizer = weakref.finalize(self, _remove, name, os.getpid())
        try:
            with os.fdopen(fd, "wb") as f:
                counts, self.dtype, self.nnz = _spill(self.path, self.shape, f)
        except BaseException:
            self._finalizer()
            raise
        self.offsets = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=self.offsets[1:])
        self._fd: int | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_fd=None, _pid=None, _finalizer=None)  # a copy never removes the file
        return state

    def _file(self) -> int:
        if self._pid != os.getpid() or self._fd is None:
            self._fd, self._pid = os.open(self._scratch, os.O_RDONLY), os.getpid()
        return self._fd

    def coords(self, i: int) -> np.ndarray:
        """(4, cells) int64 bar, step, pitch, track of phrase ``i``'s non-zero cells."""
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        size = self.dtype.itemsize
        fd = self._file()
        out = np.empty((4, hi - lo), np.int64)
        for r in range(4):
            blob = os.pread(fd, (hi - lo) * size, (r * self.nnz + lo) * size)
            out[r] = np.frombuffer(blob, self.dtype)
        return out

    def __getitem__(self, idx):
        if np.ndim(idx) == 0:
            return self[np.asarray([idx])][0]
        idx = np.asarray(idx, np.int64)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index outside the {n} phrases of {self.path}")
        x = np.zeros((len(idx), *self.shape[1:]), bool)
        for k, i in enumerate(idx % n if n else idx):
            c = self.coords(int(i))
            x[k][tuple(c)] = True
        return x

    def close(self) -> None:
        """Close this process's handle and remove the scratch file (when this process made it)."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> "PhraseRows":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _remove(name: str, pid: int) -> None:
    if os.getpid() == pid:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


def _npz_members(path: Path) -> set[str]:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
    except (OSError, zipfile.BadZipFile):
        return set()  # load_npz names the failure


def _spill(path: Path, shape: tuple[int, ...], out) -> tuple[np.ndarray, np.dtype, int]:
    """Stream ``nonzero`` of the NPZ at ``path``: its rows 1-4 into ``out``, and per-phrase counts
    from row 0. Returns (counts, dtype, nnz)."""
    import zipfile
    import zlib

    n = shape[0]
    try:
        with zipfile.ZipFile(path) as zf:
            if "nonzero.npy" not in zf.namelist():
                raise SchemaError(path, "NPZ lacks arrays ['nonzero']", expected=["shape", "nonzero"],
                                  found=sorted(_npz_members(path)))
            with zf.open("nonzero.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                nz_shape, fortran, dtype = read_header(f)
                if dtype.hasobject:
                    raise UnsafeFileError(path, "member nonzero.npy is an object array (pickled Python objects); "
                                                "NPZ files are read as plain arrays only and never unpickled")
                if dtype.kind not in "iu" or len(nz_shape) != 2 or nz_shape[0] != 5 or fortran:
                    raise SchemaError(path, "nonzero must be an integer (5, nnz) array", expected="uint (5, nnz)",
                                      found=f"{dtype} {nz_shape}")
                nnz = int(nz_shape[1])
                counts = np.zeros(n, np.int64)
                ordered, last = True, -1
                per = max(1, SPILL_CHUNK // dtype.itemsize)
                for r in range(5):
                    left = nnz
                    while left:
                        m = min(per, left)
                        blob = f.read(m * dtype.itemsize)
                        if len(blob) != m * dtype.itemsize:
                            raise SchemaError(path, "member nonzero is damaged (truncated)")
                        a = np.frombuffer(blob, dtype)
                        left -= m
                        if dtype.kind == "i" and m and a.min() < 0:
                            raise SchemaError(path, "nonzero holds negative indexes", expected=">= 0",
                                              found=int(a.min()))
                        if m and a.max() >= shape[r]:
                            raise SchemaError(path, "nonzero indexes outside the tensor", expected=list(shape),
                                              found=f"axis {r}: {int(a.max())}")
                        if r == 0:
                            if ordered and m:
                                ordered = bool(a[0] >= last and (m < 2 or (np.diff(a.astype(np.int64)) >= 0).all()))
                                last = int(a[-1])
                            counts += np.bincount(a, minlength=n)[:n]
                        else:
                            out.write(a.astype(dtype.newbyteorder("="), copy=False).tobytes())
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise SchemaError(path, f"member nonzero is damaged ({type(exc).__name__}: {exc})") from None
    if not ordered:  # MuseGAN's own files: read whole once, ordered by phrase, spilled again
        nz = read_phrase_npz(path).nonzero
        order = np.argsort(nz[0], kind="stable")
        out.seek(0)
        out.truncate()
        for r in range(1, 5):
            out.write(np.ascontiguousarray(nz[r, order]).tobytes())
        dtype = nz.dtype
    return counts, np.dtype(dtype).newbyteorder("="), nnz
