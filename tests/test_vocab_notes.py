"""The seed's music21 recipe: the fast path against music21 itself, hand-made answers, tables."""

from __future__ import annotations


from pathlib import Path

import mido
import pytest

from pipeline.errors import MidiError
from pipeline.tokens import _m21_tables as T
from pipeline.tokens.notes import NotesConfig, notes_fast, notes_music21, notes_music21_timed
from tests_support import smf_from_events

# small real files that music21 parses in well under a second each; between them they have
# format 0 and 1, chords that music21 gathers twice (Macabre Waltz), triplets, ties over bar lines
FAST_FILES = (
    "Midi__bach_format0.mid",
    "midly__Levels.mid",
    "MidiTok__6338816_Etude_No._4.mid",
    "midly__RiverFlowsInYou.mid",
    "MidiTok__6354774_Macabre_Waltz.mid",
)
# a file where music21's makeVoices / makeTies move elements by bars (see notes_music21)
SLOW_FILES = ("3e04a57583fbfcec4e00f9baa9e88701.mid", "pretty-midi__example.mid", "drywetmidi__dannyboy3.mid")
# files music21's own MIDI reader refuses, which our scanner reads (RIFF RMID wrapper, truncated
# or damaged track chunks, a bogus format word): the only differences on ../shared/midi
MUSIC21_REFUSES = {
    "midly__Beethoven.rmi": "badly formatted midi bytes",
    "midly__PiDamaged.mid": "missing leading MTrk",
    "drywetmidi__possible.mid": "cannot handle midi file format",
}

CONFIGS = [NotesConfig(), NotesConfig(streams="tracks", durations=True, rests=True)]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "midi"


def _midi(tracks, tpq=480) -> bytes:
    """tracks: list of (channel, [(start_tick, end_tick, pitch), ...])."""
    out = [[(0, 0, mido.MetaMessage("set_tempo", tempo=500000))]]
    for ch, notes in tracks:
        ev = []
        for s, e, p in notes:
            ev += [(s, 1, mido.Message("note_on", channel=ch, note=p, velocity=90)),
                   (e, 0, mido.Message("note_off", channel=ch, note=p, velocity=0))]
        out.append(ev)
    return smf_from_events(out, tpq=tpq)


def test_tables_are_music21s():
    music21 = pytest.importorskip("music21")
    from music21 import chord, pitch

    assert T.MUSIC21_VERSION == music21.__version__
    for m in range(128):
        p = pitch.Pitch()
        p.midi = m
        assert T.PITCH_NAMES[m] == p.nameWithOctave
    for mask in list(range(1, 4096, 37)) + [0b10010001, 0b100010010000, 4095]:
        pcs = [k for k in range(12) if mask >> k & 1]
        assert T.NORMAL_ORDER[mask] == ".".join(str(x) for x in chord.Chord(pcs).normalOrder)


def test_hand_made_answers():
    raw = _midi([
        (0, [(0, 480, 60), (0, 480, 64), (0, 480, 67),  # C major triad -> normal order 0.4.7
             (480, 960, 63),  # E-flat: music21 spells MIDI 63 with a flat
             (960, 1440, 61), (1920, 2400, 71), (1920, 2400, 76), (1920, 2400, 67)]),  # C#4; E minor 7.11.4 -> 4.7.11
        (9, [(0, 240, 36), (480, 720, 38)]),  # drums: left out
    ])
    assert notes_fast(raw) == {"all": ["0.4.7", "E-4", "C#4", "4.7.11"]}
    cfg = NotesConfig(durations=True, rests=True)
    assert notes_fast(raw, config=cfg) == {"all": ["0.4.7_1", "E-4_1", "C#4_1", "rest_1", "4.7.11_1"]}
    tracks = notes_fast(raw, config=NotesConfig(streams="tracks"))
    assert list(tracks) == ["track01"]  # track 0 holds the tempo, track 2 only drums


def test_hand_made_agrees_with_music21():
    pytest.importorskip("music21")
    # a triplet, a note a little late (within 1/16 of a quarter: same chord), a tie over the bar line
    raw = _midi([(0, [(0, 160, 60), (160, 320, 62), (320, 480, 64), (480, 1200, 65), (500, 1200, 69),
                      (1680, 2400, 72), (1680, 2400, 76)])])
    for cfg in CONFIGS:
        assert notes_fast(raw, config=cfg) == notes_music21(raw, config=cfg)


def test_split_ties_hand_made():
    # 4/4 (music21's default): C4 from beat 3 to beat 6 crosses the bar line at 4; E4 and G4
    # from 0 to 9 cross two (8 is a bar line too); D5 stays inside its bar
    raw = _midi([(0, [(1440, 2880, 60), (2880, 3360, 74)]), (1, [(0, 4320, 64), (0, 4320, 67)])])
    assert notes_fast(raw) == {"all": ["4.7", "C4", "D5"]}
    split = NotesConfig(ties="split", durations=True)
    assert notes_fast(raw, config=split) == {"all": ["4.7_4", "C4_1", "C4_2", "4.7_4", "D5_1", "4.7_1"]}
    assert notes_fast(raw, config=NotesConfig(ties="split", streams="tracks")) == {
        "track01": ["C4", "C4", "D5"], "track02": ["4.7", "4.7", "4.7"]}
    if pytest.importorskip("music21"):
        for cfg in (split, NotesConfig(ties="split", streams="tracks", rests=True)):
            assert notes_fast(raw, config=cfg) == notes_music21(raw, config=cfg)


