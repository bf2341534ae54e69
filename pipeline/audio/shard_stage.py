"""The shard engine that stages ``render_audio`` and ``ingest_audio`` share: songs -> clips ->
shard parts, with resume markers, cross-task duplicates, the manifest, ``schema.json`` and the
summary metric.

A stage supplies its task dataclass (``index``, ``out``, ``params``, ``settings``, ``keys``,
``msd_ids``, ``paths``, ``payloads``) and a worker function; the worker cuts each song with
:func:`emit_clips` into a :func:`make_writer` writer, starts each input's manifest row with
:func:`manifest_row` and ends with :func:`write_marker`. The main process runs
:func:`make_tasks` -> :func:`execute` -> :func:`finish` -> :func:`write_outputs`.

Layout of a stage's output folder ``out``: ``parquet/audio-<task>-<part>.parquet``,
``npz/audio-<task>-<part>.npz`` (see :mod:`pipeline.formats.audio_shards`), ``manifest.parquet``,
``schema.json``, ``summary.json``, and the task markers under ``.state/`` (untracked).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pipeline.stagekit import inputs_digest, run_shards, warning_counts

STATE_DIR = ".state"
PARQUET_DIR = "parquet"  # the Parquet parts alone, so that a reader can take the whole folder
NPZ_DIR = "npz"


def shard_stem(index: int) -> str:
    return f"audio-{index:05d}"


def emit_clips(writer, audio, *, song_id: str, source: str, sample_rate: int, clip_samples: int, clip_offset: str,
               seed: int, clips_per_song: int, downmix: str, bar_times, gain: float, gain_scale: float,
               render_json: str, downmix_weight) -> int:
    """Cut one song's (downmixed) audio into clips and add them to ``writer``; returns the count."""
    import numpy as np

    from pipeline.audio.clips import cut, plan_clips
    from pipeline.audio.downmix import song_rng

    sr = sample_rate
    L = clip_samples
    clips = plan_clips(len(audio), L, offset=clip_offset, rng=song_rng(seed, song_id, 1),
                       bar_times=bar_times, sample_rate=sr, clips_per_song=clips_per_song)
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    rows = []
    for c in clips:
        x = cut(audio, c, L)
        rows.append((x, {
            "id": song_id, "source": source, "clip": c.index, "sample_rate": sr, "channels": channels,
            "samples": L, "valid_samples": c.valid, "duration": L / sr, "start_sample": c.start,
            "start_time": c.start / sr, "start_bar": c.start_bar, "end_bar": c.end_bar,
            "song_duration": len(audio) / sr, "peak": float(np.abs(x).max()) if x.size else 0.0,
            "gain": gain, "gain_scale": gain_scale, "downmix": downmix,
            "downmix_weight": downmix_weight, "render": render_json,
        }))
    for x, meta in rows:  # all computed first: a failure above leaves no partial song in the shard
        writer.add(x, meta)
    return len(clips)


def make_writer(out: Path, index: int, *, sample_rate: int, row_group_bytes: int, shard_bytes: int,
                write_npz: bool):
    """The shard writer of task ``index`` (Parquet parts under ``out/parquet``, NPZ under ``out/npz``)."""
    from pipeline.formats.audio_shards import ShardWriter

    return ShardWriter(out / PARQUET_DIR, shard_stem(index), sample_rate=sample_rate,
                       row_group_bytes=row_group_bytes, shard_bytes=shard_bytes,
                       write_npz=write_npz, npz_folder=out / NPZ_DIR)


def manifest_row(key: str, msd_id: str | None, size: int, song_id: str | None) -> dict:
    """The manifest row an input starts with (the worker fills in its status)."""
    return {"source": key, "id": song_id, "msd_id": msd_id, "size_bytes": size, "status": None, "code": None,
            "message": None, "repairs": [], "warnings": [], "shard": None, "n_clips": 0}


