"""The split rule, defined once: a song's split follows from a hash of its id, never from order.

``unit(song_id)`` is the first 8 bytes of ``sha256(song_id)`` read as a big-endian integer, over
2**64: a number in [0, 1) that is the same on every machine and in every run. A song is in the
first split whose cumulative fraction is above it: ``split_of(id, [("test", 0.1), ("valid", 0.1)],
rest="train")`` puts u < 0.1 in test, 0.1 <= u < 0.2 in valid, the rest in train.

Every stage that splits by song uses it, through ``song_split`` (token shards, MuseGAN phrases:
``train``/``valid``/``test``) or ``heldout_split`` (the VQ-VAE's and the Jukebox family's clips:
``train``/``heldout``), so a song is held out by all of them or by none when their fractions agree.
"""

from __future__ import annotations

import hashlib
from typing import Literal, Sequence, get_args

#: the splits of the token shards and the phrases (their ``split`` column, ``npz/<split>.npz``)
Split = Literal["train", "valid", "test"]
SPLITS: tuple[str, ...] = get_args(Split)
#: the splits of the audio clips that the VQ-VAE and the Jukebox family train and evaluate on
ClipSplit = Literal["train", "heldout"]
CLIP_SPLITS: tuple[str, ...] = get_args(ClipSplit)


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


def song_split(song_id: str, *, valid_fraction: float, test_fraction: float) -> str:
    """``test`` for ``unit(id) < test_fraction``, then ``valid`` for the next ``valid_fraction``,
    else ``train`` (token shards, phrases)."""
    return split_of(song_id, [("test", test_fraction), ("valid", valid_fraction)], rest="train")


def heldout_split(song_id: str, heldout_fraction: float) -> str:
    """``heldout`` for ``unit(id) < heldout_fraction``, else ``train`` (audio clips): with equal
    fractions, the held-out songs are the test songs of ``song_split``."""
    return split_of(song_id, [("heldout", heldout_fraction)], rest="train")
