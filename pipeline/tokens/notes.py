"""The seed's music21 recipe, done right (``vocab: notes``): notes -> name with octave as music21
spells them (``C4``, ``C#4``, ``E-4``), chords -> pitch classes of their normal order joined by
``.`` (``4.7.11``), per non-drum MIDI track or all non-drum tracks merged.

Two implementations, one output:

- ``notes_music21``: the reference. ``music21.midi.translate.midiFileToStream`` (what
  ``converter.parse`` does for MIDI), then every ``Note`` / ``Chord`` of each part, flattened; a
  tie continuation (music21 splits notes at bar lines) adds its length to the element it continues
  (``stripTies`` misses some chords); ``Unpitched`` and ``PercussionChord`` (channel 10) are drums
  and left out.
- ``notes_fast``: no music21 per file. It scans the file with our SMF scanner and replays
  music21 10's MIDI import on arrays: note-offs paired as ``getNotesFromEvents`` pairs them
  (each note-on ends at the first note-off of its pitch and channel after it), notes grouped into
  chords as ``midiTrackToStream`` groups them (onsets within ``ticksPerQuarter / 4`` of the
  group's first note and offsets within the same tolerance; a chord with a channel-10 note is a
  ``PercussionChord``; the chord's duration is its *last* note's, music21's own bug), offsets and
  durations quantised as ``Stream.quantize(quarterLengthDivisors=(4, 3))`` does (nearest multiple
  of 1/4 or 1/3 quarter, ties to 1/4; a duration is never quantised to 0 and prefers a value that
  fills the gap to the next offset), pitch names and normal orders from tables computed once with
  music21 (``_m21_tables.py``).

The order of a stream is (quantised offset, MIDI track, tick of the onset, pitches): music21's own
order of simultaneous events depends on voices it invents, so the recipe fixes one and both paths
use it. Times are in units of 1/12 quarter (the common grid of 1/4 and 1/3).

Options: ``durations`` appends the quantised quarter length (``C4_1/2``, ``0.4.7_3/2``);
``rests`` inserts ``rest`` (``rest_<ql>`` with durations) where nothing sounds between the end of
everything before and the next onset (from offset 0).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from fractions import Fraction
from typing import Literal

import numpy as np

from pipeline.errors import MidiError
from pipeline.io import smf_kernels as K
from pipeline.tokens._m21_tables import NORMAL_ORDER, PITCH_NAMES

Streams = Literal["merged", "tracks"]
Ties = Literal["merge", "split"]
UNITS = 12  # time units per quarter note: lcm of music21's default quantisation divisors (4, 3)
DIVISORS = (4, 3)


@dataclass(frozen=True, kw_only=True)
class NotesConfig:
    streams: Streams = "merged"  # merged: one stream "all"; tracks: one per MIDI track ("track03")
    durations: bool = False
    rests: bool = False
    ties: Ties = "merge"  # merge: one token per note; split: one per tied fragment (the recipe's stream)


def stream_name(track: int | None) -> str:
    return "all" if track is None else f"track{track:02d}"


@lru_cache(maxsize=4096)
def duration_text(units: int) -> str:
    """Quarter length as an exact fraction: 1/4, 1/3, 3/2, 2."""
    return str(Fraction(units) / UNITS)


# ---------------------------------------------------------------------------------------------
# fast path


def scan_events(raw: bytes, path: str = "<bytes>"):
    """Raw events of an SMF in file order: (tpq, n_tracks, track, tick, kind, channel, a, b)."""
    from pipeline.io.midi import scan_events as scan

    ev = scan(raw, path)
    arrays = (ev.track, ev.tick, ev.kind, ev.channel, ev.a, ev.b)
    return (ev.division, ev.n_tracks, *(a.astype(np.int64) for a in arrays))


def _py_round7(x: float) -> float:
    return round(x, 7)


def quantize_offsets(ql: np.ndarray) -> np.ndarray:
    """music21 ``bestMatch(offset, (4, 3))`` for offsets: units of 1/12 quarter."""
    best_units = None
    errs = []
    units = []
    for div in DIVISORS:
        unit = 1 / div
        mult = np.floor(ql / unit)
        low = unit * mult
        take_low = (low <= ql) & (ql <= low + unit / 2.0)
        err = np.where(take_low, np.round(ql - low, 7), np.round(unit * (mult + 1) - ql, 7))
        errs.append(err)
        units.append((mult + np.where(take_low, 0, 1)).astype(np.int64) * (UNITS // div))
    diff = np.abs(errs[0] - errs[1])
    close = (diff > 0) & (diff < 1e-6)
    best_units = np.where(errs[1] < errs[0], units[1], units[0])  # a tie goes to 1/4 (the smaller tick)
    for i in np.flatnonzero(close):  # near-ties: music21's own arithmetic (Python's round)
        best_units[i] = _best_match_py(float(ql[i]), zero_allowed=True, gap=None)
    return best_units


def _best_match_py(ql: float, *, zero_allowed: bool, gap: int | None) -> int:
    """music21 ``Stream.quantize.bestMatch`` in plain Python (result in 1/12 units)."""
    import math

    found = []
    gapf = 0.0 if gap is None else gap / UNITS
    for div in DIVISORS:
        tick = 1 / div
        mult = math.floor(ql / tick)
        low, high = tick * mult, tick * (mult + 1)
        if low <= ql <= low + tick / 2.0:
            match, err, m = low, _py_round7(ql - low), mult
        else:
            match, err, m = high, _py_round7(high - ql), mult + 1
        if not zero_allowed and match == 0.0:
            match, m = tick, 1
            err = abs(_py_round7(ql - match))
        remaining = 0.0 if gapf % tick == 0 else max(gapf - match, 0.0)
        found.append((remaining, err, tick, m * (UNITS // div)))
    return min(found)[3]


def quantize_durations(ql: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """music21 ``bestMatch(quarterLength, (4, 3), zeroAllowed=isGrace, gapToFill)``; ``gaps`` in
    1/12 units (-1: no later element). A duration of 0 is a grace note and stays 0."""
    out = np.zeros(len(ql), np.int64)
    cand = []
    gapf = np.where(gaps < 0, 0.0, gaps / UNITS)
    for div in DIVISORS:
        tick = 1 / div
        mult = np.floor(ql / tick)
        low = tick * mult
        take_low = (low <= ql) & (ql <= low + tick / 2.0)
        match = np.where(take_low, low, tick * (mult + 1))
        m = mult + np.where(take_low, 0, 1)
        err = np.where(take_low, np.round(ql - low, 7), np.round(match - ql, 7))
        zero = match == 0.0
        match = np.where(zero, tick, match)
        m = np.where(zero, 1, m)
        err = np.where(zero, np.abs(np.round(ql - tick, 7)), err)
        remaining = np.where(np.fmod(gapf, tick) == 0, 0.0, np.maximum(gapf - match, 0.0))
        cand.append((remaining, err, m.astype(np.int64) * (UNITS // div)))
    (r4, e4, u4), (r3, e3, u3) = cand
    pick3 = (r3 < r4) | ((r3 == r4) & (e3 < e4))
    out = np.where(pick3, u3, u4)
    de = np.abs(e3 - e4)
    close = (np.abs(r3 - r4) < 1e-9) & (de > 0) & (de < 1e-6)
    for i in np.flatnonzero(close & (ql > 0)):
        out[i] = _best_match_py(float(ql[i]), zero_allowed=False, gap=None if gaps[i] < 0 else int(gaps[i]))
    out[ql == 0] = 0
    return out


@dataclass(frozen=True)
class NoteGroups:
    """music21's notes and chords of a file as arrays (one row per Note / Chord / drum element)."""

    tpq: int
    track: np.ndarray  # MIDI track index
    tick: np.ndarray  # onset tick (the group's first note)
    offset: np.ndarray  # quantised onset, 1/12 quarter units
    duration: np.ndarray  # quantised duration, 1/12 units (only with durations=True, else 0)
    mask: np.ndarray  # pitch-class set (12 bits)
    pitch: np.ndarray  # the pitch of a single note; lowest pitch of a chord
    top: np.ndarray  # highest pitch
    size: np.ndarray  # number of notes
    drum: np.ndarray  # Unpitched / PercussionChord
    voices_required: np.ndarray  # per MIDI track: music21 makes voices in its measures
    note_tracks: np.ndarray  # the MIDI tracks with a note-on (music21's parts, in order)
    ts_track: np.ndarray  # time signatures: MIDI track, quantised offset (1/12 units),
    ts_offset: np.ndarray  # numerator and denominator
    ts_num: np.ndarray
    ts_den: np.ndarray
    meta_track: np.ndarray  # the meta events music21 puts in a part: MIDI track, quantised offset,
    meta_offset: np.ndarray  # and whether a conductor part passes it on (time signature, key, tempo)
    meta_conductor: np.ndarray