def task_inputs_digest(task) -> str:
    """The digest of a task's inputs that its marker records."""
    return inputs_digest(task.keys, task.msd_ids)


def marker_path(out: Path, index: int) -> Path:
    return out / STATE_DIR / f"task-{index:05d}.json"


def write_marker(out: Path, task, *, params_digest: str, settings_json: str, result: dict) -> None:
    """The marker of a finished task: its params digest, settings, inputs digest, rows and parts."""
    from pipeline.files import atomic_write_bytes

    marker = {"params": params_digest, "settings": settings_json, "inputs": task_inputs_digest(task), **result}
    atomic_write_bytes(marker_path(out, task.index), json.dumps(marker, sort_keys=True).encode())


def read_marker(out: Path, task, *, params_digest: str, settings_json: str, write_npz: bool) -> dict | None:
    """The task's marker when it records the same params, settings and inputs and its parts exist."""
    path = marker_path(out, task.index)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (data.get("params") != params_digest or data.get("inputs") != task_inputs_digest(task)
            or data.get("settings") != settings_json):
        return None
    for part in data["parts"]:
        if not (out / PARQUET_DIR / part).exists() or (
                write_npz and not (out / NPZ_DIR / Path(part).with_suffix(".npz").name).exists()):
            return None
    return data


def make_tasks(items, src, out: Path, params, settings, *, shard_size: int, task_cls) -> list:
    """One ``task_cls`` per ``shard_size`` items, in order (``params`` and ``settings`` ride along)."""
    tasks = []
    for k in range(0, len(items), shard_size):
        chunk = items[k : k + shard_size]
        paths = tuple(str(p) if (p := src.path_of(it)) is not None else None for it in chunk)
        tasks.append(task_cls(index=k // shard_size, out=str(out), params=params, settings=settings,
                              keys=tuple(it.key for it in chunk), msd_ids=tuple(it.msd_id for it in chunk),
                              paths=paths))
    return tasks


def execute(fn, tasks: list, out: Path, src, settings_json: str, *, params_digest: str, write_npz: bool,
            workers: int, scheduler: str | None, description: str) -> list[dict]:
    """Run the tasks that have no valid marker (streaming archives), return every task's result in order."""
    results: dict[int, dict] = {}
    todo = []
    for t in tasks:
        data = read_marker(out, t, params_digest=params_digest, settings_json=settings_json, write_npz=write_npz)
        if data is None:
            todo.append(t)
        else:
            results[t.index] = {"parts": data["parts"]}
    for index, res in run_shards(fn, todo, src, workers=workers, scheduler=scheduler, description=description):
        results[index] = res
    # the rows stay in the task markers (read back one task at a time): memory flat in the files
    return [{"index": t.index, "parts": results[t.index]["parts"]} for t in tasks]


def task_rows(out: Path, index: int) -> list[dict]:
    """The rows of one finished task, from its marker."""
    return json.loads(marker_path(out, index).read_text())["rows"]


