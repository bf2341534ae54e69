"""Vocabulary files (ids, hash, refusal) and token shards (schema, splits, windows)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.splits import song_split
from pipeline.formats.token_shards import (read_token_shards, shard_vocab_hash, token_shard_bytes, windows,
                                      write_token_shard)
from pipeline.formats.vocab import (BOS, EOS, PAD, UNK, VocabError, build_vocabulary, load_vocabulary)

CONFIG = {"kind": "notes", "streams": "merged"}


def test_specials_order_min_count_and_max_size():
    counts = Counter({"C4": 5, "E4": 5, "0.4.7": 9, "rare": 1})
    v = build_vocabulary(counts, config=CONFIG, min_count=2)
    assert v.tokens[:4] == ("PAD", "BOS", "EOS", "UNK") and (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert v.tokens[4:] == ("0.4.7", "C4", "E4")  # by count, then text
    assert build_vocabulary(counts, config=CONFIG, max_size=5).tokens[4:] == ("0.4.7",)
    ids = v.ids(["C4", "rare", "never seen", "0.4.7"])
    assert ids.dtype == np.uint16 and ids.tolist() == [5, UNK, UNK, 4]
    with pytest.raises(VocabError, match="max_size=70000"):
        build_vocabulary(counts, config=CONFIG, max_size=70000)


def test_save_load_and_refusals(tmp_path):
    v = build_vocabulary(Counter({"A": 3, "B": 2}), config=CONFIG)
    path = tmp_path / "vocab.json"
    v.save(path)
    doc = json.loads(path.read_text())
    assert doc["tokens"] == {"PAD": 0, "BOS": 1, "EOS": 2, "UNK": 3, "A": 4, "B": 5}
    assert doc["config"] == CONFIG and len(doc["hash"]) == 64
    w = load_vocabulary(path, expect_hash=v.hash, expect_config=CONFIG)
    assert w.tokens == v.tokens and w.hash == v.hash
    # the data was made with another vocabulary
    with pytest.raises(VocabError, match="does not match the data") as err:
        load_vocabulary(path, expect_hash="0" * 64)
    assert "\n" not in str(err.value)
    with pytest.raises(VocabError, match="config differs .* streams"):
        load_vocabulary(path, expect_config={**CONFIG, "streams": "tracks"})
    # edited by hand: the stored hash no longer matches the table
    doc["tokens"]["C"] = 6
    path.write_text(json.dumps(doc))
    with pytest.raises(VocabError, match="hash mismatch"):
        load_vocabulary(path)
    path.write_text("{not json")
    with pytest.raises(VocabError, match="not valid JSON"):
        load_vocabulary(path)


def test_split_is_stable_and_near_the_fractions():
    ids = [f"{i:032x}" for i in range(4000)]
    splits = Counter(song_split(i, valid_fraction=0.1, test_fraction=0.1) for i in ids)
    assert abs(splits["test"] / 4000 - 0.1) < 0.02 and abs(splits["valid"] / 4000 - 0.1) < 0.02
    assert song_split(ids[7], valid_fraction=0.1, test_fraction=0.1) == song_split(ids[7], valid_fraction=0.1,
                                                                               test_fraction=0.1)


def test_shard_schema_round_trip(tmp_path):
    v = build_vocabulary(Counter({"A": 3}), config=CONFIG)
    rows = [{"id": "a" * 32, "stream": "all", "split": "train", "tokens": np.array([4, 4, 3], np.uint16),
             "bar_starts": np.array([0, 2], np.int32)},
            {"id": "b" * 32, "stream": "all", "split": "test", "tokens": np.zeros(0, np.uint16),
             "bar_starts": np.zeros(0, np.int32)}]
    assert token_shard_bytes(rows, vocab_hash=v.hash) == token_shard_bytes(rows, vocab_hash=v.hash)
    write_token_shard(tmp_path / "s-00000.parquet", rows, vocab_hash=v.hash)
    t = pq.read_table(tmp_path / "s-00000.parquet")
    assert str(t.schema.field("tokens").type) == "list<element: uint16>"
    assert str(t.schema.field("bar_starts").type) == "list<element: int32>"
    assert shard_vocab_hash(tmp_path / "s-00000.parquet") == v.hash
    assert read_token_shards(tmp_path, split="train", vocab=v).column("tokens").to_pylist() == [[4, 4, 3]]
    other = build_vocabulary(Counter({"B": 3}), config=CONFIG)
    with pytest.raises(VocabError, match="shard made with vocabulary"):
        read_token_shards(tmp_path, vocab=other)


def test_windows():
    x = np.arange(250, dtype=np.uint16)
    w = windows(x)
    assert w.shape == (2, 100) and w[1, 0] == 100
    w = windows(x, length=101, stride=1)  # the seed: 100 inputs + the next token
    assert w.shape == (150, 101) and w[3, 100] == 103
    assert windows(x[:10], length=100).shape == (0, 100)
    with pytest.raises(ValueError, match="stride=0"):
        windows(x, stride=0)
