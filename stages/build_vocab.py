"""Stage build_vocab: MIDI -> a vocabulary file and token shards, for one vocabulary kind
(``notes``: the seed's music21 recipe done right, fast path; ``remi``; ``midilike``).

Two passes over the same sharded inputs (local processes or a dask cluster):

1. count: each task reads its files, tokenises them and returns its manifest rows and the token
   counts of its songs; the main process marks duplicate songs (the same MD5 seen earlier; their
   counts are taken back out), sums the counts and builds the vocabulary (specials, then by
   (-count, token), ``min_count``, ``max_size``), written to ``vocab.json`` with its hash;
2. encode: each task tokenises its files again, maps tokens to ids (unknowns to UNK) and writes
   its Parquet shard atomically (one row per song and stream, with bar starts and the split).

Sources are folders (the workers read the files) or ``.tar.gz`` / ``.tar`` archives (streamed once
per pass, never unpacked; the same outputs as the unpacked folder, tested). Nothing written
depends on timing or worker count: the shards are byte-identical with 1 or 2 workers (tested).
Every input file is a row of ``manifest.parquet`` with the statuses and codes of build_lpd;
``summary.json`` (a DVC metric) counts them. Each task leaves a marker under ``.state/`` with its
result and a digest of its inputs and params (and, for pass 2, the vocabulary): a rerun skips the
shards whose marker matches, so an interrupted build resumes.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from pipeline.config import PositiveInt, Range, params_section
from pipeline.errors import MidiError, ParamsError, StageError
from pipeline.sharded import (FileRows, Markers, Task, attempt, final_rows, find_duplicates, make_tasks,
                              remove_stale, run_pending, task_number, write_manifest, write_summary)
from pipeline.names import VOCAB_KINDS
from pipeline.stagekit import OutputLock


@dataclass(frozen=True, kw_only=True)
@params_section("build_vocab.notes")
class NotesParams:
    streams: Literal["merged", "tracks"]
    durations: bool
    rests: bool
    ties: Literal["merge", "split"]  # split: one token per tied fragment (the recipe's stream)


@dataclass(frozen=True, kw_only=True)
@params_section("build_vocab.remi")  # also the type of build_vocab.midilike; EventParams() is remi's section
class EventParams:
    streams: Literal["merged", "programs"]
    resolution: PositiveInt
    velocity_bins: PositiveInt
    max_duration: PositiveInt
    max_shift: PositiveInt
    tempo_min: PositiveInt
    tempo_max: PositiveInt
    bpe_vocab_size: Annotated[int, Range(0, 65536, note="0: no BPE")]  # > 0: also learn BPE up to this many ids


SplitFraction = Annotated[float, Range(0, 1, hi_open=True)]


@dataclass(frozen=True, kw_only=True)
@params_section("build_vocab")
class Params:
    min_count: PositiveInt
    max_size: Annotated[int, Range(5, 65536, note="ids are uint16")]
    valid_fraction: SplitFraction
    test_fraction: SplitFraction
    shard_size: PositiveInt
    max_beats: PositiveInt
    max_file_bytes: PositiveInt
    notes: NotesParams
    remi: EventParams
    midilike: EventParams

    def __post_init__(self) -> None:
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ParamsError(f"build_vocab.valid_fraction + test_fraction = "
                              f"{self.valid_fraction + self.test_fraction} must be below 1")


def token_config(kind: str, params: Params) -> dict:
    """What the vocabulary depends on (stored in vocab.json and hashed with the token list)."""
    if kind not in VOCAB_KINDS:
        raise ParamsError(f"kind={kind!r} must be one of {', '.join(VOCAB_KINDS)}")
    sub = asdict(getattr(params, kind))
    if kind == "notes" and sub["ties"] == "merge":  # the default: the config (and hash) of before
        del sub["ties"]
    cfg = {"kind": kind, **sub, "min_count": params.min_count, "max_size": params.max_size}
    if kind == "notes":
        from pipeline.tokens._m21_tables import MUSIC21_VERSION

        cfg["music21_tables"] = MUSIC21_VERSION
    else:
        cfg["max_beats"] = params.max_beats
    return cfg


def _event_config(kind: str, params: Params):
    from pipeline.tokens.events import EventConfig

    p: EventParams = getattr(params, kind)
    return EventConfig(kind=kind, resolution=p.resolution, velocity_bins=p.velocity_bins,
                       max_duration=p.max_duration, max_shift=p.max_shift, tempo_min=p.tempo_min,
                       tempo_max=p.tempo_max, max_beats=params.max_beats)


# ---------------------------------------------------------------------------------------------
# one file


@dataclass
class SongTokens:
    streams: list[str]
    strings: list[list[str]] | None  # notes: token strings per stream
    codes: list[np.ndarray] | None  # events: codes per stream
    bar_starts: list[np.ndarray]
    info: dict


def _tick_seconds(score, ticks: np.ndarray) -> np.ndarray:
    """Seconds of MIDI ticks under the file's tempo map (pretty_midi's, from the first track)."""
    tpq = score.resolution
    T, qpm = score.tempo_times, score.tempi
    k_ticks = np.zeros(len(T))
    for k in range(1, len(T)):
        k_ticks[k] = k_ticks[k - 1] + round((T[k] - T[k - 1]) * qpm[k - 1] * tpq / 60.0)
    k = np.clip(np.searchsorted(k_ticks, ticks, side="right") - 1, 0, len(T) - 1)
    return T[k] + (ticks - k_ticks[k]) * 60.0 / (qpm[k] * tpq)


def tokenize_one(raw: bytes, key: str, kind: str, params: Params) -> SongTokens:
    """bytes -> tokens per stream with bar starts (raises MidiError for a bad or empty file)."""
    from pipeline.io.midi import read_midi
    from pipeline.symbolic.lpd import bar_grid

    score = read_midi(raw, key)
    info = {"repairs": list(score.repairs), "n_notes": int(len(score.note_pitch))}
    try:
        if kind == "notes":
            from pipeline.tokens.notes import NotesConfig, notes_fast_ticks

            p = params.notes
            streams, _ = notes_fast_ticks(raw, key, config=NotesConfig(streams=p.streams, durations=p.durations,
                                                                        rests=p.rests, ties=p.ties))
            if not streams:
                raise MidiError("skip.no_notes", key, "no pitched notes (drums only, or none)")
            grid = bar_grid(score, resolution=1, max_beats=params.max_beats)
            bar_times = grid.bar_times
            names = sorted(streams)
            bars = []
            for name in names:
                secs = _tick_seconds(score, np.asarray(streams[name][1], np.int64))
                bars.append(np.searchsorted(secs, bar_times - 1e-6, side="left").astype(np.int32))
            info["n_bars"] = int(len(bar_times))
            return SongTokens(streams=names, strings=[streams[n][0] for n in names], codes=None,
                              bar_starts=bars, info=info)
        from pipeline.tokens.events import encode_grid, grid_notes, stream_names

        cfg = _event_config(kind, params)
        g = grid_notes(score, cfg)
        encs = [(name, encode_grid(g, cfg, select=sel)) for name, sel in stream_names(g, getattr(params, kind).streams)]
        info["n_bars"] = int(len(g.bar_steps))
        info["notes_dropped"] = g.dropped
        return SongTokens(streams=[n for n, _ in encs], strings=None, codes=[e.codes for _, e in encs],
                          bar_starts=[e.bar_starts for _, e in encs], info=info)
    except MidiError as exc:
        raise MidiError(exc.code, key, exc.detail) from None


def song_counts(song: SongTokens, kind: str, params: Params) -> dict[str, int]:
    if song.strings is not None:
        c: Counter = Counter()
        for s in song.strings:
            c.update(s)
        return dict(c)
    table = _event_config(kind, params).table
    total = np.bincount(np.concatenate(song.codes), minlength=len(table))
    return {table[i]: int(total[i]) for i in np.flatnonzero(total).tolist()}


# ---------------------------------------------------------------------------------------------
# tasks


@dataclass(frozen=True)
class Job:
    """What a task of one pass needs besides its files (the engine's ``Task.job``)."""

    kind: str
    params: Params
    vocab_tokens: tuple[str, ...] = ()  # encode: the vocabulary
    vocab_hash: str = ""
    skip_keys: frozenset = frozenset()  # encode: files of this shard whose bytes an earlier shard holds


def pass_digest(pass_name: str, job: Job) -> str:
    """What a shard's result depends on besides its inputs: pass, kind, params (and the vocabulary)."""
    from pipeline.config import params_digest

    h = hashlib.sha256()
    h.update(f"{pass_name}\0{job.kind}\0{params_digest(job.params)}\n".encode())
    if pass_name == "encode":
        h.update(job.vocab_hash.encode())
        h.update("\0".join(sorted(job.skip_keys)).encode())
    return h.hexdigest()


def _markers(out: Path, kind: str, pass_name: str) -> Markers:
    return Markers(out, f"{kind}-{pass_name}", params=lambda task: pass_digest(pass_name, task.job))


def _shard_path(task: Task) -> Path:
    return Path(task.out) / "shards" / f"{task.job.kind}-{task.index:05d}.parquet"


def count_shard(task: Task) -> dict:
    """Pass 1: manifest rows and the token counts of the shard's songs (each distinct song once)."""
    job: Job = task.job
    counts = Counter()
    files = FileRows(task)
    for _, raw, row in files:
        key = row["source"]
        song = attempt(row, tokenize_one, raw, key, job.kind, job.params, key=key)
        if song is None:
            continue
        row.update(status="recovered" if song.info["repairs"] else "ok", shard=task.index,
                   message="; ".join(song.info["repairs"]) or None, repairs=song.info["repairs"],
                   n_notes=song.info["n_notes"], n_bars=song.info.get("n_bars"),
                   notes_dropped=song.info.get("notes_dropped"), n_streams=len(song.streams),
                   n_tokens=int(sum(len(s) for s in (song.strings or song.codes))))
        counts.update(song_counts(song, job.kind, job.params))
    result = {"rows": files.rows, "counts": dict(counts)}
    _markers(Path(task.out), job.kind, "count").write(task, result)
    return result


def encode_shard(task: Task) -> dict:
    """Pass 2: tokens -> ids, one Parquet shard; returns per-song UNK counts keyed by source."""
    from pipeline.splits import song_split
    from pipeline.formats.token_shards import write_token_shard
    from pipeline.formats.vocab import UNK, Vocabulary

    job: Job = task.job
    vocab = Vocabulary(tokens=job.vocab_tokens, config={})
    lut = None
    if job.kind != "notes":
        lut = vocab.lookup_table(_event_config(job.kind, job.params).table)
    rows = []
    unk: dict[str, int] = {}
    for _, raw, row in FileRows(task):  # unreadable files and repeats: pass 1 recorded them
        key = row["source"]
        if key in job.skip_keys:
            continue
        song = attempt(row, tokenize_one, raw, key, job.kind, job.params, key=key)
        if song is None:  # pass 1 recorded why
            continue
        song_id = row["id"]
        split = song_split(song_id, valid_fraction=job.params.valid_fraction, test_fraction=job.params.test_fraction)
        n_unk = 0
        for k, name in enumerate(song.streams):
            ids = vocab.ids(song.strings[k]) if song.strings is not None else lut[song.codes[k]]
            n_unk += int(np.count_nonzero(ids == UNK))
            rows.append({"id": song_id, "stream": name, "split": split, "tokens": ids,
                         "bar_starts": song.bar_starts[k]})
        unk[key] = n_unk
    write_token_shard(_shard_path(task), rows, vocab_hash=job.vocab_hash)
    result = {"unk": unk}
    _markers(Path(task.out), job.kind, "encode").write(task, result)
    return result


# ---------------------------------------------------------------------------------------------
# the stage


def run(*, source: Path, out: Path, kind: str, params: Params, workers: int = 0,
        scheduler: str | None = None, vocab_path: Path | None = None) -> dict:
    """Build the ``kind`` vocabulary and token shards of every MIDI file under ``source``.

    With ``vocab_path``, an existing vocabulary is applied instead of building one (tokens it
    does not hold become UNK); it must have been made with the same config (``VocabError``).
    A second build into the same folder at once is refused (``StageError``).
    """
    with OutputLock(Path(out)):
        return _run(source=source, out=out, kind=kind, params=params, workers=workers,
                    scheduler=scheduler, vocab_path=vocab_path)


def _run(*, source: Path, out: Path, kind: str, params: Params, workers: int,
         scheduler: str | None, vocab_path: Path | None) -> dict:
    from pipeline.sources import open_source
    from pipeline.formats.vocab import build_vocabulary, load_vocabulary

    config = token_config(kind, params)
    given = load_vocabulary(vocab_path, expect_config=config) if vocab_path is not None else None
    src = open_source(Path(source))
    out = Path(out)
    tasks = make_tasks(src.items(), src, out, shard_size=params.shard_size, max_file_bytes=params.max_file_bytes,
                       job=Job(kind=kind, params=params))
    archive = any(p is None for t in tasks for p in t.paths)
    count = _markers(out, kind, "count")
    encode = _markers(out, kind, "encode")
    # pass 1 keeps only the token counts here: each shard's manifest rows stay in its marker
    # file and are read back one shard at a time (memory flat in the number of files)
    totals = Counter()
    for _, result in run_pending(count_shard, tasks, count, src, workers=workers, scheduler=scheduler,
                                 description=f"build-vocab {kind}: count"):
        totals.update(result["counts"])
    dups = find_duplicates(count, tasks)
    skip: dict[int, set] = {}
    for k, j, _ in dups.converted:
        skip.setdefault(k, set()).add(tasks[k].keys[j])
    if dups.converted:  # duplicates across shards (rare): their counts leave the totals
        keys = {tasks[k].keys[j]: (k, j) for k, j, _ in dups.converted}
        if archive:
            blobs = {item.key: raw for item, raw, _ in src.iter_payloads(set(keys), max_bytes=params.max_file_bytes)}
        else:
            blobs = {key: tasks[k].read(j)[0] for key, (k, j) in keys.items()}
        for key in sorted(keys):
            totals.subtract(song_counts(tokenize_one(blobs[key], key, kind, params), kind, params))
    vocab = given or build_vocabulary(totals, config=config, min_count=params.min_count, max_size=params.max_size)
    vocab.save(out / "vocab.json")
    enc_tasks = [replace(t, job=replace(t.job, vocab_tokens=vocab.tokens, vocab_hash=vocab.hash,
                                        skip_keys=frozenset(skip.get(t.index, ())))) for t in tasks]
    for _ in run_pending(encode_shard, enc_tasks, encode, src, workers=workers, scheduler=scheduler,
                         description=f"build-vocab {kind}: encode", outputs=lambda t, _: [_shard_path(t)]):
        pass  # each shard's UNK counts stay in its marker, read back with its rows
    # shards and markers of a larger earlier run
    remove_stale(out / "shards", f"{kind}-*.parquet", lambda p: task_number(p) < len(tasks))
    count.sweep(len(tasks))
    encode.sweep(len(tasks))
    bpe_info = None
    if kind != "notes" and getattr(params, kind).bpe_vocab_size > 0:
        bpe_info = _learn_bpe(out, kind, getattr(params, kind).bpe_vocab_size, vocab, len(tasks))
    return _write_outputs(out, kind, params, vocab, tasks, count, encode, dups, bpe_info)


def _final_rows(rows: list[dict], unk: dict[str, int], params: Params) -> list[dict]:
    """One shard's manifest rows (duplicates marked) with UNK counts and splits filled in."""
    from pipeline.splits import song_split

    for row in rows:
        ok = row["status"] in ("ok", "recovered")
        row["n_unk"] = unk.get(row["source"]) if ok else None
        row["split"] = song_split(row["id"], valid_fraction=params.valid_fraction,
                                test_fraction=params.test_fraction) if ok else None
    return rows


def _learn_bpe(out: Path, kind: str, size: int, vocab, n_shards: int) -> dict:
    """BPE trained on the train split of the shards (merges within bars), then every shard again
    in BPE ids under ``shards/bpe/`` with the tokenizer ``shards/bpe/tokenizer.json``."""
    import pyarrow.parquet as pq

    from pipeline.formats.token_shards import write_token_shard
    from pipeline.tokens.bpe import bpe_encode, train_bpe

    paths = [out / "shards" / f"{kind}-{k:05d}.parquet" for k in range(n_shards)]

    def train_rows():
        for p in paths:
            t = pq.read_table(p)
            for tok, bars, split in zip(t.column("tokens").to_numpy(zero_copy_only=False),
                                        t.column("bar_starts").to_numpy(zero_copy_only=False),
                                        t.column("split").to_pylist()):
                if split == "train":
                    yield tok, bars

    if size <= len(vocab):
        raise StageError(f"build_vocab.{kind}.bpe_vocab_size={size} must exceed the base vocabulary ({len(vocab)} ids)")
    tok = train_bpe(train_rows(), base_size=len(vocab), vocab_size=size)
    blob = tok.to_str(pretty=False).encode()
    from pipeline.files import atomic_write_bytes

    atomic_write_bytes(out / "shards" / "bpe" / "tokenizer.json", blob)
    bpe_hash = hashlib.sha256(blob).hexdigest()
    n_tokens = 0
    for p in paths:
        rows = pq.read_table(p).to_pylist()
        for r in rows:
            r["tokens"], r["bar_starts"] = bpe_encode(tok, np.asarray(r["tokens"], np.uint16),
                                                      np.asarray(r["bar_starts"], np.int32))
            n_tokens += len(r["tokens"])
        write_token_shard(out / "shards" / "bpe" / p.name, rows, vocab_hash=bpe_hash)
    for p in (out / "shards" / "bpe").glob(f"{kind}-*.parquet"):
        if int(p.stem.rsplit("-", 1)[1]) >= n_shards:
            p.unlink()
    return {"bpe_vocab_size": tok.get_vocab_size(), "bpe_tokens": n_tokens, "bpe_hash": bpe_hash}


def _manifest_schema():
    import pyarrow as pa

    return pa.schema([
        ("source", pa.string()), ("id", pa.string()), ("msd_id", pa.string()), ("size_bytes", pa.int64()),
        ("status", pa.string()), ("code", pa.string()), ("message", pa.string()),
        ("repairs", pa.list_(pa.string())), ("shard", pa.int32()), ("split", pa.string()),
        ("n_notes", pa.int64()), ("n_bars", pa.int32()), ("notes_dropped", pa.int64()),
        ("n_streams", pa.int32()), ("n_tokens", pa.int64()), ("n_unk", pa.int64()),
    ])


def _manifest_table(rows: list[dict], schema):
    import pyarrow as pa

    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in schema}, schema=schema)


