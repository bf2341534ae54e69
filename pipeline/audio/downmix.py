"""Stereo -> training channels. Pure array code.

Modes: ``mean`` (L+R)/2, ``left``, ``right``, ``random`` (Jukebox: ``x = m*L + (1-m)*R`` with
``m ~ U(0, 1)`` drawn once per song from ``np.random.default_rng([seed, int(song_id[:8], 16)])``),
``none`` (stereo kept, so that a loader can draw its own ``m`` per example).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Downmix = Literal["mean", "left", "right", "random", "none"]
MODES = ("mean", "left", "right", "random", "none")


def song_rng(seed: int, song_id: str, *stream: int) -> np.random.Generator:
    """The per-song generator of the guide: ``default_rng([seed, int(id[:8], 16), *stream])``."""
    return np.random.default_rng([seed, int(song_id[:8], 16), *stream])


def mix_weight(mode: str, *, seed: int, song_id: str) -> float | None:
    """The weight ``m`` of the left channel (``x = m*L + (1-m)*R``); None for ``none``."""
    if mode == "mean":
        return 0.5
    if mode == "left":
        return 1.0
    if mode == "right":
        return 0.0
    if mode == "random":
        return float(song_rng(seed, song_id).uniform())
    if mode == "none":
        return None
    raise ValueError(f"downmix={mode!r} must be one of {', '.join(MODES)}")


def downmix(stereo: np.ndarray, mode: str, *, seed: int = 0, song_id: str = "00000000") -> tuple[np.ndarray, float | None]:
    """``stereo`` (frames, 2) float32 -> ``(x, m)``: x is (frames,) float32, or (frames, 2) for ``none``.

    ``mean`` is exactly ``(L + R) / 2`` and ``random`` exactly ``m*L + (1-m)*R`` in float32
    (``m`` rounded to float32 once).
    """
    stereo = np.asarray(stereo, np.float32)
    if stereo.ndim != 2 or stereo.shape[1] != 2:
        raise ValueError(f"stereo audio must have shape (frames, 2), got {stereo.shape}")
    m = mix_weight(mode, seed=seed, song_id=song_id)
    left, right = stereo[:, 0], stereo[:, 1]
    if mode == "none":
        return stereo, None
    if mode == "left":
        return left.copy(), m
    if mode == "right":
        return right.copy(), m
    if mode == "mean":
        return (left + right) / np.float32(2), m
    w = np.float32(m)
    return w * left + (np.float32(1) - w) * right, m
