"""Shard schemas: every shard folder's ``schema.json``, its ``kind`` and ``schema_version``,
read and checked before a reader touches the shards.

The registry of the shard kinds: each format module of :mod:`pipeline.formats` (tensor shards,
song NPZ, phrase shards, token shards, audio shards) declares its kind (``kind`` string, current
``schema_version``, the versions it reads, its Parquet schema) and adds it to :data:`KINDS` with
:func:`register` when it is imported (readers take the kind's name from its module;
:mod:`pipeline.inspection` imports all five). Readers check
a folder's ``schema.json`` with :func:`read_schema` and each Parquet shard's footer with
:func:`check_parquet`. This module imports no format module (they import it).

Versioning rule
---------------
``schema_version`` versions the shards, i.e. what a reader gets out of them. It is bumped (in the
format module's :class:`Kind`) on any change of a field or array name, dtype, shape or axis order, track
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline.errors import SchemaError
from pipeline.names import VOCAB_KINDS


@dataclass(frozen=True)
class Kind:
    """One shard kind, as its format module registers it (:func:`register`).

    ``version`` is what the writers write; ``readable`` the versions the readers accept;
    ``stage`` the DVC stage that writes it; ``search``: where ``schema.json`` sits relative to a
    folder a reader is given (first that exists); ``required``: keys readers use;
    ``parquet_format``: the ``lakh_pipeline.format`` of its Parquet shards and ``parquet_schema``
    a function returning their ``pyarrow.Schema`` (both ``None`` for a kind without Parquet shards).
    """

    name: str
    version: int
    readable: tuple[int, ...]
    stage: str
    search: tuple[str, ...]
    required: tuple[str, ...]
    parquet_format: str | None = None
    parquet_schema: Callable[[], Any] | None = field(default=None, compare=False)


#: every shard kind whose format module of :mod:`pipeline.formats` has been imported
KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> str:
    """Add ``kind`` to :data:`KINDS` (once per name); return its name, the module's constant."""
    if kind.name in KINDS and KINDS[kind.name] != kind:
        raise ValueError(f"shard kind {kind.name!r} is registered twice, differently")
    KINDS[kind.name] = kind
    return kind.name


#: the uniform keys of every schema.json written now (see the module docstring)
UNIFORM_KEYS = ("kind", "schema_version", "fields", "dtypes", "shapes", "track_order", "resolution",
                "resolution_unit", "vocabulary")

#: the names of the two kinds with older version-1 spellings (:func:`normalise`)
_TOKENS = "lakh-pipeline/token-shards"
_AUDIO = "lakh-pipeline/audio-clips"


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
            doc["kind"], doc["schema_version"] = _TOKENS, doc["version"]
        elif "kind" not in doc and "producer" in doc and "sample_rate" in doc:
            doc["kind"], doc["schema_version"] = _AUDIO, doc["version"]
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
#: ``lakh_pipeline.format`` of the manifests (:mod:`pipeline.formats.manifest`), versioned by
#: :data:`MANIFEST_VERSION`; a shard kind's Parquet format is its ``Kind.parquet_format``
MANIFEST_FORMAT = "manifest"
MANIFEST_VERSION = 1


def parquet_formats() -> dict[str, str | None]:
    """``lakh_pipeline.format`` of each Parquet file kind -> the shard kind whose version it carries
    (``None``: manifests, versioned by :data:`MANIFEST_VERSION`)."""
    return {**{k.parquet_format: k.name for k in KINDS.values() if k.parquet_format}, MANIFEST_FORMAT: None}


def parquet_metadata(fmt: str, **essentials) -> dict[str, str]:
    """The key-value metadata of a Parquet file of format ``fmt`` (a key of :func:`parquet_formats`):
    ``lakh_pipeline.format``, ``lakh_pipeline.format_version`` (the shard kind's ``schema_version``),
    ``lakh_pipeline.kind`` (the shard kind, for shards) and one ``lakh_pipeline.<name>`` per
    essential, what a reader needs when the file is copied alone. Values are strings: str as is,
    anything else as canonical JSON, so the same arguments give the same bytes."""
    formats = parquet_formats()
    if fmt not in formats:
        raise KeyError(f"unknown Parquet format {fmt!r} (one of {sorted(formats)})")
    kind = formats[fmt]
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


def parquet_schema(kind: str):
    """The ``pyarrow.Schema`` of the Parquet shards of ``kind`` at its current version (its format
    module's)."""
    spec = KINDS[kind]
    if spec.parquet_schema is None:
        raise KeyError(f"{kind} has no Parquet shards")
    return spec.parquet_schema()


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
    if kind == _TOKENS and doc is not None:
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
