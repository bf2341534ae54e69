"""Compiled kernels for Standard MIDI Files: a tolerant event scanner, the note pairing and beat
grid of pretty_midi, and the piano-roll painter, in C (``_smf.c``, built when the package is
installed) so that a file costs microseconds, not the ~0.15 s of mido + pretty_midi, and a run
starts without a JIT.

The scanner follows mido 1.3 exactly on files mido accepts, and repairs what mido refuses
(each repair sets a bit in ``flags``; ``pipeline.io.midi`` turns the bits into words). The
pairing follows ``pretty_midi.PrettyMIDI._load_instruments`` exactly: one instrument per
(program at note-off, channel, track), notes in note-off order, a note-off closing every open
note of its key except those that started on the same tick, and the "straggler" rules that
decide which control changes and pitch bends count towards the end time. ``pair_m21`` and
``group_m21`` replay music21's MIDI import instead (its note pairing and chord gathering), for
``pipeline.tokens.notes``.

Every read of the file is bounds-checked by hand: the input is untrusted. The functions here
check the dtypes and lengths of the arrays they hand to C (a wrong one is a ``TypeError`` or
``ValueError``, never a stray write).
"""

from __future__ import annotations

import numpy as np

from pipeline.io import _smf

# ---- event kinds -----------------------------------------------------------------------
K_NOTE_ON = 1
K_NOTE_OFF = 2
K_PROGRAM = 3
K_CONTROL = 4  # control change or pitch bend: only their times matter
K_TEMPO = 5  # a = microseconds per quarter note
K_TIMESIG = 6  # a = numerator, b = denominator
K_KEYSIG = 7  # a = sharps (signed), b = mode
K_TRACKNAME = 8  # a = offset of the text in the file, b = its length
K_TEXT = 9  # lyrics and text events: their times count towards the end time

# ---- repair flags (bit positions) --------------------------------------------------------
F_DATA_OVER_127 = 1 << 0  # data byte > 127 in a channel message: clipped to 127 (mido clip=True)
F_BAD_KEY_SIGNATURE = 1 << 1  # key signature mido cannot decode: dropped
F_BAD_META = 1 << 2  # tempo/time signature/smpte/... meta event too short or invalid: dropped
F_TRUNCATED = 1 << 3  # the data ends inside a chunk or an event: events before it kept
F_MISSING_TRACKS = 1 << 4  # fewer track chunks than the header declares
F_UNKNOWN_CHUNK = 1 << 5  # a non-MTrk chunk where a track was expected: skipped
F_RUNNING_STATUS = 1 << 6  # a data byte with no running status to apply: skipped
F_UNDEFINED_STATUS = 1 << 7  # status byte 0xF4/0xF5/0xF9/0xFD: skipped
F_CHUNK_OVERRUN = 1 << 8  # an event runs past the end of its track chunk: track ends there
F_LONG_VLQ = 1 << 9  # a variable-length quantity longer than 4 bytes
F_HEADER_LENGTH = 1 << 10  # MThd length is not 6
F_MISNAMED_TRACK = 1 << 11  # a chunk with a damaged id, and no MTrk after it: read as a track
F_EMPTY_TRACK = 1 << 12  # a track chunk with no complete message (pretty_midi fails on it): read as empty
F_EXTRA_TRACKS = 1 << 13  # complete MTrk chunks after the declared number: read too (mido ignores them)
# ---- warnings (same flags word, not repairs) -------------------------------------------
W_MIDO_META_TIME = 1 << 20  # unknown meta events with a delta time, which mido 1.3 drops (ticks in info[7])

# ---- fatal errors (returned in info[0]) ---------------------------------------------------
E_NONE = 0
E_NO_HEADER = 1
E_SHORT_HEADER = 2

INFO_SIZE = 8  # error, format, declared tracks, division, tracks read, flags, n_events, mido-lost ticks


def _out(arr: np.ndarray, dtype, name: str, n: int = 0) -> np.ndarray:
    """``arr`` as an output buffer: exactly ``dtype``, C-contiguous, writable, at least ``n`` long."""
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype or not arr.flags.c_contiguous or not arr.flags.writeable:
        raise TypeError(f"{name} must be a writable C-contiguous {np.dtype(dtype)} array")
    if len(arr) < n:
        raise ValueError(f"{name} holds {len(arr)} elements, {n} needed")
    return arr


