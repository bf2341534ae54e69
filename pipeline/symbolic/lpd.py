"""MidiScore -> LPD-style multitrack piano-roll (pure array code, no file IO).

Semantics (see the README, "Conversion"):

- beat grid: pretty_midi's ``get_beats`` from the first time signature (or, with none, from
  pretty_midi's ``estimate_beat_start``), ``resolution`` steps per beat;
- ``semantics="lpd"``: pypianoroll 0.3.0's ``parse_pretty_midi``, with which LPD was made:
  onsets and offsets truncated to the grid, offsets inclusive, a one-step gap before a repeated
  note, the offset pulled back one step when the step after it is taken;
  ``semantics="pypianoroll"``: pypianoroll 1.0's ``from_pretty_midi``: onsets rounded, offsets
  truncated and exclusive;
- drums are onsets only; within a track velocities merge by maximum, and tracks merge into
  families (LPD-5 or LPD-17) by maximum;
- a per-step tempo (each beat's tempo repeated over its steps: LPD tiled the whole sequence; always
  finite: a zero-length beat of a damaged file's grid takes the tempo before it, ``beat_tempi``)
  and downbeats from every time signature (LPD marked only step 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.errors import MidiError
from pipeline.io import smf_kernels as K
from pipeline.io.midi import MidiScore

Tracks = Literal["lpd5", "lpd17"]

#: at most this many non-zero cells per file (all instruments, before merging; ~8 bytes each)
MAX_CELLS = 32_000_000
Semantics = Literal["lpd", "pypianoroll"]

#: (name, program, is_drum) of each output track, in LPD order
TRACK_SETS: dict[str, tuple[tuple[str, int, bool], ...]] = {
    "lpd5": (
        ("Drums", 0, True),
        ("Piano", 0, False),
        ("Guitar", 24, False),
        ("Bass", 32, False),
        ("Strings", 48, False),
    ),
    "lpd17": (
        ("Drums", 0, True),
        ("Piano", 0, False),
        ("Chromatic Percussion", 8, False),
        ("Organ", 16, False),
        ("Guitar", 24, False),
        ("Bass", 32, False),
        ("Strings", 40, False),
        ("Ensemble", 48, False),
        ("Brass", 56, False),
        ("Reed", 64, False),
        ("Pipe", 72, False),
        ("Synth Lead", 80, False),
        ("Synth Pad", 88, False),
        ("Synth Effects", 96, False),
        ("Ethnic", 104, False),
        ("Percussive", 112, False),
        ("Sound Effects", 120, False),
    ),
}


def family_of(program: np.ndarray, is_drum: np.ndarray, tracks: Tracks = "lpd5") -> np.ndarray:
    """Output track index of each instrument, -1 for instruments the track set drops.

    LPD-5: drums -> 0; programs 0-7 -> Piano; 24-31 -> Guitar; 32-39 -> Bass;
    8-23, 40-95 and 104-111 -> Strings; 96-103 and 112-127 are dropped.
    LPD-17: drums -> 0; otherwise program // 8 + 1.
    """
    program = np.asarray(program, np.int64)
    is_drum = np.asarray(is_drum, bool)
    if tracks == "lpd17":
        fam = program // 8 + 1
    elif tracks == "lpd5":
        g = program // 8
        fam = np.full(program.shape, -1, np.int64)
        fam[(program < 96) | ((program >= 104) & (program < 112))] = 4
        fam[g == 4] = 3
        fam[g == 3] = 2
        fam[g == 0] = 1
    else:
        raise ValueError(f"tracks={tracks!r} must be 'lpd5' or 'lpd17'")
    fam[is_drum] = 0
    return fam


@dataclass(frozen=True)
class Pianoroll:
    """A multitrack piano-roll on a beat grid, stored sparse.

    ``cells`` are the non-zero steps of all tracks, as four equal-length arrays
    (track, time, pitch, velocity) sorted by (track, pitch, time): the order of a CSC matrix
    of shape (n_steps, 128), which is how the pypianoroll NPZ format stores each track.
    """

    resolution: int
    n_steps: int
    track_names: tuple[str, ...]
    track_programs: tuple[int, ...]
    track_is_drum: tuple[bool, ...]
    tempo: np.ndarray  # (n_steps,) float64 beats per minute
    downbeat: np.ndarray  # (n_steps,) bool
    beat_times: np.ndarray  # (n_beats,) float64 seconds
    first_beat_time: float
    cell_track: np.ndarray  # (nnz,) uint8
    cell_time: np.ndarray  # (nnz,) int32
    cell_pitch: np.ndarray  # (nnz,) uint8
    cell_velocity: np.ndarray  # (nnz,) uint8
    notes_per_track: tuple[int, ...]

    @property
    def n_tracks(self) -> int:
        return len(self.track_names)

    def dense(self, track: int) -> np.ndarray:
        """The (n_steps, 128) uint8 piano-roll of one track."""
        roll = np.zeros((self.n_steps, 128), np.uint8)
        m = self.cell_track == track
        roll[self.cell_time[m], self.cell_pitch[m]] = self.cell_velocity[m]
        return roll

    @property
    def bar_starts(self) -> np.ndarray:
        """Step index of every downbeat."""
        return np.flatnonzero(self.downbeat)


def _estimate_beat_start(score: MidiScore, tc_times, tempi, max_beats: int) -> float:
    """pretty_midi ``estimate_beat_start(candidates=10, tolerance=.025)``, compiled."""
    # note_list = notes of every instrument in instrument order, then sorted by start (stable)
    by_inst = np.argsort(score.note_inst, kind="stable")
    starts = score.note_start[by_inst]
    vels = score.note_vel[by_inst].astype(np.float64)
    order = np.argsort(starts, kind="stable")
    starts, vels = starts[order], vels[order]
    cand: list[float] = []
    empty_f, empty_i = np.zeros(0), np.zeros(0, np.int64)
    i = 0
    while len(cand) <= 10 and i < len(starts):
        if i == 0 or abs(starts[i - 1] - starts[i]) > 0.001:
            cand.append(float(starts[i]))
        i += 1
    length = int(1000 * (score.end_time + 1))
    onset_idx = (starts * 1000).astype(np.int64)
    best, best_score = cand[0], -np.inf
    for c in cand:
        beats = K.get_beats(c, tc_times, tempi, empty_f, empty_i, empty_i, score.end_time, max_beats)
        if len(beats) > max_beats:
            raise MidiError("skip.too_long", "", f"more than max_beats={max_beats} beats")
        s = K.beat_start_score(beats, onset_idx, vels, length) if len(beats) else np.nan
        if s > best_score or (np.isnan(s) and not np.isnan(best_score)):
            best, best_score = c, s
    return best


def downbeats(beat_times, ts_times, ts_num, ts_den, resolution: int) -> np.ndarray:
    """A downbeat at the first beat of every bar of every time signature (4/4 when there is none).

    A beat is pretty_midi's beat: a dotted quarter in 6/8, 9/8, 12/8; an eighth in 3/8. A time
    signature change starts a new bar on the beat where it falls.
    """
    n_beats = len(beat_times)
    down = np.zeros(n_beats * resolution, bool)
    if len(ts_times) == 0:
        down[:: 4 * resolution] = True
        return down
    starts = np.searchsorted(beat_times, ts_times)
    starts[0] = 0
    for k in range(len(ts_times)):
        num, den = int(ts_num[k]), int(ts_den[k])
        if den in (1, 2, 4, 8, 16, 32):
            per_bar = num // 3 if (num % 3 == 0 and num != 3) else num
        else:  # pretty_midi counts quarter notes here
            per_bar = max(1, round(num * 4 / den))
        lo = int(starts[k])
        hi = int(starts[k + 1]) if k + 1 < len(ts_times) else n_beats
        if hi > lo:
            down[lo * resolution : hi * resolution : per_bar * resolution] = True
    return down


def beat_tempi(beat_times: np.ndarray, tempi: np.ndarray) -> np.ndarray:
    """Tempo (BPM) of each beat from ``n + 1`` beat times: ``60 / (t[i + 1] - t[i])``, always finite.

    A beat of zero length (two equal beat times, which the recovered beat grid of a damaged file can
    hold) has no tempo of its own: it takes the tempo of the beat before it, or, at the start, of the
    first beat with a length; where no beat has one, the file's first tempo (120 BPM if it has none).
    """
    d = np.diff(np.asarray(beat_times, np.float64))
    good = d > 0
    if good.all():
        return 60.0 / d
    bpm = np.empty(len(d), np.float64)
    if not good.any():
        bpm.fill(float(tempi[0]) if len(tempi) else 120.0)
        return bpm
    bpm[good] = 60.0 / d[good]
    idx = np.where(good, np.arange(len(d)), -1)
    np.maximum.accumulate(idx, out=idx)  # the last beat with a length at or before each beat
    first = int(np.argmax(good))
    idx[idx < 0] = first
    return bpm[idx]


def beat_grid(score: MidiScore, *, max_beats: int) -> tuple[float, np.ndarray]:
    """First beat time and beat times, as pypianoroll's 'normal' algorithm gets them."""
    if len(score.ts_times):
        first = float(score.ts_times[0])
    else:
        first = _estimate_beat_start(score, score.tempo_times, score.tempi, max_beats)
    beats = K.get_beats(first, score.tempo_times, score.tempi, score.ts_times, score.ts_num,
                        score.ts_den, score.end_time, max_beats)
    if len(beats) > max_beats:
        raise MidiError("skip.too_long", "", f"the beat grid has more than max_beats={max_beats} beats")
    return first, beats


