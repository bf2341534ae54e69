"""The split rule, defined once: a song's split follows from a hash of its id, never from order.

``unit(song_id)`` is the first 8 bytes of ``sha256(song_id)`` read as a big-endian integer, over
2**64: a number in [0, 1) that is the same on every machine and in every run. A song is in the
first split whose cumulative fraction is above it: ``split_of(id, [("test", 0.1), ("valid", 0.1)],
rest="train")`` puts u < 0.1 in test, 0.1 <= u < 0.2 in valid, the rest in train.

Every stage that splits by song uses it (token shards, MuseGAN phrases, the VQ-VAE's held-out
clips), so a song is held out by all of them or by none when their fractions agree.
"""

from __future__ import annotations

import hashlib
from typing import Sequence


def unit(song_id: str) -> float:
    """``int.from_bytes(sha256(song_id)[:8], "big") / 2**64``, in [0, 1)."""
    return int.from_bytes(hashlib.sha256(song_id.encode()).digest()[:8], "big") / 2.0**64


def split_of(song_id: str, fractions: Sequence[tuple[str, float]], *, rest: str) -> str:
    """The split of ``song_id``: the first of ``fractions`` (name, fraction) whose running total is
    above ``unit(song_id)``, else ``rest``."""
    u = unit(song_id)
    total = 0.0
    for name, fraction in fractions:
        total += fraction
        if u < total:
            return name
    return rest
