"""Every sample as a small MP3 for the page's ``<audio>`` players.

MIDI samples go through the project's render path (:func:`pipeline.audio.render.render_midi`:
FluidSynth with the configured SoundFont and settings, trimmed by :func:`~pipeline.audio.render.trim`
and peak-limited like ``render_audio``'s clips); WAV/FLAC samples are read as they are. Both are
mixed to mono, resampled to 22,050 Hz (soxr) and encoded as MP3 by libsndfile (LAME), which writes
the same bytes for the same samples (Ogg Vorbis does not: libsndfile draws a random stream serial).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from pipeline.files import atomic_write_bytes

RATE = 22050
#: the page's audio type: every browser plays it (FLAC/WAV are larger, Ogg is not reproducible)
SUFFIX = ".mp3"
MIME = "audio/mpeg"


def encode(audio: np.ndarray, sample_rate: int, path: Path) -> Path:
    """``(frames,)`` or ``(frames, channels)`` float audio -> a mono 22,050 Hz MP3 at ``path``."""
    import soundfile as sf
    import soxr

    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sample_rate != RATE:
        x = soxr.resample(x, sample_rate, RATE, quality="HQ").astype(np.float32)
    x = np.clip(x, -1.0, 1.0)
    if len(x) < RATE // 10:  # LAME needs some frames; pad very short clips with silence
        x = np.concatenate([x, np.zeros(RATE // 10 - len(x), np.float32)])
    buf = io.BytesIO()
    sf.write(buf, x, RATE, format="MP3", subtype="MPEG_LAYER_III")
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return audio, int(rate)


def render(midi_path: Path, settings, *, release_tail: float, silence_db: float) -> np.ndarray:
    """A MIDI file through FluidSynth: ``(frames, 2)`` float32 at ``settings.sample_rate``."""
    from pipeline.audio.render import render_midi, stage_gain, trim
    from pipeline.io.midi import read_midi

    raw = Path(midi_path).read_bytes()
    end = float(read_midi(raw, str(midi_path)).end_time)
    rate = settings.sample_rate
    stereo = render_midi(raw, settings, max_frames=int(round((end + release_tail) * rate)) + rate,
                         path=str(midi_path))
    stereo, _ = trim(stereo, end_time=end, release_tail=release_tail,
                     threshold=float(10 ** (silence_db / 20)), sample_rate=rate)
    stereo, _, _ = stage_gain(stereo)
    return stereo
