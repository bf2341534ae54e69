"""Stage ingest_audio: existing recordings (WAV/FLAC/MP3/OGG, any rate) -> the shards of render_audio.

Each file is decoded with soundfile (libsndfile), resampled to ``sample_rate`` with soxr,
peak-limited (a peak over full scale is scaled down, the factor recorded), downmixed and cut into
seeded fixed-length clips (no bars: ``start_bar``/``end_bar`` are null), written by the same
shard writer as render_audio. A file that cannot be decoded is a manifest row
(``audio.undecodable``), never a crash. Same tasks, markers, duplicates and outputs as
render_audio (both run :mod:`pipeline.audio.shard_stage`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.audio import AudioError
from pipeline.audio.shard_stage import (emit_clips, execute, finish, make_tasks, make_writer, manifest_row,
                                       write_marker, write_outputs)
from pipeline.config import NonNegativeInt, PositiveFloat, PositiveInt, params_section
from pipeline.errors import MidiError, ParamsError, StageError
from pipeline.progress import per_file

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".aif", ".aiff")


@dataclass(frozen=True, kw_only=True)
@params_section("ingest_audio")
class Params:
    """``ingest_audio`` section of params.yaml (same meanings as render_audio's)."""

    sample_rate: PositiveInt
    resample_quality: Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]
    max_duration: PositiveFloat
    downmix: Literal["mean", "left", "right", "random", "none"]
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
class Task:
    index: int
    out: str
    params: Params
    settings: dict
    keys: tuple[str, ...]
    msd_ids: tuple
    paths: tuple[str | None, ...]
    payloads: tuple = ()


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
    from pipeline.audio.downmix import downmix
    from pipeline.config import params_digest
    from pipeline.sources import reason_code
    from pipeline.stagekit import read_input_file

    out = Path(task.out)
    params = task.params
    writer = make_writer(out, task.index, sample_rate=params.sample_rate,
                         row_group_bytes=int(params.row_group_mb * 2**20), shard_bytes=int(params.shard_mb * 2**20),
                         write_npz=params.write_npz)
    rows: list[dict] = []
    seen: dict[str, str] = {}
    try:
        for i, key in per_file(enumerate(task.keys)):
            path = task.paths[i]
            raw, reason = read_input_file(path, params.max_file_bytes)
            song_id = hashlib.md5(raw).hexdigest() if raw is not None else None
            row = manifest_row(key, None, len(raw) if raw is not None else 0, song_id)
            rows.append(row)
            if raw is None:
                row.update(status="error", code=reason_code(reason), message=reason)
                continue
            del raw
            if song_id in seen:
                row.update(status="skipped", code="skip.duplicate", message=f"same bytes as {seen[song_id]}")
                continue
            seen[song_id] = key
            try:
                stereo, info = load_one(path, key, params)
            except MidiError as exc:
                row.update(status="skipped" if exc.code.startswith("skip.") else "error", code=exc.code,
                           message=exc.detail)
                continue
            rec = dict(task.settings, source_sample_rate=info["source_sample_rate"],
                       source_channels=info["source_channels"], source_format=info["source_format"])
            audio, m = downmix(stereo, params.downmix, seed=params.seed, song_id=song_id)
            n = emit_clips(writer, audio, song_id=song_id, source=key, sample_rate=params.sample_rate,
                           clip_samples=params.clip_samples, clip_offset=params.clip_offset, seed=params.seed,
                           clips_per_song=params.clips_per_song, downmix=params.downmix, bar_times=None,
                           gain=info["gain_scale"], gain_scale=info["gain_scale"],
                           render_json=json.dumps(rec, sort_keys=True), downmix_weight=m)
            row.update(info)
            row.update(status="ok", shard=task.index, n_clips=n, downmix_weight=m)
        parts = writer.close()
    except BaseException:
        writer.abort()
        raise
    result = {"rows": rows, "parts": parts}
    write_marker(out, task, params_digest=params_digest(params),
                 settings_json=json.dumps(task.settings, sort_keys=True), result=result)
    return result


def run(*, source: Path, out: Path, params: Params, workers: int = 0, scheduler: str | None = None) -> dict:
    """Ingest every audio file under ``source`` into ``out``; return the summary (also written)."""
    from pipeline.config import params_digest
    from pipeline.stagekit import OutputLock

    settings = settings_record(params)
    src = _Folder(Path(source))
    out = Path(out)
    with OutputLock(out):
        tasks = make_tasks(src.items(), src, out, params, settings, shard_size=params.shard_size, task_cls=Task)
        results = execute(ingest_task, tasks, out, src, json.dumps(settings, sort_keys=True),
                          params_digest=params_digest(params), write_npz=params.write_npz, workers=workers,
                          scheduler=scheduler, description="ingest-audio")
        chunks = finish(out, results, row_group_bytes=int(params.row_group_mb * 2**20), index_of_task=lambda k: k)
        return write_outputs(out, chunks, params_record=dataclasses.asdict(params), sample_rate=params.sample_rate,
                             downmix=params.downmix, clip_samples=params.clip_samples, settings=settings,
                             producer="ingest_audio")