def note_groups(raw: bytes, path: str = "<bytes>", *, durations: bool = False) -> NoteGroups:
    """Notes and chords of a MIDI file as music21 10's MIDI import makes them."""
    tpq, n_tracks, ev_track, ev_tick, ev_kind, ev_ch, ev_a, _ev_b = scan_events(raw, path)
    n_on = int(np.count_nonzero(ev_kind == K.K_NOTE_ON))
    on, off, pitch, chan, track = (np.empty(n_on, np.int64) for _ in range(5))
    n = K.pair_m21(ev_track, ev_tick, ev_kind, ev_ch, ev_a, n_tracks, on, off, pitch, chan, track)
    on, off, pitch, chan, track = (a[:n][::-1].copy() for a in (on, off, pitch, chan, track))
    cap = 2 * n + 16
    while True:
        mem_group = np.empty(cap, np.int64)
        mem_note = np.empty(cap, np.int64)
        first_of = np.empty(n, np.int64)
        voices_required = np.zeros(max(n_tracks, 1), np.bool_)
        g, nm = K.group_m21(on, off, track, tpq / max(DIVISORS), mem_group, mem_note, first_of, voices_required)
        if g >= 0:
            break
        cap *= 2
    first_of = first_of[:g]
    group_of, member = mem_group[:nm], mem_note[:nm]
    last_of = np.zeros(g, np.int64)
    np.maximum.at(last_of, group_of, member)
    size = np.bincount(group_of, minlength=g)
    mp = pitch[member]
    mask = np.zeros(g, np.int64)
    np.bitwise_or.at(mask, group_of, 1 << (mp % 12))
    low = np.full(g, 128, np.int64)
    np.minimum.at(low, group_of, mp)
    top = np.full(g, -1, np.int64)
    np.maximum.at(top, group_of, mp)
    drum = np.zeros(g, bool)
    np.logical_or.at(drum, group_of, chan[member] == 9)
    g_track = track[first_of]
    g_tick = on[first_of]
    offset = quantize_offsets(g_tick / tpq) if g else np.zeros(0, np.int64)
    if durations and g:
        dur_ql = (off[last_of] - on[last_of]) / tpq
        gaps = _gaps(g_track, offset, tpq, ev_track, ev_tick, ev_kind)
        duration = quantize_durations(dur_ql, gaps)
    else:
        duration = np.zeros(g, np.int64)
    ts = ev_kind == K.K_TIMESIG
    meta = np.isin(ev_kind, _META_KINDS)
    return NoteGroups(tpq=tpq, track=g_track, tick=g_tick, offset=offset, duration=duration, mask=mask,
                      pitch=low, top=top, size=size, drum=drum, voices_required=voices_required,
                      note_tracks=np.unique(ev_track[ev_kind == K.K_NOTE_ON]), ts_track=ev_track[ts],
                      ts_offset=quantize_offsets(ev_tick[ts] / tpq) if ts.any() else np.zeros(0, np.int64),
                      ts_num=ev_a[ts], ts_den=_ev_b[ts], meta_track=ev_track[meta],
                      meta_offset=quantize_offsets(ev_tick[meta] / tpq) if meta.any() else np.zeros(0, np.int64),
                      meta_conductor=np.isin(ev_kind[meta], (K.K_TEMPO, K.K_TIMESIG, K.K_KEYSIG)))


