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