def _write_outputs(out: Path, kind: str, params: Params, vocab, tasks: list[Task], count: Markers,
                   encode: Markers, dups, bpe_info: dict | None = None) -> dict:
    from pipeline.files import write_json
    from pipeline.formats.token_shards import schema_document

    sums = Counter()
    splits = Counter()

    def add(rows: list[dict]) -> None:
        for r in rows:
            if r["status"] in ("ok", "recovered"):
                sums["songs"] += 1
                splits[r["split"]] += 1
                sums["streams"] += r["n_streams"] or 0
                sums["tokens"] += r["n_tokens"] or 0
                sums["unk"] += r["n_unk"] or 0

    chunks = (_final_rows(rows, encode.finished(task.index)["unk"], params)
              for task, rows in final_rows(count, tasks, dups))
    tally, inputs = write_manifest(out / "manifest.parquet", _manifest_schema(), chunks, stage="build_vocab",
                                   to_table=_manifest_table, on_rows=add)
    rec = tally.record(warnings=False)
    summary = {
        "kind": kind,
        "files": rec["files"],
        "songs": sums["songs"],
        "streams": int(sums["streams"]),
        "tokens": int(sums["tokens"]),
        "unk_tokens": int(sums["unk"]),
        "vocab_size": len(vocab),
        "vocab_hash": vocab.hash,
        "splits": {s: splits.get(s, 0) for s in ("train", "valid", "test")},
        "status": rec["status"],
        "codes": rec["codes"],
        **(bpe_info or {}),
    }
    splits = {"valid_fraction": params.valid_fraction, "test_fraction": params.test_fraction}
    doc = schema_document(kind=kind, vocab_hash=vocab.hash, vocab_size=len(vocab), config=vocab.config, splits=splits,
                          vocab_sha256=hashlib.sha256((out / "vocab.json").read_bytes()).hexdigest())
    write_json(out / "shards" / "schema.json", doc)
    if bpe_info:  # shards/bpe/: the same rows in BPE ids of shards/bpe/tokenizer.json
        tok_json = out / "shards" / "bpe" / "tokenizer.json"
        bpe = schema_document(kind=kind, vocab_hash=bpe_info["bpe_hash"], vocab_size=bpe_info["bpe_vocab_size"],
                              config={**vocab.config, "bpe_base_hash": vocab.hash}, splits=splits,
                              vocab_sha256=hashlib.sha256(tok_json.read_bytes()).hexdigest(),
                              vocab_file="tokenizer.json")
        write_json(out / "shards" / "bpe" / "schema.json", bpe)
    write_summary(out, summary)
    from pipeline.cards import write_card

    write_card(out, card_text(kind, params, doc, summary, inputs, bpe=bool(bpe_info)))
    return summary


