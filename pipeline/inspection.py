"""`pipeline inspect PATH`: what any file the pipeline writes holds, in a few lines, and its plot.

Files are recognised by their content (magic bytes, Parquet columns, NPZ members, JSON keys), not by
their names; the kinds (what :func:`kind_of` returns):

==================  ======================================================================================
song-npz            one song's piano-roll, LPD / pypianoroll NPZ (build_lpd ``songs/``)
tensor-parquet      5-D piano-roll tensor shard, Parquet (build_lpd ``tensors/``)
tensor-npz          the same songs in MuseGAN's ``shape`` + ``nonzero`` NPZ (build_lpd ``tensors/``)
phrase-parquet      phrase shard, Parquet (build_phrases ``shards/``)
phrase-npz          phrase tensors, MuseGAN NPZ (build_phrases ``npz/``)
musegan-npz         ``shape`` + ``nonzero`` NPZ: MuseGAN samples (``models/musegan/``), MuseGAN's own data
token-parquet       token shard (build_vocab ``shards/``, BPE ids in ``shards/bpe/``)
audio-parquet       audio clip shard, Hugging Face ``Audio`` Parquet (render_audio / ingest_audio)
audio-npz           the same clips as float32 NPZ (render_audio / ingest_audio ``npz/``)
vqvae-codes         a Jukebox sample's VQ-VAE codes, one array per level (``samples/<mode>/codes.npz``)
manifest            a stage's ``manifest.parquet`` (one row per input file; build_phrases: per candidate)
vocab               token vocabulary (build_vocab ``vocab.json``)
bpe-tokenizer       Hugging Face ``tokenizer.json`` (build_vocab ``shards/bpe/``)
schema              a shard folder's ``schema.json``
summary             a stage's ``summary.json``
corpus              the corpus stage's ``corpus.json``
card                a stage's dataset card ``README.md`` (Hugging Face YAML header + Markdown)
midi                a Standard MIDI file, summarised with the pipeline's own reader
folder              every file above under it, counted by kind, and its schema files
==================  ======================================================================================

Anything else, and a damaged file (truncated Parquet or NPZ, text under an ``.npz`` name, an
empty file, an NPZ that would need unpickling, a Parquet or NPZ of another project, a folder with
nothing known), is a :class:`~pipeline.errors.PipelineError` whose message is one line: the CLI
prints it and exits 1. NPZ files are never unpickled (``.npy`` headers are read with numpy's
literal parser; arrays with ``allow_pickle=False``).

:func:`pipeline.inspection_plot.plot` draws them (``inspect --plot``).
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import schema as shard_schema
from pipeline.formats.audio_shards import AUDIO
from pipeline.formats.phrase_shards import PHRASES
from pipeline.formats.song_npz import read_song
from pipeline.formats.tensor_shards import TENSORS
from pipeline.formats.token_shards import TOKENS
from pipeline.errors import PipelineError, SchemaError, UnsafeFileError

MIDI_SUFFIXES = (".mid", ".midi", ".rmi", ".kar")
#: JSON files a folder listing opens (any other JSON there counts as an "other" file)
JSON_NAMES = ("vocab.json", "tokenizer.json", "schema.json", "summary.json", "corpus.json")

_SHARD_KIND = {"tensor-parquet": TENSORS, "tensor-npz": TENSORS,
               "phrase-parquet": PHRASES, "phrase-npz": PHRASES,
               "token-parquet": TOKENS, "audio-parquet": AUDIO,
               "audio-npz": AUDIO}
_KNOWN = ("song, tensor, phrase, token and audio shards (Parquet / NPZ), manifests, vocab.json, tokenizer.json, "
          "schema.json, summary.json, corpus.json, dataset cards (README.md), MIDI files and output folders")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _start(head: bytes) -> str:
    return f"it starts with {head[:12]!r}"


@dataclass
class Found:
    """What :func:`sniff` found: the kind, and what it read to tell."""

    kind: str
    #: what sniffing read: Parquet: the arrow schema; NPZ: {array: (dtype, shape)}; JSON: the document
    meta: object = None


# -- recognising a file ----------------------------------------------------------------------------

def kind_of(path: Path) -> str:
    """The kind of ``path``: one of the names in the module's table (``song-npz``, ``manifest``...).

    Raises
    ------
    PipelineError
        (SchemaError, UnsafeFileError) the file is empty, damaged, or not one the pipeline writes.
    """
    return sniff(Path(path)).kind


def sniff(path: Path, *, deep: bool = True) -> Found:
    """Recognise ``path`` (errors: see :func:`kind_of`). ``deep=False`` (folder listings): NPZ by
    member names only (no ``.npy`` header read), MIDI by its magic bytes only."""
    if path.is_dir():
        return Found("folder")
    size = path.stat().st_size
    if size == 0:
        raise SchemaError(path, "empty file (0 bytes)")
    with path.open("rb") as fh:
        head = fh.read(16)
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    suffix = path.suffix.lower()
    if head.startswith(b"PAR1") or suffix == ".parquet":
        return _sniff_parquet(path, head, tail)
    if head.startswith(b"PK") or suffix == ".npz":
        return _sniff_npz(path, head, deep=deep)
    if head.startswith(b"MThd") or (head.startswith(b"RIFF") and head[8:12] == b"RMID"):
        return Found("midi")
    if suffix in MIDI_SUFFIXES:
        if deep:
            return Found("midi")  # read_midi says what is wrong with it (a MidiError and its code)
        raise SchemaError(path, f"not a MIDI file ({_start(head)})")
    if suffix == ".json" or head.lstrip()[:1] == b"{":
        return _sniff_json(path)
    if path.name == CARD_NAME and head.startswith(b"---\n"):
        return _sniff_card(path)
    raise SchemaError(path, f"not a file lakh-pipeline writes ({_start(head)}); inspect reads {_KNOWN}")


CARD_NAME = "README.md"


def _sniff_card(path: Path) -> Found:
    from pipeline.cards import front_matter

    try:
        head = front_matter(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SchemaError(path, f"not a dataset card ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError: a damaged header
        from pipeline.config import yaml_error

        # (the header starts on the card's second line, after its opening '---')
        raise SchemaError(path, f"the dataset card's YAML header does not parse: {yaml_error(exc, first_line=2)}") from None
    if not isinstance(head, dict) or "configs" not in head:
        raise SchemaError(path, "not a lakh-pipeline dataset card (no 'configs' in its YAML header)")
    return Found("card", head)


def _describe_card(path: Path, found: Found) -> list[str]:
    head = found.meta
    lines = [f"  dataset card: {head.get('pretty_name', '?')}",
             f"  license {head.get('license')}; size {', '.join(head.get('size_categories') or [])}; "
             f"tags {', '.join(head.get('tags') or [])}"]
    for c in head.get("configs") or []:
        files = ", ".join(f"{d.get('split')}: {d.get('path')}" for d in c.get("data_files") or [])
        lines.append(f"  config {c.get('config_name')}{' (default)' if c.get('default') else ''}: {files}")
    return lines


def _parquet_kind(names: set[str]) -> str | None:
    if {"first_bar", "index", "bar", "step", "pitch", "track"} <= names:
        return "phrase-parquet"
    if {"n_bars", "bar", "step", "pitch", "track", "velocity"} <= names:
        return "tensor-parquet"
    if {"tokens", "bar_starts"} <= names:
        return "token-parquet"
    if "audio" in names and "clip" in names:
        return "audio-parquet"
    if {"source", "status", "code"} <= names or {"id", "first_bar", "selected", "reason"} <= names:
        return "manifest"
    return None


def _sniff_parquet(path: Path, head: bytes, tail: bytes) -> Found:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.schema import check_parquet

    if not head.startswith(b"PAR1"):
        raise SchemaError(path, f"not a Parquet file ({_start(head)}, not PAR1)")
    if tail != b"PAR1":
        raise SchemaError(path, "truncated or damaged Parquet file (it does not end with the PAR1 of a footer)")
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise SchemaError(path, f"damaged Parquet footer ({' '.join(str(exc).split())})") from None
    kind = _parquet_kind(set(schema.names))
    if kind is None:
        cols = ", ".join(schema.names[:8]) + (", ..." if len(schema.names) > 8 else "")
        raise SchemaError(path, f"a Parquet file with columns [{cols}], not one lakh-pipeline writes "
                                "(tensor, phrase, token or audio shard, or a manifest)")
    if kind in _SHARD_KIND:
        check_parquet(path, _SHARD_KIND[kind])  # the columns' types: a look-alike from elsewhere is refused
    return Found(kind, schema)


def _npy_headers(path: Path, zf: zipfile.ZipFile) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """{array name: (dtype, shape)} from the ``.npy`` headers (numpy's literal parser: no pickle)."""
    fmt = np.lib.format
    out = {}
    for name in zf.namelist():
        if not name.endswith(".npy"):
            continue
        with zf.open(name) as fh:
            try:
                version = fmt.read_magic(fh)
                read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
                if read is None:
                    raise ValueError(f"unsupported .npy format version {version}")
                shape, _, dtype = read(fh)
            except ValueError as exc:
                raise SchemaError(path, f"member {name} is not a valid .npy array ({exc})") from None
        if dtype.hasobject:
            raise UnsafeFileError(path, f"member {name} is an object array (pickled Python objects); NPZ files "
                                        "are read as plain arrays only and never unpickled")
        out[name[:-4]] = (dtype, tuple(shape))
    return out


def _npz_kind(names: list[str]) -> str | None:
    arrays = {n[:-4] for n in names if n.endswith(".npy")}
    if "info.json" in names and any(re.fullmatch(r"pianoroll_\d+_csc_data", a) for a in arrays):
        return "song-npz"
    if {"shape", "nonzero"} <= arrays:
        if "first_bar" in arrays:
            return "phrase-npz"
        if {"n_bars", "velocity"} & arrays:
            return "tensor-npz"
        return "musegan-npz"
    if {"audio", "ids", "sample_rate"} <= arrays:
        return "audio-npz"
    if arrays and all(re.fullmatch(r"level_\d+", a) for a in arrays) and len(arrays) == len(names):
        return "vqvae-codes"
    return None


def _sniff_npz(path: Path, head: bytes, *, deep: bool) -> Found:
    if not head.startswith(b"PK"):
        if head.startswith(b"\x80"):
            raise UnsafeFileError(path, "a Python pickle, not an NPZ archive; it is never unpickled")
        if head.startswith(b"\x93NUMPY"):
            raise UnsafeFileError(path, "a single .npy array, not an NPZ archive")
        raise SchemaError(path, f"not an NPZ archive ({_start(head)}, not a zip header)")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            headers = _npy_headers(path, zf) if deep else None  # first: an object array is refused as such
            kind = _npz_kind(names)
            if kind is None:
                shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
                raise SchemaError(path, f"an NPZ with members [{shown}], not one lakh-pipeline writes "
                                        "(song, tensor, phrase or audio NPZ, or VQ-VAE codes)")
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise SchemaError(path, f"truncated or damaged NPZ archive ({type(exc).__name__}: {exc})") from None
    if headers is not None and kind in ("tensor-npz", "phrase-npz", "musegan-npz"):
        shape, nonzero = headers["shape"], headers["nonzero"]
        if shape[1] != (5,) or len(nonzero[1]) != 2 or nonzero[1][0] != 5:
            raise SchemaError(path, "not a 5-D shape + nonzero NPZ", expected="shape (5,), nonzero (5, nnz)",
                              found=f"shape {shape[1]}, nonzero {nonzero[1]}")
    return Found(kind, headers)


def _check_members(path: Path) -> None:
    """Every member of an NPZ decompresses and matches its CRC-32 (a damaged middle is found too)."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise SchemaError(path, f"damaged NPZ archive ({type(exc).__name__}: {exc})") from None
    if bad is not None:
        raise SchemaError(path, f"member {bad} is damaged (its CRC-32 does not match)")


def _sniff_json(path: Path) -> Found:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SchemaError(path, "not a JSON text file (not UTF-8)") from None
    except ValueError as exc:
        raise SchemaError(path, f"not valid JSON, truncated or damaged ({exc})") from None
    if not isinstance(doc, dict):
        raise SchemaError(path, f"JSON {type(doc).__name__}, not a file lakh-pipeline writes")
    keys = set(doc)
    if shard_schema.normalise(doc).get("kind") in shard_schema.KINDS:
        return Found("schema", doc)
    if {"format", "hash", "config", "tokens"} <= keys:
        return Found("vocab", doc)
    if isinstance(doc.get("model"), dict) and {"type", "vocab"} <= set(doc["model"]):
        return Found("bpe-tokenizer", doc)
    if doc.get("stage") == "corpus" and isinstance(doc.get("files"), list):
        return Found("corpus", doc)
    if {"status", "files"} <= keys or {"candidates", "phrases"} <= keys:
        return Found("summary", doc)
    if path.name == "schema.json":
        raise SchemaError(path, f"a schema.json of unknown kind {doc.get('kind')!r}",
                          expected=" or ".join(shard_schema.KINDS), found=repr(doc.get("kind")))
    shown = ", ".join(sorted(keys)[:8]) + (", ..." if len(keys) > 8 else "")
    raise SchemaError(path, f"JSON with keys [{shown}], not one lakh-pipeline writes "
                            "(vocab.json, tokenizer.json, schema.json, summary.json, corpus.json)")


# -- describing it ----------------------------------------------------------------------------------

def describe(path: Path) -> list[str]:
    """Lines that say what ``path`` holds: its kind and size, then the key facts of that kind (for
    a shard, also whether its folder's ``schema.json`` is one this version reads; for a folder,
    the count of each kind and every ``schema.json`` under it).

    Raises
    ------
    PipelineError
        ``path`` is missing, empty, damaged, or not a file the pipeline writes (one line, naming it).
    """
    import pyarrow as pa

    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: no such file or folder")
    try:
        found = sniff(path)
        if found.kind == "folder":
            return [f"{path} (folder)"] + _describe_folder(path)
        lines = [f"{path} ({found.kind}, {_size(path.stat().st_size)})"] + _DESCRIBE[found.kind](path, found)
    except (OSError, pa.ArrowException) as exc:  # a read that failed past the checks: damaged, or unreadable
        raise SchemaError(path, f"cannot read it ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    if found.kind in _SHARD_KIND:
        folder = _schema_folder(path)
        if folder is not None:
            lines += shard_schema.describe(folder, recursive=False)
    return lines


def _schema_folder(path: Path) -> Path | None:
    """The folder whose ``schema.json`` describes the shard ``path`` (its own, or its parent's:
    audio/parquet/, phrases/npz/)."""
    for folder in (path.parent, path.parent.parent):
        if (folder / "schema.json").is_file():
            return folder
    return None


def folder_schema(path: Path) -> dict | None:
    """The ``schema.json`` of the shard ``path``'s folder (normalised), when there is one and it
    parses; None otherwise (a reader of the shard then falls back to the LPD conventions)."""
    folder = _schema_folder(path)
    if folder is None:
        return None
    try:
        doc = json.loads((folder / "schema.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return shard_schema.normalise(doc) if isinstance(doc, dict) else None


def _describe_folder(path: Path) -> list[str]:
    files = sorted(p for p in path.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    kinds: Counter = Counter()
    other: Counter = Counter()
    bad: list[str] = []
    for p in files:
        if p.suffix.lower() in (".parquet", ".npz", *MIDI_SUFFIXES) or p.name in (*JSON_NAMES, CARD_NAME):
            try:
                kinds[sniff(p, deep=False).kind] += 1
            except PipelineError as exc:
                bad.append(str(exc))
        else:
            other[p.suffix.lower() or "no suffix"] += 1
    if not kinds:
        what = f"{len(files)} files" if files else "no files"
        if bad:
            what += f"; {len(bad)} refused, e.g. {bad[0]}"
        raise SchemaError(path, f"nothing lakh-pipeline writes in this folder ({what})")
    total = sum(p.stat().st_size for p in files)
    lines = [f"  {len(files)} files, {_size(total)}"]
    lines += [f"  {k}: {n}" for k, n in sorted(kinds.items())]
    if other:
        lines.append(f"  other files: {sum(other.values())} ("
                     + ", ".join(f"{s} {n}" for s, n in sorted(other.items())) + ")")
    if bad:
        lines.append(f"  refused: {len(bad)} (first: {bad[0]})")
    return lines + shard_schema.describe(path)


def _ids_line(ids: list[str], what: str, extra=None) -> str:
    """The first few items with their index (what --song takes)."""
    shown = [f"[{i}] {ids[i]}" + (f" ({extra(i)})" if extra else "") for i in range(min(3, len(ids)))]
    more = f", ... [{len(ids) - 1}]" if len(ids) > 3 else ""
    return f"  {what}: " + ", ".join(shown) + more


def _describe_manifest(path: Path, found: Found) -> list[str]:
    import pyarrow.parquet as pq

    names = set(found.meta.names)
    if "status" not in names:  # build_phrases: one row per candidate phrase
        t = pq.read_table(path, columns=["id", "split", "selected", "reason"]).to_pandas()
        lines = [f"  build_phrases manifest: {len(t)} candidate phrases of {t['id'].nunique()} songs, "
                 f"{int(t['selected'].sum())} selected"]
        for split, n in t[t["selected"]]["split"].value_counts().sort_index().items():
            lines.append(f"  {split}: {n} phrases")
        reasons = t["reason"].map(lambda r: r.split(":")[0] if r.startswith("inactive:") else r)
        lines += [f"    {r}: {n}" for r, n in reasons.value_counts().sort_index().items()]
        return lines
    stage = ("build_lpd" if "n_beats" in names else "build_vocab" if "n_tokens" in names
             else "render_audio / ingest_audio" if "n_clips" in names else "a stage's")
    totals = [c for c in ("n_notes", "n_bars", "n_tokens", "n_clips") if c in names]
    t = pq.read_table(path, columns=["status", "code", *totals]).to_pandas()
    lines = [f"  {stage} manifest: {len(t)} input files"]
    lines += [f"  {s}: {n}" for s, n in t["status"].value_counts().sort_index().items()]
    lines += [f"    {c}: {n}" for c, n in t["code"].dropna().value_counts().sort_index().items()]
    sums = [(int(t[c].fillna(0).sum()), c[2:]) for c in totals]
    if any(n for n, _ in sums):
        lines.append("  " + ", ".join(f"{n} {what}" for n, what in sums if n))
    return lines


def _describe_tensor_parquet(path: Path, found: Found) -> list[str]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    t = pf.read(columns=["id", "n_bars", "bar"])
    ids = t.column("id").to_pylist()
    n_bars = np.asarray(t.column("n_bars").to_numpy(), np.int64)
    nnz = int(pc.sum(pc.list_value_length(t.column("bar"))).as_py() or 0)
    lines = [f"  {len(ids)} songs, {int(n_bars.sum())} bars (min {n_bars.min() if len(ids) else 0}, max "
             f"{n_bars.max() if len(ids) else 0}), {nnz} non-zero cells, {pf.metadata.num_row_groups} row groups"]
    lines += _roll_doc_lines(folder_schema(path))
    if ids:
        lines.append(_ids_line(ids, "songs", lambda i: f"{n_bars[i]} bars"))
    return lines


def _roll_doc_lines(doc: dict | None) -> list[str]:
    if not doc:
        return []
    parts = []
    if doc.get("track_order"):
        parts.append("tracks " + ", ".join(doc["track_order"]))
    if doc.get("bar_steps"):
        parts.append(f"{doc['bar_steps']} steps per bar")
    if doc.get("resolution"):
        parts.append(f"{doc['resolution']} per beat")
    return [f"  {'; '.join(parts)}"] if parts else []


def _describe_shape_npz(path: Path, found: Found) -> list[str]:
    from pipeline.formats.npz import load_npz

    _check_members(path)
    headers = found.meta
    keys = [k for k in ("shape", "ids") if k in headers]
    z = load_npz(path, keys)  # not the cells: the phrase NPZ's reader (read_phrase_npz) would load them all
    shape = tuple(int(x) for x in z["shape"])
    nnz = headers["nonzero"][1][1]
    cells = float(np.prod(shape, dtype=np.float64)) or 1.0
    axes = {"tensor-npz": "songs, bars, steps, pitches, tracks", "phrase-npz": "phrases, bars, steps, pitches, tracks"}
    lines = [f"  shape {shape} ({axes.get(found.kind, 'items, bars, steps, pitches, tracks')}), {nnz} non-zero "
             f"({100 * nnz / cells:.3f}% dense)"]
    if "ids" in z:
        ids = [str(i) for i in z["ids"]]
        lines.append(f"  {len(set(ids))} songs")
        if ids:
            lines.append(_ids_line(ids, "songs" if found.kind == "tensor-npz" else "phrases"))
    return lines


def _describe_phrase_parquet(path: Path, found: Found) -> list[str]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["id", "first_bar", "split", "bar"])
    ids = t.column("id").to_pylist()
    nnz = int(pc.sum(pc.list_value_length(t.column("bar"))).as_py() or 0)
    splits = Counter(t.column("split").to_pylist())
    lines = [f"  {len(ids)} phrases of {len(set(ids))} songs, {nnz} non-zero cells; "
             + ", ".join(f"{s}: {n}" for s, n in sorted(splits.items()))]
    doc = folder_schema(path)
    if doc and doc.get("tensor_shape"):
        shape = doc["tensor_shape"]
        lines.append(f"  each {shape[1]} bars x {shape[2]} steps x {shape[3]} pitches (from MIDI pitch "
                     f"{doc.get('lowest_pitch')}) x {shape[4]} tracks")
    first = t.column("first_bar").to_pylist()
    if ids:
        lines.append(_ids_line(ids, "phrases", lambda i: f"from bar {first[i]}"))
    return lines


def _describe_tokens(path: Path, found: Found) -> list[str]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipeline.schema import check_parquet

    t = pq.read_table(path, columns=["id", "split", "tokens"])
    n_tokens = int(pc.sum(pc.list_value_length(t.column("tokens"))).as_py() or 0)
    splits = Counter(t.column("split").to_pylist())
    lines = [f"  {len(set(t.column('id').to_pylist()))} songs, {t.num_rows} streams, {n_tokens} tokens"]
    lines += [f"  {s}: {n} streams" for s, n in sorted(splits.items())]
    meta = {k.decode(): v.decode() for k, v in (found.meta.metadata or {}).items()}
    doc = folder_schema(path)
    vocab = f"vocabulary {meta.get('vocab_hash', '?')[:12]}"
    if (path.parent / "tokenizer.json").is_file():
        vocab += " (BPE ids of tokenizer.json)"
    if doc and doc.get("kind") == TOKENS:
        vocab += f": {doc.get('token_kind', '?')}, {doc.get('vocab_size')} ids"
        try:
            shard_schema.check_document(doc, TOKENS, path.parent / "schema.json")
        except SchemaError:
            pass  # the schema line below says why it is refused
        else:
            check_parquet(path, TOKENS, doc)  # the shard's vocabulary is its folder's
    lines.append(f"  {vocab}")
    return lines


def _describe_audio_parquet(path: Path, found: Found) -> list[str]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    t = pf.read(columns=["id", "clip", "duration", "sample_rate", "channels"]).to_pandas()
    lines = [f"  {len(t)} clips of {t['id'].nunique()} songs, {t['duration'].sum() / 3600:.3f} h, "
             f"{sorted(int(x) for x in set(t['sample_rate']))} Hz, "
             f"channels {sorted(int(x) for x in set(t['channels']))}, "
             f"{pf.metadata.num_row_groups} row groups"]
    if len(t):
        ids, clips = t["id"].tolist(), t["clip"].tolist()
        lines.append(_ids_line(ids, "clips", lambda i: f"clip {clips[i]}"))
    return lines


def _describe_audio_npz(path: Path, found: Found) -> list[str]:
    from pipeline.formats.npz import load_npz

    _check_members(path)
    z = load_npz(path, ["ids", "clip", "sample_rate"])
    shape = found.meta["audio"][1]
    sr = int(z["sample_rate"])
    channels = 1 if len(shape) == 2 else shape[1]
    ids = [str(i) for i in z["ids"]]
    lines = [f"  {shape[0]} clips of {len(set(ids))} songs, {shape[-1]} samples each ({shape[-1] / sr:.2f} s), "
             f"{sr} Hz, channels {channels}, {shape[0] * shape[-1] / sr / 3600:.3f} h"]
    if ids:
        clips = z["clip"].tolist()
        lines.append(_ids_line(ids, "clips", lambda i: f"clip {clips[i]}"))
    return lines


def _describe_codes(path: Path, found: Found) -> list[str]:
    from pipeline.formats.npz import load_npz

    z = load_npz(path)
    lines = [f"  {len(z)} levels of VQ-VAE codes"]
    for name in sorted(z, key=lambda k: int(k.split("_")[1])):
        a = z[name]
        rng = f", codes {a.min()}..{a.max()}, {len(np.unique(a))} distinct" if a.size else ""
        lines.append(f"  {name}: {a.dtype} {a.shape}{rng}")
    return lines


def _describe_song(path: Path, found: Found) -> list[str]:
    song = read_song(path)
    lines = [f"  song {song.name}: {len(song.tracks)} tracks, {song.steps} steps at {song.resolution} per beat "
             f"({song.steps / song.resolution:g} beats), {song.n_bars} bars"
             + ("" if song.has_downbeats else " (no downbeats: 4/4 assumed)")]
    if song.tempo is not None and len(song.tempo):
        lo, hi = f"{float(song.tempo.min()):.4g}", f"{float(song.tempo.max()):.4g}"
        lines.append(f"  tempo {lo} qpm" if lo == hi else f"  tempo {lo}-{hi} qpm")
    from pipeline.figures import note_name

    for t in song.tracks:
        kind = ", drum" if t.is_drum else ""
        rng = f", {note_name(t.pitch.min())}-{note_name(t.pitch.max())}" if len(t.pitch) else ""
        lines.append(f"  {t.name} (program {t.program}{kind}): {len(t.time)} non-zero cells{rng}")
    return lines


def _describe_vocab(path: Path, found: Found) -> list[str]:
    from pipeline.formats.vocab import SPECIALS, load_vocabulary

    vocab = load_vocabulary(path)  # VocabError (one line): a damaged or hand-edited table
    cfg = vocab.config
    lines = [f"  {cfg.get('kind', '?')} vocabulary: {len(vocab)} ids ({len(SPECIALS)} specials), "
             f"hash {vocab.hash[:12]}"]
    shown = {k: v for k, v in cfg.items() if k != "kind" and not isinstance(v, (dict, list))}
    if shown:
        lines.append("  config: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    if vocab.counts and sum(vocab.counts):
        top = sorted(range(len(vocab)), key=lambda i: (-vocab.counts[i], i))[:5]
        lines.append(f"  {sum(vocab.counts)} tokens counted; most frequent: "
                     + ", ".join(f"{vocab.tokens[i]} ({vocab.counts[i]})" for i in top))
    return lines


def _describe_bpe(path: Path, found: Found) -> list[str]:
    doc = found.meta
    model = doc["model"]
    added = doc.get("added_tokens") or []
    lines = [f"  {model.get('type')} tokenizer: {len(model.get('vocab') or {})} ids, {len(model.get('merges') or [])} "
             f"merges, {sum(1 for a in added if a.get('special'))} special tokens"]
    schema = folder_schema(path)
    if schema and isinstance(schema.get("config"), dict) and schema["config"].get("bpe_base_hash"):
        lines.append(f"  over base vocabulary {schema['config']['bpe_base_hash'][:12]} "
                     f"({schema.get('token_kind', '?')}); merges never cross a bar line")
    return lines


def _describe_schema(path: Path, found: Found) -> list[str]:
    doc = shard_schema.normalise(found.meta)
    kind = doc["kind"]
    try:
        shard_schema.check_document(doc, kind, path)
        state = "ok"
    except SchemaError as exc:
        state = f"refused: {exc.what}: expected {exc.expected}, found {exc.found}"
    stage = shard_schema.KINDS[kind].stage
    if kind == AUDIO and doc.get("producer"):
        stage = doc["producer"]  # render_audio or ingest_audio
    lines = [f"  {kind} v{doc.get('schema_version')} ({state}), written by {stage}"]
    if doc.get("track_order"):
        lines.append("  tracks: " + ", ".join(doc["track_order"]))
    if doc.get("resolution"):
        lines.append(f"  resolution: {doc['resolution']} {doc.get('resolution_unit') or ''}".rstrip())
    if doc.get("tensor_shape"):
        lines.append(f"  tensor shape: {doc['tensor_shape']}")
    if kind == TOKENS:
        lines.append(f"  vocabulary: {doc.get('token_kind', '?')}, {doc.get('vocab_size')} ids, "
                     f"hash {str(doc.get('vocab_hash'))[:12]}")
    if kind == AUDIO:
        lines.append(f"  {doc.get('channels')} channel(s), {doc.get('clip_samples')} samples per clip, "
                     f"downmix {doc.get('downmix')}, from {doc.get('producer')}")
    if isinstance(doc.get("fields"), dict):
        lines.append(f"  {len(doc['fields'])} fields: " + ", ".join(list(doc["fields"])[:10])
                     + (", ..." if len(doc["fields"]) > 10 else ""))
    return lines


def _flat(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_flat(v)}" for k, v in value.items()) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _describe_summary(path: Path, found: Found) -> list[str]:
    doc = found.meta
    keys = set(doc)
    stage = ("build_phrases" if "candidates" in keys else "build_vocab" if "vocab_hash" in keys
             else "render_audio / ingest_audio" if "clips" in keys else "build_lpd" if "bars" in keys
             else "a stage")
    lines = [f"  {stage} summary"]
    for k, v in doc.items():
        if isinstance(v, list):
            v = f"{len(v)} items"
        lines.append(f"  {k}: {_flat(v)}")
    return lines


def _describe_corpus(path: Path, found: Found) -> list[str]:
    doc = found.meta
    counts = doc.get("counts") or {}
    lines = [f"  corpus: {len(doc['files'])} MIDI files, {_size(counts.get('bytes', 0))}"]
    lines += [f"  {k}: {_flat(v)}" for k, v in counts.items() if k not in ("bytes", "files")]
    return lines


def _describe_midi(path: Path, found: Found) -> list[str]:
    from pipeline.io.midi import read_midi

    s = read_midi(path.read_bytes(), str(path))  # MidiError (one line, with its code) when unusable
    n_inst = len(s.inst_program)
    per_inst = np.bincount(s.note_inst, minlength=n_inst) if n_inst else np.zeros(0, np.int64)
    lines = [f"  {s.n_tracks} tracks, {n_inst} instruments, {len(s.note_pitch)} notes, {s.resolution} ticks per "
             f"quarter, {s.end_time:.2f} s"]
    if len(s.tempi):
        lo, hi = float(s.tempi.min()), float(s.tempi.max())
        tempo = f"{s.tempi[0]:.1f} qpm" + ("" if lo == hi else f" ({lo:.1f}-{hi:.1f}, {len(s.tempi)} changes)")
    else:
        tempo = "120 qpm (none set)"
    sigs = [f"{n}/{d} at {t:.1f} s" for n, d, t in zip(s.ts_num.tolist(), s.ts_den.tolist(), s.ts_times.tolist())]
    shown = ", ".join(sigs[:4]) + (f", ... ({len(sigs)})" if len(sigs) > 4 else "")
    lines.append(f"  tempo {tempo}; time signatures: {shown or 'none (4/4 assumed)'}")
    for k in range(n_inst):
        drum = "drums" if s.inst_channel[k] == 9 else f"program {s.inst_program[k]}"
        name = f" {s.inst_name[k]!r}" if s.inst_name[k] else ""
        lines.append(f"  track {s.inst_track[k]} channel {s.inst_channel[k] + 1}{name}: {drum}, {per_inst[k]} notes")
    if s.repairs:
        lines.append("  repaired: " + "; ".join(s.repairs))
    if s.warnings:
        lines.append("  warnings: " + "; ".join(s.warnings))
    return lines


_DESCRIBE = {
    "song-npz": _describe_song,
    "tensor-parquet": _describe_tensor_parquet,
    "tensor-npz": _describe_shape_npz,
    "phrase-parquet": _describe_phrase_parquet,
    "phrase-npz": _describe_shape_npz,
    "musegan-npz": _describe_shape_npz,
    "token-parquet": _describe_tokens,
    "audio-parquet": _describe_audio_parquet,
    "audio-npz": _describe_audio_npz,
    "vqvae-codes": _describe_codes,
    "manifest": _describe_manifest,
    "vocab": _describe_vocab,
    "bpe-tokenizer": _describe_bpe,
    "schema": _describe_schema,
    "summary": _describe_summary,
    "corpus": _describe_corpus,
    "card": _describe_card,
    "midi": _describe_midi,
}
