"""Shared fixtures: the real corpus in ../shared/midi (skipped where absent) and small MIDI files
made here, so that the suite also runs on a fresh machine without it."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_MIDI = ROOT.parent / "shared" / "midi"

os.environ.setdefault("PIPELINE_PROGRESS", "0")


@pytest.fixture(scope="session")
def shared_midi() -> Path:
    """The 51 real MIDI files (12 from Lakh, 14 that pretty_midi cannot read)."""
    if not SHARED_MIDI.is_dir():
        pytest.skip("../shared/midi is absent on this machine (CI and developer machines have it)")
    return SHARED_MIDI


def make_song(seed: int, *, n_bars: int = 4, tpq: int = 480, ts=(4, 4), tempo_bpm: float = 120.0) -> bytes:
    """A small multitrack song (drums, piano, guitar, bass, strings), deterministic for a seed."""
    rng = np.random.default_rng(seed)
    mid = mido.MidiFile(type=1, ticks_per_beat=tpq)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=int(round(6e7 / tempo_bpm)), time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=ts[0], denominator=ts[1], time=0))
    mid.tracks.append(meta)
    beats = n_bars * ts[0] * 4 // ts[1]
    for channel, program, low in ((9, 0, 36), (0, 0, 60), (1, 25, 52), (2, 33, 36), (3, 48, 64)):
        track = mido.MidiTrack()
        track.append(mido.Message("program_change", channel=channel, program=program, time=0))
        events = []
        for b in range(beats):
            pitch = int(low + rng.integers(0, 12))
            start = b * tpq
            dur = tpq // 2 if channel == 9 else int(tpq * rng.choice([0.5, 1.0]))
            vel = int(rng.integers(40, 120))
            events.append((start, 1, pitch, vel))
            events.append((start + dur, 0, pitch, 0))
        events.sort()
        now = 0
        for t, on, pitch, vel in events:
            kind = "note_on" if on else "note_off"
            track.append(mido.Message(kind, channel=channel, note=pitch, velocity=vel, time=t - now))
            now = t
        mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


@pytest.fixture
def one_torch_thread():
    """Tiny models: one torch thread while the test runs (two threads on a busy 2-core machine
    are many times slower); torch's count is restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    """Eight songs (4/4, 3/4, 6/8, tempo 90-150) plus an HTML page and an empty file."""
    root = tmp_path / "small"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for i in range(8):
        ts = [(4, 4), (3, 4), (6, 8)][i % 3]
        (root / ("a" if i < 4 else "b") / f"song{i}.mid").write_bytes(make_song(i, ts=ts, tempo_bpm=90 + 10 * i))
    (root / "b" / "page.mid").write_bytes(b"<!DOCTYPE html><html><body>404</body></html>")
    (root / "b" / "empty.midi").write_bytes(b"")
    return root


@pytest.fixture
def corpus_dir(tmp_path, request) -> Path:
    """The real corpus when present (copied, so tests may add files), else the small one."""
    if SHARED_MIDI.is_dir():
        dst = tmp_path / "corpus"
        dst.mkdir()
        for p in SHARED_MIDI.iterdir():
            if p.suffix.lower() in (".mid", ".midi", ".rmi"):
                shutil.copy(p, dst / p.name)
        return dst
    return request.getfixturevalue("small_corpus")
