"""MIDI -> stereo float32 audio with the ``fluidsynth`` program, bit-identical from run to run.

The program is started once per file in fast-render mode and streams raw little-endian float32
stereo frames to its stdout (``-F - -T raw -O float -E little``), which we read straight into a
numpy buffer. Settings that make a render reproducible: one synthesis thread
(``-o synth.cpu-cores=1``), a fixed period size (``-z``, at most 1024 frames; FluidSynth applies
MIDI events at period boundaries, so the period size is part of the result), a fixed gain,
polyphony and sample rate. Reverb and chorus are deterministic DSP (no random modulation), so they
may stay on. FluidSynth's float output is not dithered.

Trimming (documented rule, applied by :func:`trim`): the audio is cut at
``end_time + release_tail`` seconds, where ``end_time`` is the MIDI end as pretty_midi computes it
(``MidiScore.end_time``), then trailing frames whose peak over both channels is below
``silence_threshold`` are removed. FluidSynth is stopped as soon as enough frames have come, so a
file never costs more than ``end_time + release_tail`` seconds of synthesis.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import MidiError, StageError

INSTALL_FLUIDSYNTH = "apt-get install --no-install-recommends fluidsynth"
INSTALL_FLUIDR3 = "apt-get install fluid-soundfont-gm"
FLUIDR3_PATH = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")

#: stdout pipe size asked for (Linux F_SETPIPE_SZ), read size, and the pause after a short read:
#: FluidSynth writes 4 KiB at a time; reading each write as it comes costs a wake-up per write
PIPE_BYTES = 1 << 20
READ_CHUNK = 1 << 20
READ_PAUSE = 0.004


def fluidsynth_path() -> str:
    """The ``fluidsynth`` program (``$FLUIDSYNTH`` or the PATH); a one-line StageError when absent."""
    exe = os.environ.get("FLUIDSYNTH") or shutil.which("fluidsynth")
    if not exe or not os.access(exe, os.X_OK):
        raise StageError(f"the fluidsynth program is not installed; install it with: {INSTALL_FLUIDSYNTH}")
    return exe


@functools.lru_cache(maxsize=4)
def synth_version(exe: str | None = None) -> str:
    """FluidSynth's runtime version, e.g. ``'2.3.1'``."""
    exe = exe or fluidsynth_path()
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"runtime version (\S+)", out) or re.search(r"version (\S+)", out)
    if not m:
        raise StageError(f"{exe}: cannot read the FluidSynth version from `fluidsynth --version`")
    return m.group(1)


def resolve_soundfont(name: str) -> Path:
    """``timgm6mb`` (inside pretty_midi), ``fluidr3_gm`` (Debian's fluid-soundfont-gm) or a path."""
    if name == "timgm6mb":
        import pretty_midi

        path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    elif name == "fluidr3_gm":
        path = FLUIDR3_PATH
        if not path.is_file():
            raise StageError(f"soundfont fluidr3_gm: {path} is absent; install it with: {INSTALL_FLUIDR3}")
    else:
        path = Path(name).expanduser()
    if not path.is_file():
        raise StageError(f"soundfont {name!r}: no such file ({path})")
    with open(path, "rb") as fh:
        head = fh.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise StageError(f"soundfont {name!r}: {path} is not a SoundFont 2 file (no RIFF sfbk header)")
    return path


@functools.lru_cache(maxsize=8)
def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True, kw_only=True)
class SynthSettings:
    """Everything that changes a render; recorded with every clip (``as_record``)."""

    soundfont: str  # the SoundFont's file name (a host-independent label)
    soundfont_path: str  # where this host has it (not recorded: hosts differ)
    soundfont_sha256: str
    synth: str  # e.g. "fluidsynth 2.3.1"
    sample_rate: int = 44100
    gain: float = 0.2
    reverb: bool = True
    chorus: bool = True
    period_size: int = 64
    polyphony: int = 256

    def as_record(self) -> dict:
        rec = asdict(self)
        rec.pop("soundfont_path")
        rec.update(cpu_cores=1, sample_format="float32", channels=2)
        return rec

    def command(self, exe: str, midi_path: str) -> list[str]:
        return [
            exe, "-q", "-n", "-i",
            "-F", "-", "-T", "raw", "-O", "float", "-E", "little",
            "-r", str(self.sample_rate), "-z", str(self.period_size), "-g", repr(float(self.gain)),
            "-R", "1" if self.reverb else "0", "-C", "1" if self.chorus else "0",
            "-o", "synth.cpu-cores=1", "-o", f"synth.polyphony={self.polyphony}",
            "-o", "synth.lock-memory=0",
            self.soundfont_path, midi_path,
        ]


