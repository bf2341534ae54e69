"""The split rule is defined once (pipeline/splits.py) and every stage that splits by song uses it."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from pipeline import splits

ROOT = Path(__file__).resolve().parents[1]


def test_unit_is_the_first_8_bytes_of_sha256():
    sid = "d41d8cd98f00b204e9800998ecf8427e"
    assert splits.unit(sid) == int(hashlib.sha256(sid.encode()).hexdigest()[:16], 16) / 2**64


def test_song_and_clip_splits_agree_even_at_a_boundary():
    ids = [hashlib.md5(str(i).encode()).hexdigest() for i in range(2000)]
    for sid in ids:
        s = splits.song_split(sid, valid_fraction=0.1, test_fraction=0.1)
        assert s in splits.SPLITS
        assert splits.heldout_split(sid, 0.1) == ("heldout" if s == "test" else "train")
    # a boundary exactly between the 4-byte and the 8-byte readings: an old phrase rule read 8 hex
    # digits (4 bytes) and could disagree with the token shards there; one rule cannot
    sid = ids[0]
    u = splits.unit(sid)
    u32 = int(hashlib.sha256(sid.encode()).hexdigest()[:8], 16) / 16**8
    if u32 < u:
        frac = (u32 + u) / 2
        assert splits.song_split(sid, valid_fraction=0.0, test_fraction=frac) == "train"
        assert splits.heldout_split(sid, frac) == "train"


def test_fractions_cut_in_order():
    assert splits.split_of("x", [], rest="train") == "train"
    assert splits.split_of("x", [("a", 1.0)], rest="b") == "a"
    assert splits.split_of("x", [("a", 0.0)], rest="b") == "b"


def test_no_other_module_hashes_ids_into_splits_or_names_the_splits():
    """The stages call pipeline.splits (song_split, heldout_split) and take SPLITS / CLIP_SPLITS from it:
    no second spelling of the rule, no second tuple of split names."""
    for path in sorted((ROOT / "pipeline").rglob("*.py")) + sorted((ROOT / "stages").glob("*.py")):
        if path.name == "splits.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                assert node.name not in {"split_of", "song_split", "heldout_split"}, f"{path}: {node.name}"
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    assert not (isinstance(t, ast.Name) and t.id in {"SPLITS", "CLIP_SPLITS"}), f"{path}: {t.id}"
