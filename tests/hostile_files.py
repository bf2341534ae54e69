"""Hand-made hostile Standard MIDI Files (raw bytes, so that what no writer allows can be made):
huge tick counts, absurd tempos, thousands of tracks, ticks per beat of 0, SMPTE time, running
status abuse. Shared by tests/test_hostile_stages.py and the benchmarks."""

from __future__ import annotations

import struct


def vlq(n: int) -> bytes:
    """A MIDI variable-length quantity (up to 0x0FFFFFFF, 4 bytes)."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def smf(tracks: list[bytes], *, fmt: int = 1, division: int = 480, n_tracks: int | None = None) -> bytes:
    """An SMF from raw track event bytes (each track gets an end-of-track unless it has one)."""
    head = b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks) if n_tracks is None else n_tracks, division)
    body = b""
    for t in tracks:
        if not t.endswith(b"\xff\x2f\x00"):
            t = t + b"\x00\xff\x2f\x00"
        body += b"MTrk" + struct.pack(">I", len(t)) + t
    return head + body


def tempo(us_per_quarter: int, delta: int = 0) -> bytes:
    return vlq(delta) + b"\xff\x51\x03" + us_per_quarter.to_bytes(3, "big")


def note(delta: int, pitch: int, length: int, *, channel: int = 0, velocity: int = 100) -> bytes:
    return (vlq(delta) + bytes([0x90 | channel, pitch, velocity])
            + vlq(length) + bytes([0x80 | channel, pitch, 0]))


def program(channel: int, number: int) -> bytes:
    return b"\x00" + bytes([0xC0 | channel, number])


def melody(n: int = 16, *, step: int = 480, channel: int = 0) -> bytes:
    """``n`` notes back to back, ``step`` ticks each."""
    return program(channel, 0) + b"".join(note(0, 60 + i % 12, step, channel=channel) for i in range(n))


def hostile_files() -> dict[str, bytes]:
    """name -> bytes; every one must come back as a manifest row, quickly, in bounded memory."""
    files: dict[str, bytes] = {}
    # huge tick counts: deltas of 0x0FFFFFFF (the largest VLQ) between notes
    files["huge_ticks"] = smf([tempo(500_000), melody(4) + b"".join(
        note(0x0FFFFFFF, 60, 0x0FFFFFFF) for _ in range(8))])
    # a note that lasts 2^28 ticks at 1 tick per beat, and one note per beat up to there
    files["huge_note"] = smf([tempo(500_000), note(0, 60, 0x0FFFFFFF) + note(0, 64, 4)], division=1)
    # absurd tempos: 1 us per quarter (60 million bpm) and 16777215 (3.6 bpm), back and forth
    fast_slow = b"".join(tempo(1 if i % 2 else 0xFFFFFF, 0 if i == 0 else 480) for i in range(200))
    files["tempo_1us"] = smf([tempo(1), melody(64)])
    files["tempo_1us_long"] = smf([tempo(1), melody(4) + note(0x0FFFFFFF, 60, 480)])
    files["tempo_max"] = smf([tempo(0xFFFFFF), melody(64)])
    files["tempo_flapping"] = smf([fast_slow, melody(200)])
    files["tempo_zero"] = smf([tempo(0), melody(16)])
    # thousands of tracks: 5,000 tracks with a note each, and a header that claims 65535
    files["tracks_5000"] = smf([tempo(500_000)] + [program(i % 16, i % 128) + note(i % 480, 30 + i % 60, 480, channel=i % 16)
                                                   for i in range(5000)])
    files["tracks_claimed_65535"] = smf([tempo(500_000), melody(8)], n_tracks=65535)
    # ticks per beat of 0, and SMPTE divisions (-25 fps x 40, -30 fps x 80, -24 x 0)
    files["tpq_0"] = smf([tempo(500_000), melody(16)], division=0)
    files["smpte_25x40"] = smf([melody(16)], division=0xE728)
    files["smpte_30x80"] = smf([melody(16)], division=0xE250)
    files["smpte_24x0"] = smf([melody(16)], division=0xE800)
    # running status abuse: data bytes before any status, running status across meta and
    # sysex events (which cancel it), thousands of notes in running status, stray F7 escapes
    orphan = b"\x00\x3c\x40\x00\x3c\x00"  # data bytes before any status (a track of its own)
    rs = b"\x00\x90\x3c\x40" + b"".join(b"\x00" + bytes([36 + i % 60, 64]) + b"\x0a" + bytes([36 + i % 60, 0])
                                      for i in range(4000))  # 4,000 notes, on and off, in running status
    rs += b"\x00\xff\x01\x03abc" + b"\x00\x3c\x00"  # after a meta event, no running status
    rs += b"\x00\xf0\x03\x7e\x7f\xf7" + b"\x00\x3e\x00"  # after sysex, no running status
    rs += b"\x00\xf7\x02\x90\x40" + b"\x10\x40\x00"  # an escape, then data
    rs += b"\x00\x80\x3c\x00" + b"\x00\x3c\x00" * 500  # running note-offs of a closed key
    files["running_status"] = smf([tempo(500_000), orphan, rs])
    # 20,000 note-ons of one key, closed by a single note-off: 20,000 overlapping long notes
    files["stuck_notes"] = smf([tempo(500_000), b"\x00\x90" + b"".join(vlq(10) + b"\x3c\x40" for _ in range(20000))
                                + b"\x00\x80\x3c\x00"])
    # notes on every key and channel lasting the whole song: a dense roll to paint
    files["dense_roll"] = smf([tempo(500_000), b"".join(b"\x00" + bytes([0x90 | c, p, 100]) for c in range(16) for p in range(128))
                               + vlq(480 * 19_000) + b"".join(b"\x00" + bytes([0x80 | c, p, 0]) for c in range(16) for p in range(128))])
    return files
