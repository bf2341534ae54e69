"""MuseGAN metrics (pipeline.metrics.musegan): hand-computed cases for each metric and definition,
loop-by-loop oracles of both definitions on random phrases, validation at the boundary, speed."""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pytest

from pipeline.errors import ParamsError
from pipeline.metrics import musegan as mg
from pipeline.metrics.musegan import (DEFINITIONS, compute_metrics, drum_pattern, empty_bars, qualified_notes,
                                      tonal_centroid, tonal_distance, used_pitch_classes)

LOW = 24  # MIDI number of pitch index 0 (LPD: 84 pitches, 24..107)
NAMES = ["Drums", "Piano", "Guitar", "Bass", "Strings"]
C_MAJOR = (60, 64, 67)  # C4 E4 G4
FS_MAJOR = (66, 70, 73)  # F#4 A#4 C#5
# C major vs F# major, by hand (pitch classes {0, 4, 7} and {6, 10, 1}, each weighing 1/3):
#   fifths (angle 7*pi/6 per semitone): C 0, E 14pi/3 = 2pi/3, G 49pi/6 = pi/6 -> mean (sin, cos)
#     ((sqrt3 + 1)/6, (sqrt3 + 1)/6); F# major (7pi, 35pi/3, 7pi/6) gives exactly the opposite point;
#   minor thirds (3pi/2): C (0, 1), E (0, 1), G (1, 0) -> (1/3, 2/3); F# major -> (-1/3, -2/3);
#   major thirds (2pi/3, radius .5): both (sqrt3/6, 0).
#   |difference|^2 = 2 ((sqrt3 + 1)/3)^2 + (2/3)^2 + (4/3)^2 = (8 + 4 sqrt3)/9 + 20/9
TD_C_FS = math.sqrt(28 + 4 * math.sqrt(3)) / 3  # 1.9700...


def harte(pc: float) -> np.ndarray:
    """Tonal centroid of one pitch class, straight from Harte et al.'s formula."""
    a, b, c = pc * 7 * math.pi / 6, pc * 3 * math.pi / 2, pc * 2 * math.pi / 3
    return np.array([math.sin(a), math.cos(a), math.sin(b), math.cos(b), .5 * math.sin(c), .5 * math.cos(c)])


def track(bars=1, steps=48, pitches=84, n=None) -> np.ndarray:
    return np.zeros((bars, steps, pitches) if n is None else (n, bars, steps, pitches), bool)


def put(r: np.ndarray, bar: int, start: int, length: int, midi: int) -> None:
    """A note in a one-phrase track (bars, steps, pitches); it may run over bar lines."""
    r.reshape(-1, r.shape[-1])[bar * r.shape[-2] + start:bar * r.shape[-2] + start + length, midi - LOW] = True


def chord(r: np.ndarray, midis, *, bar=0, beats=range(4)) -> None:
    q = r.shape[-2] // 4
    for b in beats:
        for m in midis:
            put(r, bar, b * q, q, m)


def drums(onsets, *, bars=1, steps=48) -> np.ndarray:
    r = track(bars=bars, steps=steps)
    for k, (bar, s) in enumerate(onsets):
        put(r, bar, s, 1, 36 + k)  # one drum pitch per hit: hits never merge into one note
    return r


def test_definitions():
    assert DEFINITIONS == ("corrected", "official")


# --- EB --------------------------------------------------------------------------------


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_eb_fraction_of_empty_bars_over_all_phrases(definition):
    r = track(bars=4, n=2)
    r[0, 0, 5, 40] = True  # one cell fills bar 0 of phrase 0
    r[1, 3, 47, 0] = True  # and bar 3 of phrase 1
    assert empty_bars(r, definition=definition) == 6 / 8
    assert empty_bars(track(bars=4), definition=definition) == 1.0  # all empty: 1, as the official code says
    assert empty_bars(track(bars=4, n=0), definition=definition) is None


# --- UPC -------------------------------------------------------------------------------