def _in(arr, dtype) -> np.ndarray:
    return np.ascontiguousarray(arr, dtype=dtype)


def scan_smf(data, start, ev_track, ev_tick, ev_kind, ev_ch, ev_a, ev_b, info) -> None:
    """Scan an SMF that begins at ``data[start]`` (the 'MThd' bytes).

    Fills the event arrays (capacity ``len(ev_tick)``, at least ``len(data) // 2 + 1``) and
    ``info``: [error, format, declared tracks, division, tracks read, flags, n_events].
    """
    cap = len(ev_tick)
    for arr, dtype, name in ((ev_track, np.int32, "ev_track"), (ev_tick, np.int64, "ev_tick"),
                             (ev_kind, np.int8, "ev_kind"), (ev_ch, np.int8, "ev_ch"), (ev_a, np.int32, "ev_a"),
                             (ev_b, np.int32, "ev_b")):
        _out(arr, dtype, name, cap)
    _out(info, np.int64, "info", INFO_SIZE)
    _smf.scan_smf(_in(data, np.uint8), int(start), ev_track, ev_tick, ev_kind, ev_ch, ev_a, ev_b, info)


def pair_notes(ev_track, ev_tick, ev_kind, ev_ch, ev_a, ev_b, n_events,
               note_inst, note_pitch, note_vel, note_start, note_end,
               inst_program, inst_channel, inst_track, inst_name_ev, out) -> None:
    """pretty_midi's ``_load_instruments`` over scanned events.

    Writes notes (instrument index, pitch, velocity, start tick, end tick) in pretty_midi's order
    and instruments in creation order (``ValueError`` when their arrays are too small). ``out``
    receives [n_notes, n_instruments, max counted control tick (or -1)].
    """
    outs = [_out(a, np.int64, name) for a, name in (
        (note_inst, "note_inst"), (note_pitch, "note_pitch"), (note_vel, "note_vel"), (note_start, "note_start"),
        (note_end, "note_end"), (inst_program, "inst_program"), (inst_channel, "inst_channel"),
        (inst_track, "inst_track"), (inst_name_ev, "inst_name_ev"), (out, "out"))]
    _smf.pair_notes(_in(ev_track, np.int32), _in(ev_tick, np.int64), _in(ev_kind, np.int8), _in(ev_ch, np.int8),
                    _in(ev_a, np.int32), _in(ev_b, np.int32), int(n_events), *outs)


def get_beats(start_time, tc_times, tempi, ts_times, ts_num, ts_den, end_time, max_beats) -> np.ndarray:
    """pretty_midi ``PrettyMIDI.get_beats`` (time signatures sorted by time, stable).

    Returns the beat times, or an array of length ``max_beats + 1`` when there would be more
    (the caller refuses such a file before it spends memory on it).
    """
    tc_times, tempi = _in(tc_times, np.float64), _in(tempi, np.float64)
    ts_times, ts_num, ts_den = _in(ts_times, np.float64), _in(ts_num, np.int64), _in(ts_den, np.int64)
    if len(tempi) != len(tc_times) or not len(ts_times) == len(ts_num) == len(ts_den):
        raise ValueError("get_beats: tempo and time-signature arrays differ in length")
    max_beats = int(max_beats)
    if max_beats < 0:
        raise ValueError(f"max_beats={max_beats} must be >= 0")
    beats = np.empty(max_beats + 2, np.float64)
    n = _smf.get_beats(float(start_time), tc_times, tempi, ts_times, ts_num, ts_den, float(end_time), max_beats, beats)
    return beats[:n] if n > max_beats else beats[:n].copy()


def beat_start_score(beats, onset_idx, onset_vel, length) -> float:
    """Score of one candidate beat grid in pretty_midi's ``estimate_beat_start``.

    pretty_midi marks 25 ms windows around 0 and every beat on a 1 kHz signal of ``length``
    samples and sums the velocities of the note onsets (``int(start * 1000)``) that fall in a
    window. The same sum without the signal (memory stays bounded whatever the file's length):
    windows start in beat order, so an onset is covered when the widest window starting at or
    before it reaches past it.
    """
    onset_idx, onset_vel = _in(onset_idx, np.int64), _in(onset_vel, np.float64)
    if len(onset_idx) != len(onset_vel):
        raise ValueError("beat_start_score: onset_idx and onset_vel differ in length")
    return _smf.beat_start_score(_in(beats, np.float64), onset_idx, onset_vel, int(length))


