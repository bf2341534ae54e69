"""Piano-roll -> bars of a fixed number of steps (the 5-D tensors songs x bars x steps x 128 x tracks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.io import smf_kernels as K

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
    if other_meters not in ("pad", "drop"):
        raise ValueError(f"other_meters={other_meters!r} must be 'pad' or 'drop'")
    starts = pr.bar_starts
    lengths = np.diff(np.append(starts, pr.n_steps))
    bar, step, keep, kept = K.bar_coords(pr.cell_time, starts, pr.n_steps, bar_steps, other_meters == "drop")
    if other_meters == "drop":
        n_bars = int((lengths == bar_steps).sum())
        dropped = len(starts) - n_bars
    else:
        n_bars = len(starts)
        dropped = 0
    if kept == len(bar):
        pitch, track, velocity = pr.cell_pitch, pr.cell_track, pr.cell_velocity
    else:
        bar, step = bar[keep], step[keep]
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
