"""Reading MIDI files: bytes -> ``MidiScore``, the pretty_midi model of a file in flat arrays.

On every file that mido 1.3 and pretty_midi 0.2 read, ``read_midi`` gives the same notes,
instruments, tempo map, time signatures and end time as ``pretty_midi.PrettyMIDI`` (tests compare
them on real files). Where they fail, it repairs what a robust reader can and says what it
repaired (``MidiScore.repairs``), or raises ``MidiError`` with a stable code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import MidiError
from pipeline.io import smf_kernels as K

#: repair flag -> the words that go into the manifest
REPAIRS = {
    K.F_DATA_OVER_127: "data bytes over 127 clipped to 127",
    K.F_BAD_KEY_SIGNATURE: "invalid key signature dropped",
    K.F_BAD_META: "malformed meta event dropped",
    K.F_TRUNCATED: "file truncated: events before the cut kept",
    K.F_MISSING_TRACKS: "fewer track chunks than the header declares",
    K.F_UNKNOWN_CHUNK: "unknown chunk skipped",
    K.F_RUNNING_STATUS: "data byte without running status skipped",
    K.F_UNDEFINED_STATUS: "undefined status byte skipped",
    K.F_CHUNK_OVERRUN: "event running past its track chunk dropped",
    K.F_LONG_VLQ: "over-long variable-length quantity",
    K.F_HEADER_LENGTH: "header chunk length is not 6",
    K.F_MISNAMED_TRACK: "track chunk with a damaged id read as a track",
    K.F_EMPTY_TRACK: "empty track chunk (no events) read as an empty track",
    K.F_EXTRA_TRACKS: "more track chunks than the header declares: the extra ones read",
}

#: warning code (the text before the colon in ``MidiScore.warnings``): this file's timing differs from
#: pretty_midi's (and LPD's) because mido 1.3 drops the delta time of unknown meta events
WARN_MIDO_META_TIME = "timing.mido_unknown_meta"

#: how far into a file we look for 'MThd' after junk (MacBinary headers and the like)
HEADER_SEARCH_BYTES = 4096


@dataclass(frozen=True)
class MidiScore:
    """A MIDI file as pretty_midi models it. Notes are in pretty_midi's order (by instrument
    creation, then note-off order); times are seconds computed exactly as pretty_midi does."""

    resolution: int
    n_tracks: int
    note_inst: np.ndarray  # (n,) int64 instrument index
    note_pitch: np.ndarray  # (n,) int64
    note_vel: np.ndarray  # (n,) int64
    note_start: np.ndarray  # (n,) float64 seconds
    note_end: np.ndarray  # (n,) float64 seconds
    inst_program: np.ndarray  # (k,) int64
    inst_channel: np.ndarray  # (k,) int64
    inst_track: np.ndarray  # (k,) int64
    inst_name: tuple[str, ...]
    tempo_times: np.ndarray  # (m,) float64: pretty_midi get_tempo_changes()[0]
    tempi: np.ndarray  # (m,) float64 quarter notes per minute
    ts_times: np.ndarray  # (s,) float64, first track only, sorted (stable)
    ts_num: np.ndarray  # (s,) int64
    ts_den: np.ndarray  # (s,) int64
    ks_times: np.ndarray  # key signature times (they count towards the end time)
    end_time: float
    repairs: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def inst_is_drum(self) -> np.ndarray:
        return self.inst_channel == 9


def _find_header(data: np.ndarray, raw: bytes, path: str) -> tuple[int, list[str]]:
    """Where the SMF starts: 0, inside a RIFF RMID wrapper, or after a few junk bytes."""
    if raw[:4] == b"MThd":
        return 0, []
    if raw[:4] == b"RIFF" and raw[8:12] == b"RMID":
        pos = 12
        while pos + 8 <= len(raw):
            cid = raw[pos : pos + 4]
            clen = int.from_bytes(raw[pos + 4 : pos + 8], "little")
            if cid == b"data":
                if raw[pos + 8 : pos + 12] != b"MThd":
                    raise MidiError("midi.bad_riff", path, "RIFF RMID 'data' chunk does not hold a standard MIDI file")
                return pos + 8, ["RIFF RMID wrapper removed"]
            pos += 8 + clen + (clen & 1)
        raise MidiError("midi.bad_riff", path, "RIFF RMID file without a 'data' chunk")
    at = raw.find(b"MThd", 0, HEADER_SEARCH_BYTES)
    if at > 0:
        return at, [f"{at} leading bytes before the MThd header skipped"]
    head = raw[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        raise MidiError("midi.not_midi", path, "this is an HTML page, not a MIDI file (no MThd header)")
    if raw[:4] == b"RIFF":
        raise MidiError("midi.not_midi", path, f"RIFF file of type {raw[8:12]!r}, not RMID")
    raise MidiError("midi.not_midi", path, f"no MThd header: the file starts with {raw[:8]!r}")


def _tick_scales(tempo_ticks: np.ndarray, tempo_values: np.ndarray, resolution: int):
    """pretty_midi ``_load_tempo_changes`` over the first track's tempo events (in file order, so
    ticks never decrease): the last event at tick 0 sets the first scale, and a later event
    starts a segment when its scale differs from the one before it. Returns (start ticks,
    seconds per tick), the same float operations as pretty_midi's loop."""
    ticks = np.asarray(tempo_ticks, np.int64)
    scale = 60.0 / ((6e7 / np.asarray(tempo_values, np.float64)) * resolution)
    first = 60.0 / (120.0 * resolution)
    at_zero = np.flatnonzero(ticks == 0)
    if len(at_zero):
        first = 60.0 / ((6e7 / float(tempo_values[at_zero[-1]])) * resolution)
    later = ticks > 0
    ticks, scale = ticks[later], scale[later]
    prev = np.concatenate(([first], scale[:-1]))
    keep = scale != prev
    return np.concatenate(([0], ticks[keep])), np.concatenate(([first], scale[keep]))