def paint_tracks(n_steps, inst_of_note, pitch, vel, ons, offs, inst_is_drum, inst_family, n_tracks,
                 lpd_semantics, out_track, out_time, out_pitch, out_vel) -> int:
    """Quantised notes -> per-instrument piano-rolls -> tracks merged by maximum velocity.

    Each instrument is painted on its own (128, n_steps) scratch roll with the sequential,
    state-dependent rules of pypianoroll (the one-step gap before a repeated note, the offset
    pulled back when the next cell is taken, velocities by maximum; drums as onsets, last write
    wins), then folded into its track (``inst_family``, -1: dropped) by maximum. Notes must be
    grouped by instrument in pretty_midi order. The tracks' non-zero cells are written in
    (track, pitch, time) order, the order of a CSC matrix per track. Returns their number, or -1
    when the instruments' rolls hold more non-zero cells than the outputs' length (the caller
    refuses the file, or retries with larger outputs).
    """
    inst_of_note, pitch, vel = _in(inst_of_note, np.int64), _in(pitch, np.int64), _in(vel, np.int64)
    ons, offs = _in(ons, np.int64), _in(offs, np.int64)
    inst_is_drum, inst_family = _in(inst_is_drum, np.uint8), _in(inst_family, np.int64)
    n = len(pitch)
    if not len(inst_of_note) == len(vel) == len(ons) == len(offs) == n:
        raise ValueError("paint_tracks: the note arrays differ in length")
    if len(inst_is_drum) != len(inst_family):
        raise ValueError("paint_tracks: inst_is_drum and inst_family differ in length")
    if n and (inst_of_note.min() < 0 or inst_of_note.max() >= len(inst_family)
              or pitch.min() < 0 or pitch.max() > 127 or vel.min() < 0 or vel.max() > 255):
        raise ValueError("paint_tracks: an instrument index, pitch or velocity is out of range")
    cap = len(out_time)
    for arr, dtype, name in ((out_track, np.uint8, "out_track"), (out_time, np.int32, "out_time"),
                             (out_pitch, np.uint8, "out_pitch"), (out_vel, np.uint8, "out_vel")):
        _out(arr, dtype, name, cap)
    return _smf.paint_tracks(int(n_steps), inst_of_note, pitch, vel, ons, offs, inst_is_drum, inst_family,
                             int(n_tracks), bool(lpd_semantics), out_track, out_time, out_pitch, out_vel)


def quantize(beat_times, one_more, times, resolution, rounding) -> np.ndarray:
    """Times (s) -> grid steps, bit for bit as the numpy expression of pypianoroll's arithmetic:
    ``bi = searchsorted(bt, t) - 1``, ``pos = nan_to_num((bi + (t - bt[bi]) / (bt1[bi + 1] -
    bt[bi])) * resolution)`` with ``bt1 = append(bt, one_more)`` (and ``bt[-1]``, the last beat,
    for times before the first), then ``round(pos)`` (half to even) when ``rounding``, cast to
    int64 as numpy casts (NaN and out-of-range values become the minimum int64)."""
    beat_times, times = _in(beat_times, np.float64), _in(times, np.float64)
    if len(beat_times) == 0:
        raise ValueError("quantize: no beats")
    out = np.empty(len(times), np.int64)
    _smf.quantize(beat_times, float(one_more), times, int(resolution), bool(rounding), out)
    return out