def test_upc_c_major_triad_held_for_a_bar():
    r = track(bars=2)
    chord(r, C_MAJOR)
    assert used_pitch_classes(r) == 3.0  # C, E, G; the empty bar 1 is left out
    # official to_chroma: blocks of 7 adjacent pitches; index 36, 40 -> bin 5, 43 -> bin 6
    assert used_pitch_classes(r, definition="official") == 2.0


def test_upc_octaves_are_one_class():
    r = track(bars=2)
    for start, m in ((0, 60), (10, 72), (20, 84)):  # C4 C5 C6
        put(r, 0, start, 4, m)
    put(r, 1, 0, 4, 61)  # C#4 alone
    assert used_pitch_classes(r) == 1.0
    assert used_pitch_classes(r, definition="official") == 2.0  # bins 36//7, 48//7, 60//7 = 5, 6, 8; then 37//7
    assert used_pitch_classes(track(bars=3)) is None
    assert used_pitch_classes(track(bars=3), definition="official") is None


def test_upc_pitch_class_is_taken_from_the_midi_number():
    r = np.zeros((1, 48, 15), bool)  # 15 pitches from A0 = 21: index 0 and 12 are A, index 3 is C1 = 24
    r[0, 0, [0, 12]] = True
    assert used_pitch_classes(r, lowest_pitch=21) == 1.0
    r[0, 1, 3] = True
    assert used_pitch_classes(r, lowest_pitch=21) == 2.0
    chroma = mg._fold(r.any(1), definition="corrected", lowest_pitch=21)[0]
    assert chroma.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0]  # C once, A twice
    with pytest.raises(ValueError, match="multiple of 12 pitches; got 15"):
        used_pitch_classes(r, definition="official")
    with pytest.raises(ParamsError, match="lowest_pitch=100"):
        used_pitch_classes(track(), lowest_pitch=100)


# --- QN --------------------------------------------------------------------------------


def notes_1_2_3_5(steps: int) -> np.ndarray:
    r = track(steps=steps)
    put(r, 0, 0, 1, 60)
    put(r, 0, 0, 2, 62)
    put(r, 0, 10, 3, 64)
    put(r, 0, 20, 5, 60)
    return r


def test_qn_notes_of_1_2_3_5_steps():
    r = notes_1_2_3_5(96)
    assert qualified_notes(r) == 2 / 4  # 3 steps at 96 per bar: the 3 and the 5
    assert qualified_notes(r, definition="official") == 3 / 4  # the official threshold=2
    assert qualified_notes(notes_1_2_3_5(48)) == 3 / 4  # 1.5 steps at 48 per bar: reached at 2
    assert qualified_notes(r, min_steps=5) == 1 / 4
    assert qualified_notes(r, min_steps=1, definition="official") == 1.0
    assert qualified_notes(track()) is None
    assert qualified_notes(track(), definition="official") is None


def test_qn_notes_run_over_bar_lines_and_are_pooled():
    r = track(bars=2, steps=96)
    put(r, 0, 94, 3, 60)  # 2 steps in bar 0, 1 in bar 1
    assert qualified_notes(r) == 1.0  # one note of 3 steps
    assert qualified_notes(r, definition="official") == 0.5  # cut: a 2-step note (qualified) and a 1-step one
    r = track(bars=2, steps=96)
    for m in C_MAJOR:
        put(r, 0, 0, 4, m)
    put(r, 1, 0, 1, 60)
    assert qualified_notes(r) == 3 / 4
    assert qualified_notes(r, definition="official") == 0.5  # mean of 3/3 and 0/1


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "3"])
def test_qn_bad_min_steps(bad):
    with pytest.raises(ParamsError, match=f"min_steps={bad!r}"):
        qualified_notes(track(), min_steps=bad)


# --- DP --------------------------------------------------------------------------------


