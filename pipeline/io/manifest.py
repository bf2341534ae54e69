"""The build manifest: one Parquet row per input file, with an explicit schema."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io.arrow_arrays import table_from_rows
from pipeline.io.npz import atomic_write_bytes

BASE_FIELDS = [
    ("source", pa.string()),  # path inside the source folder or archive
    ("id", pa.string()),  # MD5 of the file's bytes (the LMD id); null when unreadable
    ("msd_id", pa.string()),  # from lmd_matched / lmd_aligned layouts
    ("size_bytes", pa.int64()),
    ("status", pa.string()),  # ok | recovered | skipped | error
    ("code", pa.string()),  # null for ok/recovered; midi.* / skip.* / input.* / internal.*
    ("message", pa.string()),  # the reason, or what was repaired
    ("repairs", pa.list_(pa.string())),
    ("warnings", pa.list_(pa.string())),
    ("shard", pa.int32()),  # tensor shard holding the song
    ("ticks_per_quarter", pa.int32()),
    ("n_midi_tracks", pa.int32()),
    ("n_instruments", pa.int32()),
    ("n_notes", pa.int64()),
]
TAIL_FIELDS = [
    ("n_beats", pa.int32()),
    ("n_steps", pa.int64()),
    ("n_bars", pa.int32()),
    ("bars_padded", pa.int32()),
    ("bars_cropped", pa.int32()),
    ("bars_dropped", pa.int32()),
    ("time_signatures", pa.list_(pa.string())),
    ("first_beat_time", pa.float64()),
    ("tempo_min", pa.float64()),
    ("tempo_max", pa.float64()),
    ("duration", pa.float64()),
    ("lpd_cleansed_criteria", pa.bool_()),
    ("lpd_matched", pa.bool_()),
    ("lpd_cleansed", pa.bool_()),
    ("match_msd_id", pa.string()),
]


def manifest_schema(note_columns: Sequence[str]) -> pa.Schema:
    return pa.schema(BASE_FIELDS + [(c, pa.int64()) for c in note_columns] + TAIL_FIELDS)


def write_manifest(path: Path, rows: list[dict], *, note_columns: Sequence[str]) -> None:
    schema = manifest_schema(note_columns)
    table = table_from_rows(rows, schema)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=False)
    atomic_write_bytes(Path(path), sink.getvalue())