_META_KINDS = (K.K_TEMPO, K.K_TIMESIG, K.K_KEYSIG, K.K_TRACKNAME, K.K_PROGRAM)


def _gaps(g_track, offset, tpq, ev_track, ev_tick, ev_kind) -> np.ndarray:
    """Per group: the next larger quantised offset among its track's elements (notes, chords and
    the meta objects music21 puts in the part before quantising), minus its own; -1 when none."""
    meta = np.isin(ev_kind, _META_KINDS)
    m_track = ev_track[meta]
    m_off = quantize_offsets(ev_tick[meta] / tpq) if meta.any() else np.zeros(0, np.int64)
    big = int(max(offset.max(initial=0), m_off.max(initial=0))) + 2
    keys = np.unique(np.concatenate([g_track * big + offset, m_track * big + m_off]))
    mine = g_track * big + offset
    nxt = np.searchsorted(keys, mine, side="right")
    has = nxt < len(keys)
    nxt_key = keys[np.minimum(nxt, len(keys) - 1)]
    same_track = has & (nxt_key // big == g_track)
    return np.where(same_track, nxt_key - mine, -1)


# ---------------------------------------------------------------------------------------------
# ties: split (the recipe's exact stream)


def _meter(ng: NoteGroups, part: int, conductor: set[int]) -> list[tuple[int, Fraction]]:
    """music21's time signatures for the part of MIDI track ``part``: those of the tracks without
    notes read before it (its conductor part) or, when they have none, the part's own; 4/4 at 0
    when none is at 0. ``(offset, bar length)`` in 1/12 units, sorted by offset (stable)."""
    rows = list(zip(ng.ts_track.tolist(), ng.ts_offset.tolist(), ng.ts_num.tolist(), ng.ts_den.tolist()))
    mine = [r for r in rows if r[0] in conductor and r[0] < part] or [r for r in rows if r[0] == part]
    meter = sorted(((o, Fraction(4 * UNITS * n, d)) for _, o, n, d in mine), key=lambda x: x[0])
    if not meter or meter[0][0] > 0:
        meter.insert(0, (0, Fraction(4 * UNITS)))
    return meter


class _Bars:
    """music21 ``makeMeasures``' bar lines: a bar starts where the last one ends; its length is
    that of the time signature at or before its start. Held as arithmetic runs (one per change of
    length), so that a sparse file far longer than its notes costs nothing."""

    def __init__(self, meter: list[tuple[int, int]]) -> None:
        self.runs: list[tuple[int, int, int]] = []  # (start, bar length, index of its first bar)
        o = idx = k = 0
        while True:
            while k + 1 < len(meter) and meter[k + 1][0] <= o:
                k += 1
            length = meter[k][1]
            self.runs.append((o, length, idx))
            if k + 1 == len(meter):
                break
            n = max(1, -(-(meter[k + 1][0] - o) // length))  # bars until one starts at or after the change
            o += n * length
            idx += n
        self._starts = [r[0] for r in self.runs]
        self._firsts = [r[2] for r in self.runs]

    def index(self, t: int) -> int:
        start, length, first = self.runs[bisect_right(self._starts, t) - 1]
        return first + (t - start) // length

    def bar(self, m: int) -> tuple[int, int]:
        start, length, first = self.runs[bisect_right(self._firsts, m) - 1]
        return start + (m - first) * length, length


#: ``ties: split`` refuses a file whose notes would be cut into more fragments than this (a
#: damaged file can hold a note of billions of bars); build_vocab records it as skip.too_long
MAX_FRAGMENTS = 2_000_000


class _Voice(list):
    """A music21 Voice made by ``makeVoices``: its elements, the highest end time it had then
    (``high``) and whether music21 still holds that value in its cache (``cached``: set when
    makeVoices asks for it and passes the voice over, when the second voice goes into the measure
    (for the first) and when a note is inserted into the measure itself; an insertion into the
    voice or a split Note clears it, a split Chord does not: music21 10's own stale cache)."""

    high = 0
    cached = False


class _Measure:
    __slots__ = ("level", "voices", "cached", "high")

    def __init__(self) -> None:
        self.level: list[list] = []  # elements in the measure itself
        self.voices: list[list[list]] | None = None  # music21 Voice objects, in order
        self.cached = False  # as _Voice.cached, for the measure's own elements
        self.high = 0


def _sorted(container: list[list]) -> list[list]:
    """A music21 container's iteration order: offset, grace notes first, then insertion order."""
    return [it for _, it in sorted(enumerate(container), key=lambda p: (p[1][0], p[1][1] > 0, p[0]))]


def _highest_time(meas: "_Measure | None", start, length):
    """A measure's ``highestTime`` when makeRests moves the measures (relative to its start)."""
    if meas is None:
        return length
    h = max([length] + [it[0] + it[1] - start for it in meas.level])
    if meas.voices is None and meas.cached and meas.level and not _has_gap(meas.level, start):
        h = max(h, meas.high - start)
    full = [v for v in meas.voices or () if v]
    if len(full) < 2:
        return max([h] + [it[0] + it[1] - start for v in full for it in v])
    for k, v in enumerate(full):
        end = max(it[0] + it[1] for it in v)
        # makeRests clears a voice's cache only when it inserts a rest (a gap from the bar line on)
        stale = v.cached and not _has_gap(v, start)
        h = max(h, (v.high if stale else end) - start)
    return h


def _has_gap(v: list, start) -> bool:
    reach = start
    for it in sorted(v, key=lambda it: it[0]):
        if it[0] > reach:
            return True
        reach = max(reach, it[0] + it[1])
    return False


def split_elements(ng: NoteGroups, path: str = "<bytes>") -> list[tuple]:
    """Every element music21 10's MIDI import leaves in the score, split at bar lines into tied
    fragments as its ``makeMeasures`` / ``makeVoices`` / ``makeTies`` split them, in the order of
    ``score.flatten()``: ``(sort key, group, offset, duration)`` with offsets and durations in
    1/12 units (``Fraction`` where a bar line falls off that grid), sorted. The sort key is
    (offset, not a grace note, part, container, place in the container): a voice of a measure
    comes before the next voice and before the notes tied into the measure itself."""
    conductor = set(range(int(ng.voices_required.shape[0]))) - set(ng.note_tracks.tolist())
    crossings = 0
    meters = {part: _meter(ng, part, conductor) for part in ng.note_tracks.tolist()}
    # integers throughout: times in 1/(12 scale) quarter, scale making every bar length whole (1 unless
    # a time signature's bar is off the 1/12 grid, e.g. 3/32)
    scale = 1
    for meter in meters.values():
        for _, length in meter:
            scale = math.lcm(scale, length.denominator)
    out = []
    for part, meter in meters.items():
        gs = np.flatnonzero(ng.track == part)
        if not len(gs):
            continue
        items = [[int(ng.offset[g]) * scale, int(ng.duration[g]) * scale, int(g)] for g in gs.tolist()]
        items.sort(key=lambda it: (it[0], it[1] > 0, it[2]))  # makeMeasures' order
        end = max(it[0] + it[1] for it in items)
        bars = _Bars([(o * scale, int(length * scale)) for o, length in meter])
        crossings += sum(bars.index(it[0] + it[1] - 1) - bars.index(it[0]) for it in items if it[1] > 0)
        if crossings > MAX_FRAGMENTS:
            raise MidiError("skip.too_long", path, f"ties: split would cut its notes at more than "
                                                   f"{MAX_FRAGMENTS:,} bar lines")
        measures: dict[int, _Measure] = {}
        for it in items:
            measures.setdefault(bars.index(it[0]), _Measure()).level.append(it)
        # a zero-length object (a meta event: time signature, key, tempo, track name, program)
        # at the very end is stored at the part's end, which measures every measure: music21
        # then holds each measure's highest time in its cache
        meta = ng.meta_offset[(ng.meta_track == part) | (np.isin(ng.meta_track, list(conductor)) &
                                                        (ng.meta_track < part) & ng.meta_conductor)]
        cached = bool(len(meta)) and int(meta.max()) * scale >= end
        for meas in measures.values():
            meas.cached = cached
            meas.high = max(it[0] + it[1] for it in meas.level)
        if ng.voices_required[part]:  # makeVoices in every measure: first fit by highest time
            for meas in measures.values():
                voices: list[_Voice] = []
                for it in meas.level:
                    for v in voices:
                        if v.high <= it[0]:
                            break
                        v.cached = True  # asked for its highest time, and passed over
                    else:
                        v = _Voice()
                        v.high = it[0]
                        voices.append(v)
                    v.append(it)
                    v.high = max(v.high, it[0] + it[1])
                    v.cached = False
                if len(voices) > 1:
                    meas.voices, meas.level = voices, []
                    voices[0].cached = True  # inserting the second voice into the sorted measure measures the first
        keys = sorted(measures)
        i = 0
        while i < len(keys):  # makeTies, measure by measure (a tie may add the next measure)
            m = keys[i]
            i += 1
            cur = measures[m]
            nxt = measures.get(m + 1)
            next_has_voices = nxt is not None and nxt.voices is not None
            bar_end = bars.bar(m + 1)[0]
            for cont in (cur.voices if cur.voices is not None else [cur.level]):
                for it in _sorted(cont):
                    if it[0] + it[1] <= bar_end or it[0] >= bar_end:
                        continue
                    rest = [bar_end, it[0] + it[1] - bar_end, it[2]]
                    it[1] = bar_end - it[0]
                    if ng.size[it[2]] == 1:  # a split Note clears its container's cache
                        if isinstance(cont, _Voice):
                            cont.cached = False
                        else:
                            cur.cached = False
                    if m + 1 not in measures:
                        measures[m + 1] = _Measure()
                        keys.insert(i, m + 1)
                    nxt = measures[m + 1]
                    if next_has_voices:
                        dst = nxt.level if cur.voices is not None else nxt.voices[0]
                    elif cur.voices is not None:  # moveNotesToVoices(next measure), then its first voice
                        if nxt.voices is None:
                            nxt.voices, nxt.level = [_Voice(nxt.level)], []
                        dst = nxt.voices[0]
                    else:
                        dst = nxt.level
                    dst.append(rest)
                    if isinstance(dst, _Voice):
                        dst.cached = False
                    else:  # inserting into a measure measures its voices
                        nxt.cached = False
                        for v in nxt.voices or ():
                            v.cached = True
        # makeRests then moves every measure to where the one before ends (its highest time): a
        # voice's cached highest time from makeVoices outlives the tie that shortened it, and a
        # note tied into a measure with voices is never shortened, so some bars end late. An empty
        # measure is filled with a rest to its bar length: only the others can move what follows.
        late = 0
        shift_of = {}
        for m in keys:
            start, length = bars.bar(m)
            shift_of[m] = late
            late += _highest_time(measures[m], start, length) - length
        for m, meas in measures.items():
            shift = shift_of[m]
            rows = []
            if meas.voices is not None:
                full = [v for v in meas.voices if v]
                if len(full) == 1:  # flattenUnnecessaryVoices
                    meas.level += _sorted(full[0])
                    full = []
                for k, v in enumerate(full):
                    rows += [(k, i, it) for i, it in enumerate(v)]
                rank = len(full) and 1 << 30
            else:
                rank = 0
            rows += [(rank, i, it) for i, it in enumerate(meas.level)]
            out += [((it[0] + shift, it[1] > 0, part, k, i), it[2], it[0] + shift, it[1]) for k, i, it in rows]
    out.sort(key=lambda r: r[0])
    if scale > 1:
        out = [(key, g, Fraction(o, scale), Fraction(d, scale)) for key, g, o, d in out]
    return out


def _split_streams(ng: NoteGroups, config: "NotesConfig", path: str) -> dict:
    rows = [r for r in split_elements(ng, path) if not ng.drum[r[1]]]
    groups = [r[1] for r in rows]
    chord = ng.size[groups] > 1 if rows else np.zeros(0, bool)
    strings = [NORMAL_ORDER[ng.mask[g]] if c else PITCH_NAMES[ng.pitch[g]] for g, c in zip(groups, chord.tolist())]
    offset = [r[2] for r in rows]
    ticks = [int(ng.tick[g]) + round((o - int(ng.offset[g])) * ng.tpq / UNITS) for g, o in zip(groups, offset)]
    return _assemble(ng.track[groups] if rows else np.zeros(0, np.int64), np.array(offset, object),
                     np.array([r[3] for r in rows], object), strings, config, ticks)


def _tokens_of(offset, duration, strings, ticks=None, *, durations: bool, rests: bool):
    out: list[str] = []
    out_ticks: list[int] = []
    end = 0
    ticks = ticks if ticks is not None else [0] * len(strings)
    for o, d, s, t in zip(offset.tolist(), duration.tolist(), strings, ticks):
        if rests and o > end:
            out.append(f"rest_{duration_text(o - end)}" if durations else "rest")
            out_ticks.append(t)
        out.append(f"{s}_{duration_text(d)}" if durations else s)
        out_ticks.append(t)
        end = max(end, o + d)
    return out, out_ticks


def notes_fast(raw: bytes, path: str = "<bytes>", *, config: NotesConfig = NotesConfig()) -> dict[str, list[str]]:
    """Token strings per stream (``"all"`` or ``"trackNN"``), without music21.

    Raises
    ------
    MidiError
        For a file the scanner cannot read (``midi.*`` codes).
    """
    return {k: v[0] for k, v in notes_fast_ticks(raw, path, config=config)[0].items()}


def notes_fast_ticks(raw: bytes, path: str = "<bytes>", *, config: NotesConfig = NotesConfig()):
    """``({stream: (tokens, onset ticks)}, NoteGroups)``: the tick of each token's element (a
    rest takes the tick of the element after it), to find bar lines."""
    ng = note_groups(raw, path, durations=config.durations or config.rests or config.ties == "split")
    if config.ties == "split":
        return _split_streams(ng, config, path), ng
    keep = ~ng.drum
    idx = np.flatnonzero(keep)
    # the recipe's order: offset, track, onset tick, pitches (lowest, set, highest, size)
    order = np.lexsort((ng.size[idx], ng.top[idx], ng.mask[idx], ng.pitch[idx], ng.tick[idx], ng.track[idx],
                        ng.offset[idx]))
    idx = idx[order]
    chord = ng.size[idx] > 1
    strings = [NORMAL_ORDER[m] if c else PITCH_NAMES[p]
               for m, c, p in zip(ng.mask[idx].tolist(), chord.tolist(), ng.pitch[idx].tolist())]
    return _assemble(ng.track[idx], ng.offset[idx], ng.duration[idx], strings, config, ng.tick[idx].tolist()), ng


def _assemble(track, offset, duration, strings, config: NotesConfig, ticks=None) -> dict:
    ticks = ticks if ticks is not None else [0] * len(strings)
    if config.streams == "merged":
        if not len(strings):
            return {}
        return {"all": _tokens_of(offset, duration, strings, ticks, durations=config.durations, rests=config.rests)}
    out = {}
    for t in np.unique(track).tolist():
        m = np.flatnonzero(track == t).tolist()
        out[stream_name(t)] = _tokens_of(offset[m], duration[m], [strings[i] for i in m], [ticks[i] for i in m],
                                         durations=config.durations, rests=config.rests)
    return out


# ---------------------------------------------------------------------------------------------
# reference path


def notes_music21(raw: bytes, path: str = "<bytes>", *, config: NotesConfig = NotesConfig()) -> dict[str, list[str]]:
    """The same token strings through music21 (slow: 0.1-2 files/s)."""
    return notes_music21_many(raw, path, configs=(config,))[0]


def notes_music21_many(raw: bytes, path: str = "<bytes>", *, configs=(NotesConfig(),)) -> list[dict[str, list[str]]]:
    """``notes_music21`` for several configs from one music21 parse."""
    from music21 import midi

    mf = midi.MidiFile()
    mf.readstr(raw)
    tpq = mf.ticksPerQuarterNote
    track_of_part = [i for i, mt in enumerate(mf.tracks) if mt.hasNotes()]
    score = midi.translate.midiFileToStream(mf)
    return [_from_score(score, tpq, track_of_part, c) for c in configs]


def _from_score(score, tpq: int, track_of_part: list[int], config: NotesConfig) -> dict[str, list[str]]:
    from music21 import chord, note, percussion

    if config.ties == "split":  # the recipe itself: every Note and Chord of the flattened score
        parts = [("all", score)] if config.streams == "merged" else \
            [(stream_name(track_of_part[k]), part) for k, part in enumerate(score.parts)]
        out = {}
        for name, s in parts:
            els = [el for el in s.flatten().notes if isinstance(el, (note.Note, chord.Chord))]
            if not els:
                continue
            strings = [str(el.pitch) if isinstance(el, note.Note) else ".".join(str(n) for n in el.normalOrder)
                       for el in els]
            offset = np.array([Fraction(el.offset) * UNITS for el in els], object)
            duration = np.array([Fraction(el.quarterLength) * UNITS for el in els], object)
            out[name] = _tokens_of(offset, duration, strings, durations=config.durations, rests=config.rests)[0]
        return out
    rows = []
    for k, part in enumerate(score.parts):
        chains: dict[tuple, list] = {}  # a tied element's continuations add to its duration
        for el in part.flatten().notes:
            if isinstance(el, (note.Unpitched, percussion.PercussionChord)):
                continue
            if not isinstance(el, (chord.Chord, note.Note)):
                continue
            midis = sorted(p.midi for p in el.pitches)
            tick = el.editorial.get("midiTickStart", -1)
            dur = round(float(el.quarterLength) * UNITS)
            tie = el.tie.type if el.tie is not None else None
            if tie in ("stop", "continue") and (tick, tuple(midis)) in chains:
                chains[tick, tuple(midis)][1] += dur
                continue
            if isinstance(el, chord.Chord):
                s = ".".join(str(x) for x in el.normalOrder)
                mask = sum(1 << pc for pc in {m % 12 for m in midis})
            else:
                s = el.pitch.nameWithOctave
                mask = 1 << (midis[0] % 12)
            # music21's own quantised onset (its Stream.quantize records the error it made):
            # ``el.offset`` after makeMeasures / makeVoices is sometimes moved by bars in voiced
            # measures, a music21 artefact that would scramble the order
            err = el.editorial.get("offsetQuantizationError", 0)
            off = round((Fraction(tick, tpq) - Fraction(err).limit_denominator(1 << 20)) * UNITS) if tick >= 0 \
                else round(float(el.offset) * UNITS)
            key = (off, track_of_part[k], tick, midis[0], mask, midis[-1], len(midis))
            row = [key, dur, s]
            if tie == "start":
                chains[tick, tuple(midis)] = row
            rows.append(row)
    rows.sort(key=lambda r: r[0])
    track = np.array([r[0][1] for r in rows], np.int64)
    offset = np.array([r[0][0] for r in rows], np.int64)
    duration = np.array([r[1] for r in rows], np.int64)
    out = _assemble(track, offset, duration, [r[2] for r in rows], config)
    return {k: v[0] for k, v in out.items()}


def write_tables(path=None) -> None:
    """Regenerate ``_m21_tables.py`` with the installed music21 (about 30 s)."""
    from pathlib import Path

    import music21
    from music21 import chord, pitch

    names = []
    for m in range(128):
        p = pitch.Pitch()
        p.midi = m
        names.append(p.nameWithOctave)
    orders = []
    for mask in range(4096):
        pcs = [k for k in range(12) if mask >> k & 1]
        orders.append(".".join(str(x) for x in chord.Chord(pcs).normalOrder) if pcs else "")
    lines = [
        f'"""Generated from music21 {music21.__version__} by ``pipeline.tokens.notes.write_tables`` (do not edit).',
        "",
        "``PITCH_NAMES[m]``: ``pitch.Pitch(midi=m).nameWithOctave``; ``NORMAL_ORDER[mask]``: the",
        "pitch classes of ``chord.Chord(pcs).normalOrder`` joined by '.', for the pitch-class set",
        '``pcs = [k for k in range(12) if mask >> k & 1]`` (mask 0: the empty string)."""',
        "",
        f"MUSIC21_VERSION = {music21.__version__!r}",
        "",
        "PITCH_NAMES = (",
    ]
    lines += ["    " + " ".join(repr(x) + "," for x in names[i : i + 8]) for i in range(0, 128, 8)]
    lines += [")", "", "NORMAL_ORDER = ("]
    lines += ["    " + " ".join(repr(x) + "," for x in orders[i : i + 8]) for i in range(0, 4096, 8)]
    lines.append(")")
    target = Path(path) if path else Path(__file__).with_name("_m21_tables.py")
    target.write_text("\n".join(lines) + "\n")


def _m21_child(conn, raw, path, config) -> None:  # pragma: no cover - runs in a child process
    import time
    import warnings

    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    try:
        if isinstance(config, NotesConfig):
            result = notes_music21(raw, path, config=config)
        else:
            result = notes_music21_many(raw, path, configs=tuple(config))
        conn.send(("ok", result, time.perf_counter() - t0))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("error", f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}", time.perf_counter() - t0))
    conn.close()


def notes_music21_timed(raw: bytes, path: str = "<bytes>", *, config: NotesConfig = NotesConfig(),
                        timeout: float = 30.0) -> tuple[str, object, float]:
    """``notes_music21`` in a child process capped at ``timeout`` seconds (``config`` may be a
    list of configs: one parse, a list of results).

    Returns ``(status, result, seconds)``: ``("ok", tokens, s)``, ``("error", message, s)`` (music21
    cannot read the file) or ``("timeout", None, timeout)``; ``s`` is the time of the music21 call
    itself, measured in the child (music21 is imported before, in the parent, when it was loaded).
    """
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_m21_child, args=(child, raw, path, config), daemon=True)
    proc.start()
    child.close()
    try:
        if parent.poll(timeout):
            return parent.recv()
        return "timeout", None, timeout
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        parent.close()