def test_dp_three_of_four_onsets_on_the_16th_grid():
    r = drums([(0, 0), (0, 3), (0, 6), (0, 4)])  # 48 steps per bar: a 16th every 3 steps; 4 is off
    assert drum_pattern(r) == 0.75  # at 48 steps no off-grid step is within 1/96 bar: no tolerance
    # official at 48: np.tile([1, .3, 0, 0, 0, .3], 8), an 8th-note grid; over onsets at 0, 3, 4, 6 the
    # 6 phases score 2, .6, .3, 1.3, 1.3, .9 -> best 2 of 4
    assert drum_pattern(r, definition="official") == pytest.approx(0.5)


def test_dp_tolerance_one_step_off_at_96_steps():
    r = drums([(0, 0), (0, 6), (0, 12), (0, 13)], steps=96)
    assert drum_pattern(r) == pytest.approx(3.3 / 4)
    assert drum_pattern(r, tolerance=0.0) == 0.75
    assert drum_pattern(r, tolerance=1.0) == 1.0
    assert drum_pattern(r, definition="official") == pytest.approx(3.3 / 4)
    assert drum_pattern(r, definition="official", tolerance=0.0) == 0.75


def test_dp_official_takes_the_best_phase_corrected_anchors_the_grid():
    r = drums([(0, s) for s in (3, 9, 15, 21)], steps=96)  # all halfway between 16th notes
    assert drum_pattern(r) == 0.0
    assert drum_pattern(r, definition="official") == 1.0  # np.roll(drum_filter, 3) fits them all


def test_dp_a_drum_note_held_over_the_bar_line_is_one_onset():
    r = track(bars=2)
    put(r, 0, 0, 51, 36)  # from bar 0 step 0 to bar 1 step 2
    put(r, 1, 4, 1, 38)  # off both grids
    assert drum_pattern(r) == 0.5
    # official: bar 0 1/1; bar 1 cut, so the held note is struck again at step 0: best phase 1 of 2
    assert drum_pattern(r, definition="official") == 0.75
    assert drum_pattern(track(bars=2)) is None
    assert drum_pattern(track(bars=2), definition="official") is None


def test_dp_grids_need_their_steps_and_a_tolerance_from_0_to_1():
    with pytest.raises(ValueError, match="multiple of 16 steps per bar; got 36"):
        drum_pattern(track(steps=36))
    with pytest.raises(ValueError, match="multiple of 6 steps per bar; got 64"):
        drum_pattern(track(steps=64), definition="official")
    for bad in (1.5, -0.1, "0.3", True):
        with pytest.raises(ParamsError, match=f"tolerance={bad!r}"):
            drum_pattern(track(), tolerance=bad)


# --- TD --------------------------------------------------------------------------------


def test_tonal_centroid_by_hand():
    c = np.zeros(12)
    c[0] = 2.0  # C alone: fifths angle 0, minor thirds 0, major thirds 0
    assert tonal_centroid(c) == pytest.approx([0, 1, 0, 1, 0, 0.5])
    chroma = np.zeros((2, 12))
    chroma[0, [0, 4, 7]] = 1
    chroma[1, [6, 10, 1]] = 5  # the weights are L1-normalised
    z = tonal_centroid(chroma)
    assert z[0] == pytest.approx([(math.sqrt(3) + 1) / 6] * 2 + [1 / 3, 2 / 3, math.sqrt(3) / 6, 0], abs=1e-12)
    assert np.linalg.norm(z[0] - z[1]) == pytest.approx(TD_C_FS, rel=1e-12)
    assert np.isnan(tonal_centroid(np.zeros(12))).all()
    with pytest.raises(ValueError, match=r"\(\.\.\., 12\)"):
        tonal_centroid(np.ones(11))


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_td_of_identical_tracks_is_zero(definition):
    a = track()
    chord(a, C_MAJOR)
    assert tonal_distance(a, a.copy(), definition=definition) == 0.0