def finish(out: Path, results: list[dict], *, row_group_bytes: int, index_of_task):
    """Remove stale parts and markers, mark cross-task duplicates (dropping their clips).

    Returns ``chunks()``: the rows in order, one task's list at a time, duplicates marked (read
    back from the markers; only the duplicate decisions are held here)."""
    from pipeline.formats.audio_shards import filter_shard

    keep = {p for r in results for p in r["parts"]}
    keep |= {Path(p).with_suffix(".npz").name for p in keep}
    for folder in (out / PARQUET_DIR, out / NPZ_DIR):
        if folder.exists():
            for p in folder.glob("audio-*"):
                if p.name not in keep:
                    p.unlink()
    state = out / STATE_DIR
    n_tasks = len(results)
    if state.exists():
        for p in state.glob("task-*.json"):
            if int(p.stem.split("-")[1]) >= n_tasks:
                p.unlink()
    first: dict[str, str] = {}
    dups: dict[int, dict[int, str]] = {}
    drop: dict[int, set[str]] = {}
    for res in results:
        for i, r in enumerate(task_rows(out, res["index"])):
            sid = r["id"]
            if sid is None or r["code"] == "skip.duplicate" and sid in first:
                continue
            if sid in first:
                if r["status"] in ("ok", "recovered"):
                    drop.setdefault(r["shard"], set()).add(r["source"])
                dups.setdefault(res["index"], {})[i] = first[sid]
            else:
                first[sid] = r["source"]
    del first
    for shard, sources in drop.items():
        for part in results[index_of_task(shard)]["parts"]:
            filter_shard(out / PARQUET_DIR, part, sources, row_group_bytes=row_group_bytes, npz_folder=out / NPZ_DIR)

    def chunks():
        for res in results:
            rows = task_rows(out, res["index"])
            for i, source in dups.get(res["index"], {}).items():
                r = rows[i]
                for k in list(r):
                    if k not in ("source", "id", "msd_id", "size_bytes"):
                        r[k] = None
                r.update(status="skipped", code="skip.duplicate", message=f"same bytes as {source}",
                         repairs=[], warnings=[], n_clips=0)
            yield rows

    return chunks


MANIFEST_FIELDS = [
    ("source", "string"), ("id", "string"), ("msd_id", "string"), ("size_bytes", "int64"),
    ("status", "string"), ("code", "string"), ("message", "string"),
    ("repairs", "list<string>"), ("warnings", "list<string>"), ("shard", "int32"),
    ("rendered_from", "string"), ("n_notes", "int64"), ("midi_end_time", "float64"),
    ("rendered_frames", "int64"), ("trimmed_frames", "int64"), ("frames", "int64"), ("duration", "float64"),
    ("render_peak", "float64"), ("gain_scale", "float64"), ("downmix_weight", "float64"), ("n_clips", "int32"),
    # ingest-audio
    ("source_sample_rate", "int32"), ("source_channels", "int32"), ("source_format", "string"),
]


