"""MuseGAN's multi-track metrics (Dong et al., AAAI 2018, Tables 1 and 2) on piano-roll tensors.

Pure numpy functions on boolean piano-roll tensors of phrases, shaped
``(n, bars, steps, pitches, tracks)`` (``compute_metrics``) or, for one track,
``(n, bars, steps, pitches)``; one phrase may drop the leading ``n``. Pitch index ``i`` is MIDI
``lowest_pitch + i`` (84 pitches from 24 in LPD). Real-valued input is binarised at ``> 0``
(the official ``to_binary_tf(..., threshold=0.0)``); NaN or infinite values are refused.

Metrics (``definition="corrected"``, the default)
--------------------------------------------------
- EB, ``empty_bars``: fraction of bars (of all phrases) in which the track plays nothing.
- UPC, ``used_pitch_classes``: number of pitch classes ``(lowest_pitch + i) % 12`` sounding in
  a bar, averaged over the non-empty bars.
- QN, ``qualified_notes``: fraction of notes (runs of consecutive sounding steps of one pitch,
  across bar lines, within a phrase) lasting at least ``min_steps`` steps, pooled over all notes.
  Default: a 32nd note, the paper's "no shorter than three time steps" at 96 steps per bar,
  i.e. ``ceil(3 * steps_per_bar / 96)`` (2 at 48 steps per bar).
- DP, ``drum_pattern``: fraction of drum onsets on the 16th-note grid anchored at the
  downbeat (the 8th-note grid is part of it), pooled over all onsets; an onset within 1/96 of
  a bar of a grid point (one step at 96 steps per bar, none at 48) counts ``tolerance``.
- TD, ``tonal_distance``: per beat, the Euclidean distance between the 6-D tonal centroids
  (Harte et al. 2006, radii 1, 1, 0.5) of the two tracks' L1-normalised chroma; averaged over
  the beats in which both tracks sound.

``definition="official"`` reproduces the code that produced the paper's tables: the v1
``musegan/eval/metrics.py`` (class ``Metrics``, also ``v1/musegan/eval/metrics.py``) with the
settings of ``v1/config.py`` (``TrainingConfig``). Every metric is computed bar by bar
(``eval`` reshapes the batch to ``(-1, 96, 84, 5)``), set to NaN in empty bars (except EB) and
averaged with ``np.nanmean`` over all bars. Where it differs from the corrected definitions:

- EB (``metric_is_empty_bar``: ``not np.sum(bar)``): identical.
- UPC (``metric_num_chroma_used`` = ``metric_num_pitch_used(to_chroma(bar))``): ``to_chroma``
  is ``bar.reshape(bar.shape[0], 12, -1).sum(axis=2)``, which sums 12 blocks of 7 *adjacent*
  pitches (index ``i`` goes to bin ``i // 7``), not pitch classes: a C major triad C4-E4-G4
  counts 2. Corrected: fold ``(lowest_pitch + i) % 12``.
- QN (``metric_qualified_note_ratio(bar, threshold=2)``): qualified means ``>= 2`` steps (the
  paper says three), notes are cut at bar lines (a note held over the bar line becomes two, the
  second possibly one step long), and the result is the mean of per-bar ratios (a bar with one
  note weighs as much as one with fifty). Corrected: 3 steps at 96 per bar, notes across bar
  lines, pooled ratio of notes.
- DP (``metric_drum_pattern`` with ``drum_filter = np.tile([1, 0.3, 0, 0, 0, 0.3], 16)``):
  onsets per bar (a drum note held over the bar line is struck again at step 0), scored against
  a 6-step filter with weight 1 on the grid and 0.3 one step off, *maximised over the 6 phases*
  ``np.roll(drum_filter, i)`` (so a part lying entirely between the grid points scores 1), mean
  of per-bar ratios. The filter period is 6 steps whatever the resolution: a 16th-note grid at
  96 steps per bar, an 8th-note grid at 48 (the v1-era ``config.py`` for 48 steps per bar uses
  ``np.tile([1, 0.3, 0, 0, 0, 0.3], 8)``). Corrected: anchored 16th-note grid, pooled ratio.
- TD (``metrics_harmonicity`` / ``tonal_dist``): chroma from the same wrong ``to_chroma``; a
  beat in which either track is silent gives 0/0 = NaN, which makes the whole bar's mean NaN,
  so ``nanmean`` drops the bar (one silent beat discards the other three). The tonal matrix is
  float32. ``metrics_harmonicity`` hard-codes ``resolution=24`` steps per window (one beat at
  96 steps per bar); at other resolutions a beat is ``steps_per_bar / 4`` steps, as in the later
  official versions (``musegan/utils/metrics.py``, ``src/musegan/metrics.py``). Corrected:
  true pitch classes, silent beats skipped one by one, float64.
- UPC and QN are not computed for drums, DP only for drums, TD only between non-drum tracks
  (``eval_map`` and ``inter_pair`` of ``v1/config.py``); both definitions do the same.

Resolution. The official definitions were written for 96 steps per bar (``v1/config.py``:
``output_w = 96``; ``metrics_harmonicity``'s 24-step beat), and two of them depend on the grid: QN's
2-step threshold is a 48th note at 96 steps and a 24th at 48, and the 6-step drum filter is the
16th-note grid at 96 and the 8th-note grid at 48. ``hold_steps(x, 48)`` puts 48-step phrases on
the 96-step grid (every step held twice: the same music, no onset between the old grid points), so
that the official definitions measure them as the official code measured its data; the
evaluate_musegan stage does that for its official tables. A consequence to read the tables by:
every note of a held 48-step phrase lasts at least 2 steps, so its official QN is 1 by
construction; the corrected QN (a 32nd note: 2 steps at 48, 3 at 96) gives the same value on
both grids. The corrected definitions are resolution-aware and run at the phrases' own grid.

This module computes; it holds no published numbers. The paper's reference (source, setting, and
the training-data rows where a source text gave them) is ``pipeline.metrics.musegan_reference``.

See docs/musegan_metrics.md for the later official versions and other published versions.
"""

