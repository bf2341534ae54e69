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

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal


from pipeline.config import PositiveInt, Range, params_digest, params_section
from pipeline.errors import MidiError, StageError
from pipeline.sharded import (FileRows, Markers, Task, attempt, final_rows, find_duplicates, make_tasks,
                              remove_stale, run_pending, task_number, write_manifest, write_summary)
from pipeline.stagekit import OutputLock


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


def convert_shard(task: Task) -> dict:
    """Worker: convert one shard's files, write songs + tensor shard + marker; return the marker."""
    from pipeline.files import atomic_write_bytes
    from pipeline.formats.song_npz import pianoroll_npz_bytes

    out = Path(task.out)
    params: Params = task.job
    files = FileRows(task)
    ids: list[str] = []
    tensors = []
    for _, raw, row in files:
        key = row["source"]
        done = attempt(row, convert_one, raw, key, params, key=key)
        if done is None:
            continue
        pr, bars, info = done
        row.update(info)
        row.update(status="recovered" if info["repairs"] else "ok", shard=task.index)
        if info["repairs"]:
            row["message"] = "; ".join(info["repairs"])
        atomic_write_bytes(song_path(out, row["id"]), pianoroll_npz_bytes(pr, row["id"]))
        ids.append(row["id"])
        tensors.append(bars)
    _write_tensors(out, params, task.index, ids, tensors)
    result = {"rows": files.rows}
    _markers(out, params).write(task, result)
    return result


def _write_tensors(out: Path, params: Params, index: int, ids: list[str], tensors: list) -> None:
    from pipeline.formats.tensor_shards import write_tensor_shard
    from pipeline.symbolic.lpd import TRACK_SETS

    pq_path, npz_path = shard_paths(out, params, index)
    write_tensor_shard(pq_path, npz_path, ids, tensors, bar_steps=params.tensor.bar_steps,
                       n_tracks=len(TRACK_SETS[params.tracks]), track_order=[t[0] for t in TRACK_SETS[params.tracks]],
                       resolution=params.resolution)


def _markers(out: Path, params: Params) -> Markers:
    return Markers(out, "shard", params=params_digest(params))


def run(*, source: Path, out: Path, params: Params, workers: int = 0, scheduler: str | None = None,
        match_scores: Path | None = None) -> dict:
    """Convert every MIDI file under ``source`` into ``out``; return the summary (also written)."""
    from pipeline.sources import open_source

    src = open_source(Path(source))
    items = src.items()
    out = Path(out)
    scores = _load_match_scores(match_scores) if match_scores else None
    with OutputLock(out):
        tasks = make_tasks(items, src, out, shard_size=params.shard_size, max_file_bytes=params.max_file_bytes,
                           job=params)
        markers = _markers(out, params)
        # a shard's rows live in its marker file, not in this process: memory stays flat in the
        # number of files (they are read back one shard at a time below)
        for _ in run_pending(convert_shard, tasks, markers, src, workers=workers, scheduler=scheduler,
                             description="build-lpd", outputs=lambda t, _: shard_paths(out, params, t.index)):
            pass
        n_shards = len(tasks)
        remove_stale(out / "tensors", "*-[0-9][0-9][0-9][0-9][0-9].*",
                     lambda p: p.name.split(".")[0].rpartition("-")[0] == params.tracks and task_number(p) < n_shards)
        markers.sweep(n_shards)
        dups, subsets = _mark_duplicates(out, params, tasks, markers, scores)
        summary = _write_outputs(out, params, tasks, markers, dups, subsets, scores)
    return summary


