"""Piano-roll -> bars of a fixed number of steps (the 5-D tensors songs x bars x steps x 128 x tracks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

OtherMeters = Literal["pad", "drop"]


@dataclass(frozen=True)
class BarTensor:
    """Sparse (n_bars, bar_steps, 128, n_tracks) tensor of one song: coordinates + velocities."""

    n_bars: int
    bar_steps: int
    n_tracks: int
    bar: np.ndarray  # int16
    step: np.ndarray  # int16
    pitch: np.ndarray  # uint8
    track: np.ndarray  # uint8
    velocity: np.ndarray  # uint8
    bars_padded: int  # bars shorter than bar_steps (zero-padded at their end)
    bars_cropped: int  # bars longer than bar_steps (their tail dropped)
    bars_dropped: int  # bars left out (other_meters="drop")

    def dense(self) -> np.ndarray:
        x = np.zeros((self.n_bars, self.bar_steps, 128, self.n_tracks), np.uint8)
        x[self.bar, self.step, self.pitch, self.track] = self.velocity
        return x


def to_bars(pr, *, bar_steps: int = 96, other_meters: OtherMeters = "pad") -> BarTensor:
    """Cut a ``Pianoroll`` at its downbeats into bars of ``bar_steps`` steps.

    ``other_meters="pad"``: every bar is kept; a shorter bar (3/4 = 72 steps at 24 per beat)
    is zero-padded, a longer one cropped. ``"drop"``: only bars of exactly ``bar_steps`` steps
    are kept (4/4 at 24 steps per beat), renumbered in order.
    """
    if not 1 <= bar_steps <= 32767:
        raise ValueError(f"bar_steps={bar_steps} must be in 1..32767")
    starts = pr.bar_starts
    lengths = np.diff(np.append(starts, pr.n_steps))
    # bar and step-in-bar of every time step (the roll starts on a downbeat), then of every cell
    # (int16 unless a bar is longer than int16 can count: kept steps are < bar_steps <= 32767)
    small = len(lengths) == 0 or lengths.max() <= 32767
    bar_of_step = np.repeat(np.arange(len(starts), dtype=np.int16), lengths)
    step_of_step = (np.arange(pr.n_steps, dtype=np.int32) - np.repeat(starts, lengths)).astype(
        np.int16 if small else np.int32)
    t = pr.cell_time
    bar = bar_of_step[t]
    step = step_of_step[t]
    if other_meters == "drop":
        full = lengths == bar_steps
        keep = full[bar]
        bar = (np.cumsum(full) - 1).astype(np.int16)[bar]
        n_bars = int(full.sum())
        dropped = int((~full).sum())
    elif other_meters == "pad":
        keep = step < bar_steps if (lengths > bar_steps).any() else None  # None: every cell fits
        n_bars = len(starts)
        dropped = 0
    else:
        raise ValueError(f"other_meters={other_meters!r} must be 'pad' or 'drop'")
    if keep is None:
        pitch, track, velocity = pr.cell_pitch, pr.cell_track, pr.cell_velocity
    else:
        bar, step = bar[keep], step[keep].astype(np.int16, copy=False)
        pitch, track, velocity = pr.cell_pitch[keep], pr.cell_track[keep], pr.cell_velocity[keep]
    # cells stay in the piano-roll's (track, pitch, time) order: deterministic, and no sort to pay
    return BarTensor(
        n_bars=n_bars,
        bar_steps=bar_steps,
        n_tracks=pr.n_tracks,
        bar=bar,
        step=step,
        pitch=pitch,
        track=track,
        velocity=velocity,
        bars_padded=int((lengths < bar_steps).sum()) if other_meters == "pad" else 0,
        bars_cropped=int((lengths > bar_steps).sum()) if other_meters == "pad" else 0,
        bars_dropped=dropped,
    )
