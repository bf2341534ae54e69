"""Stage build_lpd: Lakh MIDI -> LPD-style piano-rolls (one NPZ per song), 5-D tensor shards
(Parquet + NPZ) and a manifest with one row per input file.

Data flow: ``open_source`` lists the inputs in a fixed order -> they are cut into shards of
``shard_size`` files -> each shard is one task (local processes or a dask cluster) that reads,
converts and writes its songs and tensor shard atomically, then a marker with its manifest rows
-> the main process merges the rows, marks duplicates and the LPD subsets, and writes the
manifest and the summary metric. A rerun skips every shard whose marker matches its inputs and
params; nothing written depends on timing, host or worker count.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal


from pipeline.config import PositiveInt, Range, params_digest, params_section
from pipeline.errors import MidiError, StageError
from pipeline.sources import reason_code
from pipeline.stagekit import (OutputLock, call_with_time_limit, inputs_digest, read_input_file, run_shards,
                               warning_counts)

STATE_DIR = ".state"


@dataclass(frozen=True, kw_only=True)
@params_section("build_lpd.tensor")
class TensorParams:
    bar_steps: PositiveInt
    other_meters: Literal["pad", "drop"]


@dataclass(frozen=True, kw_only=True)
@params_section("build_lpd")
class Params:
    """``build_lpd`` section of params.yaml (the defaults: the packaged copy of it)."""

    resolution: PositiveInt
    tracks: Literal["lpd5", "lpd17"]
    semantics: Literal["lpd", "pypianoroll"]
    # the tensor shards store bars as int16 and songs of a shard as uint16
    shard_size: Annotated[int, Range(1, 65535)]
    max_beats: Annotated[int, Range(1, 32767)]
    max_file_bytes: PositiveInt
    tensor: TensorParams


@dataclass(frozen=True)
class ShardTask:
    index: int
    out: str
    params: Params
    keys: tuple[str, ...]
    msd_ids: tuple[str | None, ...]
    paths: tuple[str | None, ...]  # folder sources: files the worker reads itself
    payloads: tuple[Any, ...] = ()  # archive sources: (bytes | None, reason | None) per item


def _snake(name: str) -> str:
    return name.lower().replace(" ", "_")


def song_path(out: Path, song_id: str) -> Path:
    return out / "songs" / song_id[0] / f"{song_id}.npz"


def shard_paths(out: Path, params: Params, index: int) -> tuple[Path, Path]:
    stem = out / "tensors" / f"{params.tracks}-{index:05d}"
    return stem.with_suffix(".parquet"), stem.with_suffix(".npz")


def _time_signatures(score) -> list[str]:
    return [f"{n}/{d}" for n, d in zip(score.ts_num.tolist(), score.ts_den.tolist())]


def convert_one(raw: bytes, key: str, params: Params):
    """bytes -> (Pianoroll, BarTensor, manifest fields); raises MidiError for a bad file."""
    from pipeline.io.midi import read_midi
    from pipeline.symbolic.bars import to_bars
    from pipeline.symbolic.lpd import to_pianoroll

    score = read_midi(raw, key)
    try:
        pr = to_pianoroll(score, resolution=params.resolution, tracks=params.tracks,
                          semantics=params.semantics, max_beats=params.max_beats)
    except MidiError as exc:
        raise MidiError(exc.code, key, exc.detail) from None
    bars = to_bars(pr, bar_steps=params.tensor.bar_steps, other_meters=params.tensor.other_meters)
    ts = _time_signatures(score)
    info = {
        "repairs": list(score.repairs),
        "warnings": list(score.warnings),
        "ticks_per_quarter": score.resolution,
        "n_midi_tracks": score.n_tracks,
        "n_instruments": len(score.inst_program),
        "n_notes": len(score.note_pitch),
        **{f"notes_{_snake(n)}": c for n, c in zip(pr.track_names, pr.notes_per_track)},
        "n_beats": len(pr.beat_times),
        "n_steps": pr.n_steps,
        "n_bars": bars.n_bars,
        "bars_padded": bars.bars_padded,
        "bars_cropped": bars.bars_cropped,
        "bars_dropped": bars.bars_dropped,
        "time_signatures": ts,
        "first_beat_time": float(pr.first_beat_time),
        "tempo_min": float(score.tempi.min()),
        "tempo_max": float(score.tempi.max()),
        "duration": float(score.end_time),
        # LPD's cleansing rules: one time signature, 4/4, first beat at time zero
        "lpd_cleansed_criteria": bool(ts == ["4/4"] and pr.first_beat_time == 0.0),
    }
    return pr, bars, info


def _row(key: str, msd_id: str | None, size: int, song_id: str | None) -> dict:
    return {"source": key, "id": song_id, "msd_id": msd_id, "size_bytes": size, "status": None,
            "code": None, "message": None, "shard": None}


def convert_shard(task: ShardTask) -> list[dict]:
    """Worker: convert one shard's files, write songs + tensor shard + marker; return its rows."""
    from pipeline.formats.song_npz import pianoroll_npz_bytes
    from pipeline.files import atomic_write_bytes
    from pipeline.formats.tensor_shards import write_tensor_shard

    out = Path(task.out)
    params = task.params
    rows: list[dict] = []
    ids: list[str] = []
    tensors = []
    seen: set[str] = set()
    for i, key in enumerate(task.keys):
        if task.payloads:
            raw, reason = task.payloads[i]
        else:
            raw, reason = read_input_file(task.paths[i], params.max_file_bytes)
        size = len(raw) if raw is not None else 0
        song_id = hashlib.md5(raw).hexdigest() if raw is not None else None
        row = _row(key, task.msd_ids[i], size, song_id)
        rows.append(row)
        if raw is None:
            row.update(status="error", code=reason_code(reason), message=reason)
            continue
        if song_id in seen:
            row.update(status="skipped", code="skip.duplicate", message="same bytes as an earlier file of this shard")
            continue
        seen.add(song_id)
        try:
            pr, bars, info = call_with_time_limit(convert_one, raw, key, params, key=key)
        except MidiError as exc:
            status = "skipped" if exc.code.startswith("skip.") else "error"
            row.update(status=status, code=exc.code, message=exc.detail)
            continue
        except Exception as exc:  # a bug, but one file must not sink a Lakh-size run: record it
            row.update(status="error", code="internal.bug", message=f"{type(exc).__name__}: {exc}")
            continue
        row.update(info)
        row.update(status="recovered" if info["repairs"] else "ok", shard=task.index)
        if info["repairs"]:
            row["message"] = "; ".join(info["repairs"])
        atomic_write_bytes(song_path(out, song_id), pianoroll_npz_bytes(pr, song_id))
        ids.append(song_id)
        tensors.append(bars)
    pq_path, npz_path = shard_paths(out, params, task.index)
    from pipeline.symbolic.lpd import TRACK_SETS

    write_tensor_shard(pq_path, npz_path, ids, tensors, bar_steps=params.tensor.bar_steps,
                       n_tracks=len(TRACK_SETS[params.tracks]), track_order=[t[0] for t in TRACK_SETS[params.tracks]],
                       resolution=params.resolution)
    marker = {"params": params_digest(params), "inputs": _inputs_digest(task), "rows": rows}
    atomic_write_bytes(out / STATE_DIR / f"shard-{task.index:05d}.json",
                       json.dumps(marker, sort_keys=True).encode())
    return rows


