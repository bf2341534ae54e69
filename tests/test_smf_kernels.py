"""The compiled kernels (pipeline/io/_smf.c) behind their Python wrappers: memory safety at the
boundary, per-thread buffers that stay clean, and the .npy header the NPZ writer makes itself."""

from __future__ import annotations

import io
import threading

import mido
import numpy as np
import pytest

from pipeline.io import smf_kernels as K
from pipeline.io.midi import read_midi
from pipeline.formats.npz import npy_header
from pipeline.symbolic.lpd import family_of, to_pianoroll
from tests_support import smf_from_events


def _song(notes, program=0, tpq=96) -> bytes:
    """One instrument track; notes: (start_tick, end_tick, pitch, velocity)."""
    meta = [(0, 0, mido.MetaMessage("time_signature", numerator=4, denominator=4))]
    events = [(0, 0, mido.Message("program_change", program=program))]
    for s, e, p, v in notes:
        events += [(s, 2, mido.Message("note_on", note=p, velocity=v)), (e, 1, mido.Message("note_off", note=p))]
    return smf_from_events([meta, events], tpq=tpq)


def _cells(pr):
    return [a.tolist() for a in (pr.cell_track, pr.cell_time, pr.cell_pitch, pr.cell_velocity)]


def test_wrong_dtypes_and_short_buffers_are_refused_not_written():
    data = np.frombuffer(_song([(0, 96, 60, 100)]), np.uint8)
    cap = len(data) // 2 + 16
    good = [np.empty(cap, dt) for dt in (np.int32, np.int64, np.int8, np.int8, np.int32, np.int32)]
    info = np.zeros(K.INFO_SIZE, np.int64)
    K.scan_smf(data, 0, *good, info)
    assert info[0] == K.E_NONE and info[6] > 0
    wrong = list(good)
    wrong[1] = np.empty(cap, np.int32)  # ticks must be int64
    with pytest.raises(TypeError, match="ev_tick"):
        K.scan_smf(data, 0, *wrong, info)
    short = list(good)
    short[0] = np.empty(cap - 1, np.int32)
    with pytest.raises(ValueError, match="ev_track"):
        K.scan_smf(data, 0, *short, info)
    with pytest.raises(TypeError, match="info"):
        K.scan_smf(data, 0, *good, np.zeros(K.INFO_SIZE, np.int32))
    readonly = np.empty(cap, np.int64)
    readonly.flags.writeable = False
    with pytest.raises(TypeError, match="ev_tick"):
        K.scan_smf(data, 0, good[0], readonly, *good[2:], info)


def test_pair_notes_refuses_note_arrays_that_are_too_small():
    raw = _song([(0, 96, 60, 100), (96, 192, 62, 90), (192, 288, 64, 80)])
    from pipeline.io.midi import scan_events

    ev = scan_events(raw)
    outs = [np.empty(2, np.int64) for _ in range(5)] + [np.empty(4, np.int64) for _ in range(4)]
    with pytest.raises(ValueError, match="too small"):
        K.pair_notes(ev.track, ev.tick, ev.kind, ev.channel, ev.a, ev.b, len(ev.tick), *outs, np.zeros(3, np.int64))


def test_paint_tracks_checks_indices_and_lengths():
    one = np.zeros(1, np.int64)
    outs = [np.empty(8, dt) for dt in (np.uint8, np.int32, np.uint8, np.uint8)]
    fam = np.zeros(1, np.int64)
    drum = np.zeros(1, bool)
    with pytest.raises(ValueError, match="out of range"):  # instrument 1 of 1
        K.paint_tracks(10, one + 1, one + 60, one + 100, one, one + 3, drum, fam, 5, True, *outs)
    with pytest.raises(ValueError, match="out of range"):  # pitch 128
        K.paint_tracks(10, one, one + 128, one + 100, one, one + 3, drum, fam, 5, True, *outs)
    with pytest.raises(ValueError, match="differ in length"):
        K.paint_tracks(10, np.zeros(2, np.int64), one + 60, one + 100, one, one + 3, drum, fam, 5, True, *outs)
    n = K.paint_tracks(10, one, one + 60, one + 100, one, one + 3, drum, fam, 5, True, *outs)
    assert n == 4 and outs[1][:n].tolist() == [0, 1, 2, 3]  # lpd: offsets inclusive


