"""LPD piano-roll semantics on hand-made MIDI files, with answers worked out by hand.

Every file here is built in the test (mido, or raw bytes where mido cannot write the damage),
and every expected step, tempo, downbeat and family is a literal number; the comment next to it
shows the arithmetic. The rules (pypianoroll 0.3.0 ``parse_pretty_midi``, with which LPD was
made, and pypianoroll 1.0 ``from_pretty_midi`` for ``semantics="pypianoroll"``):

- beats: pretty_midi ``get_beats`` from the first time signature; ``resolution`` = 24 steps per
  beat; a time t in beat i (bt[i] < t <= bt[i+1]) sits at (i + (t - bt[i]) / (bt[i+1] - bt[i])) * 24;
- "lpd": onset = trunc(that), offset = trunc(that), the note covers steps onset..offset
  *inclusive*; "pypianoroll": onset = round(that), the note covers onset..offset-1;
- a note whose onset follows a step already on for its pitch clears that step (one-step gap),
  within one instrument; instruments then merge into families by maximum velocity;
- drums: the onset step only.

At 120 bpm and 480 ticks per quarter a beat is 0.5 s = 480 ticks = 24 steps, so a tick t on the
grid is at step t / 20 (before the trunc/round of the rules above).
"""

from __future__ import annotations

import io
import time

import mido
import numpy as np
import pretty_midi
import pytest

from hostile_files import vlq as _vlq
from tests_support import smf_from_events

from pipeline.errors import MidiError
from pipeline.io.midi import read_midi
from pipeline.symbolic.bars import to_bars
from pipeline.symbolic.lpd import family_of, to_pianoroll

try:  # tests/ is on sys.path under pytest's default import mode
    from reference_lpd import parse_lpd030
except ImportError:  # pragma: no cover - run as a package
    from tests.reference_lpd import parse_lpd030

TPQ = 480
DRUMS, PIANO, GUITAR, BASS, STRINGS = range(5)


# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------

def build(notes, *, tpq=TPQ, tempos=((0, 500_000),), ts=((0, 4, 4),), end_tick=None) -> bytes:
    """A type-1 SMF: track 0 holds tempos, time signatures and a text event at ``end_tick`` (it
    makes the file, and so the beat grid, end there); then one track per distinct ``track``.

    ``notes``: (track, channel, program, pitch, velocity, on_tick, off_tick).
    """
    meta = [(t, 0, mido.MetaMessage("set_tempo", tempo=v)) for t, v in tempos]
    meta += [(t, 0, mido.MetaMessage("time_signature", numerator=n, denominator=d)) for t, n, d in ts]
    if end_tick is not None:
        meta.append((end_tick, 1, mido.MetaMessage("text", text="end")))
    tracks = [meta]
    for track_id in sorted({n[0] for n in notes}):
        mine = [n for n in notes if n[0] == track_id]
        ev = []
        for ch, prog in sorted({(n[1], n[2]) for n in mine}):
            ev.append((0, 0, mido.Message("program_change", channel=ch, program=prog)))
        for _, ch, _, pitch, vel, on, off in mine:
            ev.append((on, 2, mido.Message("note_on", channel=ch, note=pitch, velocity=vel)))
            ev.append((off, 1, mido.Message("note_off", channel=ch, note=pitch, velocity=64)))
        tracks.append(ev)
    return smf_from_events(tracks, tpq=tpq)  # at one tick: offs (1) before ons (2)


def _chunk(cid: bytes, body: bytes) -> bytes:
    return cid + len(body).to_bytes(4, "big") + body


def raw_smf(track_events: list[list[bytes]], *, tpq=TPQ, fmt=1) -> bytes:
    """An SMF from raw events (each already '<delta vlq><status><data>')."""
    head = _chunk(b"MThd", fmt.to_bytes(2, "big") + len(track_events).to_bytes(2, "big") + tpq.to_bytes(2, "big"))
    return head + b"".join(_chunk(b"MTrk", b"".join(ev)) for ev in track_events)


TEMPO_120 = b"\x00\xff\x51\x03\x07\xa1\x20"  # 0x07A120 = 500000 us per quarter
TS_44 = b"\x00\xff\x58\x04\x04\x02\x18\x08"  # 4/4
EOT = b"\x00\xff\x2f\x00"


def _four_notes() -> list[bytes]:
    """Pitches 60, 62, 64, 65, one quarter (480 ticks = 0x83 0x60) each, back to back, velocity 100."""
    ev = []
    for p in (60, 62, 64, 65):
        ev.append(b"\x00\x90" + bytes([p, 100]))
        ev.append(b"\x83\x60\x80" + bytes([p, 64]))
    return ev