from __future__ import annotations

from itertools import combinations
from numbers import Integral, Real

import numpy as np

from pipeline.errors import ParamsError

__all__ = [
    "DEFINITIONS",
    "OFFICIAL_STEPS_PER_BAR",
    "compute_metrics",
    "hold_steps",
    "drum_pattern",
    "empty_bars",
    "qualified_notes",
    "tonal_centroid",
    "tonal_distance",
    "used_pitch_classes",
]

DEFINITIONS = ("corrected", "official")

QN_MIN_STEPS_AT_96 = 3  # the paper: "no shorter than three time steps (i.e. a 32th note)"
OFFICIAL_QN_MIN_STEPS = 2  # metric_qualified_note_ratio(bar, threshold=2), at any resolution
DP_TOLERANCE = 0.3  # v1/config.py: drum_filter = np.tile([1, 0.3, 0, 0, 0, 0.3], 16)
OFFICIAL_DP_PERIOD = 6  # the length of the official filter's tile, in steps
BEATS_PER_BAR = 4
HARTE_RADII = (1.0, 1.0, 0.5)
OFFICIAL_STEPS_PER_BAR = 96  # v1/config.py ModelConfig.output_w; the paper's 96 steps per bar (24 per beat)


# --- validation --------------------------------------------------------------------------


def _check_definition(definition) -> str:
    if not isinstance(definition, str) or definition not in DEFINITIONS:
        raise ParamsError(f"definition={definition!r} must be one of {', '.join(map(repr, DEFINITIONS))}")
    return definition


