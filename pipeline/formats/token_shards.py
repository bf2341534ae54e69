"""Token shards: Parquet, one row per song and stream, plus training windows made at load time.

Columns: ``id`` (song id, the MD5 of the file), ``stream`` (``all``, ``trackNN``, ``drums``,
``programNNN``), ``split`` (train / valid / test from a hash of the id), ``tokens`` list<uint16>
(vocabulary ids), ``bar_starts`` list<int32> (token index where each bar of the build-lpd grid
starts: the ``Bar`` tokens of REMI / MIDI-like, the first token at or after the bar line for
``notes``). The vocabulary hash is in the file's key-value metadata
(``vocab_hash``) and in ``schema.json``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema as shard_schema
from pipeline.files import atomic_write_bytes
from pipeline.splits import SPLITS

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("stream", pa.string()),
        ("split", pa.string()),
        ("tokens", pa.list_(pa.uint16())),
        ("bar_starts", pa.list_(pa.int32())),
    ]
)

TOKENS = shard_schema.register(shard_schema.Kind(
    "lakh-pipeline/token-shards", 1, (1,), "build_vocab", ("shards/schema.json", "schema.json"),
    ("vocab_hash", "vocab_size", "config"), parquet_format="token_shard", parquet_schema=lambda: SCHEMA))
#: also written into each shard's key-value metadata (``schema_version``)
SCHEMA_VERSION = shard_schema.version(TOKENS)


def parquet_metadata(vocab_hash: str) -> dict[str, str]:
    """A token shard's key-value metadata: ``vocab_hash`` and ``schema_version`` (read by
    :func:`shard_vocab_hash` and :func:`pipeline.schema.check_parquet`) and the
    ``lakh_pipeline.*`` keys (format, version, vocab hash, special ids, split rule)."""
    return {"vocab_hash": vocab_hash, "schema_version": str(SCHEMA_VERSION),
            **shard_schema.parquet_metadata("token_shard", vocab_hash=vocab_hash,
                                            specials={"PAD": 0, "BOS": 1, "EOS": 2, "UNK": 3},
                                            row="one song and stream; tokens are vocabulary ids, bar_starts index "
                                                "tokens; split is train | valid | test from sha256(id)")}


def token_shard_bytes(rows: Sequence[dict], *, vocab_hash: str) -> bytes:
    """rows: dicts with id, stream, split, tokens (uint16 array), bar_starts (int32 array)."""

    def lists(name: str, dtype, pa_type) -> pa.ListArray:
        offsets = np.zeros(len(rows) + 1, np.int32)
        np.cumsum([len(r[name]) for r in rows], out=offsets[1:])
        values = np.concatenate([np.asarray(r[name], dtype) for r in rows]) if rows else np.zeros(0, dtype)
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, pa_type))

    table = pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.string()),
            "stream": pa.array([r["stream"] for r in rows], pa.string()),
            "split": pa.array([r["split"] for r in rows], pa.string()),
            "tokens": lists("tokens", np.uint16, pa.uint16()),
            "bar_starts": lists("bar_starts", np.int32, pa.int32()),
        },
        schema=SCHEMA.with_metadata(parquet_metadata(vocab_hash)),
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", compression_level=3, use_dictionary=["id", "stream", "split"],
                   write_statistics=False)
    return sink.getvalue()


def write_token_shard(path: Path, rows: Sequence[dict], *, vocab_hash: str) -> None:
    atomic_write_bytes(Path(path), token_shard_bytes(rows, vocab_hash=vocab_hash))


def shard_vocab_hash(path: Path) -> str | None:
    meta = pq.read_schema(path).metadata or {}
    value = meta.get(b"vocab_hash")
    return value.decode() if value else None


def check_split(split: str | None) -> str | None:
    """``split`` itself, or ValueError naming the valid ones (a typo must not read as an empty split)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split={split!r} is not a split of the token shards (use one of {', '.join(SPLITS)}, "
                         "or None for all)")
    return split