class TickClock:
    """Ticks -> seconds, bit for bit as pretty_midi's ``__tick_to_time`` array, without the array
    (a hostile file with a huge tick count costs nothing)."""

    def __init__(self, start: np.ndarray, scale: np.ndarray) -> None:
        self.start = np.asarray(start, np.int64)
        self.scale = np.asarray(scale, np.float64)
        # base[k] = base[k - 1] + scale[k - 1] * (start[k] - start[k - 1]), summed in order
        base = np.zeros(len(self.start))
        np.cumsum(self.scale[:-1] * np.diff(self.start).astype(np.float64), out=base[1:])
        self.base = base

    def __call__(self, ticks: np.ndarray) -> np.ndarray:
        # compiled: base[seg] + scale[seg] * (ticks - start[seg]) with seg from searchsorted
        return K.ticks_to_seconds(self.start, self.scale, self.base, ticks)


@dataclass(frozen=True)
class SmfEvents:
    """The scanner's raw events in file order (one compiled specialisation serves every caller)."""

    division: int  # ticks per quarter note
    n_tracks: int
    repairs: tuple[str, ...]
    track: np.ndarray  # int32
    tick: np.ndarray  # int64, absolute
    kind: np.ndarray  # int8, smf_kernels.K_*
    channel: np.ndarray  # int8
    a: np.ndarray  # int32
    b: np.ndarray  # int32
    warnings: tuple[str, ...] = ()


def scan_events(raw: bytes, path: str = "<bytes>") -> SmfEvents:
    """Scan MIDI bytes into events, repairing what can be repaired.

    Raises
    ------
    MidiError
        ``midi.empty_file``, ``midi.not_midi``, ``midi.bad_riff``, ``midi.bad_header``,
        ``midi.smpte_division``, ``midi.zero_division``, ``midi.no_tracks``.
    """
    if len(raw) == 0:
        raise MidiError("midi.empty_file", path, "the file is empty (0 bytes)")
    data = np.frombuffer(raw, np.uint8)
    start, repairs = _find_header(data, raw, path)
    cap = len(raw) // 2 + 16  # an event takes at least two bytes: 22 bytes of arrays per event
    arrays = [np.empty(cap, dt) for dt in (np.int32, np.int64, np.int8, np.int8, np.int32, np.int32)]
    info = np.zeros(K.INFO_SIZE, np.int64)
    K.scan_smf(data, start, *arrays, info)
    if info[0] != K.E_NONE:
        raise MidiError("midi.bad_header", path, f"the MThd header is cut short ({len(raw) - start} bytes from it)")
    _fmt, declared, division, tracks_read, flags, ne = (int(x) for x in info[1:7])
    if division < 0:
        fps = -(division >> 8)
        raise MidiError(
            "midi.smpte_division", path,
            f"SMPTE time division ({fps} frames/s, {division & 0xFF} ticks/frame) has no beats to build a piano-roll on",
        )
    if division == 0:
        raise MidiError("midi.zero_division", path, "ticks per quarter note is 0")
    if tracks_read == 0:
        detail = "the header declares no tracks" if declared == 0 else "no track chunk could be read"
        raise MidiError("midi.no_tracks", path, detail)
    repairs += [words for bit, words in REPAIRS.items() if flags & bit]
    warnings = []
    if flags & K.W_MIDO_META_TIME:
        warnings.append(f"{WARN_MIDO_META_TIME}: unknown meta events carry {int(info[7])} ticks that mido 1.3 reads "
                        "as 0, so pretty_midi and LPD put the later events of their track that much earlier; "
                        "the file's own times are kept here")
    return SmfEvents(division, tracks_read, tuple(repairs), *(a[:ne] for a in arrays), warnings=tuple(warnings))