def make_settings(*, soundfont: str, sample_rate: int, gain: float, reverb: bool, chorus: bool,
                  period_size: int, polyphony: int) -> SynthSettings:
    """Resolve the SoundFont and the synthesizer (one-line errors when either is missing)."""
    exe = fluidsynth_path()
    path = resolve_soundfont(soundfont)
    return SynthSettings(soundfont=path.name, soundfont_path=str(path), soundfont_sha256=file_sha256(str(path)),
                         synth=f"fluidsynth {synth_version(exe)}", sample_rate=sample_rate, gain=gain,
                         reverb=reverb, chorus=chorus, period_size=period_size, polyphony=polyphony)


def render_midi(midi: bytes, settings: SynthSettings, *, max_frames: int, path: str = "<bytes>",
                timeout: float = 600.0, exe: str | None = None) -> np.ndarray:
    """Render SMF bytes to ``(frames, 2)`` float32, reading at most ``max_frames`` frames.

    FluidSynth is stopped once ``max_frames`` frames have arrived. Raises ``MidiError``
    (``render.failed`` when the program fails or writes nothing, ``render.timeout``).
    """
    exe = exe or fluidsynth_path()
    buf = np.empty((max(int(max_frames), 0), 2), np.float32)
    view = memoryview(buf).cast("B")
    fd, mid_path = tempfile.mkstemp(suffix=".mid", prefix="render-")
    timed_out = threading.Event()
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(midi)
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(settings.command(exe, mid_path), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=err, bufsize=0)

            def kill() -> None:
                timed_out.set()
                proc.kill()

            timer = threading.Timer(timeout, kill)
            timer.start()
            _grow_pipe(proc.stdout.fileno())
            got = 0
            eof = False
            try:
                while got < len(view):
                    n = proc.stdout.readinto(view[got : got + READ_CHUNK])
                    if not n:
                        eof = True
                        break
                    got += n
                    if n < READ_CHUNK // 8:
                        time.sleep(READ_PAUSE)  # let the pipe fill: fewer wake-ups for both processes
            finally:
                if not eof and proc.poll() is None:
                    proc.kill()  # enough frames (the rest would be cut anyway), or an error while reading
                proc.stdout.close()
                rc = proc.wait()
                timer.cancel()
            err.seek(0)
            messages = err.read().decode("utf-8", "replace")
    finally:
        os.unlink(mid_path)
    if timed_out.is_set():
        raise MidiError("render.timeout", path, f"fluidsynth took more than {timeout:.0f} s")
    full = got == len(view)
    if rc != 0 and not full or (got == 0 and "error" in messages.lower()):
        raise MidiError("render.failed", path, f"fluidsynth exited with {rc}: {_first_error(messages)}")
    return buf[: got // 8]


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except OSError:  # not Linux, or over /proc/sys/fs/pipe-max-size: the default pipe works too
        pass


def _first_error(messages: str) -> str:
    lines = [ln.strip() for ln in messages.splitlines() if ln.strip()]
    errs = [ln for ln in lines if "error" in ln.lower()] or lines or ["no output"]
    return errs[0][:300]


def trim(audio: np.ndarray, *, end_time: float, release_tail: float, threshold: float,
         sample_rate: int) -> tuple[np.ndarray, int]:
    """Apply the trimming rule; returns ``(trimmed, cut_frames)``.

    1. cut at ``round((end_time + release_tail) * sample_rate)`` frames (the MIDI end plus the
       release tail), 2. drop trailing frames whose ``max(|L|, |R|) < threshold``.
    A fully silent render comes back empty.
    """
    n = min(len(audio), int(round((end_time + release_tail) * sample_rate)))
    keep = 0
    block = 1 << 16
    for stop in range(n, 0, -block):  # from the end: trailing silence is short, the song is not
        start = max(0, stop - block)
        loud = np.flatnonzero((np.abs(audio[start:stop]) >= threshold).any(axis=1))
        if len(loud):
            keep = start + int(loud[-1]) + 1
            break
    return audio[:keep], len(audio) - keep


def stage_gain(audio: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Peak limiting: returns ``(audio, peak_before, scale)``; ``scale = 1/peak`` (< 1) when the
    peak is over full scale, else 1.0 (no gain normalisation otherwise, as in Jukebox)."""
    peak = max(float(audio.max()), -float(audio.min())) if audio.size else 0.0
    if peak > 1.0:
        scale = float(np.float32(1.0) / np.float32(peak))
        return (audio * np.float32(scale)).clip(-1.0, 1.0), peak, scale
    return audio, peak, 1.0


# --- inputs rewritten before rendering ----------------------------------------------------------

def first_track_tempo_only(raw: bytes) -> bytes:
    """The same SMF without the tempo events outside the first track (pretty_midi ignores them,
    FluidSynth follows them), everything else kept (controllers, pitch bends, programs).
    For files that mido reads (read_midi found nothing to repair)."""
    import mido

    from pipeline.formats.midi import midi_bytes

    mid = mido.MidiFile(file=io.BytesIO(raw))
    for track in mid.tracks[1:]:
        carry = 0
        kept = []
        for msg in track:
            if msg.type == "set_tempo":
                carry += msg.time
                continue
            kept.append(msg.copy(time=msg.time + carry) if carry else msg)
            carry = 0
        track[:] = kept
    return midi_bytes(mid)


# --- sanitized Standard MIDI Files for repaired inputs ------------------------------------------

def _seconds_to_ticks(times: np.ndarray, tempo_times: np.ndarray, tempi: np.ndarray, tpq: int) -> np.ndarray:
    """Invert the piecewise-constant tempo map (seconds -> ticks at ``tpq`` per quarter)."""
    times = np.asarray(times, np.float64)
    sec_per_tick = 60.0 / (tempi * tpq)
    starts = np.zeros(len(tempo_times), np.float64)
    for k in range(1, len(tempo_times)):
        starts[k] = starts[k - 1] + (tempo_times[k] - tempo_times[k - 1]) / sec_per_tick[k - 1]
    seg = np.clip(np.searchsorted(tempo_times, times, side="right") - 1, 0, None)
    ticks = starts[seg] + (times - tempo_times[seg]) / sec_per_tick[seg]
    return np.maximum(np.round(ticks), 0).astype(np.int64)


def sanitized_smf(score) -> tuple[bytes, list[str]]:
    """A clean type-1 SMF written with mido from a ``MidiScore``: the tempo map and time
    signatures in the first track, then one track per instrument with its program change
    and notes (drums on channel 10). Controllers, pitch bends and lyrics are not kept.
    Returns ``(bytes, notes)``; ``notes`` says what was approximated."""
    import mido

    from pipeline.formats.midi import midi_bytes, midi_file, track

    tpq = int(score.resolution) if 0 < score.resolution < 32768 else 480
    tempo_times = np.asarray(score.tempo_times, np.float64)
    tempi = np.asarray(score.tempi, np.float64)
    if len(tempo_times) == 0:
        tempo_times, tempi = np.zeros(1), np.array([120.0])
    to_ticks = functools.partial(_seconds_to_ticks, tempo_times=tempo_times, tempi=tempi, tpq=tpq)
    notes: list[str] = []
    events = []
    for t, bpm in zip(to_ticks(tempo_times).tolist(), tempi.tolist()):
        events.append((t, 0, mido.MetaMessage("set_tempo", tempo=max(1, min(0xFFFFFF, int(round(6e7 / bpm)))))))
    for t, n, d in zip(to_ticks(score.ts_times).tolist(), score.ts_num.tolist(), score.ts_den.tolist()):
        if 0 < n < 256 and d > 0 and (d & (d - 1)) == 0:
            events.append((t, 1, mido.MetaMessage("time_signature", numerator=int(n), denominator=int(d))))
    tracks = [track(events)]
    melodic = [c for c in range(16) if c != 9]
    used = 0
    for k in range(len(score.inst_program)):
        m = score.note_inst == k
        if not m.any():
            continue
        drum = bool(score.inst_channel[k] == 9)
        if drum:
            ch = 9
        else:
            ch = melodic[used % len(melodic)]
            used += 1
        prog = int(score.inst_program[k]) & 0x7F
        ev = [(0, 0, mido.Message("program_change", channel=ch, program=prog))]
        on = to_ticks(score.note_start[m])
        off = np.maximum(to_ticks(score.note_end[m]), on)
        for a, b, p, v in zip(on.tolist(), off.tolist(), score.note_pitch[m].tolist(), score.note_vel[m].tolist()):
            ev.append((a, 2, mido.Message("note_on", channel=ch, note=int(p) & 0x7F, velocity=max(1, min(127, int(v))))))
            ev.append((b, 1, mido.Message("note_off", channel=ch, note=int(p) & 0x7F, velocity=0)))
        tracks.append(track(ev))
    if used > len(melodic):
        notes.append(f"{used} melodic instruments share {len(melodic)} channels")
    return midi_bytes(midi_file(tracks, ticks_per_beat=tpq)), notes