def _inputs_digest(task: ShardTask) -> str:
    return inputs_digest(task.keys, task.msd_ids)


def _marker_rows(out: Path, task: ShardTask) -> list[dict] | None:
    marker = out / STATE_DIR / f"shard-{task.index:05d}.json"
    pq_path, npz_path = shard_paths(out, task.params, task.index)
    if not (marker.exists() and pq_path.exists() and npz_path.exists()):
        return None
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if data.get("params") != params_digest(task.params) or data.get("inputs") != _inputs_digest(task):
        return None
    return data["rows"]


def run(*, source: Path, out: Path, params: Params, workers: int = 0, scheduler: str | None = None,
        match_scores: Path | None = None) -> dict:
    """Convert every MIDI file under ``source`` into ``out``; return the summary (also written)."""
    from pipeline.sources import open_source

    src = open_source(Path(source))
    items = src.items()
    out = Path(out)
    scores = _load_match_scores(match_scores) if match_scores else None
    with OutputLock(out):
        n_shards = (len(items) + params.shard_size - 1) // params.shard_size
        tasks = []
        for k in range(n_shards):
            chunk = items[k * params.shard_size : (k + 1) * params.shard_size]
            paths = tuple(str(p) if (p := src.path_of(it)) is not None else None for it in chunk)
            tasks.append(ShardTask(index=k, out=str(out), params=params, keys=tuple(it.key for it in chunk),
                                   msd_ids=tuple(it.msd_id for it in chunk), paths=paths))
        # a shard's rows live in its marker file, not in this process: memory stays flat in the
        # number of files (they are read back one shard at a time below)
        todo = [task for task in tasks if _marker_rows(out, task) is None]
        for _index, _rows in run_shards(convert_shard, todo, src, workers=workers, scheduler=scheduler,
                                        description="build-lpd"):
            pass
        _remove_stale(out, params, n_shards)
        dups, subsets = _mark_duplicates(out, params, tasks, scores)
        summary = _write_outputs(out, params, tasks, dups, subsets, scores)
    return summary