def test_reused_roll_buffers_stay_clean_after_an_overflow():
    """paint_tracks keeps zeroed per-thread rolls between calls; a call that stops early (the
    output bound) must not leave painted cells behind for the next song."""
    notes = [(i * 48, i * 48 + 200, 60 + i % 12, 100) for i in range(40)]
    score = read_midi(_song(notes))
    pr = to_pianoroll(score)
    expected = _cells(pr)
    inst = score.note_inst
    fam = family_of(score.inst_program, score.inst_is_drum)
    ons = np.zeros(len(inst), np.int64) + np.arange(len(inst)) * 12
    offs = ons + 50
    tiny = [np.empty(5, dt) for dt in (np.uint8, np.int32, np.uint8, np.uint8)]
    assert K.paint_tracks(pr.n_steps, inst, score.note_pitch, score.note_vel, ons, offs, score.inst_is_drum, fam,
                          5, True, *tiny) == -1
    assert _cells(to_pianoroll(score)) == expected


def test_the_same_song_gives_the_same_cells_in_any_order_and_thread():
    a = read_midi(_song([(0, 960, 60, 100), (0, 960, 64, 90), (480, 1440, 67, 80)]))
    b = read_midi(_song([(i * 24, i * 24 + 30, 40 + i % 40, 1 + i % 127) for i in range(300)], program=33))
    want_a, want_b = _cells(to_pianoroll(a)), _cells(to_pianoroll(b))
    assert _cells(to_pianoroll(b)) == want_b and _cells(to_pianoroll(a)) == want_a
    got = {}

    def work(k):
        got[k] = [_cells(to_pianoroll(a if i % 2 else b)) for i in range(20)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert all(c == (want_a if i % 2 else want_b) for i, c in enumerate(got[k]))


@pytest.mark.parametrize("arr", [np.zeros(0), np.arange(5, dtype=np.int32), np.array(3.0), np.zeros((2, 3), bool),
                                 np.array(["abc", "d"]), np.zeros(12_345_678, np.uint8),
                                 np.zeros((5, 0), np.uint16)], ids=str)
def test_npy_header_is_numpys(arr):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(arr))
    assert npy_header(arr.dtype, arr.shape) == buf.getvalue()


def _numpy_quantize(bt, one_more, x, resolution, rounding):
    bt1 = np.append(bt, one_more)
    with np.errstate(invalid="ignore", divide="ignore"):
        bi = np.searchsorted(bt, x) - 1
        pos = np.nan_to_num((bi + (x - bt[bi]) / (bt1[bi + 1] - bt[bi])) * resolution, nan=0.0)
        return (np.round(pos) if rounding else pos).astype(np.int64)


@pytest.mark.parametrize("seed", range(6))
def test_quantize_is_the_numpy_expression_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    bt = np.cumsum(rng.choice([0.0, 0.25, 0.5, 0.4999999, 1 / 3], size=200))  # zero-length beats too
    x = np.concatenate([rng.uniform(-5, bt[-1] + 5, 2000), bt, bt + 1e-12, [bt[0], -np.inf, np.inf]])
    one_more = 2 * bt[-1] - bt[-2]
    for resolution in (1, 24, 7):
        for rounding in (False, True):
            want = _numpy_quantize(bt, one_more, x, resolution, rounding)
            assert np.array_equal(K.quantize(bt, one_more, x, resolution, rounding), want)
    with pytest.raises(ValueError, match="no beats"):
        K.quantize(np.zeros(0), 1.0, x, 24, False)


