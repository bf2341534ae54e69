"""Hostile files: refused with a reason, quickly, with bounded memory (measured in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import mido
import pytest

CHECK = textwrap.dedent(
    """
    import io, json, resource, sys, time
    import mido
    from pipeline.errors import MidiError
    from pipeline.stages.build_lpd import Params, convert_one
    raw = open(sys.argv[1], "rb").read()
    t = time.perf_counter()
    try:
        convert_one(raw, "hostile.mid", Params())
        outcome = "converted"
    except MidiError as exc:
        outcome = exc.code
    # this process's own peak (ru_maxrss of a child starts at its parent's peak)
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
    peak_mb = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - t, "maxrss_mb": peak_mb}))
    """
)


def _run(tmp_path, mid: mido.MidiFile) -> dict:
    path = tmp_path / "hostile.mid"
    mid.save(str(path))
    res = subprocess.run([sys.executable, "-c", CHECK, str(path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def _slow_song(n_notes: int, beats: int) -> mido.MidiFile:
    """One tick per quarter at the slowest tempo (16.7 s per beat): a long song in a tiny file."""
    mid = mido.MidiFile(ticks_per_beat=1)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=0xFFFFFF, time=0),
                           mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0)])
    mid.tracks.append(meta)
    track = mido.MidiTrack()
    for i in range(n_notes):
        track.append(mido.Message("note_on", channel=i % 9, note=20 + i % 100, velocity=100, time=0))
    track.append(mido.Message("note_off", channel=0, note=20, velocity=0, time=beats))
    for i in range(1, n_notes):
        track.append(mido.Message("note_off", channel=i % 9, note=20 + i % 100, velocity=0, time=0))
    mid.tracks.append(track)
    return mid


@pytest.mark.slow
def test_thousands_of_song_long_notes_are_refused_with_bounded_memory(tmp_path):
    # 900 notes over 19,000 beats = 456,000 steps each: 4e8 cells if painted
    out = _run(tmp_path, _slow_song(900, 19_000))
    assert out["outcome"] == "skip.too_dense"
    assert out["maxrss_mb"] < 1500


def test_too_many_beats_is_refused_quickly(tmp_path):
    out = _run(tmp_path, _slow_song(3, 5_000_000))
    assert out["outcome"] == "skip.too_long"
    assert out["seconds"] < 5 and out["maxrss_mb"] < 800


def test_thousands_of_tracks(tmp_path):
    mid = mido.MidiFile(ticks_per_beat=96)
    for i in range(3000):
        mid.tracks.append(mido.MidiTrack([
            mido.Message("program_change", channel=i % 16, program=i % 128, time=0),
            mido.Message("note_on", channel=i % 16, note=30 + i % 60, velocity=64, time=i % 96),
            mido.Message("note_off", channel=i % 16, note=30 + i % 60, velocity=0, time=96)]))
    out = _run(tmp_path, mid)
    assert out["outcome"] == "converted"
    assert out["seconds"] < 20 and out["maxrss_mb"] < 800
