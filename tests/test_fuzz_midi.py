"""Seeded mutation fuzzing of the reader and the converter: thousands of damaged files, no
exception other than MidiError, no crash of the compiled kernels, no hang."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import MidiError
from pipeline.io.midi import read_midi
from pipeline.symbolic.lpd import to_pianoroll
from tests_support import seed_files


def mutate(raw: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(raw)
    kind = rng.integers(0, 6)
    if kind == 0 and len(data) > 1:  # truncate
        return bytes(data[: rng.integers(1, len(data))])
    if kind == 1:  # flip random bytes
        for _ in range(rng.integers(1, 20)):
            data[rng.integers(0, len(data))] = rng.integers(0, 256)
        return bytes(data)
    if kind == 2:  # splice a random block elsewhere
        a, b = sorted(rng.integers(0, len(data), 2))
        at = rng.integers(0, len(data))
        return bytes(data[:at] + data[a:b] + data[at:])
    if kind == 3:  # damage chunk lengths and header fields
        for pos in (4, 5, 6, 7, 10, 11, 12, 13, 18, 19, 20, 21):
            if pos < len(data) and rng.random() < 0.3:
                data[pos] = rng.integers(0, 256)
        return bytes(data)
    if kind == 4:  # insert high bytes (status bytes where data belongs)
        for _ in range(rng.integers(1, 10)):
            at = rng.integers(14, max(15, len(data)))
            data[at:at] = bytes([rng.integers(0x80, 0x100)])
        return bytes(data)
    return bytes(data[: rng.integers(0, 64)]) + bytes(rng.integers(0, 256, rng.integers(0, 256), dtype=np.uint8))


@pytest.mark.slow
def test_mutated_files_only_raise_midi_errors():
    rng = np.random.default_rng(2026)
    seeds = seed_files()
    codes: dict[str, int] = {}
    n = 3000
    t0 = time.perf_counter()
    for i in range(n):
        raw = mutate(seeds[i % len(seeds)], rng)
        start = time.perf_counter()
        try:
            score = read_midi(raw, f"mutant{i}")
            to_pianoroll(score, max_beats=20_000)
            codes["converted"] = codes.get("converted", 0) + 1
        except MidiError as exc:
            codes[exc.code] = codes.get(exc.code, 0) + 1
        assert time.perf_counter() - start < 10, f"mutant {i} took too long"
    assert sum(codes.values()) == n
    assert codes.get("converted", 0) > n // 4  # most damage is recoverable
    assert time.perf_counter() - t0 < 240
