"""Stage ingest_audio: existing recordings (WAV/FLAC/MP3/OGG, any rate) -> the shards of render_audio.

Each file is decoded with soundfile (libsndfile), resampled to ``sample_rate`` with soxr,
peak-limited (a peak over full scale is scaled down, the factor recorded), downmixed and cut into
seeded fixed-length clips (no bars: ``start_bar``/``end_bar`` are null), written by the same
shard writer as render_audio. A file that cannot be decoded is a manifest row
(``audio.undecodable``), never a crash. Same tasks, markers, duplicates and outputs as
render_audio (both run :mod:`pipeline.audio.shard_stage` on :mod:`pipeline.sharded`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.audio import AudioError
from pipeline.audio.shard_stage import (MACHINE_ERRORS, ROW_EXTRA, emit_clips, execute, finish, make_writer,
                                       markers, write_outputs)
from pipeline.config import NonNegativeInt, PositiveFloat, PositiveInt, params_section
from pipeline.errors import ParamsError, StageError
from pipeline.names import Downmix
from pipeline.sharded import FileRows, Task, attempt, make_tasks

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".aif", ".aiff")


@dataclass(frozen=True, kw_only=True)
@params_section("ingest_audio")
class Params:
    """``ingest_audio`` section of params.yaml (same meanings as render_audio's)."""

    sample_rate: PositiveInt
    resample_quality: Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]
    max_duration: PositiveFloat
    downmix: Downmix
    seed: NonNegativeInt
    clip_samples: int  # a positive multiple of 128
    clips_per_song: NonNegativeInt
    shard_size: PositiveInt
    shard_mb: PositiveFloat
    row_group_mb: PositiveFloat
    write_npz: bool
    max_file_bytes: PositiveInt

    clip_offset = "seeded"  # recordings have no bars (a class constant, not a param)

    def __post_init__(self) -> None:
        if self.clip_samples < 128 or self.clip_samples % 128:
            raise ParamsError(f"ingest_audio.clip_samples={self.clip_samples} must be a positive multiple of 128")


@dataclass(frozen=True)
class Item:
    key: str
    msd_id: None = None