def base_raw() -> bytes:
    return raw_smf([[TEMPO_120, TS_44, EOT], _four_notes() + [EOT]])


def steps(pr, track: int, pitch: int) -> list[int]:
    return np.flatnonzero(pr.dense(track)[:, pitch]).tolist()


def rng(a: int, b: int) -> list[int]:
    """Steps a..b inclusive."""
    return list(range(a, b + 1))


# ---------------------------------------------------------------------------------------------
# hand-made songs (all 120 bpm, 480 ticks per quarter unless said)
# ---------------------------------------------------------------------------------------------

def song_quarter():
    # pitch 60: a quarter at tick 0; pitch 62: ticks 475-955 (off the grid); ends at tick 1920
    return build([(1, 0, 0, 60, 100, 0, 480), (1, 0, 0, 62, 100, 475, 955)], end_tick=1920)


def song_repeated():
    # two quarters of pitch 60 back to back: ticks 0-480 and 480-960
    return build([(1, 0, 0, 60, 100, 0, 480), (1, 0, 0, 60, 100, 480, 960)], end_tick=1920)


FAMILY_PROGRAMS = (0, 7, 24, 33, 8, 40, 48, 80, 105, 96, 112, 120)


def song_families():
    # one track per program, pitch 40 + index; then a drum note (channel 10) on program 40
    notes = [(i + 1, 0, prog, 40 + i, 100, 0, 480) for i, prog in enumerate(FAMILY_PROGRAMS)]
    notes.append((20, 9, 40, 38, 100, 0, 480))
    return build(notes, end_tick=1920)


def song_drums():
    # a drum note 4 beats long (ticks 480-2400) and one at tick 475 (off the grid)
    return build([(1, 9, 0, 36, 100, 480, 2400), (1, 9, 0, 38, 80, 475, 955)], end_tick=3840)


def song_velocities():
    # the same quarter (pitch 60, ticks 0-480) on programs 0 (vel 50) and 1 (vel 90);
    # pitch 64: program 0 vel 90, program 1 vel 50; pitch 67: program 0 ticks 0-480 and
    # program 1 ticks 480-960 (back to back, but in two instruments)
    return build([
        (1, 0, 0, 60, 50, 0, 480), (2, 1, 1, 60, 90, 0, 480),
        (1, 0, 0, 64, 90, 0, 480), (2, 1, 1, 64, 50, 0, 480),
        (1, 0, 0, 67, 70, 0, 480), (2, 1, 1, 67, 70, 480, 960),
    ], end_tick=1920)


def song_tempo_change():
    # 120 bpm, then 60 bpm (1000000 us) at tick 960; a note at ticks 1440-1920; ends at tick 2400
    return build([(1, 0, 0, 60, 100, 1440, 1920)], tempos=((0, 500_000), (960, 1_000_000)), end_tick=2400)


def song_34():
    # 3/4; pitch 60 at ticks 0-480, pitch 62 at ticks 1440-1920 (beat 3); ends at tick 5760 (12 beats)
    return build([(1, 0, 0, 60, 100, 0, 480), (1, 0, 0, 62, 100, 1440, 1920)], ts=((0, 3, 4),), end_tick=5760)


def song_68():
    # 6/8; notes of an eighth's length (360 ticks = half a dotted quarter) at ticks 0, 720, 1440
    notes = [(1, 0, 0, 60, 100, 0, 360), (1, 0, 0, 62, 100, 720, 1080), (1, 0, 0, 64, 100, 1440, 1800)]
    return build(notes, ts=((0, 6, 8),), end_tick=5760)


def song_44_to_34():
    # 4/4 for two bars (8 beats = 3840 ticks), then 3/4 for three bars (9 beats): ends at 8160
    return build([(1, 0, 0, 60, 100, 0, 480)], ts=((0, 4, 4), (3840, 3, 4)), end_tick=8160)


def song_no_ts():
    # no time signature; eighth notes every beat from tick 240 (0.25 s); the first one loud
    notes = [(1, 0, 0, 60, 127 if k == 0 else 64, 240 + 480 * k, 480 + 480 * k) for k in range(8)]
    return build(notes, ts=())


def song_44_bars():
    # 4/4, three bars (12 beats, ends at tick 5760): a sixteenth at tick 0 (pitch 64), an eighth
    # at tick 2400 (pitch 60, bar 1 beat 1), a drum hit at tick 3840 (bar 2)
    return build([
        (1, 0, 0, 64, 100, 0, 120),
        (1, 0, 0, 60, 100, 2400, 2640),
        (2, 9, 0, 36, 100, 3840, 4320),
    ], end_tick=5760)