def _shard_rows(out: Path, task: ShardTask) -> list[dict]:
    """The rows of one finished shard, from its marker."""
    return json.loads((out / STATE_DIR / f"shard-{task.index:05d}.json").read_text())["rows"]


def _remove_stale(out: Path, params: Params, n_shards: int) -> None:
    tensors = out / "tensors"
    if tensors.exists():
        for p in tensors.glob("*-[0-9][0-9][0-9][0-9][0-9].*"):
            stem = p.name.split(".")[0]
            tracks, _, num = stem.rpartition("-")
            if tracks != params.tracks or int(num) >= n_shards:
                p.unlink()
    state = out / STATE_DIR
    if state.exists():
        for p in state.glob("shard-*.json"):
            if int(p.stem.split("-")[1]) >= n_shards:
                p.unlink()


def _mark_duplicates(out: Path, params: Params, tasks: list[ShardTask], scores: dict | None):
    """Later copies of the same bytes become ``skipped: skip.duplicate`` (their songs leave the
    shards), and LPD's matched and cleansed subsets are decided; one shard's rows at a time.

    Returns ``(dups, subsets)``: ``dups[shard][row index] = source of the first copy``;
    ``subsets[md5] = {lpd_matched, lpd_cleansed, match_msd_id}`` for the converted songs that the
    match scores name (cleanser.py: per MSD id, the best-matching MIDI that converted; it is in
    'cleansed' when it meets the cleansing criteria).
    """
    from pipeline.formats.tensor_shards import read_tensor_rows, write_tensor_shard
    from pipeline.symbolic.lpd import TRACK_SETS

    scored = {md5 for md5s in scores.values() for md5 in md5s} if scores else set()
    first: dict[str, str] = {}  # song id -> source of its first file (~150 bytes a song)
    dups: dict[int, dict[int, str]] = {}
    drop: dict[int, set[str]] = {}
    criteria: dict[str, bool] = {}  # converted songs the scores name -> meets LPD's cleansing criteria
    for task in tasks:
        for i, r in enumerate(_shard_rows(out, task)):
            sid = r["id"]
            if sid is None:
                continue
            if sid in first:
                if r["status"] in ("ok", "recovered"):
                    drop.setdefault(r["shard"], set()).add(sid)
                dups.setdefault(task.index, {})[i] = first[sid]
            else:
                first[sid] = r["source"]
                if sid in scored and r["status"] in ("ok", "recovered"):
                    criteria[sid] = bool(r["lpd_cleansed_criteria"])
    del first
    for shard, sids in drop.items():
        pq_path, npz_path = shard_paths(out, params, shard)
        ids, tensors = read_tensor_rows(pq_path)
        keep = [i for i, s in enumerate(ids) if s not in sids]
        write_tensor_shard(pq_path, npz_path, [ids[i] for i in keep], [tensors[i] for i in keep],
                           bar_steps=params.tensor.bar_steps, n_tracks=len(TRACK_SETS[params.tracks]),
                           track_order=[t[0] for t in TRACK_SETS[params.tracks]], resolution=params.resolution)
    subsets: dict[str, dict] = {}
    for msd_id in sorted(scores or {}):
        md5s = sorted(scores[msd_id], key=lambda m: (-scores[msd_id][m], m))
        for md5 in md5s:
            if md5 in criteria:
                subsets.setdefault(md5, {"lpd_matched": True, "lpd_cleansed": False, "match_msd_id": None})
        for md5 in md5s:
            if md5 in criteria:
                if criteria[md5]:
                    m = subsets[md5]
                    m["lpd_cleansed"] = True
                    m["match_msd_id"] = m["match_msd_id"] or msd_id
                break
    return dups, subsets


