"""Stage render_audio: Lakh MIDI -> 44.1 kHz audio clips rendered with FluidSynth, in Parquet
(Hugging Face ``Audio`` layout, FLAC 16-bit) and NPZ (float32) shards, with a manifest row for
every input file.

Data flow: ``open_source`` lists the inputs in a fixed order -> they are cut into tasks of
``shard_size`` files -> each task (local processes or a dask cluster) reads each file
(``read_midi``), renders it (see below), trims, limits the peak, downmixes, cuts fixed-length clips with their bars and streams them
into its own shard parts, then writes a marker with its manifest rows -> the main process marks
duplicates, writes the manifest, ``schema.json`` and the summary metric. A rerun skips the tasks
whose marker matches; nothing written depends on timing, host or worker count. The tasks, markers,
duplicates and the manifest are :mod:`pipeline.audio.shard_stage`'s (shared with ingest_audio), on the
sharded-stage engine :mod:`pipeline.sharded`.

What is rendered (``rendered_from`` in the manifest): ``original``: the file's own bytes;
``first_track_tempo``: the same bytes without the tempo events outside the first track (pretty_midi
ignores them, FluidSynth would follow them, and the clips carry pretty_midi's bars); ``sanitized``:
an SMF rewritten from the ``MidiScore`` (notes, programs, drums on channel 10, tempo map, time
signatures; no controllers) when the reader repaired the file or FluidSynth refused or cut short
the original.

Outputs: ``parquet/audio-<task>-<part>.parquet``, ``npz/audio-<task>-<part>.npz``, ``schema.json``,
``manifest.parquet``, ``summary.json`` (see :mod:`pipeline.formats.audio_shards`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pipeline.audio.shard_stage import (MACHINE_ERRORS, ROW_EXTRA, emit_clips, execute, finish, make_writer,
                                       markers, write_outputs)
from pipeline.config import (NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range, params_digest,
                             params_section)
from pipeline.errors import MidiError, ParamsError
from pipeline.names import Downmix
from pipeline.sharded import FileRows, Task, attempt, make_tasks
from pipeline.stagekit import OutputLock, call_with_time_limit

MAX_PERIOD = 1024
#: FluidSynth's player silently refuses a file of more tracks (it renders silence, exit code 0)
FLUIDSYNTH_MAX_TRACKS = 127


@dataclass(frozen=True, kw_only=True)
@params_section("render_audio")
class Params:
    """``render_audio`` section of params.yaml.

    Attributes
    ----------
    soundfont : str
        ``timgm6mb`` (ships inside pretty_midi), ``fluidr3_gm`` (Debian ``fluid-soundfont-gm``) or a path.
    sample_rate : int
        Hz (44100).
    gain, reverb, chorus, period_size, polyphony
        FluidSynth settings (``-g``, ``-R``, ``-C``, ``-z`` <= 1024 frames, ``synth.polyphony``).
    release_tail : float
        Seconds kept after the MIDI end (pretty_midi's end time) for releases and reverb.
    silence_db : float
        Trailing frames quieter than this (dBFS, both channels) are trimmed; a render with no
        frame above it is ``skip.silent``.
    max_duration : float
        Files whose MIDI end is later than this (s) are refused before rendering (``skip.too_long``).
    render_seconds : float
        0: render whole songs; > 0: only the first ``render_seconds`` (a cheap preview corpus).
    downmix : str
        ``mean`` | ``left`` | ``right`` | ``random`` (Jukebox, m ~ U(0,1) per song) | ``none`` (stereo).
    seed : int
        Seeds the random downmix and the clip offsets, per song id.
    clip_samples : int
        Clip length in frames, a positive multiple of 128 (262144 ~ 5.9 s).
    clip_offset : str
        ``seeded`` (a random first offset, then back to back) | ``bar`` (each clip starts on a downbeat).
    clips_per_song : int
        0: every clip; n > 0: n clips per song, chosen by the seeded generator.
    shard_size : int
        Input files per task (one task writes one shard, in one or more parts).
    shard_mb, row_group_mb : float
        A shard part rolls over past ``shard_mb`` of FLAC bytes; row groups close at ``row_group_mb``.
    write_npz : bool
        Also write the float32 NPZ shards.
    max_file_bytes : int
        Larger input files are not read (``input.too_large``).
    """

    soundfont: str
    sample_rate: PositiveInt
    gain: Annotated[float, Range(0, 10, lo_open=True)]
    reverb: bool
    chorus: bool
    period_size: Annotated[int, Range(1, MAX_PERIOD, note="frames")]
    polyphony: PositiveInt
    release_tail: NonNegativeFloat
    silence_db: Annotated[float, Range(hi=0, hi_open=True, note="dBFS")]
    max_duration: PositiveFloat
    render_seconds: NonNegativeFloat
    downmix: Downmix
    seed: NonNegativeInt
    clip_samples: int  # a positive multiple of 128
    clip_offset: Literal["seeded", "bar"]
    clips_per_song: NonNegativeInt
    shard_size: PositiveInt
    shard_mb: PositiveFloat
    row_group_mb: PositiveFloat
    write_npz: bool
    max_file_bytes: PositiveInt

    def __post_init__(self) -> None:
        if self.clip_samples < 128 or self.clip_samples % 128:
            raise ParamsError(f"render_audio.clip_samples={self.clip_samples} must be a positive multiple of 128")

    @property
    def threshold(self) -> float:
        return float(10.0 ** (self.silence_db / 20.0))


@dataclass(frozen=True)
class Job:
    """What every task needs besides its files (the engine's ``Task.job``)."""

    params: Params
    settings: object  # SynthSettings, resolved once in the main process


def sanitize_reason(score) -> str | None:
    """Why the original bytes must not be rendered as they are (None: render them)."""
    if score.repairs:
        return "the reader repaired the file: " + "; ".join(score.repairs)
    return None


def foreign_tempo(score) -> bool:
    """Tempo (or meter) events outside the first track: pretty_midi ignores them, FluidSynth follows
    the tempo ones, so the audio would not follow the bars the clips carry."""
    return any("outside the first track" in w for w in score.warnings)


def render_one(raw: bytes, key: str, params: Params, settings) -> tuple[object, dict]:
    """MIDI bytes -> (stereo float32 (frames, 2) after trim and peak limiting, info).

    Raises MidiError: the reader's codes, ``skip.no_notes``, ``skip.too_long``, ``skip.silent``,
    ``render.failed``, ``render.timeout``.
    """
    from pipeline.audio.render import first_track_tempo_only, render_midi, sanitized_smf, stage_gain, trim
    from pipeline.io.midi import read_midi

    score = read_midi(raw, key)
    if len(score.note_pitch) == 0:
        raise MidiError("skip.no_notes", key, "the file has no notes")
    end = float(score.end_time)
    if end > params.max_duration:
        raise MidiError("skip.too_long", key, f"the MIDI lasts {end:.1f} s > max_duration={params.max_duration:g} s")
    warnings = list(score.warnings)
    sr = settings.sample_rate
    limit = end + params.release_tail
    truncated = bool(params.render_seconds and params.render_seconds < limit)
    if truncated:
        limit = params.render_seconds
    max_frames = int(round(limit * sr))
    timeout = 120.0 + 4.0 * limit  # FluidSynth renders far faster than real time
    why = sanitize_reason(score)
    if why is None and score.n_tracks > FLUIDSYNTH_MAX_TRACKS:
        why = f"{score.n_tracks} tracks, more than FluidSynth plays ({FLUIDSYNTH_MAX_TRACKS})"
    stereo = None
    if why is None:
        rendered_from = "original"
        midi = raw
        if foreign_tempo(score):
            try:
                midi = first_track_tempo_only(raw)
                rendered_from = "first_track_tempo"
                warnings.append("rendered without the tempo events outside the first track (as pretty_midi times it)")
            except Exception as exc:  # mido refuses what read_midi took: fall back to the sanitized SMF
                why = f"mido cannot rewrite the tempo map ({type(exc).__name__}: {exc})"
    if why is None:
        try:
            stereo = render_midi(midi, settings, max_frames=max_frames, path=key, timeout=timeout)
        except MidiError as exc:
            if exc.code != "render.failed":
                raise
            why = f"fluidsynth could not render the file ({exc.detail})"
        else:
            if len(stereo) < min(max_frames, int((end - 1.0) * sr)):  # FluidSynth stopped early
                why = f"fluidsynth rendered only {len(stereo) / sr:.1f} s of a {end:.1f} s file"
    if why is not None:
        midi, notes = sanitized_smf(score)
        midi, merged = _within_track_limit(midi)
        notes += merged
        rendered_from = "sanitized"
        warnings = [w for w in warnings if not w.startswith("rendered without the tempo")]
        warnings += [f"rendered from a sanitized SMF: {why}", *notes]
        stereo = render_midi(midi, settings, max_frames=max_frames, path=key, timeout=timeout)
    rendered = len(stereo)
    stereo, _ = trim(stereo, end_time=(params.render_seconds if truncated else end),
                     release_tail=0.0 if truncated else params.release_tail,
                     threshold=params.threshold, sample_rate=sr)
    if len(stereo) == 0:
        raise MidiError("skip.silent", key, f"the render has no frame above {params.silence_db:g} dBFS "
                                            f"({rendered} frames rendered with {settings.soundfont})")
    stereo, peak, scale = stage_gain(stereo)
    if truncated:
        warnings.append(f"rendered only the first {params.render_seconds:g} s (render_seconds)")
    info = {
        "repairs": list(score.repairs),
        "warnings": warnings,
        "rendered_from": rendered_from,
        "midi_end_time": end,
        "rendered_frames": rendered,
        "frames": len(stereo),
        "duration": len(stereo) / sr,
        "trimmed_frames": rendered - len(stereo),
        "render_peak": peak,
        "gain_scale": scale,
        "n_notes": len(score.note_pitch),
    }
    return (score, stereo), info


def _within_track_limit(midi: bytes) -> tuple[bytes, list[str]]:
    """The SMF as it is, or merged into one track (type 0, same ticks) when it has more tracks
    than FluidSynth plays (the sanitized SMF has one track per instrument)."""
    import io

    import mido

    from pipeline.formats.midi import midi_bytes, midi_file

    n_tracks = int.from_bytes(midi[10:12], "big")
    if n_tracks <= FLUIDSYNTH_MAX_TRACKS:
        return midi, []
    mid = mido.MidiFile(file=io.BytesIO(midi))
    one = midi_file([mido.merge_tracks(mid.tracks)], ticks_per_beat=mid.ticks_per_beat, type=0)
    return midi_bytes(one), [f"its {n_tracks} tracks merged into one (FluidSynth plays at most {FLUIDSYNTH_MAX_TRACKS})"]


def _bar_times(score):
    from pipeline.symbolic.lpd import bar_grid

    try:
        return bar_grid(score).bar_times
    except MidiError:
        return None


def render_task(task: Task) -> dict:
    """Worker: render one task's files into its shard parts, write the marker; return rows + parts."""
    out = Path(task.out)
    params, settings = task.job.params, task.job.settings
    render_json = json.dumps(settings.as_record(), sort_keys=True)
    writer = make_writer(out, task.index, sample_rate=params.sample_rate,
                         row_group_bytes=int(params.row_group_mb * 2**20), shard_bytes=int(params.shard_mb * 2**20),
                         write_npz=params.write_npz)
    files = FileRows(task, extra=ROW_EXTRA)
    try:
        for _, raw, row in files:
            key = row["source"]
            done = attempt(row, _render_clips, writer, raw, key, params, settings, row["id"], render_json, key=key,
                           reraise=MACHINE_ERRORS, time_limit=False)
            if done is None:
                continue
            info, n, m = done
            row.update(info)
            row.update(status="recovered" if info["repairs"] else "ok", shard=task.index, n_clips=n,
                       downmix_weight=m)
            notes = [w for w in info["warnings"] if w.startswith("rendered from a sanitized SMF")]
            if notes:
                row["message"] = notes[0]
        parts = writer.close()
    except BaseException:
        writer.abort()
        raise
    result = {"rows": files.rows, "parts": parts}
    markers(out, params_digest=params_digest(params), settings_json=render_json).write(task, result)
    return result


def _render_clips(writer, raw: bytes, key: str, params: Params, settings, song_id: str, render_json: str):
    """Render one file (under the per-file time limit), downmix it and add its clips to ``writer``:
    (info, clips, downmix weight)."""
    from pipeline.audio.downmix import downmix

    (score, stereo), info = call_with_time_limit(render_one, raw, key, params, settings, key=key)
    audio, m = downmix(stereo, params.downmix, seed=params.seed, song_id=song_id)
    n = emit_clips(writer, audio, song_id=song_id, source=key, sample_rate=params.sample_rate,
                   clip_samples=params.clip_samples, clip_offset=params.clip_offset, seed=params.seed,
                   clips_per_song=params.clips_per_song, downmix=params.downmix,
                   bar_times=_bar_times(score), gain=settings.gain * info["gain_scale"],
                   gain_scale=info["gain_scale"], render_json=render_json, downmix_weight=m)
    return info, n, m


def run(*, source: Path, out: Path, params: Params, workers: int = 0, scheduler: str | None = None) -> dict:
    """Render every MIDI file under ``source`` into ``out``; return the summary (also written)."""
    from pipeline.audio.render import make_settings
    from pipeline.sources import open_source

    settings = make_settings(soundfont=params.soundfont, sample_rate=params.sample_rate, gain=params.gain,
                             reverb=params.reverb, chorus=params.chorus, period_size=params.period_size,
                             polyphony=params.polyphony)
    render_json = json.dumps(settings.as_record(), sort_keys=True)
    src = open_source(Path(source))
    items = src.items()
    out = Path(out)
    with OutputLock(out):
        tasks = make_tasks(items, src, out, shard_size=params.shard_size, max_file_bytes=params.max_file_bytes,
                           job=Job(params=params, settings=settings))
        marks = markers(out, params_digest=params_digest(params), settings_json=render_json)
        parts = execute(render_task, tasks, marks, src, write_npz=params.write_npz, workers=workers,
                        scheduler=scheduler, description="render-audio")
        chunks = finish(out, tasks, marks, parts, row_group_bytes=int(params.row_group_mb * 2**20))
        summary = write_outputs(out, chunks, params_record=dataclasses.asdict(params), sample_rate=params.sample_rate,
                                downmix=params.downmix, clip_samples=params.clip_samples,
                                settings=settings.as_record(), producer="render_audio")
    return summary