def song_overlap():
    # one instrument, pitch 60: velocity 60 from tick 0, velocity 100 from tick 240 (no note-off
    # between), both closed by the note-off at tick 480 (pretty_midi closes every open note)
    return build([(1, 0, 0, 60, 60, 0, 480), (1, 0, 0, 60, 100, 240, 480)], end_tick=1920)


SONGS = {
    "quarter": song_quarter,
    "repeated": song_repeated,
    "families": song_families,
    "drums": song_drums,
    "velocities": song_velocities,
    "tempo_change": song_tempo_change,
    "3/4": song_34,
    "6/8": song_68,
    "4/4->3/4": song_44_to_34,
    "no_ts": song_no_ts,
    "4/4_bars": song_44_bars,
    "overlap": song_overlap,
}


def pr_of(song, **kw):
    return to_pianoroll(read_midi(song()), **kw)


# ---------------------------------------------------------------------------------------------
# 1. one quarter note
# ---------------------------------------------------------------------------------------------

def test_quarter_note_lpd_covers_onset_to_offset_inclusive():
    pr = pr_of(song_quarter)
    # beats 0, .5, 1, 1.5 (the file ends at 2.0 s; get_beats drops the beat at the end): 4 * 24
    assert pr.n_steps == 96
    # on = trunc(0 * 24) = 0; off: 0.5 s is beat 1 exactly -> trunc((0 + 0.5/0.5) * 24) = 24;
    # inclusive: steps 0..24 (25 steps); step 26 is free, so no pull-back
    assert steps(pr, PIANO, 60) == rng(0, 24)
    # tick 475 = 0.4947917 s: (0 + 475/480) * 24 = 23.75 -> trunc 23;
    # tick 955: (1 + 475/480) * 24 = 47.75 -> trunc 47: steps 23..47
    assert steps(pr, PIANO, 62) == rng(23, 47)
    assert pr.dense(PIANO)[0, 60] == 100
    assert pr.notes_per_track == (0, 2, 0, 0, 0)


def test_quarter_note_pypianoroll_is_exclusive_and_rounds_onsets():
    pr = pr_of(song_quarter, semantics="pypianoroll")
    assert pr.n_steps == 96
    # on = round(0) = 0, off = 24 exclusive: steps 0..23 (24 steps)
    assert steps(pr, PIANO, 60) == rng(0, 23)
    # on = round(23.75) = 24, off = trunc(47.75) = 47 exclusive: steps 24..46
    assert steps(pr, PIANO, 62) == rng(24, 46)


# ---------------------------------------------------------------------------------------------
# 2. repeated notes: the one-step gap
# ---------------------------------------------------------------------------------------------

def test_repeated_notes_lpd_gap():
    pr = pr_of(song_repeated)
    # note A: 0..24 (off 24 inclusive). note B: on 24, off 48 -> 24..48; before painting B, step
    # 24 - 1 = 23 is on for pitch 60 (A), so it is cleared: A keeps 0..22, step 24 is shared
    assert steps(pr, PIANO, 60) == rng(0, 22) + rng(24, 48)


def test_repeated_notes_pypianoroll_gap():
    pr = pr_of(song_repeated, semantics="pypianoroll")
    # A: 0..23; B: on 24, off 48 exclusive -> 24..47, and step 23 (A's last) cleared
    assert steps(pr, PIANO, 60) == rng(0, 22) + rng(24, 47)


def test_overlapping_notes_in_one_instrument_merge_by_max():
    roll = pr_of(song_overlap).dense(PIANO)[:, 60]
    # A (vel 60): 0..24; B (vel 100): on 240 / 20 = 12 clears step 11, then 12..24 by max(60, 100)
    assert roll[:26].tolist() == [60] * 11 + [0] + [100] * 13 + [0]
    roll = pr_of(song_overlap, semantics="pypianoroll").dense(PIANO)[:, 60]
    # A: 0..23; B: 12..23, step 11 cleared. (pypianoroll 1.0.4 itself *adds* here: 160)
    assert roll[:25].tolist() == [60] * 11 + [0] + [100] * 12 + [0]


# ---------------------------------------------------------------------------------------------
# 3. families
# ---------------------------------------------------------------------------------------------