def _final_rows(rows: list[dict], dups: dict[int, str], subsets: dict[str, dict], scores: dict | None) -> list[dict]:
    """One shard's rows as the manifest has them: duplicates marked, LPD subsets filled in."""
    for i, r in enumerate(rows):
        if i in dups:
            message = f"same bytes as {dups[i]}"
            if r["code"] != "skip.duplicate" or r["message"] != message:
                for k in list(r):
                    if k not in ("source", "id", "msd_id", "size_bytes"):
                        r[k] = None
            r.update(status="skipped", code="skip.duplicate", message=message)
        r["lpd_matched"] = None if scores is None else False
        r["lpd_cleansed"] = None if scores is None else False
        r["match_msd_id"] = None
        if i not in dups and r["status"] in ("ok", "recovered") and r["id"] in subsets:
            r.update(subsets[r["id"]])
    return rows


def _load_match_scores(path: Path) -> dict[str, dict[str, float]]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise StageError(f"{path}: cannot read match scores ({exc.strerror})") from None
    except ValueError:
        raise StageError(f"{path}: match scores are not valid JSON") from None
    if not isinstance(data, dict):
        raise StageError(f"{path}: match scores must map MSD ids to {{md5: score}}")
    return data


def _write_outputs(out: Path, params: Params, tasks: list[ShardTask], dups: dict, subsets: dict,
                   scores: dict | None) -> dict:
    """The manifest (streamed, one shard's rows at a time), the schema files and the summary."""
    from pipeline.cards import Digest
    from pipeline.formats.manifest import ManifestWriter, manifest_schema
    from pipeline.files import atomic_write_bytes
    from pipeline.formats.song_npz import song_schema_document
    from pipeline.formats.tensor_shards import schema_document
    from pipeline.symbolic.lpd import TRACK_SETS

    spec = TRACK_SETS[params.tracks]
    note_columns = [f"notes_{_snake(s[0])}" for s in spec]
    status: Counter = Counter()
    codes: Counter = Counter()
    warnings: Counter = Counter()
    files = songs = bars = criteria = 0
    digest = Digest()
    with ManifestWriter(out / "manifest.parquet", manifest_schema(note_columns), stage="build_lpd") as manifest:
        for task in tasks:
            rows = _final_rows(_shard_rows(out, task), dups.get(task.index, {}), subsets, scores)
            manifest.write(rows)
            digest.update(rows)
            files += len(rows)
            status.update(r["status"] for r in rows)
            codes.update(r["code"] for r in rows if r["code"])
            warnings.update(warning_counts(rows))
            converted = [r for r in rows if r["status"] in ("ok", "recovered")]
            songs += len(converted)
            bars += int(sum(r["n_bars"] for r in converted))
            criteria += sum(1 for r in converted if r["lpd_cleansed_criteria"])
    schema = schema_document(tracks=[s[0] for s in spec], programs=[s[1] for s in spec],
                             bar_steps=params.tensor.bar_steps, resolution=params.resolution,
                             semantics=params.semantics, other_meters=params.tensor.other_meters,
                             manifest=manifest_schema(note_columns))
    atomic_write_bytes(out / "tensors" / "schema.json", json.dumps(schema, indent=2, sort_keys=True).encode())
    song_doc = song_schema_document(tracks=[s[0] for s in spec], programs=[s[1] for s in spec],
                                    resolution=params.resolution, semantics=params.semantics)
    atomic_write_bytes(out / "songs" / "schema.json", json.dumps(song_doc, indent=2, sort_keys=True).encode())
    summary = {
        "files": files,
        "songs": songs,
        "bars": bars,
        "status": {s: status.get(s, 0) for s in ("ok", "recovered", "skipped", "error")},
        "codes": dict(sorted(codes.items())),
        "lpd_cleansed_criteria": criteria,
        "warnings": dict(sorted(warnings.items())),
    }
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    write_card(out, params, schema, summary, digest.hexdigest())
    return summary