def card_text(kind: str, params: Params, schema: dict, summary: dict, inputs_digest: str | None, *,
              bpe: bool = False) -> str:
    """The dataset card (``README.md``) of one vocabulary kind's output folder."""
    from pipeline.cards import Config, render

    configs = [Config("default", {"train": f"shards/{kind}-*.parquet"}, default=True,
                      description="the token shards, one row per song and stream; the split (train / valid / "
                                  "test) is the `split` column, e.g. `ds.filter(lambda r: r['split'] == 'valid')`")]
    files = [(f"shards/{kind}-*.parquet", "token shards: one row per song and stream (vocabulary ids, bar starts, "
                                          "split)"),
             ("shards/schema.json", "the shards' schema (kind, version, vocabulary hash, tokenizer config)"),
             ("vocab.json", "the vocabulary: tokens in id order, config and hash")]
    if bpe:
        configs.append(Config("bpe", {"train": "shards/bpe/*.parquet"},
                              description="the same rows in the BPE ids of `shards/bpe/tokenizer.json`"))
        files += [("shards/bpe/*.parquet", "the same rows in BPE ids"),
                  ("shards/bpe/tokenizer.json", "the BPE tokenizer (Hugging Face tokenizers)")]
    files += [("manifest.parquet", "one row per input file: ok / recovered / skipped / error and why"),
              ("summary.json", "the counts below (a DVC metric)")]
    return render(
        title=f"Lakh MIDI as {kind} tokens",
        about=(f"Every MIDI file of the source tokenised with the `{kind}` vocabulary "
               f"({summary['vocab_size']} tokens, hash `{summary['vocab_hash'][:12]}`), one row per song and "
               "stream, each song in the train, valid or test split by a hash of its id."),
        stage="build_vocab", params=params, n_songs=int(summary["songs"]),
        task_categories=["text-generation"], tags=["music", "midi", "symbolic-music", "tokens", kind, "lakh-midi"],
        configs=configs, files=files, schema=schema, schema_glob=f"shards/{kind}-*.parquet", summary=summary,
        inputs="the MIDI files of the source (a folder or .tar archive), one manifest row each",
        inputs_digest=inputs_digest)