def test_family_of_lpd5_and_lpd17():
    progs = np.array([0, 7, 24, 33, 8, 40, 48, 80, 105, 96, 112, 120, 40])
    drum = np.array([False] * 12 + [True])
    assert family_of(progs, drum, "lpd5").tolist() == [
        PIANO, PIANO, GUITAR, BASS, STRINGS, STRINGS, STRINGS, STRINGS, STRINGS, -1, -1, -1, DRUMS]
    # LPD-17: program // 8 + 1: 0->1, 7->1, 24->4, 33->5, 8->2, 40->6, 48->7, 80->11, 105->14,
    # 96->13, 112->15, 120->16; drums -> 0
    assert family_of(progs, drum, "lpd17").tolist() == [1, 1, 4, 5, 2, 6, 7, 11, 14, 13, 15, 16, 0]


def test_families_in_a_file_lpd5():
    pr = pr_of(song_families)
    assert pr.track_names == ("Drums", "Piano", "Guitar", "Bass", "Strings")
    # drums 1 (channel 10, program 40); piano: 0, 7; guitar: 24; bass: 33;
    # strings: 8, 40, 48, 80, 105; dropped: 96, 112, 120
    assert pr.notes_per_track == (1, 2, 1, 1, 5)
    where = {pitch: track for track in range(5) for pitch in np.flatnonzero(pr.dense(track).any(axis=0)).tolist()}
    expected = {40: PIANO, 41: PIANO, 42: GUITAR, 43: BASS,
                44: STRINGS, 45: STRINGS, 46: STRINGS, 47: STRINGS, 48: STRINGS, 38: DRUMS}
    assert where == expected  # pitches 49, 50, 51 (programs 96, 112, 120) are nowhere


def test_families_in_a_file_lpd17():
    pr = pr_of(song_families, tracks="lpd17")
    assert len(pr.track_names) == 17
    assert pr.track_names[5] == "Bass" and pr.track_names[16] == "Sound Effects"
    assert pr.track_programs[5] == 32 and pr.track_programs[16] == 120
    assert steps(pr, 5, 43) == rng(0, 24)  # program 33 -> 33 // 8 + 1 = 5
    assert steps(pr, 16, 51) == rng(0, 24)  # program 120 -> 120 // 8 + 1 = 16
    assert steps(pr, 0, 38) == [0]  # the drum note
    # counts per LPD-17 track: 1 drum; 1: programs 0, 7; 2: 8; 4: 24; 5: 33; 6: 40; 7: 48;
    # 11: 80; 13: 96; 14: 105; 15: 112; 16: 120
    assert pr.notes_per_track == (1, 2, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 1, 1, 1, 1)


# ---------------------------------------------------------------------------------------------
# 4. drums
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("semantics", ["lpd", "pypianoroll"])
def test_drums_are_onsets_only(semantics):
    pr = pr_of(song_drums, semantics=semantics)
    assert pr.n_steps == 192  # 8 beats (the file ends at 3840 ticks = 4.0 s)
    # a 4-beat drum note at tick 480 = beat 1: only step 24
    assert steps(pr, DRUMS, 36) == [24]
    assert pr.dense(DRUMS)[24, 36] == 100
    # tick 475: 23.75 -> trunc 23 (lpd) / round 24 (pypianoroll)
    assert steps(pr, DRUMS, 38) == ([23] if semantics == "lpd" else [24])
    assert pr.notes_per_track == (2, 0, 0, 0, 0)


# ---------------------------------------------------------------------------------------------
# 5. velocities merge by maximum
# ---------------------------------------------------------------------------------------------

def test_velocities_merge_by_max_across_instruments():
    pr = pr_of(song_velocities)
    roll = pr.dense(PIANO)
    assert steps(pr, PIANO, 60) == rng(0, 24)
    assert set(roll[0:25, 60].tolist()) == {90}  # max(50, 90)
    assert set(roll[0:25, 64].tolist()) == {90}  # max(90, 50)
    # the gap rule works inside one instrument: program 0's 0..24 and program 1's 24..48 are
    # painted on separate rolls, so step 23 stays on and the union is 0..48
    assert steps(pr, PIANO, 67) == rng(0, 48)
    assert pr.notes_per_track == (0, 6, 0, 0, 0)


# ---------------------------------------------------------------------------------------------
# 6. tempo change
# ---------------------------------------------------------------------------------------------