def card_text(params: Params, schema: dict, summary: dict, inputs_digest: str | None) -> str:
    """The dataset card (``README.md``) of build_lpd's output folder."""
    from pipeline.cards import Config, render

    t = params.tracks
    return render(
        title=f"Lakh MIDI as LPD-style piano-rolls ({t})",
        about=(f"Every MIDI file of the source converted into LPD-style multitrack piano-rolls ({t}: "
               f"{', '.join(schema['track_order'])}; {params.resolution} time steps per beat, semantics "
               f"`{params.semantics}`): one pypianoroll NPZ per song, and the songs cut into bars as 5-D tensor "
               f"shards (song, bar, {params.tensor.bar_steps} steps, 128 pitches, {len(schema['track_order'])} "
               "tracks) in Parquet (sparse rows, with velocities) and NPZ (MuseGAN's format)."),
        stage="build_lpd", params=params, n_songs=int(summary["songs"]),
        task_categories=["other"], tags=["music", "midi", "symbolic-music", "pianoroll", "lakh-midi"],
        configs=[Config("default", {"train": "tensors/*.parquet"}, default=True,
                        description="the tensor shards, one row per song (all songs; no split)"),
                 Config("manifest", {"train": "manifest.parquet"},
                        description="one row per input file: status, code, counts, LPD subsets")],
        files=[("tensors/*.parquet", "tensor shards: one row per song, sparse cells (bar, step, pitch, track) "
                                     "with velocity"),
               ("tensors/*.npz", "the same shards as MuseGAN's `shape` + `nonzero` NPZ"),
               ("tensors/schema.json", "the shards' schema (kind, version, track order, resolution)"),
               ("songs/<id[0]>/<id>.npz", "one pypianoroll 1.0 NPZ per song (id: MD5 of the MIDI bytes)"),
               ("songs/schema.json", "the song files' schema"),
               ("manifest.parquet", "one row per input file: ok / recovered / skipped / error and why"),
               ("summary.json", "the counts below (a DVC metric)")],
        schema=schema, schema_glob="tensors/*.parquet", summary=summary,
        inputs="the MIDI files of the source (a folder or .tar archive), one manifest row each",
        inputs_digest=inputs_digest)


def write_card(out: Path, params: Params, schema: dict, summary: dict, inputs_digest: str | None) -> None:
    from pipeline.cards import write_card as write

    write(out, card_text(params, schema, summary, inputs_digest))
