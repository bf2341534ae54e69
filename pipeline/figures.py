"""Figures of the data: piano-roll panels and spectrograms, drawn with matplotlib (Agg) from arrays.

No file is read here (``pipeline.inspection`` reads the files and chooses song, bars and tracks);
:func:`save` writes the PNG atomically and without the matplotlib version in its metadata, so the
same data give the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

#: the file formats :func:`save` writes
FORMATS = (".png", ".svg", ".pdf")

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: int) -> str:
    """MIDI pitch -> scientific pitch name, with middle C (60) as C4: ``note_name(36) == 'C2'``
    (librosa's ``midi_to_note`` without the unicode sharps)."""
    pitch = int(pitch)
    if not 0 <= pitch <= 127:
        raise ValueError(f"pitch={pitch} is not a MIDI pitch (0..127)")
    return f"{PITCH_CLASSES[pitch % 12]}{pitch // 12 - 1}"


@dataclass(frozen=True)
class RollPanel:
    """One track of a piano-roll window: its non-zero cells, ``time`` in absolute time steps."""

    name: str
    time: np.ndarray      # (n,) int, time step from the start of the song
    pitch: np.ndarray     # (n,) int, MIDI pitch
    velocity: np.ndarray  # (n,) int, 1..127 (or 1: binarised)


def _pitch_range(pitch: np.ndarray) -> tuple[int, int]:
    """The rows shown: the notes' range widened to at least an octave and a half, within 0..127."""
    if len(pitch) == 0:
        return 48, 72  # C3..C5
    lo, hi = int(pitch.min()) - 2, int(pitch.max()) + 2
    while hi - lo < 18:
        lo, hi = lo - 1, hi + 1
    return max(lo, 0), min(hi, 127)


def _pitch_ticks(lo: int, hi: int) -> list[int]:
    """C of every octave in range; also F# when the range is under three octaves."""
    step = 6 if hi - lo < 36 else 12
    return [p for p in range(lo, hi + 1) if p % step == 0]


def pianoroll_figure(panels: Sequence[RollPanel], *, start: int, stop: int, resolution: int,
                     bar_starts: Sequence[int], first_bar: int, title: str, max_velocity: int = 127):
    """One panel per track of the time steps ``start..stop-1``.

    ``resolution``: time steps per beat (the x axis is in beats, a minor tick per beat);
    ``bar_starts``: the time step of each bar line in the window and of the window's end, the
    first being bar ``first_bar`` (major ticks are labelled with the bar index); ``max_velocity``: the darkest
    value (127, or 1 for binarised rolls). Pitches are named (C4 = 60) on the y axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, MultipleLocator

    width = stop - start
    n = max(len(panels), 1)
    fig, axes = plt.subplots(n, 1, figsize=(12, 0.7 + 1.7 * n), sharex=True, squeeze=False,
                             layout="constrained")
    x0, x1 = start / resolution, stop / resolution
    bars_x = [b / resolution for b in bar_starts]
    for ax, panel in zip(axes[:, 0], panels):
        lo, hi = _pitch_range(panel.pitch)
        img = np.zeros((hi - lo + 1, width), np.float32)
        keep = (panel.time >= start) & (panel.time < stop) & (panel.pitch >= lo) & (panel.pitch <= hi)
        img[np.asarray(panel.pitch)[keep] - lo, np.asarray(panel.time)[keep] - start] = panel.velocity[keep]
        ax.imshow(img, aspect="auto", origin="lower", cmap="Greys", vmin=0, vmax=max_velocity,
                  interpolation="nearest", extent=(x0, x1, lo - 0.5, hi + 0.5))
        for x in bars_x:
            ax.axvline(x, color="tab:blue", lw=0.8, alpha=0.8)
        ax.grid(axis="x", which="minor", color="0.85", lw=0.4)
        ax.set_axisbelow(True)
        ticks = _pitch_ticks(lo, hi)
        ax.set_yticks(ticks, [note_name(p) for p in ticks], fontsize=7)
        ax.set_ylim(lo - 0.5, hi + 0.5)
        ax.set_ylabel(panel.name, fontsize=9)
        if not keep.any():
            ax.text(0.5, 0.5, "no notes in these bars", transform=ax.transAxes, ha="center", va="center",
                    fontsize=8, color="0.4")
    last = axes[-1, 0]
    last.set_xlim(x0, x1)
    last.xaxis.set_major_locator(FixedLocator(bars_x))
    last.set_xticklabels([str(first_bar + i) for i in range(len(bars_x))], fontsize=7)
    last.xaxis.set_minor_locator(MultipleLocator(1.0))
    last.set_xlabel("bar (bar lines blue; minor ticks: beats)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def spectrogram_figure(audio: np.ndarray, sample_rate: int, *, title: str, channel_names: Sequence[str],
                       n_fft: int = 2048, hop_length: int = 512):
    """A log-frequency spectrogram (dB relative to the loudest bin of all channels) per channel of
    ``audio`` ((channels, samples) float), with librosa; time in seconds from the clip's start."""
    import matplotlib

    matplotlib.use("Agg")
    import librosa
    import librosa.display
    import matplotlib.pyplot as plt

    audio = np.atleast_2d(np.asarray(audio, np.float32))
    n = audio.shape[0]
    fig, axes = plt.subplots(n, 1, figsize=(10, 0.8 + 3.0 * n), sharex=True, squeeze=False, layout="constrained")
    spectra = [np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop_length)) for x in audio]
    ref = max((float(s.max()) for s in spectra), default=0.0) or 1.0  # one scale for every channel
    img = None
    for ax, s, name in zip(axes[:, 0], spectra, channel_names):
        db = librosa.amplitude_to_db(s, ref=ref, top_db=80.0)
        img = librosa.display.specshow(db, sr=sample_rate, hop_length=hop_length, n_fft=n_fft, x_axis="time",
                                       y_axis="log", ax=ax, cmap="magma", vmin=-80.0, vmax=0.0)
        ax.set_ylabel(f"{name}: Hz" if n > 1 else "Hz", fontsize=8)
        ax.set_xlabel("")
    axes[-1, 0].set_xlabel("time (s)", fontsize=8)
    fig.colorbar(img, ax=axes[:, 0].tolist(), format="%+2.0f dB", label="dB (0: loudest bin)")
    fig.suptitle(title, fontsize=10)
    return fig


def save(fig, path: Path, *, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix: .png, .svg or .pdf; see ``FORMATS``) at
    ``dpi``, atomically, without a tool version or date in it; close ``fig``. Every figure the
    pipeline writes (data figures, training curves, sample pictures) goes through here."""
    import matplotlib.pyplot as plt

    from pipeline.files import atomic_write_bytes

    path = Path(path)
    buf = io.BytesIO()
    fmt = path.suffix.lower().lstrip(".")
    meta = {"png": {"Software": None}, "svg": {"Creator": None, "Date": None},
            "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}[fmt]
    try:
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
