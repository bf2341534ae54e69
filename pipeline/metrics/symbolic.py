"""Symbolic-music metrics of MuseGAN (Dong et al. 2018), as pure functions on piano-roll arrays.

A piano-roll here is a ``(n_steps, 128)`` array (any dtype; non-zero = sounding) on a grid of
``resolution`` steps per beat (24, the LPD grid), with ``bar_starts`` the step of every downbeat
(``Pianoroll.bar_starts``). Bars run from one downbeat to the next (the last to the end of the
roll); steps before the first downbeat are left out.

- ``empty_bars`` (EB): fraction of bars in which nothing sounds.
- ``used_pitch_classes`` (UPC): number of distinct pitch classes (0-12) sounding in a bar,
  averaged over the non-empty bars (empty bars are what EB counts; including them would count
  them twice).
- ``qualified_notes`` (QN): fraction of notes that last at least ``min_steps`` steps. A note is a
  run of consecutive sounding steps of one pitch (a binarised roll cannot split repeated notes;
  MuseGAN counts the same way). The threshold is 3 steps at 24 steps per beat: a 32nd note
  (1/8 beat = 3 steps), MuseGAN's "qualified" length; ``min_steps`` scales it for other grids.

Each returns ``None`` when it is undefined (no bars, no notes).
"""

from __future__ import annotations

import numpy as np

QN_MIN_STEPS_AT_24 = 3  # a 32nd note at 24 steps per beat


def _bars(n_steps: int, bar_starts) -> list[tuple[int, int]]:
    b = sorted(int(s) for s in np.asarray(bar_starts).ravel() if 0 <= int(s) < n_steps)
    ends = b[1:] + [n_steps]
    return [(s, e) for s, e in zip(b, ends) if e > s]


def empty_bars(roll: np.ndarray, bar_starts) -> float | None:
    roll = np.asarray(roll)
    bars = _bars(roll.shape[0], bar_starts)
    if not bars:
        return None
    return float(np.mean([not roll[s:e].any() for s, e in bars]))


def used_pitch_classes(roll: np.ndarray, bar_starts) -> float | None:
    roll = np.asarray(roll)
    counts = []
    for s, e in _bars(roll.shape[0], bar_starts):
        pitches = np.flatnonzero(roll[s:e].any(axis=0))
        if len(pitches):
            counts.append(len(np.unique(pitches % 12)))
    return float(np.mean(counts)) if counts else None


def note_lengths(roll: np.ndarray) -> np.ndarray:
    """Lengths (steps) of every run of consecutive sounding steps, over all pitches."""
    on = np.asarray(roll) != 0
    if on.size == 0:
        return np.zeros(0, np.int64)
    padded = np.zeros((on.shape[0] + 2, on.shape[1]), np.int8)
    padded[1:-1] = on
    d = np.diff(padded, axis=0)
    starts = np.argwhere(d.T == 1)  # (pitch, step) sorted by pitch then step
    ends = np.argwhere(d.T == -1)
    return (ends[:, 1] - starts[:, 1]).astype(np.int64)


def qualified_notes(roll: np.ndarray, *, resolution: int = 24, min_steps: int | None = None) -> float | None:
    if min_steps is None:
        min_steps = max(1, round(QN_MIN_STEPS_AT_24 * resolution / 24))
    lengths = note_lengths(roll)
    if len(lengths) == 0:
        return None
    return float(np.mean(lengths >= min_steps))


def all_metrics(roll: np.ndarray, bar_starts, *, resolution: int = 24) -> dict[str, float | None]:
    return {"UPC": used_pitch_classes(roll, bar_starts),
            "QN": qualified_notes(roll, resolution=resolution),
            "EB": empty_bars(roll, bar_starts)}