class _Folder:
    def __init__(self, root: Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise StageError(f"{root}: no such folder")
        keys = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in filenames:
                if name.lower().endswith(AUDIO_SUFFIXES) and not name.startswith("."):
                    keys.append(Path(dirpath, name).relative_to(root).as_posix())
        if not keys:
            raise StageError(f"{root}: no {'/'.join(AUDIO_SUFFIXES)} files")
        self.root = root
        self._items = [Item(k) for k in sorted(keys)]

    def items(self):
        return list(self._items)

    def path_of(self, item):
        return self.root / item.key


@dataclass(frozen=True)
class Job:
    """What every task needs besides its files (the engine's ``Task.job``)."""

    params: Params
    settings: dict


def settings_record(params: Params) -> dict:
    import soundfile
    import soxr

    return {"decoder": f"libsndfile {soundfile.__libsndfile_version__}", "resampler": f"soxr {soxr.__version__}",
            "resample_quality": params.resample_quality, "sample_rate": params.sample_rate,
            "sample_format": "float32"}


def load_one(path: str, key: str, params: Params):
    """A file -> ((frames, 2) float32 at ``sample_rate``, info); raises AudioError (audio.* / skip.*)."""
    import numpy as np
    import soundfile as sf
    import soxr

    try:
        info = sf.info(path)
        if info.frames > 0 and info.samplerate > 0 and info.frames / info.samplerate > params.max_duration:
            raise AudioError("skip.too_long", key, f"{info.frames / info.samplerate:.1f} s > max_duration={params.max_duration:g} s")
        x, sr = sf.read(path, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as exc:  # the decoding boundary: libsndfile's errors are many and untyped
        raise AudioError("audio.undecodable", key, " ".join(str(exc).split())[:300] or type(exc).__name__) from None
    warnings = []
    if len(x) == 0:
        raise AudioError("skip.empty", key, "the file holds no audio frames")
    if not np.isfinite(x).all():
        raise AudioError("audio.not_finite", key, "the decoded audio holds NaN or infinite samples")
    channels = x.shape[1]
    if channels == 1:
        x = np.repeat(x, 2, axis=1)
    elif channels > 2:
        warnings.append(f"{channels} channels: the first two kept as L, R")
        x = x[:, :2]
    if sr != params.sample_rate:
        x = soxr.resample(x, sr, params.sample_rate, quality=params.resample_quality).astype(np.float32, copy=False)
    peak = float(np.abs(x).max())
    if peak == 0.0:
        raise AudioError("skip.silent", key, "the file is digital silence")
    scale = 1.0
    if peak > 1.0:
        scale = float(np.float32(1.0) / np.float32(peak))
        x = (x * np.float32(scale)).clip(-1.0, 1.0)
    return np.ascontiguousarray(x), {
        "warnings": warnings, "source_sample_rate": int(sr), "source_channels": int(channels),
        "source_format": f"{info.format}/{info.subtype}", "frames": len(x), "duration": len(x) / params.sample_rate,
        "render_peak": peak, "gain_scale": scale,
    }


def ingest_task(task: Task) -> dict:
    """Worker: decode one task's files into its shard parts, write the marker; return rows + parts."""
    from pipeline.config import params_digest

    out = Path(task.out)
    params, settings = task.job.params, task.job.settings
    writer = make_writer(out, task.index, sample_rate=params.sample_rate,
                         row_group_bytes=int(params.row_group_mb * 2**20), shard_bytes=int(params.shard_mb * 2**20),
                         write_npz=params.write_npz)
    files = FileRows(task, extra=ROW_EXTRA, keep_bytes=False)  # soundfile reads the file itself
    try:
        for i, _, row in files:
            key = row["source"]
            done = attempt(row, _ingest_clips, writer, task.paths[i], key, params, settings, row["id"], key=key,
                           reraise=MACHINE_ERRORS, time_limit=False)
            if done is None:
                continue
            info, n, m = done
            row.update(info)
            row.update(status="ok", shard=task.index, n_clips=n, downmix_weight=m)
        parts = writer.close()
    except BaseException:
        writer.abort()
        raise
    result = {"rows": files.rows, "parts": parts}
    markers(out, params_digest=params_digest(params), settings_json=json.dumps(settings, sort_keys=True)).write(
        task, result)
    return result


def _ingest_clips(writer, path: str, key: str, params: Params, settings: dict, song_id: str):
    """Decode one file (under the per-file time limit), downmix it and add its clips to ``writer``:
    (info, clips, downmix weight)."""
    from pipeline.audio.downmix import downmix
    from pipeline.stagekit import call_with_time_limit

    stereo, info = call_with_time_limit(load_one, path, key, params, key=key)
    rec = dict(settings, source_sample_rate=info["source_sample_rate"], source_channels=info["source_channels"],
               source_format=info["source_format"])
    audio, m = downmix(stereo, params.downmix, seed=params.seed, song_id=song_id)
    n = emit_clips(writer, audio, song_id=song_id, source=key, sample_rate=params.sample_rate,
                   clip_samples=params.clip_samples, clip_offset=params.clip_offset, seed=params.seed,
                   clips_per_song=params.clips_per_song, downmix=params.downmix, bar_times=None,
                   gain=info["gain_scale"], gain_scale=info["gain_scale"],
                   render_json=json.dumps(rec, sort_keys=True), downmix_weight=m)
    return info, n, m


def run(*, source: Path, out: Path, params: Params, workers: int = 0, scheduler: str | None = None) -> dict:
    """Ingest every audio file under ``source`` into ``out``; return the summary (also written)."""
    from pipeline.config import params_digest
    from pipeline.stagekit import OutputLock

    settings = settings_record(params)
    src = _Folder(Path(source))
    out = Path(out)
    with OutputLock(out):
        tasks = make_tasks(src.items(), src, out, shard_size=params.shard_size, max_file_bytes=params.max_file_bytes,
                           job=Job(params=params, settings=settings))
        marks = markers(out, params_digest=params_digest(params), settings_json=json.dumps(settings, sort_keys=True))
        parts = execute(ingest_task, tasks, marks, src, write_npz=params.write_npz, workers=workers,
                        scheduler=scheduler, description="ingest-audio")
        chunks = finish(out, tasks, marks, parts, row_group_bytes=int(params.row_group_mb * 2**20))
        return write_outputs(out, chunks, params_record=dataclasses.asdict(params), sample_rate=params.sample_rate,
                             downmix=params.downmix, clip_samples=params.clip_samples, settings=settings,
                             producer="ingest_audio")