def test_split_ties_refuses_a_note_of_millions_of_bars():
    # one note of 2**28 - 1 quarters (the largest delta time): 67 million bar lines in 4/4, a
    # damaged-file shape; merge gives its one token, split refuses it in bounded time and memory
    raw = _midi([(0, [(0, 0x0FFFFFFF, 60)])], tpq=1)
    assert notes_fast(raw) == {"all": ["C4"]}
    with pytest.raises(MidiError) as err:
        notes_fast(raw, config=NotesConfig(ties="split"))
    assert err.value.code == "skip.too_long"
    # a sparse file (two notes 10 million bars apart) costs nothing: bars are arithmetic runs
    raw = _midi([(0, [(0, 1, 60), (40_000_000, 40_000_001, 62)])], tpq=1)
    assert notes_fast(raw, config=NotesConfig(ties="split", rests=True)) == {"all": ["C4", "rest", "D4"]}


SPLIT_CONFIGS = (NotesConfig(ties="split"), NotesConfig(ties="split", streams="tracks", durations=True, rests=True),
                 NotesConfig(streams="tracks", durations=True))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.name for p in SHARED.glob("*.mid*")) if SHARED.is_dir() else [])
def test_both_tie_modes_identical_to_music21_on_every_real_file(shared_midi, name):
    """``ties: split`` is the seed's recipe itself (``score.flatten().notes``, one token per tied
    fragment in music21's order); with ``merge`` the tie-merged reference. One music21 parse per
    file, three configs. Files music21's own reader refuses are skipped (see MUSIC21_REFUSES)."""
    pytest.importorskip("music21")
    raw = (shared_midi / name).read_bytes()
    status, refs, _ = notes_music21_timed(raw, name, config=SPLIT_CONFIGS, timeout=240)
    if status == "timeout":
        pytest.skip(f"music21 took more than 240 s on {name}")
    if status == "error":
        pytest.skip(f"music21 cannot read {name}: {refs}")
    for cfg, ref in zip(SPLIT_CONFIGS, refs):
        assert notes_fast(raw, name, config=cfg) == ref, cfg


@pytest.mark.parametrize("name", FAST_FILES)
@pytest.mark.parametrize("cfg", CONFIGS, ids=["merged", "tracks+durations+rests"])
def test_identical_to_music21_on_real_files(shared_midi, name, cfg):
    pytest.importorskip("music21")
    raw = (shared_midi / name).read_bytes()
    status, ref, _ = notes_music21_timed(raw, name, config=cfg, timeout=30)
    if status == "timeout":
        pytest.skip(f"music21 took more than 30 s on {name}")
    assert status == "ok", ref
    fast = notes_fast(raw, name, config=cfg)
    assert fast == ref
    assert sum(map(len, fast.values())) > 50


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_FILES)
def test_identical_to_music21_slow_files(shared_midi, name):
    pytest.importorskip("music21")
    raw = (shared_midi / name).read_bytes()
    cfg = NotesConfig(streams="tracks", durations=True, rests=True)
    status, ref, _ = notes_music21_timed(raw, name, config=cfg, timeout=60)
    if status == "timeout":
        pytest.skip(f"music21 took more than 60 s on {name}")
    assert status == "ok", ref
    assert notes_fast(raw, name, config=cfg) == ref


@pytest.mark.parametrize("name,reason", sorted(MUSIC21_REFUSES.items()))
def test_the_differences_are_files_music21_cannot_read(shared_midi, name, reason):
    pytest.importorskip("music21")
    raw = (shared_midi / name).read_bytes()
    status, message, _ = notes_music21_timed(raw, name, timeout=30)
    assert status == "error" and reason in message
    assert sum(map(len, notes_fast(raw, name).values())) > 0


def test_bad_input_codes():
    with pytest.raises(MidiError) as err:
        notes_fast(b"")
    assert err.value.code == "midi.empty_file"
    with pytest.raises(MidiError) as err:
        notes_fast(b"<!DOCTYPE html><html>404</html>")
    assert err.value.code == "midi.not_midi"


def test_fast_path_scans_as_read_midi_does(shared_midi):
    """The fast path scans through ``pipeline.io.midi.scan_events``, as read_midi does: the same
    notes, and the same error codes for the same bad bytes."""
    from pipeline.io.midi import read_midi

    raw = (shared_midi / "Midi__bach_format0.mid").read_bytes()
    score = read_midi(raw)
    tokens = notes_fast(raw)
    assert score.n_tracks >= 1 and len(score.note_pitch) > 0 and len(tokens) > 0
    with pytest.raises(MidiError) as a:
        read_midi(raw[:10])
    with pytest.raises(MidiError) as b:
        notes_fast(raw[:10])
    assert a.value.code == b.value.code