def test_tempo_change():
    pr = pr_of(song_tempo_change)
    # 120 bpm to tick 960 (= 1.0 s), then 60 bpm: a beat is 1 s. The file ends at tick 2400 =
    # 1.0 + 1440 / 480 * 1.0 = 4.0 s: beats 0, .5, 1, 2, 3 (4.0 is dropped)
    assert pr.beat_times.tolist() == [0.0, 0.5, 1.0, 2.0, 3.0]
    assert pr.n_steps == 120
    # one_more = 2 * 3 - 2 = 4; 60 / diff([0, .5, 1, 2, 3, 4]) = 120, 120, 60, 60, 60, each x24
    assert pr.tempo.tolist() == [120.0] * 48 + [60.0] * 72
    # tick 1440 = 1.0 + 480 / 480 * 1.0 = 2.0 s = beat 3 -> step 3 * 24 = 72;
    # tick 1920 = 3.0 s = beat 4 -> off 96: steps 72..96 (lpd), 72..95 (pypianoroll)
    assert steps(pr, PIANO, 60) == rng(72, 96)
    assert steps(to_pianoroll(read_midi(song_tempo_change()), semantics="pypianoroll"), PIANO, 60) == rng(72, 95)
    assert pr.bar_starts.tolist() == [0, 96]  # 4/4: every 4 beats



def test_zero_length_beat_gets_the_tempo_before_it(recwarn):
    """Two time signatures at one tick put two equal beat times in the grid (pretty_midi's too):
    that beat has no length, and takes the tempo of the beat before it instead of 60 / 0 = inf."""
    m = mido.MetaMessage
    meta = [(0, 0, m("set_tempo", tempo=500000)), (0, 1, m("time_signature", numerator=4, denominator=4)),
            (960, 2, m("time_signature", numerator=3, denominator=4)),
            (960, 3, m("time_signature", numerator=2, denominator=4))]
    notes = [(0, 0, mido.Message("note_on", note=60, velocity=90)), (4000, 0, mido.Message("note_off", note=60))]
    raw = smf_from_events([meta, notes], tpq=480)
    assert pretty_midi.PrettyMIDI(io.BytesIO(raw)).get_beats()[:4].tolist() == [0.0, 0.5, 1.0, 1.0]
    pr = to_pianoroll(read_midi(raw))
    assert pr.beat_times[:4].tolist() == [0.0, 0.5, 1.0, 1.0]
    assert np.isfinite(pr.tempo).all()
    assert pr.tempo[2 * 24 : 3 * 24].tolist() == [120.0] * 24  # the zero-length beat: the tempo before it
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_beat_tempi_fills_zero_length_beats():
    from pipeline.symbolic.lpd import beat_tempi

    assert beat_tempi(np.array([0.0, 0.5, 1.5]), np.array([90.0])).tolist() == [120.0, 60.0]
    assert beat_tempi(np.array([0.0, 0.5, 0.5, 1.5]), np.array([90.0])).tolist() == [120.0, 120.0, 60.0]
    assert beat_tempi(np.array([0.0, 0.0, 1.0]), np.array([90.0])).tolist() == [60.0, 60.0]  # at the start: the next
    assert beat_tempi(np.array([2.0, 2.0, 2.0]), np.array([90.0])).tolist() == [90.0, 90.0]  # none: the first tempo

# ---------------------------------------------------------------------------------------------
# 7. time signatures and downbeats
# ---------------------------------------------------------------------------------------------

def test_three_four_downbeats_every_72_steps():
    pr = pr_of(song_34)
    # 3/4 at 120 qpm: beats of 0.5 s; 6.0 s of file -> 12 beats = 288 steps, bars of 3 * 24 = 72
    assert pr.n_steps == 288
    assert pr.bar_starts.tolist() == [0, 72, 144, 216]
    assert steps(pr, PIANO, 62) == rng(72, 96)  # tick 1440 = beat 3 = 72; tick 1920 = beat 4 = 96


def test_six_eight_downbeats_every_48_steps():
    pr = pr_of(song_68)
    # 6/8: pretty_midi's beat is the dotted quarter, 120 / 3 * 8 / 4 = 80 per minute = 0.75 s =
    # 720 ticks; 6.0 s of file -> beats 0, .75, ..., 5.25: 8 beats = 192 steps; 2 beats per bar
    assert pr.n_steps == 192
    assert pr.beat_times.tolist() == [0.75 * k for k in range(8)]
    assert pr.bar_starts.tolist() == [0, 48, 96, 144]
    # an eighth (360 ticks) is half a beat = 12 steps: tick 0-360 -> 0..12 (inclusive)
    assert steps(pr, PIANO, 60) == rng(0, 12)
    assert steps(pr, PIANO, 62) == rng(24, 36)  # tick 720 = beat 1 -> 24; 1080 = 1.5 beats -> 36
    assert steps(pr, PIANO, 64) == rng(48, 60)  # tick 1440 = beat 2 -> 48 (a downbeat)


