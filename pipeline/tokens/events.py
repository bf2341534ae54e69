"""Event vocabularies on the build-lpd beat grid: REMI and MIDI-like, multitrack with program tokens.

A file is read with ``read_midi`` and put on the grid of ``bar_grid`` (the beats and bars of its
build_lpd piano-roll) at ``resolution`` steps per beat. A note's onset and offset are rounded to
the nearest step (the beat's own length: a beat is pretty_midi's beat, a dotted quarter in 6/8);
its duration is at least one step. Notes that end before the first beat are dropped (a note that
starts before it and ends after it starts at step 0); a note is cut
where the same pitch starts again on the same program (MIDI cannot hold overlapping notes of one
pitch and channel, so the decoded file would not say the same thing otherwise); two notes of one
pitch, program and step become one (the longer, the louder).

Tokens (strings; ``codes`` are positions in ``EventConfig.table``):

- ``Bar``: a bar starts (every bar of the grid, empty ones included); ``TimeSig_<n>/<d>``
  follows a bar where the time signature is new (and the first bar; 4/4 when the file has none);
- ``Tempo_<qpm>``: quarter notes per minute of the beat that starts here, rounded to an integer
  in [tempo_min, tempo_max], at each beat where the rounded value changes;
- REMI: ``Position_<step in bar>`` before the events of a step, then per note
  ``Program_<p>`` (``Program_drums`` for channel 10), ``Pitch_<p>``, ``Velocity_<v>`` (the
  centre of its bin), ``Duration_<steps>`` (capped at ``max_duration``);
- MIDI-like: ``TimeShift_<steps>`` (never across a bar line, at most ``max_shift`` each), and per
  note ``Program_<p>`` ``Velocity_<v>`` ``NoteOn_<p>`` at its onset and ``Program_<p>``
  ``NoteOff_<p>`` at its offset (offsets before onsets at the same step).

``decode`` turns tokens back into a MIDI file (mido): one track per program, drums on channel 10,
ticks per quarter ``8 * resolution``, time signatures at their bars, tempi at their beats, and a
text event near the end of the last bar so that the file keeps all its bars. Encoding the decoded
file gives the same tokens (the round trip is lossless on the grid; tests check it on real files).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Literal

import numpy as np

from pipeline.config import PositiveInt, Range, check_bounds
from pipeline.errors import MidiError, ParamsError

Kind = Literal["remi", "midilike"]
DENOMINATORS = (1, 2, 4, 8, 16, 32)
MAX_TS_NUM = 32
MAX_BAR_BEATS = 32  # positions cover bars of up to 32 beats


@dataclass(frozen=True, kw_only=True)
class EventConfig:
    kind: Kind = "remi"
    resolution: Annotated[int, Range(1, 1024)] = 24  # steps per beat (24 = the LPD grid, lossless against the piano-rolls)
    velocity_bins: Annotated[int, Range(1, 127)] = 32
    max_duration: PositiveInt = 192  # steps (REMI)
    max_shift: PositiveInt = 96  # steps per TimeShift (MIDI-like)
    tempo_min: PositiveInt = 10
    tempo_max: int = 400
    max_beats: PositiveInt = 20_000

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.tempo_max < self.tempo_min:
            raise ParamsError(f"tempo_max={self.tempo_max} must be >= tempo_min={self.tempo_min}")

    # --- the base table: every token this config can emit, in a fixed order -----------------
    @cached_property
    def table(self) -> tuple[str, ...]:
        out = ["Bar"]
        out += [f"TimeSig_{n}/{d}" for d in DENOMINATORS for n in range(1, MAX_TS_NUM + 1)]
        out += [f"Tempo_{q}" for q in range(self.tempo_min, self.tempo_max + 1)]
        out += ["Program_drums"] + [f"Program_{p}" for p in range(128)]
        out += [f"Velocity_{v}" for v in self.velocity_values.tolist()]
        if self.kind == "remi":
            out += [f"Position_{k}" for k in range(self.resolution * MAX_BAR_BEATS)]
            out += [f"Pitch_{p}" for p in range(128)]
            out += [f"Duration_{d}" for d in range(1, self.max_duration + 1)]
        else:
            out += [f"NoteOn_{p}" for p in range(128)]
            out += [f"NoteOff_{p}" for p in range(128)]
            out += [f"TimeShift_{d}" for d in range(1, self.max_shift + 1)]
        return tuple(out)

    @cached_property
    def base(self) -> dict[str, int]:
        """First code of each token family."""
        b: dict[str, int] = {}
        for i, tok in enumerate(self.table):
            b.setdefault(tok.split("_")[0], i)
        return b

    @cached_property
    def code_of(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.table)}

    @cached_property
    def velocity_values(self) -> np.ndarray:
        """The velocity each bin decodes to (its centre), bins of equal width over 1..127."""
        b = np.arange(self.velocity_bins)
        return (1 + (b * 127 + (b + 1) * 127) // (2 * self.velocity_bins)).astype(np.int64)

    def velocity_bin(self, vel: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(vel) - 1) * self.velocity_bins // 127, 0, self.velocity_bins - 1)


def _beat_quarters(num: int, den: int) -> float:
    """Quarter notes in one pretty_midi beat under a time signature."""
    if den in DENOMINATORS:
        return 12.0 / den if (num % 3 == 0 and num != 3) else 4.0 / den
    return 1.0


def _bar_beats(num: int, den: int) -> int:
    if den in DENOMINATORS:
        return num // 3 if (num % 3 == 0 and num != 3) else num
    return max(1, round(num * 4 / den))


@dataclass(frozen=True)
class Encoded:
    """One stream of codes with the token index of every bar start."""

    codes: np.ndarray  # (n,) int64 positions in EventConfig.table
    bar_starts: np.ndarray  # (n_bars,) int32
    n_notes: int
    notes_dropped: int  # before the first beat


@dataclass(frozen=True)
class GridNotes:
    """Notes of a file on its grid (after the normalisation of the module docstring)."""

    program: np.ndarray  # -1 = drums
    pitch: np.ndarray
    velocity: np.ndarray
    onset: np.ndarray  # step
    offset: np.ndarray  # step (exclusive), > onset
    bar_steps: np.ndarray  # start step of every bar
    n_steps: int
    ts_bars: list[tuple[int, int, int]]  # (bar index, num, den) where the time signature changes
    tempo_beats: np.ndarray  # beat index where the rounded tempo changes
    tempo_values: np.ndarray  # rounded qpm
    dropped: int


def grid_notes(score, cfg: EventConfig) -> GridNotes:
    """Put a ``MidiScore`` on its build-lpd beat grid (raises skip.no_notes, skip.too_long)."""
    from pipeline.symbolic.lpd import bar_grid

    if len(score.note_pitch) == 0:
        raise MidiError("skip.no_notes", "", "the file has no notes")
    grid = bar_grid(score, resolution=cfg.resolution, max_beats=cfg.max_beats)
    bt = grid.beat_times
    if len(bt) == 0:
        raise MidiError("skip.no_notes", "", "no beat before the end of the file")
    res = cfg.resolution
    period = bt[-1] - bt[-2] if len(bt) >= 2 else 60.0 / float(score.tempi[0])
    bt1 = np.append(bt, bt[-1] + period)
    n_steps = len(bt) * res

    def steps(t: np.ndarray) -> np.ndarray:
        bi = np.clip(np.searchsorted(bt1, t, side="right") - 1, 0, len(bt) - 1)
        pos = (bi + (t - bt1[bi]) / (bt1[bi + 1] - bt1[bi])) * res
        return np.floor(pos + 0.5).astype(np.int64)

    keep = score.note_end > bt[0]
    dropped = int((~keep).sum())
    idx = np.flatnonzero(keep)
    if not len(idx):
        raise MidiError("skip.no_notes", "", "no notes after the first beat")
    on = np.clip(steps(score.note_start[idx]), 0, n_steps - 1)
    off = np.clip(steps(score.note_end[idx]), 0, n_steps)
    off = np.maximum(off, on + 1)
    prog = np.where(score.inst_is_drum[score.note_inst[idx]], -1, score.inst_program[score.note_inst[idx]])
    pitch = score.note_pitch[idx]
    vel = score.note_vel[idx]
    # one note per (program, pitch, onset): the longest, the loudest
    order = np.lexsort((-vel, -off, on, pitch, prog))
    prog, pitch, on, off, vel = prog[order], pitch[order], on[order], off[order], vel[order]
    first = np.r_[True, (prog[1:] != prog[:-1]) | (pitch[1:] != pitch[:-1]) | (on[1:] != on[:-1])]
    grp = np.cumsum(first) - 1
    vmax = np.zeros(grp[-1] + 1, np.int64)
    np.maximum.at(vmax, grp, vel)
    prog, pitch, on, off, vel = prog[first], pitch[first], on[first], off[first], vmax
    # cut a note where the same pitch starts again on the same program
    same_next = np.r_[(prog[1:] == prog[:-1]) & (pitch[1:] == pitch[:-1]), False]
    nxt_on = np.r_[on[1:], 0]
    off = np.where(same_next & (off > nxt_on), nxt_on, off)

    # time signatures per bar and tempo per beat
    ts_times, ts_num, ts_den = score.ts_times, score.ts_num, score.ts_den
    bar_beats = grid.bar_beats
    if len(ts_times):
        # the grid snaps a time signature to its beat: use the index of the beat where it starts
        starts = np.searchsorted(bt, ts_times)
        starts[0] = 0
        k_of_beat = np.searchsorted(starts, np.arange(len(bt)), side="right") - 1
        num_b, den_b = ts_num[k_of_beat], ts_den[k_of_beat]
    else:
        num_b = np.full(len(bt), 4, np.int64)
        den_b = np.full(len(bt), 4, np.int64)
    ts_bars = []
    prev = None
    for b, beat in enumerate(bar_beats.tolist()):
        cur = (int(num_b[beat]), int(den_b[beat]))
        if cur != prev:
            ts_bars.append((b, *cur))
            prev = cur
    q = np.array([_beat_quarters(int(n), int(d)) for n, d in zip(num_b.tolist(), den_b.tolist())])
    qpm = np.clip(np.rint(60.0 * q / np.diff(bt1)), cfg.tempo_min, cfg.tempo_max).astype(np.int64)
    change = np.r_[True, qpm[1:] != qpm[:-1]]
    return GridNotes(program=prog, pitch=pitch, velocity=vel, onset=on, offset=off,
                     bar_steps=bar_beats * res, n_steps=n_steps, ts_bars=ts_bars,
                     tempo_beats=np.flatnonzero(change), tempo_values=qpm[change], dropped=dropped)


def _ts_code(cfg: EventConfig, num: int, den: int) -> int:
    if den not in DENOMINATORS:
        den = 4
    num = min(max(num, 1), MAX_TS_NUM)
    return cfg.base["TimeSig"] + DENOMINATORS.index(den) * MAX_TS_NUM + num - 1


def encode_grid(g: GridNotes, cfg: EventConfig, *, select: np.ndarray | None = None) -> Encoded:
    """Codes of one stream (all notes, or those where ``select`` is true)."""
    B = cfg.base
    res = cfg.resolution
    prog, pitch, vel, on, off = g.program, g.pitch, g.velocity, g.onset, g.offset
    if select is not None:
        prog, pitch, vel, on, off = prog[select], pitch[select], vel[select], on[select], off[select]
    n_bars = len(g.bar_steps)
    # items: (step, priority, up to 4 codes); priority 0 bar, 1 tempo, 2 note-off, 3 note-on
    bar_codes = np.full((n_bars, 4), -1, np.int64)
    bar_codes[:, 0] = B["Bar"]
    for b, num, den in g.ts_bars:
        bar_codes[b, 1] = _ts_code(cfg, num, den)
    tempo_codes = np.full((len(g.tempo_beats), 4), -1, np.int64)
    tempo_codes[:, 0] = B["Tempo"] + g.tempo_values - cfg.tempo_min
    prog_code = np.where(prog < 0, B["Program"], B["Program"] + 1 + prog)
    vel_code = B["Velocity"] + cfg.velocity_bin(vel)
    pkey = prog + 1  # drums first, then programs in order
    if cfg.kind == "remi":
        note_codes = np.stack([prog_code, B["Pitch"] + pitch, vel_code,
                               B["Duration"] + np.minimum(off - on, cfg.max_duration) - 1], axis=1)
        steps = np.r_[g.bar_steps, g.tempo_beats * res, on]
        prio = np.r_[np.zeros(n_bars), np.ones(len(g.tempo_beats)), np.full(len(on), 3)].astype(np.int64)
        sub = np.r_[np.zeros(n_bars + len(g.tempo_beats), np.int64), pkey * 128 + pitch]
        codes = np.concatenate([bar_codes, tempo_codes, note_codes])
        order = np.lexsort((sub, prio, steps))
        steps, prio, codes = steps[order], prio[order], codes[order]
        bar_of = np.searchsorted(g.bar_steps, steps, side="right") - 1
        pos = steps - g.bar_steps[bar_of]
        new_pos = (prio > 0) & np.r_[True, (steps[1:] != steps[:-1]) | (prio[:-1] == 0)]
        pos_code = np.where(new_pos, B["Position"] + np.minimum(pos, res * MAX_BAR_BEATS - 1), -1)
        mat = np.concatenate([pos_code[:, None], codes], axis=1)
    else:
        on_codes = np.stack([prog_code, vel_code, B["NoteOn"] + pitch], axis=1)
        off_codes = np.stack([prog_code, np.full(len(on), -1), B["NoteOff"] + pitch], axis=1)
        steps = np.r_[g.bar_steps, g.tempo_beats * res, off, on]
        prio = np.r_[np.zeros(n_bars), np.ones(len(g.tempo_beats)), np.full(len(on), 2),
                     np.full(len(on), 3)].astype(np.int64)
        sub = np.r_[np.zeros(n_bars + len(g.tempo_beats), np.int64), pkey * 128 + pitch, pkey * 128 + pitch]
        codes = np.concatenate([bar_codes[:, :3], tempo_codes[:, :3], off_codes, on_codes])
        order = np.lexsort((sub, prio, steps))
        steps, prio, codes = steps[order], prio[order], codes[order]
        # a time shift before each item whose step is later than the previous one's
        prev = np.r_[0, steps[:-1]]
        gap = steps - prev
        n_shift = np.where(gap > 0, -(-gap // cfg.max_shift), 0)
        width = int(n_shift.max(initial=0))
        shifts = np.full((len(steps), max(width, 1)), -1, np.int64)
        if width:
            k = np.arange(width)[None, :]
            full = gap[:, None] - k * cfg.max_shift
            amount = np.minimum(full, cfg.max_shift)
            shifts = np.where(k < n_shift[:, None], B["TimeShift"] + amount - 1, -1)
        mat = np.concatenate([shifts, codes], axis=1)
    flat = mat.ravel()
    flat = flat[flat >= 0]
    bar_starts = np.flatnonzero(flat == B["Bar"]).astype(np.int32)
    return Encoded(codes=flat, bar_starts=bar_starts, n_notes=len(on), notes_dropped=g.dropped)


def stream_names(g: GridNotes, streams: str) -> list[tuple[str, np.ndarray | None]]:
    """``merged``: one stream ``all``; ``programs``: one per program (``drums``, ``program033``)."""
    if streams == "merged":
        return [("all", None)]
    out = []
    for p in np.unique(g.program).tolist():
        out.append(("drums" if p < 0 else f"program{p:03d}", g.program == p))
    return out


def encode(raw: bytes, path: str = "<bytes>", *, cfg: EventConfig, streams: str = "merged") -> dict[str, Encoded]:
    """MIDI bytes -> codes per stream (raises MidiError)."""
    from pipeline.io.midi import read_midi

    score = read_midi(raw, path)
    try:
        g = grid_notes(score, cfg)
    except MidiError as exc:
        raise MidiError(exc.code, path, exc.detail) from None
    return {name: encode_grid(g, cfg, select=sel) for name, sel in stream_names(g, streams)}


def to_strings(codes: np.ndarray, cfg: EventConfig) -> list[str]:
    table = cfg.table
    return [table[c] for c in np.asarray(codes).tolist()]


# ---------------------------------------------------------------------------------------------
# decoding


@dataclass
class Decoded:
    notes: list[tuple[int, int, int, int, int]]  # (program (-1 drums), pitch, velocity, onset, offset) steps
    tempi: list[tuple[int, int]]  # (step, qpm)
    time_signatures: list[tuple[int, int, int]]  # (step, num, den)
    bar_steps: list[int]


def parse(tokens: list[str], cfg: EventConfig) -> Decoded:
    """Token strings -> notes, tempi and time signatures on the grid (unknown tokens are skipped)."""
    res = cfg.resolution
    notes: list = []
    tempi: list = []
    tss: list = []
    bars: list[int] = []
    bar_len = 4 * res
    bar_start = -bar_len
    now = 0
    program = 0
    velocity = 64
    pitch = None
    open_notes: dict[tuple[int, int], list] = {}
    for tok in tokens:
        name, _, val = tok.partition("_")
        if name == "Bar":
            bar_start = bar_start + bar_len if bars else 0
            bars.append(bar_start)
            now = bar_start
        elif name == "TimeSig":
            n, d = (int(x) for x in val.split("/"))
            tss.append((bar_start, n, d))
            bar_len = _bar_beats(n, d) * res
        elif name == "Tempo":
            tempi.append((now, int(val)))
        elif name == "Position":
            now = bar_start + int(val)
        elif name == "TimeShift":
            now += int(val)
        elif name == "Program":
            program = -1 if val == "drums" else int(val)
        elif name == "Velocity":
            velocity = int(val)
        elif name == "Pitch":
            pitch = int(val)
        elif name == "Duration" and pitch is not None:
            notes.append((program, pitch, velocity, now, now + int(val)))
            pitch = None
        elif name == "NoteOn":
            open_notes.setdefault((program, int(val)), []).append([now, velocity])
        elif name == "NoteOff":
            stack = open_notes.get((program, int(val)))
            if stack:
                start, vel = stack.pop(0)
                notes.append((program, int(val), vel, start, max(now, start + 1)))
    notes.sort(key=lambda n: (n[3], n[0], n[1]))
    return Decoded(notes=notes, tempi=tempi, time_signatures=tss, bar_steps=bars)


def decode(tokens: list[str], cfg: EventConfig) -> bytes:
    """Token strings -> a Standard MIDI File (bytes), written with mido."""
    import mido

    from pipeline.formats.midi import midi_bytes, midi_file, track

    d = parse(tokens, cfg)
    res = cfg.resolution
    tpq = 8 * res
    # ticks of every step: a step lasts (quarters per beat * tpq / res) ticks under its time signature
    tss = d.time_signatures or [(0, 4, 4)]
    last_bar_len = _bar_beats(*tss[-1][1:]) * res
    end_step = (d.bar_steps[-1] + last_bar_len) if d.bar_steps else max((n[4] for n in d.notes), default=0)
    end_step = max(end_step, max((n[4] for n in d.notes), default=0))
    seg_steps = [s for s, _, _ in tss]
    seg_ticks_per_step = [int(round(_beat_quarters(n, dd) * tpq / res)) for _, n, dd in tss]
    seg_tick0 = [0]
    for k in range(1, len(tss)):
        seg_tick0.append(seg_tick0[-1] + (seg_steps[k] - seg_steps[k - 1]) * seg_ticks_per_step[k - 1])
    seg_steps_a = np.array(seg_steps)

    def tick(step: int) -> int:
        k = int(np.searchsorted(seg_steps_a, step, side="right") - 1)
        k = max(k, 0)
        return seg_tick0[k] + (step - seg_steps[k]) * seg_ticks_per_step[k]

    meta = []
    for step, n, dd in tss:
        if dd in DENOMINATORS:
            meta.append((tick(step), 0, mido.MetaMessage("time_signature", numerator=n, denominator=dd, time=0)))
    for step, qpm in d.tempi:
        meta.append((tick(step), 1, mido.MetaMessage("set_tempo", tempo=int(round(6e7 / qpm)), time=0)))
    end_tick = tick(end_step) - max(1, tpq // (2 * res))
    meta.append((max(end_tick, 0), 2, mido.MetaMessage("text", text="end", time=0)))
    tracks = [track(meta)]
    programs = sorted({n[0] for n in d.notes})
    channels = [c for c in range(16) if c != 9]
    for k, p in enumerate(programs):
        ch = 9 if p < 0 else channels[k % 15]
        ev = [(0, 0, mido.Message("program_change", channel=ch, program=max(p, 0), time=0))]
        for prog, pitch, vel, on, off in d.notes:
            if prog == p:
                ev.append((tick(off), 1, mido.Message("note_off", channel=ch, note=pitch, velocity=0, time=0)))
                ev.append((tick(on), 2, mido.Message("note_on", channel=ch, note=pitch, velocity=vel, time=0)))
        tracks.append(track(ev))
    return midi_bytes(midi_file(tracks, ticks_per_beat=tpq))