def test_td_c_major_against_f_sharp_major():
    a, b = track(), track()
    chord(a, C_MAJOR)
    chord(b, FS_MAJOR)
    assert tonal_distance(a, b) == pytest.approx(TD_C_FS, rel=1e-12)
    assert TD_C_FS == pytest.approx(np.linalg.norm(sum(map(harte, (0, 4, 7))) / 3 - sum(map(harte, (6, 10, 1))) / 3))
    # official chroma bins (index // 7): C major -> bins 5, 5, 6; F# major (index 42, 46, 49) -> 6, 6, 7
    official = np.linalg.norm((2 * harte(5) + harte(6)) / 3 - (2 * harte(6) + harte(7)) / 3)
    assert tonal_distance(a, b, definition="official") == pytest.approx(official, rel=1e-6)  # float32 matrix
    assert abs(official - TD_C_FS) > 0.1


def test_td_silent_beats_are_skipped_one_by_one_official_drops_the_bar():
    a, b = track(bars=2), track(bars=2)
    chord(a, C_MAJOR, bar=0)
    chord(a, C_MAJOR, bar=1)
    chord(b, FS_MAJOR, bar=0, beats=range(3))  # beat 4 of bar 0 is silent
    chord(b, C_MAJOR, bar=1)
    assert tonal_distance(a, b) == pytest.approx(3 * TD_C_FS / 7)  # 3 beats at TD_C_FS, 4 at 0
    assert tonal_distance(a, b, definition="official") == 0.0  # bar 0 is NaN and dropped: only bar 1
    for d in DEFINITIONS:
        assert tonal_distance(a, track(bars=2), definition=d) is None


def test_td_validation():
    with pytest.raises(ValueError, match="must match"):
        tonal_distance(track(), track(bars=2))
    with pytest.raises(ValueError, match="beats_per_bar=5"):
        tonal_distance(track(), track(), beats_per_bar=5)
    with pytest.raises(ParamsError, match="beats_per_bar=0"):
        tonal_distance(track(), track(), beats_per_bar=0)


# --- compute_metrics -------------------------------------------------------------------


def small_phrase() -> np.ndarray:
    """2 bars at 48 steps, 5 tracks; everything in bar 0, the Bass silent."""
    parts = [drums([(0, 0), (0, 3), (0, 6), (0, 4)], bars=2)]
    for midis in (C_MAJOR, C_MAJOR, None, FS_MAJOR):
        r = track(bars=2)
        if midis:
            chord(r, midis)
        parts.append(r)
    return np.stack(parts, axis=-1)


def assert_same(got: dict, want: dict, rel: float = 1e-6) -> None:
    assert list(got) == list(want)
    for metric in want:
        assert list(got[metric]) == list(want[metric]), metric
        for k, v in want[metric].items():
            assert (got[metric][k] is None) if v is None else got[metric][k] == pytest.approx(v, rel=rel, abs=1e-12), (metric, k)