def test_four_four_then_three_four():
    pr = pr_of(song_44_to_34)
    # 8 beats of 4/4 (0 .. 3.5 s), 3/4 from tick 3840 = 4.0 s: 9 beats (4.0 .. 8.0), 8.5 dropped
    assert pr.n_steps == 17 * 24
    # bars of 96 steps at 0, 96; then of 72 from step 8 * 24 = 192: 192, 264, 336
    assert pr.bar_starts.tolist() == [0, 96, 192, 264, 336]


def test_no_time_signature_estimates_the_beat_start():
    raw = song_no_ts()
    pr = to_pianoroll(read_midi(raw))
    # candidates are the note starts 0.25, 0.75, ...; score = velocity on the beat grid / beats:
    # 0.25: (127 + 7 * 64) / 8 beats = 71.9; 0.75: 7 * 64 / 7 = 64; ... -> 0.25 wins
    assert pr.first_beat_time == 0.25
    assert pretty_midi.PrettyMIDI(io.BytesIO(raw)).estimate_beat_start() == 0.25  # cross-check
    # beats 0.25, 0.75, ..., 3.75 (the file ends at tick 3840 = 4.0 s): 8 beats
    assert pr.n_steps == 192
    assert pr.bar_starts.tolist() == [0, 96]  # every 4 beats
    # the first note (0.25-0.5 s) is half a beat from the first beat: 0..12
    assert steps(pr, PIANO, 60)[:14] == rng(0, 12) + [24]


# ---------------------------------------------------------------------------------------------
# 8. bars
# ---------------------------------------------------------------------------------------------

def _cells(bt):
    return set(zip(bt.bar.tolist(), bt.step.tolist(), bt.pitch.tolist(), bt.track.tolist()))


def test_bars_of_three_four_are_padded_or_dropped():
    pr = pr_of(song_34)
    padded = to_bars(pr, bar_steps=96)
    assert padded.n_bars == 4 and padded.bars_padded == 4 and padded.bars_cropped == 0
    # pitch 60 at 0..24 -> bar 0; pitch 62 at 72..96 -> bar 1 (starts at 72), steps 0..24
    assert _cells(padded) == {(0, s, 60, PIANO) for s in rng(0, 24)} | {(1, s, 62, PIANO) for s in rng(0, 24)}
    assert padded.dense().shape == (4, 96, 128, 5)
    dropped = to_bars(pr, bar_steps=96, other_meters="drop")
    assert dropped.n_bars == 0 and dropped.bars_dropped == 4 and len(dropped.bar) == 0


@pytest.mark.parametrize("other_meters", ["pad", "drop"])
def test_bars_of_four_four(other_meters):
    pr = pr_of(song_44_bars)
    assert pr.n_steps == 288 and pr.bar_starts.tolist() == [0, 96, 192]
    bt = to_bars(pr, bar_steps=96, other_meters=other_meters)
    assert bt.n_bars == 3 == len(pr.bar_starts)
    assert bt.bars_padded == bt.bars_cropped == bt.bars_dropped == 0
    # pitch 64, ticks 0-120: on 0, off 120 / 20 = 6 -> bar 0 steps 0..6
    # pitch 60, ticks 2400-2640: on 2400 / 20 = 120, off 2640 / 20 = 132 -> bar 1 (96), steps 24..36
    # drum 36 at tick 3840: step 192 -> bar 2, step 0
    expected = ({(0, s, 64, PIANO) for s in rng(0, 6)} | {(1, s, 60, PIANO) for s in rng(24, 36)}
                | {(2, 0, 36, DRUMS)})
    assert _cells(bt) == expected
    assert set(bt.velocity.tolist()) == {100}


# ---------------------------------------------------------------------------------------------
# 9. bad input: one test per code
# ---------------------------------------------------------------------------------------------

def _read_code(raw: bytes) -> str:
    with pytest.raises(MidiError) as ei:
        read_midi(raw, "x.mid")
    assert ei.value.path == "x.mid"
    return ei.value.code


def test_empty_file():
    assert _read_code(b"") == "midi.empty_file"


def test_html_is_not_midi():
    assert _read_code(b"<!DOCTYPE html><html><body>404 Not Found</body></html>") == "midi.not_midi"


def test_riff_wave_is_not_midi():
    fmt = _chunk(b"fmt ", (1).to_bytes(2, "little") * 2 + (44100).to_bytes(4, "little") * 2 + b"\x02\x00\x10\x00")
    body = b"WAVE" + fmt + _chunk(b"data", b"\x00" * 8)
    assert _read_code(b"RIFF" + len(body).to_bytes(4, "little") + body) == "midi.not_midi"


def test_rmid_without_a_data_chunk():
    body = b"RMID" + _chunk(b"LIST", b"INFOjunk")
    assert _read_code(b"RIFF" + len(body).to_bytes(4, "little") + body) == "midi.bad_riff"


