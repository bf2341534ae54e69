"""The Parquet schema of every shard kind, taken from the writer that writes it, and the footer
check that the readers run on each Parquet shard (:func:`check_parquet`).

It sits above the writers (``pipeline.io.tensor_shards``, ``pipeline.tokens.shards``,
``pipeline.io.audio_shards``) and :mod:`pipeline.schema`, which the writers import for their
``kind`` and ``schema_version``: so ``pipeline.schema`` never imports a writer.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import SchemaError
from pipeline.schema import AUDIO, PHRASES, TENSORS, TOKENS, arrow_type, version


def parquet_schema(kind: str):
    """The ``pyarrow.Schema`` of the Parquet shards of ``kind`` at its current version."""
    import pyarrow as pa

    if kind == TENSORS:
        from pipeline.io.tensor_shards import PARQUET_SCHEMA

        return PARQUET_SCHEMA
    if kind == TOKENS:
        from pipeline.tokens.shards import SCHEMA

        return SCHEMA
    if kind == AUDIO:
        from pipeline.io.audio_shards import SCHEMA_FIELDS

        return pa.schema(SCHEMA_FIELDS)
    if kind == PHRASES:
        return pa.schema([("id", pa.string()), ("first_bar", pa.int32()), ("split", pa.string()),
                          ("index", pa.int32())]
                         + [(f"activity_{t}", pa.float32()) for t in ("drums", "piano", "guitar", "bass", "strings")]
                         + [(c, pa.list_(pa.uint8())) for c in ("bar", "step", "pitch", "track")])
    raise KeyError(f"{kind} has no Parquet shards")


def check_parquet(path: str | Path, kind: str, doc: dict | None = None, *, columns=None):
    """Check one Parquet shard of ``kind`` (footer only): every column a reader uses is there with
    the type of the current version; for token shards the key-value ``schema_version`` and
    ``vocab_hash`` match ``doc`` (its folder's schema). Returns the file's arrow schema.

    ``columns``: the names to check (default: every column of the kind).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        got = pq.read_schema(path)
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) for non-Parquet bytes
        raise SchemaError(path, f"not a readable Parquet file ({exc})") from None
    want = parquet_schema(kind)
    names = list(columns) if columns is not None else want.names
    missing = [n for n in names if got.get_field_index(n) < 0]
    if missing:
        raise SchemaError(path, f"{kind} shard lacks columns {missing}", expected=names, found=got.names)
    for n in names:
        w, g = want.field(n).type, got.field(n).type
        if arrow_type(g) != arrow_type(w):
            raise SchemaError(path, f"column {n!r} has another type", expected=arrow_type(w), found=arrow_type(g),
                              hint=f"not a {kind} shard of schema_version {version(kind)}")
    if kind == TOKENS and doc is not None:
        meta = {k.decode(): v.decode() for k, v in (got.metadata or {}).items()}
        v = meta.get("schema_version")
        if v is not None and v != str(doc["schema_version"]):
            raise SchemaError(path, "shard schema_version differs from its folder's schema.json",
                              expected=doc["schema_version"], found=v)
        h = meta.get("vocab_hash")
        if h != doc.get("vocab_hash"):
            raise SchemaError(path, "shard made with another vocabulary than its folder's schema.json says",
                              expected=str(doc.get("vocab_hash"))[:12], found=str(h)[:12])
    return got