def _mark_duplicates(out: Path, params: Params, tasks: list[Task], markers: Markers, scores: dict | None):
    """Later copies of the same bytes become ``skipped: skip.duplicate`` (their songs leave the
    shards), and LPD's matched and cleansed subsets are decided; one shard's rows at a time.

    Returns ``(dups, subsets)``: the engine's ``Duplicates``; ``subsets[md5] = {lpd_matched,
    lpd_cleansed, match_msd_id}`` for the converted songs that the match scores name (cleanser.py:
    per MSD id, the best-matching MIDI that converted; it is in 'cleansed' when it meets the
    cleansing criteria).
    """
    from pipeline.formats.tensor_shards import read_tensor_rows

    scored = {md5 for md5s in scores.values() for md5 in md5s} if scores else set()
    criteria: dict[str, bool] = {}  # converted songs the scores name -> meets LPD's cleansing criteria

    def on_first(r: dict) -> None:
        if r["id"] in scored and r["status"] in ("ok", "recovered"):
            criteria[r["id"]] = bool(r["lpd_cleansed_criteria"])

    dups = find_duplicates(markers, tasks, on_first=on_first)
    drop: dict[int, set[str]] = {}
    for _, _, r in dups.converted:
        drop.setdefault(r["shard"], set()).add(r["id"])
    for shard, sids in drop.items():
        ids, tensors = read_tensor_rows(shard_paths(out, params, shard)[0])
        keep = [i for i, s in enumerate(ids) if s not in sids]
        _write_tensors(out, params, shard, [ids[i] for i in keep], [tensors[i] for i in keep])
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


def _subset_fields(rows: list[dict], subsets: dict[str, dict], scores: dict | None) -> list[dict]:
    """One shard's rows (duplicates marked) with LPD's subsets filled in."""
    for r in rows:
        r["lpd_matched"] = None if scores is None else False
        r["lpd_cleansed"] = None if scores is None else False
        r["match_msd_id"] = None
        if r["status"] in ("ok", "recovered") and r["id"] in subsets:
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


def _write_outputs(out: Path, params: Params, tasks: list[Task], markers: Markers, dups, subsets: dict,
                   scores: dict | None) -> dict:
    """The manifest (streamed, one shard's rows at a time), the schema files and the summary."""
    from pipeline.formats.manifest import manifest_schema
    from pipeline.files import atomic_write_bytes
    from pipeline.formats.song_npz import song_schema_document
    from pipeline.formats.tensor_shards import schema_document
    from pipeline.symbolic.lpd import TRACK_SETS

    spec = TRACK_SETS[params.tracks]
    note_columns = [f"notes_{_snake(s[0])}" for s in spec]
    counts = Counter()

    def count(rows: list[dict]) -> None:
        converted = [r for r in rows if r["status"] in ("ok", "recovered")]
        counts["songs"] += len(converted)
        counts["bars"] += int(sum(r["n_bars"] for r in converted))
        counts["criteria"] += sum(1 for r in converted if r["lpd_cleansed_criteria"])

    chunks = (_subset_fields(rows, subsets, scores) for _, rows in final_rows(markers, tasks, dups))
    tally, inputs = write_manifest(out / "manifest.parquet", manifest_schema(note_columns), chunks, stage="build_lpd",
                                   on_rows=count)
    schema = schema_document(tracks=[s[0] for s in spec], programs=[s[1] for s in spec],
                             bar_steps=params.tensor.bar_steps, resolution=params.resolution,
                             semantics=params.semantics, other_meters=params.tensor.other_meters,
                             manifest=manifest_schema(note_columns))
    atomic_write_bytes(out / "tensors" / "schema.json", json.dumps(schema, indent=2, sort_keys=True).encode())
    song_doc = song_schema_document(tracks=[s[0] for s in spec], programs=[s[1] for s in spec],
                                    resolution=params.resolution, semantics=params.semantics)
    atomic_write_bytes(out / "songs" / "schema.json", json.dumps(song_doc, indent=2, sort_keys=True).encode())
    rec = tally.record()
    summary = {
        "files": rec["files"],
        "songs": counts["songs"],
        "bars": counts["bars"],
        "status": rec["status"],
        "codes": rec["codes"],
        "lpd_cleansed_criteria": counts["criteria"],
        "warnings": rec["warnings"],
    }
    write_summary(out, summary)
    write_card(out, params, schema, summary, inputs)
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