def test_rmid_data_chunk_without_an_smf():
    body = b"RMID" + _chunk(b"data", b"not a midi file")
    assert _read_code(b"RIFF" + len(body).to_bytes(4, "little") + body + b"\x00") == "midi.bad_riff"


def test_header_cut_short():
    assert _read_code(b"MThd\x00\x00\x00\x06\x00\x01") == "midi.bad_header"  # 10 bytes


def test_smpte_division():
    raw = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\xe7\x28" + _chunk(b"MTrk", EOT)  # -25 fps, 40 ticks
    assert _read_code(raw) == "midi.smpte_division"


def test_zero_division():
    raw = raw_smf([[TEMPO_120, TS_44, EOT], _four_notes() + [EOT]], tpq=0)
    assert _read_code(raw) == "midi.zero_division"


def test_no_tracks():
    assert _read_code(b"MThd\x00\x00\x00\x06\x00\x01\x00\x00\x01\xe0") == "midi.no_tracks"


def test_no_notes():
    raw = raw_smf([[TEMPO_120, TS_44, EOT]])
    score = read_midi(raw)
    assert len(score.note_pitch) == 0
    with pytest.raises(MidiError) as ei:
        to_pianoroll(score)
    assert ei.value.code == "skip.no_notes"


@pytest.mark.parametrize("with_ts", [True, False])
def test_too_long_is_refused_quickly(with_ts):
    to_pianoroll(read_midi(song_quarter()))  # compile the kernels before timing
    to_pianoroll(read_midi(song_no_ts()))
    # 1 tick per quarter, 1 us per quarter: tick 10_000_000 is at 10 s, 10^7 beats from 0
    # (a time signature at 0, or a note at 0 as the beat-start candidate, starts the grid at 0)
    tempo_1us = b"\x00\xff\x51\x03\x00\x00\x01"
    meta = [tempo_1us] + ([b"\x00\xff\x58\x04\x04\x02\x18\x08"] if with_ts else []) + [EOT]
    notes = [b"\x00\x90\x3c\x64", b"\x01\x80\x3c\x40"]  # a one-tick note at tick 0
    notes += [_vlq(10_000_000 - 1) + b"\x90\x3e\x64", b"\x01\x80\x3e\x40", EOT]
    raw = raw_smf([meta, notes], tpq=1)
    t0 = time.perf_counter()
    score = read_midi(raw)
    assert score.end_time == pytest.approx(10.000001)
    with pytest.raises(MidiError) as ei:
        to_pianoroll(score)  # 10^7 beats * 24 steps * 128 pitches would be 30 GB
    elapsed = time.perf_counter() - t0
    assert ei.value.code == "skip.too_long"
    assert elapsed < 2.0


# ---------------------------------------------------------------------------------------------
# 10. recovery
# ---------------------------------------------------------------------------------------------

BASE_NOTES = [(60, 0.0, 0.5), (62, 0.5, 1.0), (64, 1.0, 1.5), (65, 1.5, 2.0)]


def _notes(score):
    return list(zip(score.note_pitch.tolist(), score.note_start.tolist(), score.note_end.tolist()))


def test_base_raw_file_reads_clean():
    score = read_midi(base_raw())
    assert score.repairs == ()
    assert _notes(score) == BASE_NOTES  # 480 ticks at 500000 us = 0.5 s each
    assert score.note_vel.tolist() == [100] * 4


def test_data_byte_over_127_is_clipped():
    ev = _four_notes()
    ev[0] = b"\x00\x90\x3c\xc8"  # velocity byte 200
    score = read_midi(raw_smf([[TEMPO_120, TS_44, EOT], ev + [EOT]]))
    assert any("clipped" in r for r in score.repairs)
    assert score.note_vel.tolist() == [127, 100, 100, 100]
    assert _notes(score) == BASE_NOTES


def test_bad_key_signature_is_dropped():
    ks = b"\x00\xff\x59\x02\x00\xff"  # C major / mode 255
    score = read_midi(raw_smf([[TEMPO_120, TS_44, ks, EOT], _four_notes() + [EOT]]))
    assert "invalid key signature dropped" in score.repairs
    assert len(score.ks_times) == 0
    assert _notes(score) == BASE_NOTES


