"""The split rule is defined once (pipeline/splits.py) and every stage that splits by song uses it."""

from __future__ import annotations

import hashlib

from pipeline import splits
from pipeline.formats.token_shards import split_of as token_split
from pipeline.training.vqvae import split_of as clip_split
from stages.build_phrases import Params as PhraseParams
from stages.build_phrases import split_of as phrase_split


def test_unit_is_the_first_8_bytes_of_sha256():
    sid = "d41d8cd98f00b204e9800998ecf8427e"
    assert splits.unit(sid) == int(hashlib.sha256(sid.encode()).hexdigest()[:16], 16) / 2**64


def test_every_stage_splits_alike_even_at_a_boundary():
    ids = [hashlib.md5(str(i).encode()).hexdigest() for i in range(2000)]
    p = PhraseParams(valid_fraction=0.1, test_fraction=0.1)
    for sid in ids:
        s = token_split(sid, valid_fraction=0.1, test_fraction=0.1)
        assert phrase_split(sid, p) == s
        assert clip_split(sid, 0.1) == ("heldout" if s == "test" else "train")
    # a boundary exactly between the 4-byte and the 8-byte readings: the old phrase rule read 8 hex
    # digits (4 bytes) and could disagree with the token shards there; one rule cannot
    sid = ids[0]
    u = splits.unit(sid)
    u32 = int(hashlib.sha256(sid.encode()).hexdigest()[:8], 16) / 16**8
    if u32 < u:
        frac = (u32 + u) / 2
        assert token_split(sid, valid_fraction=0.0, test_fraction=frac) == "train"
        assert phrase_split(sid, PhraseParams(valid_fraction=0.0, test_fraction=frac)) == "train"


def test_fractions_cut_in_order():
    assert splits.split_of("x", [], rest="train") == "train"
    assert splits.split_of("x", [("a", 1.0)], rest="b") == "a"
    assert splits.split_of("x", [("a", 0.0)], rest="b") == "b"
