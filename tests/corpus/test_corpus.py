"""The built-in corpus: band generator, music21 export, and the ``corpus`` stage."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

from pipeline.config import load_section
from pipeline.corpus import band, music21_works
from pipeline.corpus.music21_works import WORKS, program_for_part
from pipeline.formats.midi import midi_bytes
from pipeline.errors import ParamsError
from pipeline.stages import corpus as stage

SEED = 2026
N_FAST = 24  # songs checked in the fast tests; the slow test checks the default 120


@pytest.fixture(scope="module")
def songs() -> list[bytes]:
    return [midi_bytes(band.song_midi(seed=SEED, index=i)) for i in range(N_FAST)]


def _first_note_tick(midi: mido.MidiFile) -> int:
    firsts = []
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "note_on":
                firsts.append(tick)
                break
    return min(firsts)


def _families(data: bytes) -> set[str]:
    pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    return {band.lpd5_family(ins.program, is_drum=ins.is_drum) for ins in pm.instruments if ins.notes}


# --- band generator -------------------------------------------------------------------------


def test_band_same_seed_gives_identical_bytes(songs):
    again = [midi_bytes(band.song_midi(seed=SEED, index=i)) for i in range(N_FAST)]
    assert again == songs
    other = [midi_bytes(band.song_midi(seed=SEED + 1, index=i)) for i in range(N_FAST)]
    assert all(a != b for a, b in zip(other, songs))
    assert len(set(songs)) == len(songs)


def test_band_song_does_not_depend_on_the_others(songs):
    assert midi_bytes(band.song_midi(seed=SEED, index=N_FAST - 1)) == songs[-1]


def test_every_band_song_uses_all_five_families(songs):
    for index, data in enumerate(songs):
        assert _families(data) == set(band.FAMILIES), index
        midi = mido.MidiFile(file=io.BytesIO(data))
        assert [t.name for t in midi.tracks[1:]] == ["Drums", "Bass", "Guitar", "Piano", "Strings"]
        channels = [{m.channel for m in t if m.type == "note_on"} for t in midi.tracks[1:]]
        assert channels[0] == {9}
        assert all(len(c) == 1 and 9 not in c for c in channels[1:]), index
        programs = {m.program for t in midi.tracks[2:] for m in t if m.type == "program_change"}
        assert [band.lpd5_family(p, is_drum=False) for p in sorted(programs)] == ["piano", "guitar", "bass", "strings"]


def test_band_drums_use_gm_kit_keys(songs):
    keys = {m.note for data in songs for m in mido.MidiFile(file=io.BytesIO(data)).tracks[1] if m.type == "note_on"}
    assert {36, 38, 42, 49} <= keys
    assert keys <= {36, 37, 38, 42, 46, 49, 51, 41, 43, 45, 47, 48, 50}


def test_band_song_shape(songs):
    for data in songs:
        midi = mido.MidiFile(file=io.BytesIO(data))
        conductor = [m for m in midi.tracks[0] if m.is_meta]
        assert conductor[0].type == "track_name"
        bpm = mido.tempo2bpm(next(m.tempo for m in conductor if m.type == "set_tempo"))
        assert 56 <= bpm <= 180  # 70-180, or 80 % of it at the start of an accelerando
        pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
        bars = [b for b in pm.get_downbeats() if b < pm.get_end_time() - 1e-6]
        first_signature = next(m for m in conductor if m.type == "time_signature")
        pickup = (first_signature.numerator, first_signature.denominator) in ((1, 4), (3, 8))
        assert 16 <= len(bars) - pickup <= 48
        assert (_first_note_tick(midi) > 0) == pickup


def test_band_pickup_first_note_one_beat_in():
    found = 0
    for index in range(60):
        rng = np.random.default_rng([SEED, index])
        plan = band.plan_song(rng, seed=SEED, index=index)
        if not plan.pickup_ticks:
            continue
        found += 1
        midi = band.song_midi(seed=SEED, index=index)
        beat = plan.ticks_per_beat * (3 if plan.bars[0].meter == "6/8" else 2) // 2  # dotted quarter in 6/8
        assert _first_note_tick(midi) == plan.pickup_ticks == beat
        signatures = [(m.time, m.numerator, m.denominator) for m in midi.tracks[0] if m.type == "time_signature"]
        assert signatures[0] in ((0, 1, 4), (0, 3, 8))
    assert found >= 3


def test_lpd5_family_by_hand():
    assert band.lpd5_family(33, is_drum=False) == "bass"
    assert band.lpd5_family(0, is_drum=False) == "piano"
    assert band.lpd5_family(25, is_drum=False) == "guitar"
    assert band.lpd5_family(48, is_drum=False) == "strings"
    assert band.lpd5_family(8, is_drum=False) == "strings"
    assert band.lpd5_family(96, is_drum=False) is None
    assert band.lpd5_family(33, is_drum=True) == "drums"


def test_lpd5_family_agrees_with_the_lpd_conversion():
    from pipeline.symbolic.lpd import TRACK_SETS, family_of

    names = [name.lower() for name, _, _ in TRACK_SETS["lpd5"]]
    assert tuple(names) == band.FAMILIES
    for is_drum in (False, True):
        indices = family_of(np.arange(128), np.full(128, is_drum))
        expected = [names[i] if i >= 0 else None for i in indices]
        assert [band.lpd5_family(p, is_drum=is_drum) for p in range(128)] == expected


# --- music21 export -------------------------------------------------------------------------

EXPORTS = {  # corpus path -> programs of its part tracks
    "bach/bwv66.6.mxl": [52, 52, 52, 32],
    "mozart/k156/movement4.mxl": [40, 40, 41, 42],
    "mozart/k545/movement1_exposition.mxl": [0, 0],
}


@pytest.fixture(scope="module")
def exported() -> dict[str, tuple[bytes, bytes]]:
    return {path: (midi_bytes(music21_works.export_work(path)), midi_bytes(music21_works.export_work(path)))
            for path in EXPORTS}


@pytest.mark.parametrize("path", list(EXPORTS))
def test_music21_export_is_multipart_mapped_and_deterministic(exported, path):
    first, second = exported[path]
    assert first == second
    midi = mido.MidiFile(file=io.BytesIO(first))
    assert midi.ticks_per_beat == 480 and len(midi.tracks) == len(EXPORTS[path]) + 1
    conductor = {m.type for m in midi.tracks[0]}
    assert {"set_tempo", "time_signature", "key_signature"} <= conductor
    assert not any(m.type == "note_on" for m in midi.tracks[0])
    programs = [next(m.program for m in t if m.type == "program_change") for t in midi.tracks[1:]]
    assert programs == EXPORTS[path]
    channels = [{m.channel for m in t if not m.is_meta} for t in midi.tracks[1:]]
    assert all(len(c) == 1 for c in channels) and len(set().union(*channels)) == len(channels)
    assert 9 not in set().union(*channels)
    pm = pretty_midi.PrettyMIDI(io.BytesIO(first))
    assert [i.program for i in pm.instruments] == EXPORTS[path]
    assert all(i.notes and not i.is_drum for i in pm.instruments)


def test_music21_ties_chords_grace_notes_tempo_by_hand():
    from music21 import chord, meter, note, stream, tempo, tie

    part = stream.Part()
    part.partName = "Viola"
    part.append(meter.TimeSignature("3/4"))
    part.append(tempo.MetronomeMark(number=60))
    tied_a, tied_b = note.Note("C4", quarterLength=1), note.Note("C4", quarterLength=1)
    tied_a.tie, tied_b.tie = tie.Tie("start"), tie.Tie("stop")
    part.append([tied_a, tied_b, note.Note("D4").getGrace(), chord.Chord(["E4", "G4"], quarterLength=1)])
    midi = music21_works.score_to_midi(stream.Score([part]), name="hand-made")
    pm = pretty_midi.PrettyMIDI(io.BytesIO(midi_bytes(midi)))
    (viola,) = pm.instruments
    assert viola.program == 41
    # 60 bpm: one quarter note = 1 s; the tie makes one 2 s C4, the grace note is skipped
    assert [(n.pitch, round(n.start, 6), round(n.end, 6)) for n in viola.notes] == [(60, 0, 2), (64, 2, 3), (67, 2, 3)]
    assert [(m.numerator, m.denominator) for m in midi.tracks[0] if m.type == "time_signature"] == [(3, 4)]
    assert [m.tempo for m in midi.tracks[0] if m.type == "set_tempo"] == [1_000_000]


def test_music21_pickup_bar_gets_its_own_time_signature():
    from music21 import meter, note, stream

    pickup = stream.Measure(number=0)
    pickup.append([meter.TimeSignature("4/4"), note.Note("G4", quarterLength=1)])
    pickup.paddingLeft = 3.0
    bar = stream.Measure(number=1)
    bar.append(note.Note("C5", quarterLength=4))
    part = stream.Part([pickup, bar])
    part.partName = "Flute"
    midi = music21_works.score_to_midi(stream.Score([part]), name="pickup")
    signatures, tick = [], 0
    for message in midi.tracks[0]:
        tick += message.time
        if message.type == "time_signature":
            signatures.append((tick, message.numerator, message.denominator))
    assert signatures == [(0, 1, 4), (480, 4, 4)]
    assert [m.program for m in midi.tracks[1] if m.type == "program_change"] == [73]
    pm = pretty_midi.PrettyMIDI(io.BytesIO(midi_bytes(midi)))
    assert [(n.pitch, pm.time_to_tick(n.start), pm.time_to_tick(n.end)) for n in pm.instruments[0].notes] == [
        (67, 0, 480), (72, 480, 2400)]


@pytest.mark.parametrize(("name", "instrument", "program", "expected"), [
    ("Violoncello.", None, None, 42), ("Contrabass", None, None, 43), ("Violone e Organo", None, None, 43),
    ("Bassoon", None, None, 70), ("Bass", None, None, 32), ("English Horn", None, None, 69),
    ("Horn in F", None, None, 60), ("Soprano\rOboe 1,2\rViolin1", None, None, 52), ("Bb Clarinet", None, None, 71),
    ("MusicXML Part", "Piano", 0, 0), ("MusicXML Part", "Choir", 52, 52), ("Part 1", None, 71, 71), (None, None, None, 0),
])
def test_program_for_part_table(name, instrument, program, expected):
    assert program_for_part(name, instrument, program) == expected


def test_work_list_is_stable_and_named():
    from music21 import corpus

    assert len(WORKS) >= 55 and len(set(WORKS)) == len(WORKS)
    names = [music21_works.work_filename(p) for p in WORKS]
    assert len(set(names)) == len(names)
    assert music21_works.work_filename("bach/bwv112.5-sc.mxl") == "m21_bach_bwv112_5_sc.mid"
    for path in WORKS:
        assert Path(corpus.getWork(path)).is_file(), path


# --- stage ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"music21_works": -1}, "corpus.music21_works=-1"),
    ({"music21_works": len(WORKS) + 1}, f"corpus.music21_works={len(WORKS) + 1} must be between 0 and {len(WORKS)}"),
    ({"band_songs": -3}, "corpus.band_songs=-3 must be >= 0"),
    ({"seed": -1}, "corpus.seed=-1 must be >= 0"),
    ({"band_songs": True}, "corpus.band_songs=True must be an integer"),
    ({"seed": 1.5}, "corpus.seed=1.5 must be an integer"),
])
def test_params_validation(kwargs, message):
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(".", r"\.")):
        stage.Params(**kwargs)


def test_params_from_yaml(tmp_path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text("corpus:\n  seed: 7\n  music21_works: 55\n  band_songs: 3\n")
    assert load_section(stage.Params, "corpus", params_file) == stage.Params(seed=7, band_songs=3)
    params_file.write_text("corpus:\n  songs: 3\n")
    with pytest.raises(ParamsError, match="unknown key"):
        load_section(stage.Params, "corpus", params_file)
    params_file.write_text("corpus:\n  seed: 7\n  band_songs: 3\n")
    with pytest.raises(ParamsError, match=r"corpus: missing key\(s\) music21_works"):
        load_section(stage.Params, "corpus", params_file)
    assert stage.Params() == stage.Params(seed=2026, music21_works=55, band_songs=120)


def test_stage_import_is_cheap():
    code = "import sys, stages.corpus; print(sorted(m for m in ('music21', 'pretty_midi') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_stage_small_run_is_deterministic_and_clears_stale_files(tmp_path):
    params = stage.Params(seed=5, music21_works=2, band_songs=3)
    summary = stage.run(out=tmp_path / "a", params=params)
    assert "\n" not in summary and "2 music21 works + 3 band songs" in summary
    stale = tmp_path / "a" / "midi" / "band" / "band_0009.mid"
    stale.write_bytes(b"old")
    stage.run(out=tmp_path / "a", params=params)
    stage.run(out=tmp_path / "b", params=params)
    assert not stale.exists()
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert sorted(_tree(tmp_path / "a")) == [
        "corpus.json", "midi/band/band_0000.mid", "midi/band/band_0001.mid", "midi/band/band_0002.mid",
        "midi/music21/m21_bach_bwv1_6.mid", "midi/music21/m21_bach_bwv66_6.mid"]
    manifest = json.loads((tmp_path / "a" / "corpus.json").read_text())
    paths = [f["path"] for f in manifest["files"]]
    assert paths == sorted(paths)
    chorale = next(f for f in manifest["files"] if f["source"] == "music21" and f["corpus_path"] == "bach/bwv66.6.mxl")
    assert chorale["notes"]["strings"] > 0 and chorale["notes"]["bass"] > 0 and chorale["tracks"] == 5
    song = next(f for f in manifest["files"] if f["path"] == "midi/band/band_0002.mid")
    assert song["seed"] == 5 and song["index"] == 2
    assert song["md5"] == hashlib.md5(midi_bytes(band.song_midi(seed=5, index=2))).hexdigest()
    # fewer songs: the extra files go
    stage.run(out=tmp_path / "a", params=stage.Params(seed=5, music21_works=0, band_songs=1))
    assert sorted(_tree(tmp_path / "a")) == ["corpus.json", "midi/band/band_0000.mid"]


@pytest.mark.slow
def test_default_corpus_covers_meters_tempo_and_key_changes(tmp_path):
    summary = stage.run(out=tmp_path, params=stage.Params())
    assert "55 music21 works + 120 band songs" in summary
    files = json.loads((tmp_path / "corpus.json").read_text())["files"]
    works = [f for f in files if f["source"] == "music21"]
    songs = [f for f in files if f["source"] == "band"]
    assert len(works) == 55 and len(songs) == 120
    assert all(f["tracks"] >= 3 for f in works)  # conductor + at least two parts
    assert all(all(f["notes"][family] > 0 for family in band.FAMILIES) for f in songs)
    meters = [[ts for _, ts in f["time_signatures"] if ts not in ("1/4", "3/8")] for f in songs]
    assert {"4/4", "3/4", "6/8"} <= {m[0] for m in meters}
    assert sum(len(set(m)) > 1 for m in meters) >= 3  # meter changes mid-song
    assert sum(len(f["tempos"]) > 1 for f in songs) >= 10  # tempo changes
    assert sum(len(f["tempos"]) >= 5 for f in songs) >= 5  # gradual ramps
    assert sum(len(f["keys"]) > 1 for f in songs) >= 5  # modulations
    assert sum(f["time_signatures"][0][1] in ("1/4", "3/8") for f in songs) >= 5  # pickups
    assert {f["ticks_per_beat"] for f in songs} == set(band.TICKS_PER_BEAT)
