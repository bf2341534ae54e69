"""Shard schemas: every shard folder's ``schema.json``, its ``kind`` and ``schema_version``,
read and checked before a reader touches the shards.

This module is the one place that knows each shard kind's ``kind`` string and current
``schema_version``; the writers (``pipeline.io.tensor_shards``, ``pipeline.tokens.shards``,
``pipeline.io.audio_shards``, ``stages.build_phrases``, ``stages.build_lpd``) take them from here,
and the readers (``pipeline.data``, ``pipeline.inspection``) check them with :func:`read_schema`
and :func:`pipeline.parquet_schemas.check_parquet`. It imports no writer (they import it): the
Parquet schemas, which the writers define, are gathered one layer up in
:mod:`pipeline.parquet_schemas`.

Versioning rule
---------------
``schema_version`` versions the shards, i.e. what a reader gets out of them. It is bumped (here,
in :data:`KINDS`) on any change of a field or array name, dtype, shape or axis order, track
order, unit or meaning of a value, or of a ``schema.json`` key that readers use. Adding a
descriptive key to ``schema.json`` that no reader requires is not a change. A bump is explicit:

- the writer's new shards carry the new number (in ``schema.json``, and for token shards in the
  Parquet key-value metadata as well);
- ``readable`` lists the versions this code reads; a reader refuses any other with a
  :class:`~pipeline.errors.SchemaError` that names the file, the expected and the found version,
  and says what to do: a newer version needs a newer lakh-pipeline, an older one a rebuild
  (``dvc repro <stage>``) or the lakh-pipeline release that wrote it;
- the change is recorded in ``docs/schemas.md`` ("Version history"), and the test
  ``tests/test_consumers.py::test_current_versions_are_documented`` fails until it is.

Two older spellings of version-1 documents (written before the uniform keys below) are read as
version 1, since they describe the very same shards: token shards whose ``kind`` was the token
kind (``remi``...) with ``version``, and audio shards with ``version`` and no ``kind``.

Every ``schema.json`` written now has the uniform keys ``kind``, ``schema_version``, ``fields``
(name -> meaning), ``dtypes`` (per format: name -> dtype), ``shapes`` (per format: name -> dims),
``track_order``, ``resolution`` + ``resolution_unit`` and ``vocabulary`` (null where they do not
apply), next to the kind's own keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import SchemaError
from pipeline.names import VOCAB_KINDS

TENSORS = "lakh-pipeline/pianoroll-tensors"
SONGS = "lakh-pipeline/song-pianorolls"
PHRASES = "lakh-pipeline/phrase-tensors"
TOKENS = "lakh-pipeline/token-shards"
AUDIO = "lakh-pipeline/audio-clips"


@dataclass(frozen=True)
class Kind:
    """One shard kind.

    ``version`` is what the writers write; ``readable`` the versions the readers accept;
    ``stage`` the DVC stage that writes it; ``search``: where ``schema.json`` sits relative to a
    folder a reader is given (first that exists); ``required``: keys readers use.
    """

    name: str
    version: int
    readable: tuple[int, ...]
    stage: str
    search: tuple[str, ...]
    required: tuple[str, ...]


KINDS: dict[str, Kind] = {
    TENSORS: Kind(TENSORS, 1, (1,), "build_lpd", ("tensors/schema.json", "schema.json"),
                  ("track_order", "resolution", "bar_steps", "tensor_shape")),
    SONGS: Kind(SONGS, 1, (1,), "build_lpd", ("songs/schema.json", "schema.json", "../schema.json"),
                ("track_order", "resolution")),
    PHRASES: Kind(PHRASES, 1, (1,), "build_phrases", ("schema.json", "../schema.json"),
                  ("track_order", "tensor_shape", "lowest_pitch")),
    TOKENS: Kind(TOKENS, 1, (1,), "build_vocab", ("shards/schema.json", "schema.json"),
                 ("vocab_hash", "vocab_size", "config")),
    AUDIO: Kind(AUDIO, 1, (1,), "render_audio", ("schema.json", "../schema.json"),
                ("sample_rate", "channels", "clip_samples")),
}

#: the uniform keys of every schema.json written now (see the module docstring)
UNIFORM_KEYS = ("kind", "schema_version", "fields", "dtypes", "shapes", "track_order", "resolution",
                "resolution_unit", "vocabulary")


def version(kind: str) -> int:
    """The ``schema_version`` the writers of ``kind`` write now."""
    return KINDS[kind].version


def schema_path(folder: str | Path, kind: str) -> Path:
    """Where the ``schema.json`` of ``folder`` (a stage output or one of its shard folders) is."""
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    for rel in KINDS[kind].search:
        p = folder / rel
        if p.is_file():
            return p.resolve() if rel.startswith("..") else p
    return folder / KINDS[kind].search[0]


def normalise(doc: dict) -> dict:
    """A copy of ``doc`` with the older version-1 spellings read as the current keys."""
    doc = dict(doc)
    if "schema_version" not in doc and "version" in doc:
        if doc.get("kind") in VOCAB_KINDS and "vocab_hash" in doc:
            doc.setdefault("token_kind", doc["kind"])
            doc["kind"], doc["schema_version"] = TOKENS, doc["version"]
        elif "kind" not in doc and "producer" in doc and "sample_rate" in doc:
            doc["kind"], doc["schema_version"] = AUDIO, doc["version"]
    return doc


def read_schema(folder: str | Path, kind: str) -> dict:
    """Read and check the ``schema.json`` of a shard folder; return it (normalised).

    Raises
    ------
    SchemaError
        No ``schema.json``; not a JSON object; no ``kind``, an unknown one or another kind than
        ``kind``; no ``schema_version`` or one this code does not read (newer: upgrade
        lakh-pipeline; older: rebuild); a key that readers of ``kind`` need is missing.
    """
    spec = KINDS[kind]
    path = schema_path(folder, kind)
    if not path.is_file():
        raise SchemaError(path, "no schema.json beside the shards", expected=f"a {kind} schema.json", found="none",
                          hint=f"every shard folder that lakh-pipeline writes has one (`dvc repro {spec.stage}`); "
                               "shards from elsewhere need one that declares kind and schema_version, see "
                               "docs/schemas.md")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(path, f"cannot read the schema ({exc})") from None
    except ValueError as exc:
        raise SchemaError(path, f"the schema is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise SchemaError(path, "the schema is not a JSON object", expected="an object", found=type(doc).__name__)
    return check_document(doc, kind, path)


def check_document(doc: dict, kind: str, path: str | Path = "schema.json") -> dict:
    """Check an already-parsed schema document against ``kind`` (see :func:`read_schema`)."""
    spec = KINDS[kind]
    doc = normalise(doc)
    found = doc.get("kind")
    if found is None:
        raise SchemaError(path, "no 'kind' in the schema", expected=repr(kind), found="none")
    if found != kind:
        what = "wrong shard kind" if found in KINDS else "unknown shard kind"
        raise SchemaError(path, what, expected=repr(kind), found=repr(found))
    v = doc.get("schema_version")
    if v is None:
        raise SchemaError(path, "no 'schema_version' in the schema", expected=f"schema_version {spec.version}",
                          found="none")
    if isinstance(v, bool) or not isinstance(v, int):
        raise SchemaError(path, "schema_version is not an integer", expected=spec.version, found=repr(v))
    if v not in spec.readable:
        known = ", ".join(str(k) for k in spec.readable)
        if v > max(spec.readable):
            hint = (f"written by a newer lakh-pipeline; this one reads {kind} version {known}: upgrade "
                    f"lakh-pipeline to read these shards")
        else:
            hint = (f"written by an older lakh-pipeline; this one reads {kind} version {known}: rebuild them "
                    f"with `dvc repro {spec.stage}`, or read them with the release that wrote them")
        raise SchemaError(path, f"unsupported {kind} schema_version", expected=known, found=v, hint=hint)
    missing = [k for k in spec.required if k not in doc]
    if missing:
        raise SchemaError(path, f"the {kind} schema lacks keys that readers need", expected=list(spec.required),
                          found=sorted(doc))
    return doc


def describe(folder: str | Path, *, recursive: bool = True) -> list[str]:
    """One line per ``schema.json`` in ``folder`` (and below it, unless not ``recursive``): its
    kind, version, and ``ok`` or the reason it would be refused (for ``pipeline inspect``)."""
    folder = Path(folder)
    lines = []
    found = folder.rglob("schema.json") if recursive else folder.glob("schema.json")
    for p in sorted(q for q in found if not any(part.startswith(".") for part in q.relative_to(folder).parts)):
        try:
            doc = normalise(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            lines.append(f"  schema {p.relative_to(folder)}: unreadable")
            continue
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind not in KINDS:
            lines.append(f"  schema {p.relative_to(folder)}: unknown kind {kind!r}")
            continue
        try:
            check_document(doc, kind, p)
            state = "ok"
        except SchemaError as exc:
            state = f"refused: {exc.what}: expected {exc.expected}, found {exc.found}"
        lines.append(f"  schema {p.relative_to(folder)}: {kind} v{doc.get('schema_version')} ({state})")
    return lines


def arrow_type(t) -> str:
    """An Arrow type as ``str(type)`` spells it, but with lists as ``list<uint16>``: Parquet names
    a list's items ``element`` where pyarrow says ``item``; the name is not part of the type."""
    import pyarrow as pa

    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{'large_' if pa.types.is_large_list(t) else ''}list<{arrow_type(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{f.name}: {arrow_type(f.type)}" for f in t) + ">"
    return str(t)


def arrow_dtypes(schema) -> dict[str, str]:
    """``{column: arrow type}`` of a ``pyarrow.Schema`` (see :func:`arrow_type`)."""
    return {f.name: arrow_type(f.type) for f in schema}


def uniform(kind: str, *, fields: dict, dtypes: dict, shapes: dict, track_order=None, resolution=None,
            resolution_unit: str | None = None, vocabulary: dict | None = None) -> dict:
    """The uniform keys of a ``schema.json`` of ``kind`` at its current version (the writers merge
    them into their documents)."""
    return {"kind": kind, "schema_version": version(kind), "fields": fields, "dtypes": dtypes, "shapes": shapes,
            "track_order": None if track_order is None else list(track_order), "resolution": resolution,
            "resolution_unit": resolution_unit, "vocabulary": vocabulary}


#: the prefix of the Parquet key-value metadata this package writes (``lakh_pipeline.format`` ...)
META_PREFIX = "lakh_pipeline."
#: ``lakh_pipeline.format`` of each Parquet file kind -> the shard kind whose version it carries
#: (``None``: manifests, versioned by :data:`MANIFEST_VERSION`)
PARQUET_FORMATS = {"tensor_shard": TENSORS, "token_shard": TOKENS, "audio_shard": AUDIO, "phrase_shard": PHRASES,
                   "manifest": None}
MANIFEST_VERSION = 1


def parquet_metadata(fmt: str, **essentials) -> dict[str, str]:
    """The key-value metadata of a Parquet file of format ``fmt`` (a key of :data:`PARQUET_FORMATS`):
    ``lakh_pipeline.format``, ``lakh_pipeline.format_version`` (the shard kind's ``schema_version``),
    ``lakh_pipeline.kind`` (the shard kind, for shards) and one ``lakh_pipeline.<name>`` per
    essential, what a reader needs when the file is copied alone. Values are strings: str as is,
    anything else as canonical JSON, so the same arguments give the same bytes."""
    if fmt not in PARQUET_FORMATS:
        raise KeyError(f"unknown Parquet format {fmt!r} (one of {sorted(PARQUET_FORMATS)})")
    kind = PARQUET_FORMATS[fmt]
    meta = {f"{META_PREFIX}format": fmt,
            f"{META_PREFIX}format_version": str(MANIFEST_VERSION if kind is None else version(kind))}
    if kind is not None:
        meta[f"{META_PREFIX}kind"] = kind
    for name, value in sorted(essentials.items()):
        meta[f"{META_PREFIX}{name}"] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return meta


def read_parquet_metadata(path: str | Path) -> dict[str, str]:
    """The ``lakh_pipeline.*`` key-value metadata of a Parquet file (footer only), prefix removed."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return {k.decode()[len(META_PREFIX):]: v.decode() for k, v in meta.items() if k.decode().startswith(META_PREFIX)}