def bar_coords(cell_time, bar_starts, n_steps, bar_steps, drop) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Cells' steps -> (bar int16, step in bar int16, keep bool, kept count).

    ``bar_starts`` are the first steps of the bars, from 0, tiling ``n_steps``. A cell is kept
    when its step is below ``bar_steps``, and with ``drop`` only in bars of exactly ``bar_steps``
    steps, which are renumbered in order (a dropped cell's bar is -1). The caller guarantees that
    a bar and a step fit int16 (``max_beats`` <= 32767 and ``bar_steps`` <= 32767)."""
    cell_time, bar_starts = _in(cell_time, np.int32), _in(bar_starts, np.int64)
    n = len(cell_time)
    bar, step, keep = np.empty(n, np.int16), np.empty(n, np.int16), np.empty(n, np.bool_)
    kept = _smf.bar_coords(cell_time, bar_starts, int(n_steps), int(bar_steps), bool(drop), bar, step,
                           keep.view(np.uint8))
    return bar, step, keep, kept


def ticks_to_seconds(start, scale, base, ticks) -> np.ndarray:
    """Ticks -> seconds over a tempo map of segments (first tick, seconds per tick, seconds at the
    first tick): ``seg = searchsorted(start, ticks, side="right") - 1`` (index -1, the last
    segment, for ticks before the first, as numpy indexes), ``base[seg] + scale[seg] * (ticks -
    start[seg])``, bit for bit."""
    start, scale, base = _in(start, np.int64), _in(scale, np.float64), _in(base, np.float64)
    if not len(start) == len(scale) == len(base) or len(start) == 0:
        raise ValueError("ticks_to_seconds: start, scale and base must be equally long, and not empty")
    ticks = _in(ticks, np.int64)
    out = np.empty(ticks.shape, np.float64)
    _smf.ticks_to_seconds(start, scale, base, ticks.reshape(-1), out.reshape(-1))
    return out


def pair_m21(ev_track, ev_tick, ev_kind, ev_ch, ev_a, n_tracks, on_tick, off_tick, pitch, chan, track) -> int:
    """music21's ``getNotesFromEvents`` per track over scanned events (all int64): walk
    backwards, a note-off arms its (track, channel, pitch), a note-on takes the nearest armed
    note-off after it (an unpaired note-on vanishes).

    Fills the int64 outputs (capacity ``len(on_tick)``; as many as there are note-ons always
    suffice) in reverse order of note-ons and returns their count. ``ValueError`` when a note
    event's track, channel or pitch is outside ``[0, n_tracks) x [0, 16) x [0, 128)``.
    """
    ins = [_in(a, np.int64) for a in (ev_track, ev_tick, ev_kind, ev_ch, ev_a)]
    if len({len(a) for a in ins}) != 1:
        raise ValueError("pair_m21: the event arrays differ in length")
    cap = len(on_tick)
    outs = [_out(a, np.int64, name, cap) for a, name in ((on_tick, "on_tick"), (off_tick, "off_tick"),
                                                         (pitch, "pitch"), (chan, "chan"), (track, "track"))]
    return _smf.pair_m21(*ins, int(n_tracks), *outs)


def group_m21(on_tick, off_tick, track, tol, mem_group, mem_note, first_of, voices_required) -> tuple[int, int]:
    """music21's ``midiTrackToStream`` chord gathering over notes in note-on order, track by track.

    A note not yet gathered opens a group; the notes after it of the same track with an onset
    closer than ``tol`` ticks join it when their end is within ``tol`` too, and otherwise set
    ``voices_required[track]`` (music21's ``voicesRequired``: a note starting with a chord but
    ending elsewhere). As in music21 only the opening note is checked, so a note already gathered
    can be gathered again by a later group. Writes (group, note) member pairs to ``mem_group`` /
    ``mem_note`` and each group's opening note to ``first_of`` (at least as long as the notes);
    returns (groups, pairs), or (-1, -1) when ``mem_*`` are too small (retry with more room).
    ``ValueError`` when a track is not an index of ``voices_required`` (bool).
    """
    on_tick, off_tick, track = _in(on_tick, np.int64), _in(off_tick, np.int64), _in(track, np.int64)
    n = len(on_tick)
    if not len(off_tick) == len(track) == n:
        raise ValueError("group_m21: the note arrays differ in length")
    cap = len(mem_group)
    _out(mem_group, np.int64, "mem_group", cap)
    _out(mem_note, np.int64, "mem_note", cap)
    _out(first_of, np.int64, "first_of", n)
    _out(voices_required, np.bool_, "voices_required")
    g, m = _smf.group_m21(on_tick, off_tick, track, float(tol), mem_group, mem_note, first_of,
                          voices_required.view(np.uint8))
    return g, m
