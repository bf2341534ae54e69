"""What the audio stages ``render_audio`` and ``ingest_audio`` share on top of the sharded-stage
engine (:mod:`pipeline.sharded`): songs -> clips -> shard parts, their markers and duplicates,
the manifest columns, ``schema.json``, the summary metric and the card.

A stage's worker starts its rows with ``FileRows(task, extra=ROW_EXTRA)``, cuts each song with
:func:`emit_clips` into a :func:`make_writer` writer and ends with ``markers(...).write(task,
{"rows": ..., "parts": ...})``. The main process runs ``sharded.make_tasks`` -> :func:`execute`
-> :func:`finish` -> :func:`write_outputs`.

Layout of a stage's output folder ``out``: ``parquet/audio-<task>-<part>.parquet``,
``npz/audio-<task>-<part>.npz`` (see :mod:`pipeline.formats.audio_shards`), ``manifest.parquet``,
``schema.json``, ``summary.json``, and the task markers under ``.state/`` (untracked).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.sharded import (Duplicates, Markers, Task, final_rows, find_duplicates, remove_stale, run_pending,
                              write_manifest, write_summary)

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


#: the fields an audio row starts with besides the engine's (``FileRows(task, extra=ROW_EXTRA)``),
#: and the values a duplicate gets
ROW_EXTRA = {"repairs": [], "warnings": [], "n_clips": 0}

#: what a worker stops at instead of recording a bad file: the machine's errors (dask retries the task)
MACHINE_ERRORS = (OSError, MemoryError)


def markers(out: Path, *, params_digest: str, settings_json: str) -> Markers:
    """The task markers (``.state/task-<index>.json``): params digest, settings, inputs digest, rows and parts."""
    return Markers(out, "task", params=params_digest, checks={"settings": settings_json})


def execute(fn, tasks: list[Task], markers: Markers, src, *, write_npz: bool, workers: int, scheduler: str | None,
            description: str) -> list[list[str]]:
    """Run the tasks whose marker does not match or whose parts are gone; every task's parts, in order."""
    out = markers.out

    def parts_of(task: Task, data: dict) -> list[Path]:
        paths = [out / PARQUET_DIR / part for part in data["parts"]]
        if write_npz:
            paths += [out / NPZ_DIR / Path(part).with_suffix(".npz").name for part in data["parts"]]
        return paths

    parts: dict[int, list[str]] = {}
    for index, res in run_pending(fn, tasks, markers, src, workers=workers, scheduler=scheduler,
                                  description=description, outputs=parts_of):
        parts[index] = res["parts"]
    # the rows stay in the task markers (read back one task at a time): memory flat in the files
    return [parts[t.index] for t in tasks]


def finish(out: Path, tasks: list[Task], markers: Markers, parts: list[list[str]], *, row_group_bytes: int):
    """Remove stale parts and markers, mark cross-task duplicates (dropping their clips).

    Returns ``chunks()``: the rows in order, one task's list at a time, duplicates marked (read
    back from the markers; only the duplicate decisions are held here)."""
    from pipeline.formats.audio_shards import filter_shard

    keep = {p for ps in parts for p in ps}
    keep |= {Path(p).with_suffix(".npz").name for p in keep}
    for folder in (out / PARQUET_DIR, out / NPZ_DIR):
        remove_stale(folder, "audio-*", lambda p: p.name in keep)
    markers.sweep(len(tasks))
    dups: Duplicates = find_duplicates(markers, tasks)
    drop: dict[int, set[str]] = {}
    for _, _, r in dups.converted:
        drop.setdefault(r["shard"], set()).add(r["source"])
    for shard, sources in drop.items():
        for part in parts[shard]:
            filter_shard(out / PARQUET_DIR, part, sources, row_group_bytes=row_group_bytes, npz_folder=out / NPZ_DIR)
    return final_rows(markers, tasks, dups, reset=ROW_EXTRA)


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
    ``chunks`` (from :func:`finish`) yields each task's rows, in row groups of ``ROW_GROUP_ROWS``),
    schema.json, summary.json.

    ``params_record``: the stage's params as a dict (``dataclasses.asdict``), kept in schema.json."""
    import pyarrow as pa

    from pipeline.files import write_json
    from pipeline.formats.audio_shards import schema_document
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

    counts = {"songs": 0, "clips": 0, "peak_limited": 0, "seconds": 0.0}

    def add(rows: list[dict]) -> None:
        done = [r for r in rows if r["status"] in ("ok", "recovered")]
        counts["songs"] += len(done)
        counts["clips"] += int(sum(r["n_clips"] or 0 for r in done))
        for r in done:  # one running sum in row order, as sum() over all rows gave
            counts["seconds"] += r["duration"] or 0.0
        counts["peak_limited"] += sum(1 for r in done if (r.get("gain_scale") or 1.0) < 1.0)

    tally, inputs = write_manifest(out / "manifest.parquet", schema, (rows for _, rows in chunks),
                                   stage=producer, to_table=to_table, on_rows=add)
    doc = schema_document(sample_rate=sample_rate, downmix=downmix, clip_samples=clip_samples,
                          producer=producer, settings={"params": params_record, "render": settings})
    doc["manifest"] = {"file": "manifest.parquet", "row": "one input file", "dtypes": arrow_dtypes(schema)}
    write_json(out / "schema.json", doc)
    rec = tally.record()
    summary = {
        "files": rec["files"],
        "songs": counts["songs"],
        "clips": counts["clips"],
        "hours": round(counts["seconds"] / 3600.0, 4),
        "peak_limited": counts["peak_limited"],
        "status": rec["status"],
        "codes": rec["codes"],
        "warnings": rec["warnings"],
    }
    write_summary(out, summary)
    from pipeline.cards import write_card

    write_card(out, card_text(producer, params_record, doc, summary, inputs, sample_rate=sample_rate))
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
