"""The build manifest: one Parquet row per input file, with an explicit schema."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.formats.arrow_arrays import table_from_rows

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


#: rows per Parquet row group of a manifest written in parts (``ManifestWriter``); a manifest of at
#: most this many rows is one row group, the same bytes as ``write_manifest`` of all its rows
ROW_GROUP_ROWS = 65536


def write_manifest(path: Path, rows: list[dict], *, note_columns: Sequence[str]) -> None:
    with ManifestWriter(path, manifest_schema(note_columns)) as w:
        w.write(rows)


def manifest_metadata(stage: str | None = None, *, row: str = "one input file") -> dict[str, str]:
    """A manifest's key-value metadata: ``lakh_pipeline.format`` = ``manifest``, its version, what a
    row is and (where given) the stage that wrote it."""
    from pipeline.schema import parquet_metadata

    return parquet_metadata("manifest", row=row, **({} if stage is None else {"stage": stage}))


class ManifestWriter:
    """A manifest written as rows arrive, in order: the caller holds one part of the rows at a time
    and this holds at most ``ROW_GROUP_ROWS`` rows, as Arrow columns (a few hundred bytes a row,
    against several KB as dicts). The file appears atomically on ``close()``.

    ``to_table(rows, schema)`` turns one part of the rows into a table of exactly ``schema``
    (default: ``table_from_rows``)."""

    def __init__(self, path: Path, schema: pa.Schema, *, to_table=table_from_rows,
                 row_group_rows: int = ROW_GROUP_ROWS, stage: str | None = None) -> None:
        self.path = Path(path)
        self.schema = schema.with_metadata({**{k.decode(): v.decode() for k, v in (schema.metadata or {}).items()},
                                            **manifest_metadata(stage)})
        self._to_table = to_table
        self.row_group_rows = row_group_rows
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._tmp = self.path.with_name(f".{self.path.name}.part")
        self._writer = pq.ParquetWriter(str(self._tmp), self.schema, compression="zstd", write_statistics=False)
        self.rows = 0

    def write(self, rows: Sequence[dict]) -> None:
        if not rows:
            return
        self._pending.append(self._to_table(rows, self.schema))
        self._pending_rows += len(rows)
        self.rows += len(rows)
        while self._pending_rows >= self.row_group_rows:
            self._flush(self.row_group_rows)

    def _flush(self, n: int) -> None:
        table = pa.concat_tables(self._pending).combine_chunks()
        self._writer.write_table(table.slice(0, n), row_group_size=n)
        rest = table.slice(n)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self) -> None:
        if self.rows == 0:
            self._writer.write_table(self._to_table([], self.schema))
        elif self._pending_rows:
            self._flush(self._pending_rows)
        self._writer.close()
        os.replace(self._tmp, self.path)

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._writer.close()
            self._tmp.unlink(missing_ok=True)