def read_midi(raw: bytes, path: str = "<bytes>") -> MidiScore:
    """Parse MIDI bytes into a ``MidiScore`` (errors: see ``scan_events``)."""
    events = scan_events(raw, path)
    division, tracks_read, repairs = events.division, events.n_tracks, list(events.repairs)
    ev_track, ev_tick, ev_kind, ev_ch, ev_a, ev_b = (events.track, events.tick, events.kind, events.channel,
                                                     events.a, events.b)
    ne = len(ev_tick)

    n_on = int(np.count_nonzero(ev_kind == K.K_NOTE_ON))
    note_inst = np.empty(n_on, np.int64)
    note_pitch = np.empty(n_on, np.int64)
    note_vel = np.empty(n_on, np.int64)
    note_start_t = np.empty(n_on, np.int64)
    note_end_t = np.empty(n_on, np.int64)
    k = 16 * 128 * max(tracks_read, 1)
    k = min(k, n_on + 1)
    inst_program = np.empty(k, np.int64)
    inst_channel = np.empty(k, np.int64)
    inst_track = np.empty(k, np.int64)
    inst_name_ev = np.empty(k, np.int64)
    out = np.zeros(3, np.int64)
    K.pair_notes(ev_track, ev_tick, ev_kind, ev_ch, ev_a, ev_b, ne,
                 note_inst, note_pitch, note_vel, note_start_t, note_end_t,
                 inst_program, inst_channel, inst_track, inst_name_ev, out)
    n_notes, n_inst, max_ctrl = (int(x) for x in out)

    first = ev_track == 0
    meta_elsewhere = (~first) & (ev_kind >= K.K_TEMPO) & (ev_kind <= K.K_KEYSIG)  # tempo, time or key signature
    warnings = list(events.warnings)
    if meta_elsewhere.any():
        warnings.append("tempo, key or time signature events outside the first track ignored (as pretty_midi does)")

    is_tempo = first & (ev_kind == K.K_TEMPO)
    scale_ticks, scales = _tick_scales(ev_tick[is_tempo], ev_a[is_tempo], division)
    clock = TickClock(scale_ticks, scales)
    tempo_times = clock(scale_ticks)
    tempi = 60.0 / (scales * division)

    is_ts = first & (ev_kind == K.K_TIMESIG)
    ts_ticks = ev_tick[is_ts]
    order = np.argsort(ts_ticks, kind="stable")  # ticks map to times monotonically
    ts_times = clock(ts_ticks[order])
    ts_num = ev_a[is_ts][order]
    ts_den = ev_b[is_ts][order]
    is_ks = first & (ev_kind == K.K_KEYSIG)
    ks_ticks = ev_tick[is_ks]

    names = []
    for e in inst_name_ev[:n_inst].tolist():
        if e < 0:
            names.append("")
        else:
            off, ln = int(ev_a[e]), int(ev_b[e])
            names.append(raw[off : off + ln].decode("latin-1"))

    # end time: the largest time among notes, counted control events, meta events, tempo changes
    end_candidates = [ev_tick[(ev_kind == K.K_TEXT)], ts_ticks, ks_ticks, scale_ticks]
    if n_notes:
        end_candidates.append(note_end_t[:n_notes])
    if max_ctrl >= 0:
        end_candidates.append(np.array([max_ctrl], np.int64))
    max_tick = max(int(c.max()) for c in end_candidates if c.size)
    end_time = float(clock(np.array([max_tick]))[0])

    return MidiScore(
        resolution=division,
        n_tracks=tracks_read,
        note_inst=note_inst[:n_notes],
        note_pitch=note_pitch[:n_notes],
        note_vel=note_vel[:n_notes],
        note_start=clock(note_start_t[:n_notes]),
        note_end=clock(note_end_t[:n_notes]),
        inst_program=inst_program[:n_inst].copy(),
        inst_channel=inst_channel[:n_inst].copy(),
        inst_track=inst_track[:n_inst].copy(),
        inst_name=tuple(names),
        tempo_times=tempo_times,
        tempi=tempi,
        ts_times=ts_times,
        ts_num=ts_num,
        ts_den=ts_den,
        ks_times=clock(ks_ticks),
        end_time=end_time,
        repairs=tuple(repairs),
        warnings=tuple(warnings),
    )