def write_outputs(out: Path, chunks, *, params_record: dict, sample_rate: int, downmix: str, clip_samples: int,
                  settings: dict, producer: str) -> dict:
    """manifest.parquet (one row per input, plus the settings as constant columns; written as
    ``chunks()`` yields each task's rows, in row groups of ``ROW_GROUP_ROWS``), schema.json, summary.json.

    ``params_record``: the stage's params as a dict (``dataclasses.asdict``), kept in schema.json."""
    import pyarrow as pa

    from pipeline.formats.audio_shards import schema_document
    from pipeline.formats.manifest import ManifestWriter
    from pipeline.files import atomic_write_bytes
    from pipeline.schema import arrow_dtypes

    types = {"string": pa.string(), "int64": pa.int64(), "int32": pa.int32(), "float64": pa.float64(),
             "list<string>": pa.list_(pa.string())}
    fields = [pa.field(n, types[t]) for n, t in MANIFEST_FIELDS]
    setting_cols = {f"render_{k}": v for k, v in sorted(settings.items())}
    for k, v in setting_cols.items():
        fields.append(pa.field(k, pa.bool_() if isinstance(v, bool) else pa.int64() if isinstance(v, int)
                               else pa.float64() if isinstance(v, float) else pa.string()))
    fields.append(pa.field("downmix", pa.string()))
    schema = pa.schema(fields)

    def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:  # rows plus the constant setting columns
        full = [{**r, **setting_cols, "downmix": downmix} for r in rows]
        return pa.table({f.name: pa.array([r.get(f.name) for r in full], f.type) for f in schema}, schema=schema)

    status: Counter = Counter()
    codes: Counter = Counter()
    warnings: Counter = Counter()
    files = songs = clips = peak_limited = 0
    seconds = 0.0
    from pipeline.cards import Digest

    digest = Digest()
    with ManifestWriter(out / "manifest.parquet", schema, to_table=to_table, stage=producer) as manifest:
        for rows in chunks():
            manifest.write(rows)
            digest.update(rows)
            files += len(rows)
            status.update(r["status"] for r in rows)
            codes.update(r["code"] for r in rows if r["code"])
            warnings.update(warning_counts(rows))
            done = [r for r in rows if r["status"] in ("ok", "recovered")]
            songs += len(done)
            clips += int(sum(r["n_clips"] or 0 for r in done))
            for r in done:  # one running sum in row order, as sum() over all rows gave
                seconds += r["duration"] or 0.0
            peak_limited += sum(1 for r in done if (r.get("gain_scale") or 1.0) < 1.0)
    doc = schema_document(sample_rate=sample_rate, downmix=downmix, clip_samples=clip_samples,
                          producer=producer, settings={"params": params_record, "render": settings})
    doc["manifest"] = {"file": "manifest.parquet", "row": "one input file", "dtypes": arrow_dtypes(schema)}
    atomic_write_bytes(out / "schema.json", (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
    summary = {
        "files": files,
        "songs": songs,
        "clips": clips,
        "hours": round(seconds / 3600.0, 4),
        "peak_limited": peak_limited,
        "status": {s: status.get(s, 0) for s in ("ok", "recovered", "skipped", "error")},
        "codes": dict(sorted(codes.items())),
        "warnings": dict(sorted(warnings.items())),
    }
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    from pipeline.cards import write_card

    write_card(out, card_text(producer, params_record, doc, summary, digest.hexdigest(), sample_rate=sample_rate))
    return summary


def card_text(producer: str, params_record: dict, schema: dict, summary: dict, inputs_digest: str | None, *,
              sample_rate: int) -> str:
    """The dataset card (``README.md``) of an audio stage's output folder (render_audio, ingest_audio)."""
    from pipeline.cards import LICENSE_NOTE, Config, render

    rendered = producer == "render_audio"
    if rendered:
        title = "Lakh MIDI rendered to audio clips"
        about = (f"Every MIDI file of the source rendered with FluidSynth and a SoundFont at {sample_rate} Hz, cut "
                 "into fixed-length clips stored as FLAC (16-bit PCM) in Parquet rows, with NPZ copies.")
        inputs = "the MIDI files of the source (a folder or .tar archive), one manifest row each"
        license, note = "cc-by-4.0", (LICENSE_NOTE + ". The audio is also a rendering through the SoundFont named "
                                      "in the params below: check its licence too.")
    else:
        title = "Audio clips"
        about = (f"Every audio file of the source decoded and resampled to {sample_rate} Hz, cut into fixed-length "
                 "clips stored as FLAC (16-bit PCM) in Parquet rows, with NPZ copies.")
        inputs = "the audio files of the source (a folder or .tar archive), one manifest row each"
        license, note = "other", "The clips carry the licences of the source audio files: check your own sources' licences."
    return render(
        title=title, about=about, stage=producer, params=params_record, n_songs=int(summary["songs"]),
        task_categories=["audio-to-audio"], tags=["music", "audio"] + (["midi", "lakh-midi"] if rendered else []),
        configs=[Config("default", {"train": f"{PARQUET_DIR}/*.parquet"}, default=True,
                        description="the audio clips, one row per clip (`audio` decodes as a datasets Audio "
                                    "feature)")],
        files=[(f"{PARQUET_DIR}/*.parquet", "audio shards: one row per clip, FLAC bytes and the clip's metadata"),
               ("npz/*.npz", "the same clips as float arrays (when the params write NPZ)"),
               ("schema.json", "the shards' schema (kind, version, sample rate, channels, clip length)"),
               ("manifest.parquet", "one row per input file: ok / recovered / skipped / error and why"),
               ("summary.json", "the counts below (a DVC metric)")],
        schema=schema, schema_glob=f"{PARQUET_DIR}/*.parquet", summary=summary, inputs=inputs,
        inputs_digest=inputs_digest, license=license, license_note=note, cite_lmd=rendered, cite_lpd=False)