@dataclass(frozen=True)
class BarGrid:
    """The beat and bar grid that build_lpd uses for a file (shared by every modality)."""

    first_beat_time: float
    beat_times: np.ndarray  # (n_beats,) seconds
    bar_beats: np.ndarray  # (n_bars,) index of the first beat of each bar
    resolution: int

    @property
    def bar_times(self) -> np.ndarray:
        """Start time (s) of each bar."""
        return self.beat_times[self.bar_beats]

    @property
    def bar_steps(self) -> np.ndarray:
        """Start step of each bar on the piano-roll grid."""
        return self.bar_beats * self.resolution


def bar_grid(score: MidiScore, *, resolution: int = 24, max_beats: int = 20_000) -> BarGrid:
    """Beats and bars of a file exactly as in its build_lpd piano-roll (raises skip.too_long)."""
    first, bt = beat_grid(score, max_beats=max_beats)
    down = downbeats(bt, score.ts_times, score.ts_num, score.ts_den, 1)
    return BarGrid(first_beat_time=first, beat_times=bt, bar_beats=np.flatnonzero(down), resolution=resolution)


def to_pianoroll(
    score: MidiScore,
    *,
    resolution: int = 24,
    tracks: Tracks = "lpd5",
    semantics: Semantics = "lpd",
    max_beats: int = 20_000,
) -> Pianoroll:
    """Quantise a ``MidiScore`` into an LPD-style multitrack piano-roll.

    Raises
    ------
    MidiError
        ``skip.no_notes`` (nothing to draw), ``skip.too_long`` (more than ``max_beats`` beats:
        refused before any roll is allocated).
    """
    if resolution < 1:
        raise ValueError(f"resolution={resolution} must be a positive integer")
    if len(score.note_pitch) == 0:
        raise MidiError("skip.no_notes", "", "the file has no notes")
    first, bt = beat_grid(score, max_beats=max_beats)
    if len(bt) == 0:
        raise MidiError("skip.no_notes", "", "no beat before the end of the file")
    if len(bt) >= 2:
        one_more = 2 * bt[-1] - bt[-2]
    else:  # pypianoroll fails on a one-beat file; extend it by one beat at the first tempo
        one_more = bt[0] + 60.0 / score.tempi[0]
    bt1 = np.append(bt, one_more)
    n_steps = resolution * len(bt)
    spec = TRACK_SETS[tracks]

    fam_of_inst = family_of(score.inst_program, score.inst_is_drum, tracks)
    keep = (score.note_end > first) & (fam_of_inst[score.note_inst] >= 0)
    if not keep.any():
        raise MidiError("skip.no_notes", "", f"no notes in the {tracks.upper()} families after the first beat")
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(score.note_inst[idx], kind="stable")]  # pretty_midi's per-instrument order
    inst = score.note_inst[idx]
    starts, ends = score.note_start[idx], score.note_end[idx]

    # exactly pypianoroll's arithmetic (a note on a beat divides the beat by itself; in a one-beat
    # file that is 0/0, which pypianoroll cannot handle and we map to step 0)
    # (compiled: smf_kernels.quantize states the numpy expression it computes bit for bit)
    ons = K.quantize(bt, one_more, starts, resolution, rounding=semantics != "lpd")
    offs = K.quantize(bt, one_more, ends, resolution, rounding=False)

    pitch = score.note_pitch[idx]
    vel = score.note_vel[idx]
    # cells painted per instrument (before merging): bounded, so that a hostile file with
    # thousands of song-long notes is refused instead of exhausting memory
    need = int(np.clip(offs - ons + 2, 1, n_steps + 1).sum()) + 16
    cap = min(need, MAX_CELLS)
    while True:
        out_track = np.empty(cap, np.uint8)
        out_time = np.empty(cap, np.int32)
        out_pitch = np.empty(cap, np.uint8)
        out_vel = np.empty(cap, np.uint8)
        m = K.paint_tracks(n_steps, inst, pitch, vel, ons, offs, score.inst_is_drum, fam_of_inst, len(spec),
                           semantics == "lpd", out_track, out_time, out_pitch, out_vel)
        if m >= 0:
            break
        if cap >= MAX_CELLS:
            raise MidiError("skip.too_dense", "", f"more than {MAX_CELLS} non-zero piano-roll cells")
        cap = min(cap * 2, MAX_CELLS)

    bpm = beat_tempi(bt1, score.tempi)
    notes_per_track = np.bincount(fam_of_inst[inst], minlength=len(spec))
    return Pianoroll(
        resolution=resolution,
        n_steps=n_steps,
        track_names=tuple(s[0] for s in spec),
        track_programs=tuple(s[1] for s in spec),
        track_is_drum=tuple(s[2] for s in spec),
        tempo=np.repeat(bpm, resolution),
        downbeat=downbeats(bt, score.ts_times, score.ts_num, score.ts_den, resolution),
        beat_times=bt,
        first_beat_time=first,
        cell_track=out_track[:m],
        cell_time=out_time[:m],
        cell_pitch=out_pitch[:m],
        cell_velocity=out_vel[:m],
        notes_per_track=tuple(int(x) for x in notes_per_track),
    )
