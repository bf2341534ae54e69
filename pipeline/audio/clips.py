"""Fixed-length clips of a song, with the bars they cover. Pure array code.

A clip is ``samples`` frames starting at ``start``; the song's bars (``bar_grid(score).bar_times``,
the same bars as the build_lpd piano-rolls) are placed at ``round(bar_time * sample_rate)`` frames.

- ``start_bar``: the bar in which the clip starts (``bar_samples[b] <= start < bar_samples[b+1]``);
  -1 when the clip starts before the first bar (a pickup before the first beat).
- ``end_bar``: exclusive, the number of bars that start before the clip ends, so the clip overlaps
  bars ``start_bar .. end_bar - 1``; with ``offset: bar`` it starts exactly on ``start_bar``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ClipOffset = Literal["seeded", "bar"]


@dataclass(frozen=True)
class Clip:
    index: int
    start: int  # first frame in the (trimmed) song
    valid: int  # frames of real audio (< samples only for a song shorter than one clip: zero-padded)
    start_bar: int | None
    end_bar: int | None


def clip_starts(n_frames: int, samples: int, *, offset: ClipOffset, rng: np.random.Generator,
                bar_samples: np.ndarray | None = None) -> list[int]:
    """Non-overlapping clip starts that fit in the song (at least one).

    ``seeded``: a first offset ``o ~ U{0 .. min(samples, n - samples)}`` drawn from ``rng``, then
    every ``samples`` frames. ``bar``: greedy: the first downbeat, then the first downbeat at or
    after the end of the previous clip. A song shorter than one clip gives one clip at its
    start (the first downbeat for ``bar``), zero-padded.
    """
    if offset == "seeded" or bar_samples is None or len(bar_samples) == 0:
        if n_frames <= samples:
            return [0]
        o = int(rng.integers(0, min(samples, n_frames - samples) + 1))
        return list(range(o, n_frames - samples + 1, samples))
    bars = np.asarray(bar_samples, np.int64)
    bars = bars[(bars >= 0) & (bars < max(n_frames, 1))]
    if len(bars) == 0:
        return [0]
    starts: list[int] = []
    at = 0
    while at < len(bars) and bars[at] + samples <= n_frames:
        s = int(bars[at])
        starts.append(s)
        at = int(np.searchsorted(bars, s + samples, side="left"))
    return starts or [int(bars[0])]


def plan_clips(n_frames: int, samples: int, *, offset: ClipOffset, rng: np.random.Generator,
               bar_times: np.ndarray | None, sample_rate: int, clips_per_song: int = 0) -> list[Clip]:
    """Clips of one song; with ``clips_per_song > 0``, that many of them chosen by ``rng`` (in order)."""
    bar_samples = None if bar_times is None else np.round(np.asarray(bar_times) * sample_rate).astype(np.int64)
    starts = clip_starts(n_frames, samples, offset=offset, rng=rng, bar_samples=bar_samples)
    if clips_per_song and len(starts) > clips_per_song:
        pick = np.sort(rng.choice(len(starts), clips_per_song, replace=False))
        starts = [starts[i] for i in pick.tolist()]
    clips = []
    for i, s in enumerate(starts):
        valid = max(0, min(samples, n_frames - s))
        if bar_samples is None:
            sb = eb = None
        else:
            sb = int(np.searchsorted(bar_samples, s, side="right")) - 1
            eb = int(np.searchsorted(bar_samples, s + samples, side="left"))
        clips.append(Clip(index=i, start=s, valid=valid, start_bar=sb, end_bar=eb))
    return clips


def cut(audio: np.ndarray, clip: Clip, samples: int) -> np.ndarray:
    """The clip's frames of ``audio`` ((frames,) or (frames, channels)), zero-padded to ``samples``."""
    part = audio[clip.start : clip.start + samples]
    if len(part) == samples:
        return part
    pad = np.zeros((samples,) + audio.shape[1:], audio.dtype)
    pad[: len(part)] = part
    return pad