def test_truncated_last_track_keeps_notes_before_the_cut():
    raw = base_raw()
    ev = _four_notes()
    # cut after the first two notes (4 events) and the delta + status of the third note-on
    cut = len(raw) - len(b"".join(ev[4:]) + EOT) + 2
    score = read_midi(raw[:cut])
    assert any("truncated" in r for r in score.repairs)
    assert _notes(score) == BASE_NOTES[:2]
    pr = to_pianoroll(score)
    # the file now ends at 1.0 s: beats 0, 0.5 -> 48 steps; pitch 60: 0..24; pitch 62: on 24,
    # off 48 -> 24..48, cut at the last step: 24..47 (different pitches: no gap)
    assert pr.n_steps == 48
    assert steps(pr, PIANO, 60) == rng(0, 24) and steps(pr, PIANO, 62) == rng(24, 47)


def test_rmid_wrapper_gives_the_same_notes():
    smf = base_raw()
    data = _chunk(b"data", smf) + (b"\x00" if len(smf) % 2 else b"")
    body = b"RMID" + data
    riff = b"RIFF" + len(body).to_bytes(4, "little") + body
    bare, wrapped = read_midi(smf), read_midi(riff)
    assert _notes(wrapped) == _notes(bare) == BASE_NOTES
    assert wrapped.note_vel.tolist() == bare.note_vel.tolist()
    assert any("RMID" in r for r in wrapped.repairs)
    a, b = to_pianoroll(bare), to_pianoroll(wrapped)
    assert np.array_equal(a.dense(PIANO), b.dense(PIANO))


# ---------------------------------------------------------------------------------------------
# 11. agreement with pretty_midi (and, as a cross-check, with the pypianoroll oracles)
# ---------------------------------------------------------------------------------------------

ALL_FILES = dict({k: v for k, v in SONGS.items()}, base_raw=base_raw)


@pytest.mark.parametrize("name", list(ALL_FILES))
def test_notes_equal_pretty_midi(name):
    raw = ALL_FILES[name]()
    ours = read_midi(raw)
    pm = pretty_midi.PrettyMIDI(io.BytesIO(raw))
    assert len(ours.inst_program) == len(pm.instruments)
    for k, inst in enumerate(pm.instruments):
        m = ours.note_inst == k
        assert int(ours.inst_program[k]) == inst.program
        assert bool(ours.inst_is_drum[k]) == inst.is_drum
        theirs = [(n.pitch, n.velocity, n.start, n.end) for n in inst.notes]
        mine = list(zip(ours.note_pitch[m].tolist(), ours.note_vel[m].tolist(),
                        ours.note_start[m].tolist(), ours.note_end[m].tolist()))
        assert mine == theirs  # exact float equality
    tc_times, tempi = pm.get_tempo_changes()
    assert ours.tempo_times.tolist() == tc_times.tolist()
    assert ours.tempi.tolist() == tempi.tolist()
    assert ours.end_time == pm.get_end_time()
    assert ours.ts_times.tolist() == [t.time for t in pm.time_signature_changes]


def _merge_by_family(rolls, n_steps):
    """[(roll, program, is_drum)] -> LPD-5 family rolls by maximum."""
    out = np.zeros((5, n_steps, 128), np.uint8)
    for roll, program, is_drum in rolls:
        fam = int(family_of(np.array([program]), np.array([is_drum]), "lpd5")[0])
        if fam >= 0:
            out[fam] = np.maximum(out[fam], roll)
    return out


@pytest.mark.parametrize("name", list(ALL_FILES))
def test_lpd_agrees_with_the_030_restatement(name):
    raw = ALL_FILES[name]()
    pr = to_pianoroll(read_midi(raw))
    tracks, _, _ = parse_lpd030(pretty_midi.PrettyMIDI(io.BytesIO(raw)))
    ref = _merge_by_family(tracks, pr.n_steps)
    for t in range(5):
        assert np.array_equal(pr.dense(t), ref[t]), (name, pr.track_names[t])


_PYPIANOROLL_SUMS = pytest.mark.xfail(
    strict=True, reason="pypianoroll 1.0.4 from_pretty_midi(mode='max') adds overlapping velocities; we take the max")


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=_PYPIANOROLL_SUMS) if n == "overlap" else n for n in ALL_FILES])
def test_pypianoroll_semantics_agree_with_pypianoroll(name):
    pypianoroll = pytest.importorskip("pypianoroll")
    raw = ALL_FILES[name]()
    pr = to_pianoroll(read_midi(raw), semantics="pypianoroll")
    mt = pypianoroll.from_pretty_midi(pretty_midi.PrettyMIDI(io.BytesIO(raw)), resolution=24)
    ref = _merge_by_family([(t.pianoroll, t.program, t.is_drum) for t in mt.tracks], pr.n_steps)
    for t in range(5):
        assert np.array_equal(pr.dense(t), ref[t]), (name, pr.track_names[t])