def _numpy_bars(t, starts, n_steps, bar_steps, drop):
    lengths = np.diff(np.append(starts, n_steps))
    bar = np.searchsorted(starts, t, side="right") - 1
    step = t - starts[bar]
    keep = step < bar_steps
    if drop:
        full = lengths == bar_steps
        keep &= full[bar]
        bar = (np.cumsum(full) - 1)[bar]
    return bar[keep], step[keep]


@pytest.mark.parametrize("drop", [False, True])
def test_bar_coords_cut_cells_as_the_numpy_search_does(drop):
    rng = np.random.default_rng(3)
    lengths = rng.choice([72, 96, 120, 48], size=60)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    n_steps = int(lengths.sum())
    t = np.sort(rng.integers(0, n_steps, 5000)).astype(np.int32)
    bar, step, keep, kept = K.bar_coords(t, starts, n_steps, 96, drop)
    want_bar, want_step = _numpy_bars(t.astype(np.int64), starts, n_steps, 96, drop)
    assert kept == len(want_bar) == int(keep.sum())
    assert np.array_equal(bar[keep], want_bar) and np.array_equal(step[keep], want_step)
    with pytest.raises(ValueError, match="outside the roll"):
        K.bar_coords(np.array([n_steps], np.int32), starts, n_steps, 96, drop)
    with pytest.raises(ValueError, match="tile it"):
        K.bar_coords(t, starts + 1, n_steps, 96, drop)


