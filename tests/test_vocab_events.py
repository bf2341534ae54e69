"""REMI and MIDI-like: hand-made answers and the lossless round trip tokens -> MIDI -> tokens."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import MidiError, ParamsError
from pipeline.io.midi import read_midi
from pipeline.tokens.events import EventConfig, decode, encode, grid_notes, parse, to_strings
from tests.conftest import make_song

KINDS = ("remi", "midilike")


def tokens_of(raw: bytes, cfg: EventConfig, streams: str = "merged") -> dict[str, list[str]]:
    return {k: to_strings(e.codes, cfg) for k, e in encode(raw, cfg=cfg, streams=streams).items()}


def test_remi_hand_made():
    cfg = EventConfig(kind="remi")
    raw = make_song(0, n_bars=2, tempo_bpm=120)
    toks = tokens_of(raw, cfg)["all"]
    assert toks[:4] == ["Bar", "TimeSig_4/4", "Position_0", "Tempo_120"]
    assert toks.count("Bar") == 2
    # drums first at a step, then programs in order; a drum hit lasts half a beat = 12 steps
    assert toks[4] == "Program_drums" and toks[7] == "Duration_12"
    assert toks[8] == "Program_0"
    # every note is (Program, Pitch, Velocity, Duration): 2 bars x 4 beats x 5 tracks
    assert sum(t.startswith("Pitch_") for t in toks) == 40
    # a quarter note lasts 24 steps, an eighth 12
    assert {t for t in toks if t.startswith("Duration_")} <= {"Duration_12", "Duration_24"}
    assert "Position_24" in toks and "Position_72" in toks


def test_midilike_hand_made():
    cfg = EventConfig(kind="midilike")
    toks = tokens_of(make_song(0, n_bars=2, ts=(3, 4), tempo_bpm=90), cfg)["all"]
    assert toks[:3] == ["Bar", "TimeSig_3/4", "Tempo_90"]
    assert toks.count("Bar") == 2
    assert sum(t.startswith("NoteOn_") for t in toks) == sum(t.startswith("NoteOff_") for t in toks) == 30
    # time shifts never cross a bar line: the steps between two Bars add up to 3 beats
    second = toks.index("Bar", 1)
    assert sum(int(t.split("_")[1]) for t in toks[:second] if t.startswith("TimeShift_")) == 72


def test_velocity_bins_round_trip():
    cfg = EventConfig(velocity_bins=32)
    v = np.arange(1, 128)
    b = cfg.velocity_bin(v)
    assert b.min() == 0 and b.max() == 31
    assert np.array_equal(cfg.velocity_bin(cfg.velocity_values[b]), b)


def test_bad_config_and_input():
    with pytest.raises(ParamsError, match="resolution=0"):
        EventConfig(resolution=0)
    with pytest.raises(MidiError) as err:
        encode(b"", cfg=EventConfig())
    assert err.value.code == "midi.empty_file"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ts", [(4, 4), (3, 4), (6, 8)])
def test_round_trip_hand_made(kind, ts):
    cfg = EventConfig(kind=kind)
    raw = make_song(3, n_bars=3, ts=ts, tempo_bpm=100)
    toks = tokens_of(raw, cfg)["all"]
    assert tokens_of(decode(toks, cfg), cfg)["all"] == toks


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_real_files(shared_midi, kind):
    """Notes (pitch, onset, duration on the grid, velocity bin), programs, drum flags, tempi and
    time signatures come back, and encoding the decoded file gives the same tokens."""
    cfg = EventConfig(kind=kind)
    checked = 0
    for path in sorted(shared_midi.iterdir()):
        if path.suffix.lower() not in (".mid", ".midi", ".rmi"):
            continue
        raw = path.read_bytes()
        try:
            score = read_midi(raw, path.name)
            g = grid_notes(score, cfg)
        except MidiError:
            continue
        toks = tokens_of(raw, cfg)["all"]
        back = decode(toks, cfg)
        assert tokens_of(back, cfg)["all"] == toks, path.name
        score2 = read_midi(back)
        g2 = grid_notes(score2, cfg)
        dur = g.offset - g.onset
        if kind == "remi":
            dur = np.minimum(dur, cfg.max_duration)
        assert np.array_equal(g2.pitch, g.pitch) and np.array_equal(g2.onset, g.onset), path.name
        assert np.array_equal(g2.offset - g2.onset, dur), path.name
        assert np.array_equal(g2.program, g.program), path.name
        assert np.array_equal(cfg.velocity_bin(g2.velocity), cfg.velocity_bin(g.velocity)), path.name
        assert sorted(set(g.program.tolist())) == sorted(
            {-1 if d else p for p, d in zip(score2.inst_program.tolist(), score2.inst_is_drum.tolist())})
        assert g2.ts_bars == g.ts_bars, path.name
        assert np.array_equal(g2.tempo_beats, g.tempo_beats) and np.array_equal(g2.tempo_values, g.tempo_values)
        assert np.array_equal(g2.bar_steps, g.bar_steps), path.name
        checked += 1
    assert checked >= 40


def test_programs_streams(shared_midi):
    cfg = EventConfig()
    raw = (shared_midi / "MidiTok__Funkytown.mid").read_bytes()
    streams = tokens_of(raw, cfg, streams="programs")
    assert "drums" in streams and all(k == "drums" or k.startswith("program") for k in streams)
    n_bars = {k: v.count("Bar") for k, v in streams.items()}
    assert len(set(n_bars.values())) == 1  # every stream has every bar: bars line up across streams
    merged = tokens_of(raw, cfg)["all"]
    assert sum(t.startswith("Pitch_") for t in merged) == sum(
        sum(t.startswith("Pitch_") for t in v) for v in streams.values())


def test_parse_skips_unknown_tokens():
    cfg = EventConfig()
    d = parse(["Bar", "TimeSig_4/4", "UNK", "Position_0", "Program_0", "Pitch_60", "Velocity_64", "Duration_24"], cfg)
    assert d.notes == [(0, 60, 64, 0, 24)]
