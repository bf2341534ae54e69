"""Every file pretty_midi refuses is ``recovered`` (with the repair named) or worse, never ``ok``.

One hand-made file per class of damage (zero-length track chunk, zero declared tracks, extra and
missing track chunks, unknown chunk ids, no end of track, bad running status); pretty_midi itself
decides which it refuses, so the check holds whatever its version.
"""

from __future__ import annotations

import io
import warnings

import pretty_midi
import pytest

from pipeline.errors import MidiError
from pipeline.io.midi import read_midi


def header(ntracks: int, fmt: int = 1, division: int = 96) -> bytes:
    return b"MThd" + (6).to_bytes(4, "big") + fmt.to_bytes(2, "big") + ntracks.to_bytes(2, "big") + division.to_bytes(2, "big")


def chunk(body: bytes, cid: bytes = b"MTrk") -> bytes:
    return cid + len(body).to_bytes(4, "big") + body


EOT = b"\x00\xff\x2f\x00"
TEMPO = b"\x00\xff\x51\x03\x07\xa1\x20"  # 500000 us per beat
NOTES = b"\x00\x90\x3c\x64" + b"\x60\x80\x3c\x00" + b"\x00\x90\x40\x64" + b"\x60\x80\x40\x00"
NOTE_TRACK = chunk(NOTES + EOT)
META_TRACK = chunk(TEMPO + EOT)

FILES = {
    "zero_length_chunk": header(3) + META_TRACK + NOTE_TRACK + chunk(b""),
    "zero_declared_tracks": header(0, fmt=0) + NOTE_TRACK,
    "extra_track_chunks": header(1) + META_TRACK + NOTE_TRACK,
    "missing_track_chunks": header(4) + META_TRACK + NOTE_TRACK,
    "unknown_chunk_id": header(2) + META_TRACK + chunk(b"\x00\x01\x02", b"XFIH") + NOTE_TRACK,
    "no_end_of_track": header(2) + META_TRACK + chunk(NOTES),
    "bad_running_status": header(2) + META_TRACK + chunk(b"\x00\x3c\x64" + NOTES + EOT),
}

#: the repair each file must name (where we know it; pretty_midi's verdict is checked for all)
REPAIR = {
    "zero_length_chunk": "empty track chunk",
    "zero_declared_tracks": "more track chunks than the header declares",
    "extra_track_chunks": "more track chunks than the header declares",
    "missing_track_chunks": "fewer track chunks than the header declares",
    "unknown_chunk_id": "unknown chunk skipped",
    "bad_running_status": "data byte without running status skipped",
}


def pretty_midi_reads(raw: bytes) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pretty_midi.PrettyMIDI(io.BytesIO(raw))
        return True
    except Exception:  # noqa: BLE001 - any refusal counts
        return False


@pytest.mark.parametrize("name", sorted(FILES))
def test_pretty_midi_rejects_are_never_ok(name):
    raw = FILES[name]
    try:
        score = read_midi(raw, name)
    except MidiError:
        return  # refused with a code: worse than recovered, and not ok
    status = "recovered" if score.repairs else "ok"
    if not pretty_midi_reads(raw):
        assert status == "recovered", f"{name}: pretty_midi refuses it, and we call it ok"
    if name in REPAIR:
        assert any(REPAIR[name] in r for r in score.repairs), score.repairs
    if name == "bad_running_status":  # the stray bytes shift what follows: at least a note survives
        assert set(score.note_pitch.tolist()) <= {60, 64} and len(score.note_pitch)
    else:
        assert sorted(score.note_pitch.tolist()) == [60, 64]  # the two notes of NOTES, wherever they are


def test_the_fixtures_cover_what_pretty_midi_refuses():
    """The classes the issue names as pretty_midi rejects really are rejected (so the test above
    checks something): zero-length chunk, zero declared tracks, missing chunks, bad running status."""
    for name in ("zero_length_chunk", "zero_declared_tracks", "missing_track_chunks", "bad_running_status"):
        assert not pretty_midi_reads(FILES[name]), name
    assert pretty_midi_reads(FILES["no_end_of_track"])


def test_under_declared_tracks_are_read():
    """A header that declares fewer tracks than follow: the notes of the undeclared ones are kept."""
    score = read_midi(FILES["zero_declared_tracks"])
    assert sorted(score.note_pitch.tolist()) == [60, 64]
    score = read_midi(FILES["extra_track_chunks"])
    assert sorted(score.note_pitch.tolist()) == [60, 64]