def test_ticks_to_seconds_is_the_numpy_expression_bit_for_bit():
    rng = np.random.default_rng(5)
    start = np.concatenate([[0], np.sort(rng.choice(np.arange(1, 10**6), 300, replace=False))])
    scale = rng.uniform(1e-5, 1e-2, len(start))
    base = np.zeros(len(start))
    np.cumsum(scale[:-1] * np.diff(start).astype(np.float64), out=base[1:])
    ticks = np.concatenate([rng.integers(-50, 2 * 10**6, 5000), np.sort(rng.integers(0, 10**6, 5000)), start,
                            [-1, 0, np.iinfo(np.int64).max // 4]])
    seg = np.searchsorted(start, ticks, side="right") - 1
    want = base[seg] + scale[seg] * (ticks - start[seg]).astype(np.float64)
    assert np.array_equal(K.ticks_to_seconds(start, scale, base, ticks), want)
    with pytest.raises(ValueError, match="equally long"):
        K.ticks_to_seconds(start, scale[:-1], base, ticks)


def _m21_events(rows):
    """(track, tick, kind, channel, pitch) rows -> the five int64 event arrays of pair_m21."""
    return [np.array(col, np.int64) for col in zip(*rows)]


def test_pair_m21_pairs_each_note_on_with_the_nearest_note_off_after_it():
    on, off, prog = K.K_NOTE_ON, K.K_NOTE_OFF, K.K_PROGRAM
    ev = _m21_events([
        (0, 0, on, 0, 60),
        (0, 0, on, 0, 64),
        (0, 4, on, 0, 60),  # struck again before any note-off: both end at tick 10
        (0, 10, off, 0, 60),
        (0, 12, off, 0, 64),
        (0, 14, on, 1, 60),  # channel 1 has no note-off: vanishes
        (0, 15, prog, 0, 5),
        (0, 16, off, 0, 60),  # nothing takes it
        (1, 2, on, 0, 60),  # another track: its own keys
        (1, 20, off, 0, 60),
    ])
    outs = [np.full(5, -9, np.int64) for _ in range(5)]  # one slot per note-on
    assert K.pair_m21(*ev, 2, *outs) == 4
    # walking backwards: the outputs come in reverse order of note-ons
    assert [o[:4].tolist() for o in outs] == [[2, 4, 0, 0], [20, 10, 12, 10], [60, 60, 64, 60], [0, 0, 0, 0],
                                              [1, 0, 0, 0]]
    assert all(o[4] == -9 for o in outs)
    with pytest.raises(ValueError, match="too small"):
        K.pair_m21(*ev, 2, *(np.zeros(3, np.int64) for _ in range(5)))
    with pytest.raises(ValueError, match="out of range"):  # track 1 with n_tracks=1
        K.pair_m21(*ev, 1, *outs)
    bad_pitch = [a.copy() for a in ev]
    bad_pitch[4][0] = 128
    with pytest.raises(ValueError, match="out of range"):
        K.pair_m21(*bad_pitch, 2, *outs)
    with pytest.raises(ValueError, match="differ in length"):
        K.pair_m21(*ev[:4], ev[4][:-1], 2, *outs)
    with pytest.raises(TypeError):
        K.pair_m21(*ev, 2, *outs[:4], np.zeros(5, np.int32))


def test_group_m21_gathers_chords_as_music21_does():
    # notes in note-on order; tol 3.0 = ticks per quarter 12 / 4
    on_tick = np.array([0, 1, 2, 3, 3, 5], np.int64)
    off_tick = np.array([10, 16, 13, 13, 5, 5], np.int64)
    track = np.array([0, 0, 0, 0, 1, 1], np.int64)

    def run(cap, n_voices=2):
        mem_group, mem_note = np.full(cap, -9, np.int64), np.full(cap, -9, np.int64)
        first_of, voices = np.full(6, -9, np.int64), np.zeros(n_voices, bool)
        res = K.group_m21(on_tick, off_tick, track, 3.0, mem_group, mem_note, first_of, voices)
        return res, mem_group, mem_note, first_of, voices

    (g, m), mem_group, mem_note, first_of, voices = run(16)
    # note 0 opens group 0: note 1 starts with it but ends 6 ticks later (voices needed in track 0),
    # note 2 joins (ends 3 ticks later: within tol), note 3 starts 3 ticks later (not within tol).
    # note 1 opens group 1 and gathers note 2 again (only the opening note is checked), and note 3.
    # note 4 opens group 2 in track 1 and gathers note 5.
    assert (g, m) == (3, 7)
    assert mem_group[:7].tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert mem_note[:7].tolist() == [0, 2, 1, 2, 3, 4, 5]
    assert first_of[:3].tolist() == [0, 1, 4]
    assert voices.tolist() == [True, False]
    assert run(7)[0] == (3, 7)
    assert run(6)[0] == (-1, -1)  # too little room for the pairs: the caller retries with more
    assert run(0)[0] == (-1, -1)
    empty = np.zeros(0, np.int64)
    assert K.group_m21(empty, empty, empty, 3.0, np.zeros(1, np.int64), np.zeros(1, np.int64), empty,
                       np.zeros(1, bool)) == (0, 0)
    with pytest.raises(ValueError, match="voices_required"):  # track 1 has no slot
        run(16, n_voices=1)
    with pytest.raises(ValueError, match="first_of"):
        K.group_m21(on_tick, off_tick, track, 3.0, np.zeros(16, np.int64), np.zeros(16, np.int64),
                    np.zeros(5, np.int64), np.zeros(2, bool))
    with pytest.raises(ValueError, match="differ in length"):
        K.group_m21(on_tick, off_tick[:5], track, 3.0, np.zeros(16, np.int64), np.zeros(16, np.int64),
                    np.zeros(6, np.int64), np.zeros(2, bool))
    with pytest.raises(TypeError):
        K.group_m21(on_tick, off_tick, track, 3.0, np.zeros(16, np.int32), np.zeros(16, np.int64),
                    np.zeros(6, np.int64), np.zeros(2, bool))
    with pytest.raises(TypeError):
        K.group_m21(on_tick, off_tick, track, 3.0, np.zeros(16, np.int64), np.zeros(16, np.int64),
                    np.zeros(6, np.int64), np.zeros(2, np.uint8))