def read_token_shards(folder: Path, *, split: str | None = None, vocab=None) -> pa.Table:
    """All shards of a folder as one table (optionally one split). With ``vocab`` (a
    ``Vocabulary``), every shard's vocabulary hash must match it (``VocabError`` otherwise).
    A ``split`` other than train, valid, test (or None) is a ValueError."""
    from pipeline.formats.vocab import VocabError

    check_split(split)

    paths = sorted(Path(folder).glob("*.parquet"))
    tables = []
    for p in paths:
        if vocab is not None:
            h = shard_vocab_hash(p)
            if h != vocab.hash:
                raise VocabError(f"{p}: shard made with vocabulary {str(h)[:12]}, not {vocab.hash[:12]}")
        t = pq.read_table(p)
        if split is not None:
            t = t.filter(pa.compute.equal(t["split"], split))
        tables.append(t.replace_schema_metadata(None))
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def windows(tokens: np.ndarray, length: int = 100, stride: int = 100) -> np.ndarray:
    """Training windows cut at load time: ``(n_windows, length)`` views of ``tokens`` starting at
    0, stride, 2*stride...; a tail shorter than ``length`` is left out (the seed's windows of 100
    use ``length=101, stride=1``: 100 inputs and the next token as target)."""
    if length < 1 or stride < 1:
        raise ValueError(f"length={length} and stride={stride} must be positive")
    tokens = np.asarray(tokens)
    if len(tokens) < length:
        return np.zeros((0, length), tokens.dtype)
    view = np.lib.stride_tricks.sliding_window_view(tokens, length)
    return view[::stride]


def schema_document(*, kind: str, vocab_hash: str, vocab_size: int, config: dict, splits: dict,
                    vocab_sha256: str | None = None, vocab_file: str = "../vocab.json") -> dict:
    """``shards/schema.json``. ``kind``: the token kind (``notes``, ``remi``...; ``token_kind`` in the
    document, whose ``kind`` is the shard kind); ``vocab_sha256``: sha256 of the vocabulary file's
    bytes (``vocab_file``, relative to the shard folder)."""
    uniform = shard_schema.uniform(
        TOKENS, fields={}, dtypes={"parquet": shard_schema.arrow_dtypes(SCHEMA)},
        shapes={"item": ["n_tokens"], "parquet": {"tokens": ["n_tokens"], "bar_starts": ["n_bars"]}},
        track_order=None, resolution=config.get("resolution"),
        resolution_unit="time steps per beat of the tokenizer's time grid",
        vocabulary={"id": vocab_hash, "file": vocab_file, "sha256": vocab_sha256, "size": vocab_size,
                    "id_is": "sha256 of the canonical JSON of (config, token list), as vocab.json's 'hash'"})
    return {
        **uniform,
        "token_kind": kind,
        "vocab_hash": vocab_hash,
        "vocab_size": vocab_size,
        "config": config,
        "splits": splits,
        "files": {"parquet": f"{kind}-NNNNN.parquet (key-value metadata: vocab_hash, schema_version, "
                                      "lakh_pipeline.*)"},
        "fields": {
            "id": "string: MD5 of the MIDI file (the LMD id)",
            "stream": "string: 'all' (every non-drum / every track merged), 'trackNN' (notes, per MIDI track), "
                      "'drums' or 'programNNN' (events, per program)",
            "split": "string: train | valid | test, from sha256(id)",
            "tokens": "list<uint16>: vocabulary ids (PAD 0, BOS 1, EOS 2, UNK 3)",
            "bar_starts": "list<int32>: token index where each bar of the build-lpd grid starts (the Bar tokens "
                          "of remi/midilike; for notes the first token at or after the bar line)",
        },
        "windows": "made at load time: pipeline.formats.token_shards.windows(tokens, length, stride)",
    }
