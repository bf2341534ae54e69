"""5-D piano-roll tensor shards: Parquet (sparse rows, with velocities) and NPZ (MuseGAN's
``shape`` + ``nonzero`` format), both readable without this package."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema as shard_schema
from pipeline.formats.arrow_arrays import lists, numeric, strings
from pipeline.formats.npz import ChunkedArray, npz_bytes
from pipeline.files import atomic_write_bytes
from pipeline.symbolic.bars import BarTensor

def _required_list(item: pa.DataType) -> pa.DataType:
    return pa.list_(pa.field("item", item, nullable=False))


#: no column is ever null: declaring them required spares the Parquet writer the definition
#: levels of nullable lists and items (~18% of its time); readers see the same types
PARQUET_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("n_bars", pa.int32(), nullable=False),
        pa.field("bar", _required_list(pa.int16()), nullable=False),
        pa.field("step", _required_list(pa.int16()), nullable=False),
        pa.field("pitch", _required_list(pa.uint8()), nullable=False),
        pa.field("track", _required_list(pa.uint8()), nullable=False),
        pa.field("velocity", _required_list(pa.uint8()), nullable=False),
    ]
)


TENSORS = shard_schema.register(shard_schema.Kind(
    "lakh-pipeline/pianoroll-tensors", 1, (1,), "build_lpd", ("tensors/schema.json", "schema.json"),
    ("track_order", "resolution", "bar_steps", "tensor_shape"), parquet_format="tensor_shard",
    parquet_schema=lambda: PARQUET_SCHEMA))
SCHEMA_VERSION = shard_schema.version(TENSORS)

COORDS_AND_VELOCITY = ("bar", "step", "pitch", "track", "velocity")


#: songs per Parquet row group: a row group is encoded in one go, so small groups keep the
#: writer's buffers small and reused (one group of a whole shard costs hundreds of MB of fresh
#: memory), and readers can stream a shard group by group
ROW_GROUP_SONGS = 16


def parquet_metadata(*, track_order: Sequence[str], resolution: int | None, bar_steps: int) -> dict[str, str]:
    """The key-value metadata of a tensor shard: what a reader needs when the file is copied alone."""
    return shard_schema.parquet_metadata(
        "tensor_shard", track_order=list(track_order), resolution=resolution, bar_steps=bar_steps,
        pitch_range=[0, 127], tensor_axes=["song", "bar", "step", "pitch", "track"],
        coordinates="row = one song; bar, step, pitch, track index the song's (n_bars, bar_steps, 128, tracks) "
                    "tensor; velocity 1..127; track indexes track_order")


def _parquet_bytes(ids: Sequence[str], tensors: Sequence[BarTensor], metadata: dict[str, str] | None = None) -> memoryview:
    sink = pa.BufferOutputStream()
    schema = PARQUET_SCHEMA.with_metadata(metadata) if metadata else PARQUET_SCHEMA
    with pq.ParquetWriter(sink, schema, compression="zstd", compression_level=1, use_dictionary=False,
                          write_statistics=False, write_batch_size=1 << 16) as writer:
        for lo in range(0, len(tensors), ROW_GROUP_SONGS):
            group = tensors[lo : lo + ROW_GROUP_SONGS]
            offsets = np.zeros(len(group) + 1, np.int64)
            np.cumsum([len(t.bar) for t in group], out=offsets[1:])
            if offsets[-1] > np.iinfo(np.int32).max:
                raise ValueError(f"a row group holds at most {np.iinfo(np.int32).max} cells (int32 list offsets)")
            columns = [strings(ids[lo : lo + ROW_GROUP_SONGS]),
                       numeric(np.array([t.n_bars for t in group], np.int32), pa.int32())]
            for name in COORDS_AND_VELOCITY:
                values = np.concatenate([getattr(t, name) for t in group])
                columns.append(lists(offsets, values, PARQUET_SCHEMA.field(name).type))
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
    return memoryview(sink.getvalue())


def write_tensor_shard(parquet_path: Path, npz_path: Path, ids: Sequence[str], tensors: Sequence[BarTensor],
                       *, bar_steps: int, n_tracks: int, track_order: Sequence[str] | None = None,
                       resolution: int | None = None) -> None:
    """Write one shard of songs in both formats (atomically, deterministically).

    Parquet: one row per song, coordinates (bar, step, pitch, track) and velocity as list
    columns, in row groups of ``ROW_GROUP_SONGS`` songs. NPZ: ``shape`` = (songs, max bars,
    bar_steps, 128, tracks), ``nonzero`` (5, nnz) uint16 (restore with ``x = np.zeros(shape,
    bool); x[tuple(nonzero)] = True``), plus ``ids``, ``n_bars`` and ``velocity`` (nnz,) uint8 in
    the order of ``nonzero``. Neither file's columns are assembled whole in memory.

    The Parquet file's key-value metadata (:func:`parquet_metadata`) carries ``track_order``
    (default: ``track0``... for ``n_tracks``), ``resolution``, ``bar_steps`` and the pitch range.
    """
    ids = list(ids)
    order = list(track_order) if track_order is not None else [f"track{k}" for k in range(n_tracks)]
    if len(order) != n_tracks:
        raise ValueError(f"track_order={order} does not have n_tracks={n_tracks} names")
    meta = parquet_metadata(track_order=order, resolution=resolution, bar_steps=bar_steps)
    atomic_write_bytes(parquet_path, _parquet_bytes(ids, tensors, meta))
    atomic_write_bytes(npz_path, npz_bytes(_npz_arrays(ids, tensors, bar_steps, n_tracks)))


def _npz_arrays(ids, tensors, bar_steps, n_tracks) -> dict:
    n_bars = np.array([t.n_bars for t in tensors], np.int32)
    if len(ids) > 65535 or (len(n_bars) and n_bars.max() > 65535):
        raise ValueError("an NPZ shard holds at most 65535 songs of at most 65535 bars")
    nnz = sum(len(t.bar) for t in tensors)
    u16 = np.uint16
    buf = np.empty(max([len(t.bar) for t in tensors] + [1]), u16)  # one song's row, reused

    def rows():  # the rows of nonzero, song by song: song index, bar, step, pitch, track
        for i, t in enumerate(tensors):
            buf[: len(t.bar)] = i
            yield buf[: len(t.bar)]
        for t in tensors:
            yield t.bar.view(u16)  # int16 >= 0: the same bytes as uint16
        for t in tensors:
            yield t.step.view(u16)
        for name in ("pitch", "track"):
            for t in tensors:
                part = buf[: len(t.bar)]
                part[:] = getattr(t, name)
                yield part

    shape = np.array([len(ids), int(n_bars.max()) if len(n_bars) else 0, bar_steps, 128, n_tracks], np.int64)
    width = max([len(i) for i in ids] + [1])
    return {
        "shape": shape,
        "nonzero": ChunkedArray(np.dtype(u16), (5, nnz), rows),
        "velocity": ChunkedArray(np.dtype(np.uint8), (nnz,), lambda: (t.velocity for t in tensors)),
        "ids": np.array(ids, dtype=f"<U{width}"),
        "n_bars": n_bars,
    }


def read_tensor_rows(parquet_path: Path) -> tuple[list[str], list[BarTensor]]:
    """Read a Parquet shard back into ``BarTensor`` objects (for filtering and tests)."""
    table = pq.read_table(parquet_path)
    out = []
    cols = {name: table.column(name).to_pylist() for name in ("id", "n_bars")}
    lists = {name: table.column(name) for name in ("bar", "step", "pitch", "track", "velocity")}
    for i in range(table.num_rows):
        get = lambda name, dt: np.asarray(lists[name][i].values.to_numpy(zero_copy_only=False), dt)  # noqa: E731
        out.append(BarTensor(n_bars=cols["n_bars"][i], bar_steps=0, n_tracks=0,
                             bar=get("bar", np.int16), step=get("step", np.int16), pitch=get("pitch", np.uint8),
                             track=get("track", np.uint8), velocity=get("velocity", np.uint8),
                             bars_padded=0, bars_cropped=0, bars_dropped=0))
    return cols["id"], out


FIELDS = {
    "id": "song id: MD5 of the MIDI file's bytes (the LMD id)",
    "n_bars": "bars of the song (the tensor's bar axis)",
    "bar": "bar index of each non-zero cell (0..n_bars-1)",
    "step": "time step of the cell within its bar (0..bar_steps-1)",
    "pitch": "MIDI pitch of the cell (0..127)",
    "track": "track of the cell: index into track_order",
    "velocity": "velocity of the cell (1..127)",
}


def schema_document(*, tracks: Sequence[str], programs: Sequence[int], bar_steps: int, resolution: int,
                    semantics: str, other_meters: str, manifest=None) -> dict:
    """The ``schema.json`` that sits beside the shards (``manifest``: the manifest's arrow schema)."""
    n = len(tracks)
    uniform = shard_schema.uniform(
        TENSORS,
        fields=FIELDS,
        dtypes={"parquet": shard_schema.arrow_dtypes(PARQUET_SCHEMA),
                "npz": {"shape": "int64", "nonzero": "uint16", "velocity": "uint8", "ids": "<U32", "n_bars": "int32"}},
        shapes={"item": ["bars", bar_steps, 128, n],
                "parquet": {c: ["nnz"] for c in COORDS_AND_VELOCITY},
                "npz": {"shape": [5], "nonzero": [5, "nnz"], "velocity": ["nnz"], "ids": ["songs"],
                        "n_bars": ["songs"]}},
        track_order=tracks, resolution=resolution,
        resolution_unit=f"time steps per beat ({bar_steps} per bar of 4/4)", vocabulary=None)
    if manifest is not None:
        uniform["manifest"] = {"file": "../manifest.parquet", "row": "one input file",
                               "dtypes": shard_schema.arrow_dtypes(manifest)}
    return {
        **uniform,
        "files": {"parquet": "<tracks>-NNNNN.parquet", "npz": "<tracks>-NNNNN.npz (the same songs, same order)"},
        "tensor_axes": ["song", "bar", "step", "pitch", "track"],
        "tensor_shape": ["songs", "bars", bar_steps, 128, len(tracks)],
        "track_order": list(tracks),
        "track_programs": list(programs),
        "resolution": resolution,
        "bar_steps": bar_steps,
        "other_meters": other_meters,
        "semantics": semantics,
        "parquet": {
            "row": "one song",
            "fields": {f.name: str(f.type) for f in PARQUET_SCHEMA},
            "coordinates": "bar, step, pitch, track index the tensor; velocity is 1..127",
        },
        "npz": {
            "shape": "int64 (5,): songs, max bars in the shard, bar_steps, 128, tracks",
            "nonzero": "uint16 (5, nnz): song, bar, step, pitch, track (x[tuple(nonzero)] = True)",
            "velocity": "uint8 (nnz,), in the order of nonzero",
            "ids": "unicode (songs,): MD5 of the MIDI bytes",
            "n_bars": "int32 (songs,): bars of each song (the rest of the bar axis is padding)",
        },
    }