def test_compute_metrics_by_hand_both_definitions():
    eb = {"Drums": 0.5, "Piano": 0.5, "Guitar": 0.5, "Bass": 1.0, "Strings": 0.5}
    corrected = {
        "EB": eb,
        "UPC": {"Drums": None, "Piano": 3.0, "Guitar": 3.0, "Bass": None, "Strings": 3.0},
        "QN": {"Drums": None, "Piano": 1.0, "Guitar": 1.0, "Bass": None, "Strings": 1.0},  # 3 notes of 48 steps
        "DP": {"Drums": 0.75},
        "TD": {"Piano-Guitar": 0.0, "Piano-Bass": None, "Piano-Strings": TD_C_FS, "Guitar-Bass": None,
               "Guitar-Strings": TD_C_FS, "Bass-Strings": None},
    }
    x = small_phrase()
    assert_same(compute_metrics(x, track_names=NAMES, drum_track="Drums", steps_per_bar=48), corrected)
    td_off = np.linalg.norm((2 * harte(5) + harte(6)) / 3 - (2 * harte(6) + harte(7)) / 3)
    official = {
        "EB": eb,
        "UPC": {"Drums": None, "Piano": 2.0, "Guitar": 2.0, "Bass": None, "Strings": 2.0},
        "QN": {"Drums": None, "Piano": 1.0, "Guitar": 1.0, "Bass": None, "Strings": 1.0},
        "DP": {"Drums": 0.5},
        "TD": {"Piano-Guitar": 0.0, "Piano-Bass": None, "Piano-Strings": td_off, "Guitar-Bass": None,
               "Guitar-Strings": td_off, "Bass-Strings": None},
    }
    got = compute_metrics(x, track_names=NAMES, drum_track="Drums", steps_per_bar=48, definition="official")
    assert_same(got, official)


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_compute_metrics_input_forms_agree(definition):
    x = small_phrase()
    kw = dict(track_names=NAMES, drum_track="Drums", steps_per_bar=48, definition=definition)
    one = compute_metrics(x, **kw)
    assert compute_metrics(x[None], **kw) == one  # a 4-D array is one phrase
    assert compute_metrics(np.stack([x, x]), **kw) == one  # the same phrase twice: the same means
    assert compute_metrics(x.astype(np.uint8), **kw) == one
    real = np.where(x, 0.7, -0.3)
    real[0, 40, 10, 2] = 0.0  # exactly 0 is silent
    assert compute_metrics(real, **kw) == one
    real[0, 40, 10, 2] = 1e-6  # any positive value sounds
    assert compute_metrics(real, **kw) != one


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_compute_metrics_on_silence_is_json(definition):
    x = np.zeros((3, 4, 48, 84, 5), np.float32)
    got = compute_metrics(x, track_names=NAMES, drum_track="Drums", steps_per_bar=48, definition=definition)
    assert got["EB"] == dict.fromkeys(NAMES, 1.0)
    assert all(v is None for m in ("UPC", "QN", "DP", "TD") for v in got[m].values())
    assert list(got["TD"]) == ["Piano-Guitar", "Piano-Bass", "Piano-Strings", "Guitar-Bass", "Guitar-Strings",
                               "Bass-Strings"]
    assert json.loads(json.dumps(got, allow_nan=False)) == got


def test_compute_metrics_without_a_drum_track():
    x = small_phrase()[..., 1:3]
    got = compute_metrics(x, track_names=["Piano", "Guitar"], drum_track=None, steps_per_bar=48)
    assert got["DP"] == {} and got["TD"] == {"Piano-Guitar": 0.0} and got["UPC"] == {"Piano": 3.0, "Guitar": 3.0}


@pytest.mark.parametrize("fn", [
    lambda d: compute_metrics(small_phrase(), track_names=NAMES, drum_track="Drums", steps_per_bar=48, definition=d),
    lambda d: empty_bars(track(), definition=d),
    lambda d: used_pitch_classes(track(), definition=d),
    lambda d: qualified_notes(track(), definition=d),
    lambda d: drum_pattern(track(), definition=d),
    lambda d: tonal_distance(track(), track(), definition=d),
])
def test_a_bad_definition_is_named(fn):
    with pytest.raises(ParamsError, match="definition='paper'"):
        fn("paper")
    with pytest.raises(ParamsError, match="definition=None"):
        fn(None)


@pytest.mark.parametrize("change, message", [
    (dict(track_names=NAMES[:4]), "has 4 names but x has 5 tracks"),
    (dict(track_names="Drums"), "track_names='Drums'"),
    (dict(track_names=["A", "A", "B", "C", "D"], drum_track="A"), "duplicates"),
    (dict(drum_track="Cowbell"), "drum_track='Cowbell'"),
    (dict(steps_per_bar=96), "steps_per_bar=96 but x has 48"),
    (dict(steps_per_bar=0), "steps_per_bar=0"),
    (dict(steps_per_bar=40), "steps_per_bar=40 must be a multiple of 16"),
    (dict(steps_per_bar=42), "steps_per_bar=42 must be a multiple of 4"),
    (dict(steps_per_bar=52, definition="official"), "steps_per_bar=52 must be a multiple of 6"),
    (dict(qn_min_steps=0), "qn_min_steps=0"),
    (dict(dp_tolerance=2), "dp_tolerance=2"),
    (dict(lowest_pitch=60), "lowest_pitch=60"),
])
def test_compute_metrics_bad_options(change, message):
    kw = dict(track_names=NAMES, drum_track="Drums", steps_per_bar=48) | change
    with pytest.raises(ParamsError, match=message):
        compute_metrics(small_phrase(), **kw)