def _is_int(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _check_min_steps(min_steps, steps: int, definition: str, *, name: str) -> int:
    if min_steps is None:
        if definition == "official":
            return OFFICIAL_QN_MIN_STEPS
        return max(1, -(-QN_MIN_STEPS_AT_96 * steps // 96))  # ceil: 1.5 steps is reached at 2
    if not _is_int(min_steps) or min_steps < 1:
        raise ParamsError(f"{name}={min_steps!r} must be a positive integer (time steps)")
    return int(min_steps)


def _check_tolerance(tolerance, *, name: str) -> float:
    if tolerance is None:
        return DP_TOLERANCE
    if isinstance(tolerance, bool) or not isinstance(tolerance, Real) or not 0.0 <= float(tolerance) <= 1.0:
        raise ParamsError(f"{name}={tolerance!r} must be a number from 0 to 1 "
                          "(the credit of a drum onset one step off the grid)")
    return float(tolerance)


def _check_lowest_pitch(lowest_pitch, n_pitches: int) -> int:
    if not _is_int(lowest_pitch) or not 0 <= lowest_pitch <= 128 - n_pitches:
        raise ParamsError(f"lowest_pitch={lowest_pitch!r} must be an integer from 0 to {128 - n_pitches} "
                          f"({n_pitches} pitches must fit in MIDI 0-127)")
    return int(lowest_pitch)


def _check_beats(beats_per_bar, steps: int) -> int:
    if not _is_int(beats_per_bar) or beats_per_bar < 1:
        raise ParamsError(f"beats_per_bar={beats_per_bar!r} must be a positive integer")
    if steps % beats_per_bar:
        raise ValueError(f"{steps} steps per bar cannot be cut into beats_per_bar={beats_per_bar} beats")
    return int(beats_per_bar)


def _binary(x, *, ndim: int, name: str) -> np.ndarray:
    """``x`` as a boolean array with ``ndim`` axes (one phrase, ``ndim - 1`` axes, gets n = 1)."""
    a = np.asarray(x)
    if a.ndim == ndim - 1:
        a = a[None]
    if a.ndim != ndim:
        raise ValueError(f"{name} has shape {a.shape}: expected {ndim} axes, or {ndim - 1} for one phrase")
    if a.dtype == bool:
        return a
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} has dtype {a.dtype}: expected bool, integers or real numbers")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise ValueError(f"{name} holds {np.count_nonzero(~np.isfinite(a))} NaN or infinite values")
    return a > 0


# --- shared building blocks --------------------------------------------------------------


def _onsets(r: np.ndarray) -> np.ndarray:
    """(M, T, P) bool -> onsets: sounding at t and not at t - 1 (t = 0 counts as after silence)."""
    on = r.copy()
    on[:, 1:] &= ~r[:, :-1]
    return on


def _run_lengths(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every run of sounding steps of one pitch in (M, T, P): (row m of each run, its length)."""
    m, t, p = r.shape
    padded = np.zeros((m, p, t + 1), np.int8)  # a silent step after each (row, pitch): runs never join
    padded[:, :, :t] = r.transpose(0, 2, 1)
    d = np.diff(padded.ravel(), prepend=np.int8(0))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return starts // (p * (t + 1)), ends - starts


def _fold(a: np.ndarray, *, definition: str, lowest_pitch: int) -> np.ndarray:
    """Sum the last (pitch) axis into 12 bins: pitch classes, or the official ``to_chroma`` bins."""
    n_pitches = a.shape[-1]
    dtype = np.result_type(a.dtype, np.int32)
    if definition == "official":
        # v1 to_chroma: bar.reshape(bar.shape[0], 12, -1).sum(axis=2) -> bin i // (P / 12)
        if n_pitches % 12:
            raise ValueError(f"the official to_chroma needs a multiple of 12 pitches; got {n_pitches}")
        return a.reshape(*a.shape[:-1], 12, n_pitches // 12).sum(-1, dtype=dtype)
    shift = lowest_pitch % 12  # padded index j holds MIDI lowest_pitch - shift + j: class j % 12
    width = -(-(shift + n_pitches) // 12) * 12
    padded = np.zeros(a.shape[:-1] + (width,), dtype)
    padded[..., shift:shift + n_pitches] = a
    return padded.reshape(*a.shape[:-1], width // 12, 12).sum(-2)


def _tonal_matrix(*, official: bool = False) -> np.ndarray:
    """Harte et al.'s (6, 12) matrix: fifths, minor thirds, major thirds (sin, cos), radii 1, 1, .5."""
    r1, r2, r3 = HARTE_RADII
    k = np.arange(12)
    m = np.stack([r1 * np.sin(k * 7 / 6 * np.pi), r1 * np.cos(k * 7 / 6 * np.pi),
                  r2 * np.sin(k * 3 / 2 * np.pi), r2 * np.cos(k * 3 / 2 * np.pi),
                  r3 * np.sin(k * 2 / 3 * np.pi), r3 * np.cos(k * 2 / 3 * np.pi)])
    return m.astype(np.float32).astype(np.float64) if official else m


def _centroids(chroma: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (chroma / chroma.sum(-1, keepdims=True)) @ matrix.T


# --- the metrics on validated boolean arrays (n, bars, steps, pitches) -------------------


def _eb(r: np.ndarray) -> float | None:
    n_bars = r.shape[0] * r.shape[1]
    if n_bars == 0:
        return None
    filled = r.reshape(n_bars, -1).any(axis=1)
    return float(np.count_nonzero(~filled) / n_bars)


def _upc(r: np.ndarray, definition: str, lowest_pitch: int) -> float | None:
    used = r.any(axis=2)  # (n, bars, pitches)
    filled = used.any(axis=-1)
    if not filled.any():
        return None
    counts = np.count_nonzero(_fold(used, definition=definition, lowest_pitch=lowest_pitch), axis=-1)
    return float(counts[filled].mean())


def _qn(r: np.ndarray, definition: str, min_steps: int) -> float | None:
    n, bars, steps, pitches = r.shape
    if definition == "corrected":
        _, lengths = _run_lengths(r.reshape(n, bars * steps, pitches))
        if lengths.size == 0:
            return None
        return float(np.count_nonzero(lengths >= min_steps) / lengths.size)
    rows, lengths = _run_lengths(r.reshape(n * bars, steps, pitches))  # notes cut at bar lines
    notes = np.bincount(rows, minlength=n * bars)
    good = np.bincount(rows, weights=lengths >= min_steps, minlength=n * bars)
    has = notes > 0
    if not has.any():
        return None
    return float(np.mean(good[has] / notes[has]))


def _grid_weights(steps: int, tolerance: float) -> np.ndarray:
    """Credit of an onset at each step of a bar: 1 on the 16th grid, ``tolerance`` within 1/96 bar."""
    if steps % 16:
        raise ValueError(f"the 16th-note grid needs a multiple of 16 steps per bar; got {steps}")
    period = steps // 16
    pos = np.arange(steps) % period
    dist = np.minimum(pos, period - pos)
    return np.where(dist == 0, 1.0, np.where(dist * 96 <= steps, tolerance, 0.0))


def _official_drum_filters(steps: int, tolerance: float) -> np.ndarray:
    """The official drum_filter and its 6 phases ``np.roll(drum_filter, i)``: (6, steps)."""
    if steps % OFFICIAL_DP_PERIOD:
        raise ValueError(f"the official drum filter needs a multiple of 6 steps per bar; got {steps}")
    base = np.tile([1.0, tolerance, 0.0, 0.0, 0.0, tolerance], steps // OFFICIAL_DP_PERIOD)
    return np.stack([np.roll(base, i) for i in range(OFFICIAL_DP_PERIOD)])


def _dp(r: np.ndarray, definition: str, tolerance: float) -> float | None:
    n, bars, steps, pitches = r.shape
    if definition == "corrected":
        weights = _grid_weights(steps, tolerance)
        on = _onsets(r.reshape(n, bars * steps, pitches))  # a note held over the bar line: one onset
        per_step = on.reshape(n * bars, steps, pitches).sum(axis=(0, 2))
        total = per_step.sum()
        if total == 0:
            return None
        return float(per_step @ weights / total)
    filters = _official_drum_filters(steps, tolerance)
    per_bar = _onsets(r.reshape(n * bars, steps, pitches)).sum(axis=2)  # (bars, steps)
    total = per_bar.sum(axis=1)
    has = total > 0
    if not has.any():
        return None
    best = (per_bar[has] @ filters.T).max(axis=1)
    return float(np.mean(best / total[has]))


def _beat_chroma(r: np.ndarray, definition: str, lowest_pitch: int, beats_per_bar: int) -> np.ndarray:
    """(n, bars, steps, pitches) -> (n, bars, beats, 12): sounding cells per chroma bin and beat."""
    n, bars, steps, pitches = r.shape
    counts = r.reshape(n, bars, beats_per_bar, steps // beats_per_bar, pitches).sum(axis=3, dtype=np.int32)
    return _fold(counts, definition=definition, lowest_pitch=lowest_pitch)


def _td(ca: np.ndarray, cb: np.ndarray, definition: str) -> float | None:
    if definition == "corrected":
        both = (ca.sum(-1) > 0) & (cb.sum(-1) > 0)
        if not both.any():
            return None
        m = _tonal_matrix()
        return float(np.linalg.norm(_centroids(ca[both], m) - _centroids(cb[both], m), axis=-1).mean())
    m = _tonal_matrix(official=True)
    per_beat = np.linalg.norm(_centroids(ca, m) - _centroids(cb, m), axis=-1)  # NaN where either is silent
    per_bar = per_beat.mean(axis=-1).ravel()  # one NaN beat -> NaN bar
    ok = ~np.isnan(per_bar)
    if not ok.any():
        return None
    return float(per_bar[ok].mean())


# --- public functions, one track --------------------------------------------------------


def empty_bars(roll, *, definition: str = "corrected") -> float | None:
    """EB: the fraction of bars in which the track plays nothing.

    Parameters
    ----------
    roll : np.ndarray, shape (n, bars, steps, pitches) or (bars, steps, pitches)
        One track's piano-rolls (bool, or numbers binarised at > 0).
    definition : {"corrected", "official"}
        Both give the same value (the official ``metric_is_empty_bar`` is ``not np.sum(bar)``).

    Returns
    -------
    float or None
        Empty bars / all bars of all phrases; None when there is no bar.
    """
    _check_definition(definition)
    return _eb(_binary(roll, ndim=4, name="roll"))


def used_pitch_classes(roll, *, definition: str = "corrected", lowest_pitch: int = 24) -> float | None:
    """UPC: the number of pitch classes used per bar, averaged over the non-empty bars.

    Parameters
    ----------
    roll : np.ndarray, shape (n, bars, steps, pitches) or (bars, steps, pitches)
        One track's piano-rolls; pitch index ``i`` is MIDI ``lowest_pitch + i``.
    definition : {"corrected", "official"}
        "corrected": classes ``(lowest_pitch + i) % 12`` (0-12 per bar). "official": the bins of
        the v1 ``to_chroma`` (blocks of ``pitches / 12`` adjacent pitches; ``lowest_pitch`` unused).
    lowest_pitch : int
        MIDI number of pitch index 0.

    Returns
    -------
    float or None
        None when every bar is empty.
    """
    definition = _check_definition(definition)
    r = _binary(roll, ndim=4, name="roll")
    return _upc(r, definition, _check_lowest_pitch(lowest_pitch, r.shape[3]))


def qualified_notes(roll, *, definition: str = "corrected", min_steps: int | None = None) -> float | None:
    """QN: the ratio of notes lasting at least ``min_steps`` time steps.

    Parameters
    ----------
    roll : np.ndarray, shape (n, bars, steps, pitches) or (bars, steps, pitches)
        One track's piano-rolls. A note is a run of consecutive sounding steps of one pitch.
    definition : {"corrected", "official"}
        "corrected": notes run across bar lines within a phrase; ratio over all notes.
        "official": notes cut at bar lines; the mean of the per-bar ratios of non-empty bars.
    min_steps : int, optional
        Default: "corrected" ``ceil(3 * steps / 96)`` (a 32nd note: 3 at 96 steps per bar, 2 at
        48); "official" 2 at any resolution (``threshold=2`` in the official code).

    Returns
    -------
    float or None
        None when there is no note.
    """
    definition = _check_definition(definition)
    r = _binary(roll, ndim=4, name="roll")
    return _qn(r, definition, _check_min_steps(min_steps, r.shape[2], definition, name="min_steps"))


def drum_pattern(roll, *, definition: str = "corrected", tolerance: float | None = None) -> float | None:
    """DP: the ratio of drum onsets on the 8th/16th-note grid.

    Parameters
    ----------
    roll : np.ndarray, shape (n, bars, steps, pitches) or (bars, steps, pitches)
        The drum track's piano-rolls. An onset is a sounding step after a silent one.
    definition : {"corrected", "official"}
        "corrected": 16th-note grid from the downbeat (steps a multiple of 16); onsets on it count
        1, onsets within 1/96 bar of it (one step at 96 steps per bar) ``tolerance``; pooled over
        all onsets. "official": onsets per bar, scored with ``np.tile([1, tol, 0, 0, 0, tol],
        steps // 6)`` at its best of 6 phases, mean of the per-bar ratios (steps a multiple of 6).
    tolerance : float, optional
        Credit in [0, 1] of an onset one step off the grid. Default 0.3 (``v1/config.py``).

    Returns
    -------
    float or None
        None when the track has no onset.
    """
    definition = _check_definition(definition)
    tol = _check_tolerance(tolerance, name="tolerance")
    return _dp(_binary(roll, ndim=4, name="roll"), definition, tol)


def tonal_centroid(chroma) -> np.ndarray:
    """Harte et al.'s (2006) 6-D tonal centroid of chroma vectors.

    Parameters
    ----------
    chroma : np.ndarray, shape (..., 12)
        Non-negative weights of the 12 pitch classes (any origin: distances do not depend on it).

    Returns
    -------
    np.ndarray, shape (..., 6)
        ``Phi @ (c / sum(c))`` with the circle of fifths, of minor thirds and of major thirds
        (radii 1, 1, 0.5); NaN for an all-zero vector, whose centroid is undefined.
    """
    c = np.asarray(chroma, dtype=np.float64)
    if c.ndim < 1 or c.shape[-1] != 12:
        raise ValueError(f"chroma has shape {c.shape}: expected (..., 12)")
    if not np.isfinite(c).all() or (c < 0).any():
        raise ValueError("chroma must hold finite non-negative weights")
    return _centroids(c, _tonal_matrix())


def tonal_distance(roll_a, roll_b, *, definition: str = "corrected", lowest_pitch: int = 24,
                   beats_per_bar: int = BEATS_PER_BAR) -> float | None:
    """TD: the tonal distance between two tracks, beat by beat.

    Parameters
    ----------
    roll_a, roll_b : np.ndarray, shape (n, bars, steps, pitches) or (bars, steps, pitches)
        Two tracks of the same phrases.
    definition : {"corrected", "official"}
        "corrected": per-beat chroma by pitch class, L1-normalised; the distance of the tonal
        centroids averaged over the beats in which both tracks sound. "official": chroma from
        the v1 ``to_chroma`` bins, float32 tonal matrix, per-bar mean of the beats, bars with a
        silent beat in either track dropped, mean over the remaining bars.
    lowest_pitch : int
        MIDI number of pitch index 0.
    beats_per_bar : int
        A beat is ``steps / beats_per_bar`` steps (4/4 in LPD).

    Returns
    -------
    float or None
        None when no beat (corrected) or no bar (official) qualifies.
    """
    definition = _check_definition(definition)
    a = _binary(roll_a, ndim=4, name="roll_a")
    b = _binary(roll_b, ndim=4, name="roll_b")
    if a.shape != b.shape:
        raise ValueError(f"roll_a has shape {a.shape} and roll_b {b.shape}: they must match")
    lowest_pitch = _check_lowest_pitch(lowest_pitch, a.shape[3])
    beats = _check_beats(beats_per_bar, a.shape[2])
    return _td(_beat_chroma(a, definition, lowest_pitch, beats), _beat_chroma(b, definition, lowest_pitch, beats),
               definition)


# --- resolution --------------------------------------------------------------------------


def hold_steps(x, steps_per_bar: int, target: int = OFFICIAL_STEPS_PER_BAR) -> np.ndarray:
    """Phrases at ``steps_per_bar`` on the ``target`` grid, each step held ``target / steps_per_bar`` times.

    The same music on a finer grid: a note of ``L`` steps becomes one of ``L * k`` steps starting
    at ``k`` times its onset (``k = target / steps_per_bar``), silence stays silence. No onset
    falls between the old grid points, so nothing the coarser grid could not hold is invented.
    The official metrics are defined on 96 steps per bar (their QN threshold of 2 steps, their
    6-step drum filter, their 24-step beat); ``compute_metrics(hold_steps(x, 48), steps_per_bar=96,
    definition="official")`` measures 48-step phrases the way the official code measured 96-step
    ones.

    Parameters
    ----------
    x : np.ndarray, shape (n, bars, steps, pitches, tracks) or (bars, steps, pitches, tracks)
        Phrases; the steps axis is the third from the end.
    steps_per_bar : int
        Must equal ``x.shape[-3]`` and divide ``target``.
    target : int
        Steps per bar of the result (96: the official resolution).

    Returns
    -------
    np.ndarray
        ``x`` itself when ``steps_per_bar == target``; else a new array with ``target`` steps per bar.
    """
    a = np.asarray(x)
    if a.ndim < 3:
        raise ValueError(f"x has shape {a.shape}: expected (..., steps, pitches, tracks)")
    if not _is_int(steps_per_bar) or steps_per_bar < 1 or a.shape[-3] != steps_per_bar:
        raise ParamsError(f"steps_per_bar={steps_per_bar!r} but x has {a.shape[-3]} steps per bar (shape {a.shape})")
    if not _is_int(target) or target < 1 or target % steps_per_bar:
        raise ParamsError(f"{steps_per_bar} steps per bar cannot be held onto a grid of {target!r} "
                          "(target must be a positive multiple of steps_per_bar)")
    if target == steps_per_bar:
        return a
    return np.repeat(a, target // steps_per_bar, axis=a.ndim - 3)


# --- all metrics, all tracks -------------------------------------------------------------


def compute_metrics(x, *, track_names, drum_track, steps_per_bar, definition: str = "corrected",
                    qn_min_steps: int | None = None, dp_tolerance: float | None = None,
                    lowest_pitch: int = 24) -> dict:
    """EB, UPC, QN, DP and TD of a set of multi-track phrases, as in MuseGAN's Tables 1 and 2.

    Parameters
    ----------
    x : np.ndarray, shape (n, bars, steps, pitches, tracks) or (bars, steps, pitches, tracks)
        Phrases (bool, 0/1, or real values binarised at > 0); a 4-D array is one phrase.
    track_names : sequence of str, length ``tracks``
        Names in track order; the keys of the result.
    drum_track : str or None
        The drum track's name (DP; no UPC, QN or TD), or None when there is none.
    steps_per_bar : int
        Must equal ``x.shape[-3]``; a multiple of 4 (beats), of 16 ("corrected" DP) or of 6
        ("official" DP) where a drum track is given.
    definition : {"corrected", "official"}
        See the module docstring and docs/musegan_metrics.md.
    qn_min_steps : int, optional
        QN threshold; default ``ceil(3 * steps_per_bar / 96)`` (corrected) or 2 (official).
    dp_tolerance : float, optional
        Credit in [0, 1] of a drum onset one step off the grid; default 0.3.
    lowest_pitch : int
        MIDI number of pitch index 0 (24 in LPD).

    Returns
    -------
    dict
        ``{"EB": {track: v}, "UPC": {track: v}, "QN": {track: v}, "DP": {drum: v},
        "TD": {"A-B": v}}`` with floats, or None where undefined (no bar, note, onset or shared
        beat; UPC and QN of the drum track). TD covers every pair of non-drum tracks, in track
        order.
    """
    definition = _check_definition(definition)
    if isinstance(track_names, str) or not all(isinstance(t, str) and t for t in track_names):
        raise ParamsError(f"track_names={track_names!r} must be a sequence of non-empty strings")
    names = list(track_names)
    if len(set(names)) != len(names):
        raise ParamsError(f"track_names={names!r} has duplicates")
    if drum_track is not None and drum_track not in names:
        raise ParamsError(f"drum_track={drum_track!r} is not one of track_names {names}")
    if not _is_int(steps_per_bar) or steps_per_bar < 1:
        raise ParamsError(f"steps_per_bar={steps_per_bar!r} must be a positive integer")
    if steps_per_bar % BEATS_PER_BAR:
        raise ParamsError(f"steps_per_bar={steps_per_bar} must be a multiple of {BEATS_PER_BAR} (beats for TD)")
    if drum_track is not None:
        grid = 16 if definition == "corrected" else OFFICIAL_DP_PERIOD
        if steps_per_bar % grid:
            raise ParamsError(f"steps_per_bar={steps_per_bar} must be a multiple of {grid} "
                              f"for the {definition} DP")
    b = _binary(x, ndim=5, name="x")
    if b.shape[-1] != len(names):
        raise ParamsError(f"track_names has {len(names)} names but x has {b.shape[-1]} tracks (shape {b.shape})")
    if b.shape[2] != steps_per_bar:
        raise ParamsError(f"steps_per_bar={steps_per_bar} but x has {b.shape[2]} steps per bar (shape {b.shape})")
    if definition == "official" and b.shape[3] % 12:
        raise ParamsError(f"definition='official' needs a multiple of 12 pitches (its to_chroma); x has {b.shape[3]}")
    lowest_pitch = _check_lowest_pitch(lowest_pitch, b.shape[3])
    min_steps = _check_min_steps(qn_min_steps, steps_per_bar, definition, name="qn_min_steps")
    tol = _check_tolerance(dp_tolerance, name="dp_tolerance")

    tracks = np.ascontiguousarray(np.moveaxis(b, -1, 0))  # (tracks, n, bars, steps, pitches)
    out: dict[str, dict] = {"EB": {}, "UPC": {}, "QN": {}, "DP": {}, "TD": {}}
    chroma = {}
    for name, r in zip(names, tracks):
        out["EB"][name] = _eb(r)
        if name == drum_track:
            out["UPC"][name] = out["QN"][name] = None
            out["DP"][name] = _dp(r, definition, tol)
        else:
            out["UPC"][name] = _upc(r, definition, lowest_pitch)
            out["QN"][name] = _qn(r, definition, min_steps)
            chroma[name] = _beat_chroma(r, definition, lowest_pitch, BEATS_PER_BAR)
    for a, c in combinations(chroma, 2):
        out["TD"][f"{a}-{c}"] = _td(chroma[a], chroma[c], definition)
    return out

