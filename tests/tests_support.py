"""Helpers shared by test modules (plain functions, no fixtures)."""

from __future__ import annotations

from pathlib import Path

SHARED_MIDI = Path(__file__).resolve().parents[1].parent / "shared" / "midi"


def seed_files(limit: int = 60) -> list[bytes]:
    """Real MIDI bytes to mutate: ../shared/midi when present, else songs made here."""
    files = sorted(p for p in SHARED_MIDI.glob("*") if p.suffix.lower() in (".mid", ".rmi")) if SHARED_MIDI.is_dir() else []
    if files:
        return [p.read_bytes() for p in files[:limit]]
    from conftest import make_song

    return [make_song(i, ts=[(4, 4), (3, 4), (6, 8)][i % 3]) for i in range(12)]


def smf_from_events(tracks, *, tpq: int) -> bytes:
    """A type-1 SMF from per-track lists of ``(tick, order, mido message)``: each track is sorted
    by (tick, order) (so at one tick a lower order comes first) and written with delta times."""
    import io

    import mido

    mid = mido.MidiFile(type=1, ticks_per_beat=tpq)
    for events in tracks:
        track, now = mido.MidiTrack(), 0
        for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
            track.append(msg.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()