def test_compute_metrics_bad_arrays():
    kw = dict(track_names=NAMES, drum_track="Drums", steps_per_bar=48)
    with pytest.raises(ValueError, match=r"shape \(48, 84, 5\)"):
        compute_metrics(np.zeros((48, 84, 5)), **kw)
    x = small_phrase().astype(float)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        compute_metrics(x, **kw)
    with pytest.raises(ParamsError, match="needs a multiple of 12 pitches"):
        compute_metrics(np.zeros((1, 48, 80, 5)), definition="official", lowest_pitch=24, **kw)


# --- oracles: each definition written out bar by bar, note by note, on random phrases ----


def random_phrases(seed: int, n: int, bars: int, steps: int, pitches: int = 84, tracks: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, bars * steps, pitches, tracks)) < 0.004
    for k in range(1, 7):  # stretch onsets into notes of various lengths
        x[:, k:] |= x[:, :-k] & (rng.random(x[:, k:].shape) < 0.5)
    x = x.reshape(n, bars, steps, pitches, tracks)
    beats = x.reshape(n, bars, 4, steps // 4, pitches, tracks)
    beats &= ~(rng.random((n, bars, 4, 1, 1, tracks)) < 0.2)  # silent beats
    x &= ~(rng.random((n, bars, 1, 1, tracks)) < 0.2)  # silent bars
    return x


def runs(column) -> list[int]:
    out, run = [], 0
    for on in list(column) + [False]:
        if on:
            run += 1
        elif run:
            out.append(run)
            run = 0
    return out


def mean_or_none(values):
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else None


def official_oracle(x, *, drum="Drums", tol=0.3, threshold=2):
    n, bars, steps, pitches, _ = x.shape
    tm = np.array([harte(pc) for pc in range(12)], np.float32).astype(float).T  # (6, 12), float32 like v1
    period = [1.0, tol, 0.0, 0.0, 0.0, tol]
    cols = {m: {t: [] for t in NAMES} for m in ("EB", "UPC", "QN", "DP")}
    pairs = [(a, b) for a, b in combinations(NAMES, 2) if drum not in (a, b)]
    td = {f"{a}-{b}": [] for a, b in pairs}
    for bar in x.reshape(n * bars, steps, pitches, len(NAMES)):
        for t, name in enumerate(NAMES):
            roll = bar[..., t]
            empty = not roll.any()
            cols["EB"][name].append(float(empty))
            if empty:
                continue
            if name == drum:
                hits = [sum(roll[s, p] and (s == 0 or not roll[s - 1, p]) for p in range(pitches))
                        for s in range(steps)]
                best = max(sum(h * period[(s - phase) % 6] for s, h in enumerate(hits)) for phase in range(6))
                cols["DP"][name].append(best / sum(hits))
            else:
                blocks = [roll[:, 7 * k:7 * k + 7].any() for k in range(12)]  # to_chroma as written
                cols["UPC"][name].append(float(sum(blocks)))
                lengths = [length for p in range(pitches) for length in runs(roll[:, p])]
                cols["QN"][name].append(sum(length >= threshold for length in lengths) / len(lengths))
        for a, b in pairs:
            dists = []
            for beat in range(4):
                cells = bar[beat * steps // 4:(beat + 1) * steps // 4]
                ca = cells[..., NAMES.index(a)].sum(0).reshape(12, 7).sum(1).astype(float)
                cb = cells[..., NAMES.index(b)].sum(0).reshape(12, 7).sum(1).astype(float)
                if ca.sum() == 0 or cb.sum() == 0:
                    dists.append(math.nan)
                else:
                    dists.append(float(np.linalg.norm(tm @ (ca / ca.sum()) - tm @ (cb / cb.sum()))))
            td[f"{a}-{b}"].append(math.nan if any(map(math.isnan, dists)) else sum(dists) / 4)
    out = {m: {t: mean_or_none(v) for t, v in cols[m].items()} for m in cols}
    out["UPC"][drum] = out["QN"][drum] = None
    out["DP"] = {drum: out["DP"][drum]}
    out["TD"] = {k: mean_or_none(v) for k, v in td.items()}
    return out


def corrected_oracle(x, *, drum="Drums", tol=0.3, threshold=None):
    n, bars, steps, pitches, _ = x.shape
    threshold = threshold or math.ceil(3 * steps / 96)
    grid = [j * steps // 16 for j in range(17)]  # 16th notes, and the next downbeat
    out = {m: {} for m in ("EB", "UPC", "QN", "DP", "TD")}
    for t, name in enumerate(NAMES):
        phrases = x[..., t]
        filled = [ph[bar].any() for ph in phrases for bar in range(bars)]
        out["EB"][name] = filled.count(False) / len(filled)
        if name == drum:
            credit = []
            for ph in phrases.reshape(n, bars * steps, pitches):
                for p in range(pitches):
                    for s in range(bars * steps):
                        if ph[s, p] and (s == 0 or not ph[s - 1, p]):
                            off = min(abs(s % steps - g) for g in grid)  # steps to the nearest grid point
                            credit.append(1.0 if off == 0 else tol if off / steps <= 1 / 96 else 0.0)
            out["DP"][name] = sum(credit) / len(credit) if credit else None
            out["UPC"][name] = out["QN"][name] = None
            continue
        classes = [len({(LOW + p) % 12 for p in range(pitches) if ph[bar][:, p].any()})
                   for ph in phrases for bar in range(bars) if ph[bar].any()]
        out["UPC"][name] = sum(classes) / len(classes) if classes else None
        lengths = [length for ph in phrases.reshape(n, bars * steps, pitches) for p in range(pitches)
                   for length in runs(ph[:, p])]
        out["QN"][name] = sum(length >= threshold for length in lengths) / len(lengths) if lengths else None
    melodic = [t for t in NAMES if t != drum]
    for a, b in combinations(melodic, 2):
        dists = []
        for ph in x.reshape(n * bars * 4, steps // 4, pitches, len(NAMES)):
            za, zb = [[harte((LOW + p) % 12) * ph[:, p, NAMES.index(k)].sum() for p in range(pitches)]
                      for k in (a, b)]
            wa, wb = ph[..., NAMES.index(a)].sum(), ph[..., NAMES.index(b)].sum()
            if wa and wb:
                dists.append(float(np.linalg.norm(sum(za) / wa - sum(zb) / wb)))
        out["TD"][f"{a}-{b}"] = sum(dists) / len(dists) if dists else None
    return out


@pytest.mark.parametrize("steps", [48, 96])
def test_official_matches_the_bar_by_bar_oracle(steps):
    x = random_phrases(1, n=2, bars=4, steps=steps)
    got = compute_metrics(x, track_names=NAMES, drum_track="Drums", steps_per_bar=steps, definition="official")
    assert_same(got, official_oracle(x), rel=1e-12)
    assert got["DP"]["Drums"] is not None and got["TD"]["Piano-Guitar"] is not None


@pytest.mark.parametrize("steps", [48, 96])
def test_corrected_matches_the_note_by_note_oracle(steps):
    x = random_phrases(2, n=2, bars=4, steps=steps)
    got = compute_metrics(x, track_names=NAMES, drum_track="Drums", steps_per_bar=steps)
    assert_same(got, corrected_oracle(x), rel=1e-12)
    assert got != compute_metrics(x, track_names=NAMES, drum_track="Drums", steps_per_bar=steps,
                                  definition="official")


# --- the official resolution: 48-step phrases held onto the 96-step grid -----------------


def test_hold_steps_is_the_same_music_on_the_96_step_grid():
    # by hand: notes of 1, 2, 3 and 5 steps at 48 steps per bar are notes of 2, 4, 6 and 10 steps at 96,
    # starting at twice their step; a note over the bar line stays one note over the bar line
    x48, x96 = track(bars=2), track(bars=2, steps=96)
    for start, length, midi in ((0, 1, 60), (4, 2, 62), (10, 3, 64), (20, 5, 65), (46, 4, 67)):
        put(x48, 0, start, length, midi)
        put(x96, 0, 2 * start, 2 * length, midi)
    assert np.array_equal(mg.hold_steps(x48[None, ..., None], 48)[..., 0], x96[None])
    assert np.array_equal(mg.hold_steps(x48[..., None], 48, 96)[..., 0], x96)  # one phrase
    same = x96[None, ..., None]
    assert mg.hold_steps(same, 96) is same  # at 96 nothing changes
    # official QN depends on the grid (threshold 2 steps, notes cut at the bar line): at 48 steps bar 0 holds
    # 1, 2, 3, 5 and 2 steps (4 of 5 qualified) and bar 1 the 2-step rest of the last note; at 96 all qualify
    assert qualified_notes(x48, definition="official") == pytest.approx((4 / 5 + 1) / 2)
    assert qualified_notes(x96, definition="official") == 1.0
    # corrected QN does not: a 32nd note is 2 steps at 48 and 3 at 96 (the 1-step note fails both)
    assert qualified_notes(x48) == qualified_notes(x96) == 4 / 5


def test_official_metrics_of_held_phrases_are_the_96_step_values():
    # drums at 48 steps: onsets 0, 3, 6, 12 (all on the 16th-note grid, 3 steps at 48)
    d48 = drums([(0, 0), (0, 3), (0, 6), (0, 12)])
    d96 = drums([(0, 0), (0, 6), (0, 12), (0, 24)], steps=96)
    # the official 6-step filter is the 8th-note grid at 48 (onset 3 off it: 3/4) and the 16th at 96 (4/4)
    assert drum_pattern(d48, definition="official") == pytest.approx(3 / 4)
    assert drum_pattern(d96, definition="official") == 1.0
    piano = track()
    chord(piano, C_MAJOR)
    put(piano, 0, 40, 1, 72)
    x48 = np.stack([d48, piano, track(), track(), track()], axis=-1)
    held = mg.hold_steps(x48, 48)
    assert held.shape == (1, 96, 84, 5)
    got = compute_metrics(held, track_names=NAMES, drum_track="Drums", steps_per_bar=96, definition="official")
    assert got["DP"]["Drums"] == 1.0 and got["QN"]["Piano"] == 1.0
    at48 = compute_metrics(x48, track_names=NAMES, drum_track="Drums", steps_per_bar=48, definition="official")
    # the chord is 3 notes held all bar (beats of one pitch join), plus one 1-step note: 3 of 4 qualify
    assert at48["DP"]["Drums"] == pytest.approx(3 / 4) and at48["QN"]["Piano"] == pytest.approx(3 / 4)
    for m in ("EB", "UPC", "TD"):  # the grid does not change these
        assert got[m] == at48[m]


@pytest.mark.parametrize("steps, target, message", [(48, 72, "grid of 72"), (48, 0, "grid of 0"),
                                                    (24, 96, "steps_per_bar=24 but x has 48")])
def test_hold_steps_refuses_what_does_not_fit(steps, target, message):
    with pytest.raises(ParamsError, match=message):
        mg.hold_steps(track()[..., None], steps, target)


def test_the_paper_reference_names_its_source():
    from pipeline.metrics import musegan_reference as ref

    doc = ref.reference()
    assert doc["url"] == "https://arxiv.org/abs/1709.06298" and "AAAI 2018" in doc["citation"]
    assert "Table 1" in doc["tables"] and "Table 2" in doc["tables"] and "training data" in doc["tables"]
    assert doc["definition"] in DEFINITIONS and doc["steps_per_bar"] == mg.OFFICIAL_STEPS_PER_BAR == 96
    if doc["training_data"] is None:  # no source text found: no numbers, and the reason says so
        assert doc["version"] is None and "not found" in doc["missing"]
    else:  # numbers only with the paper version they were copied from, keyed like compute_metrics
        assert doc["version"] and set(doc["training_data"]) <= {"EB", "UPC", "QN", "DP", "TD"}
    json.dumps(doc)
