"""BPE over event tokens: merges stay inside bars, ids survive save and reload."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.tokens.bpe import bpe_decode, bpe_encode, char_id, id_char, load_bpe, save_bpe, train_bpe
from pipeline.tokens.events import EventConfig, encode
from pipeline.formats.vocab import build_vocabulary
from tests.conftest import make_song

pytest.importorskip("tokenizers")


def test_char_mapping_round_trip():
    ids = [0, 3, 4, 51199, 51200, 51201, 65535]
    assert [char_id(id_char(i)) for i in ids] == ids
    assert all(not 0xD800 <= ord(id_char(i)) < 0xE000 for i in range(65536))


def _songs():
    cfg = EventConfig()
    encs = [encode(make_song(s, n_bars=6, ts=ts), cfg=cfg)["all"] for s, ts in
            [(1, (4, 4)), (2, (3, 4)), (3, (4, 4)), (4, (6, 8)), (5, (4, 4))]]
    counts = {}
    for e in encs:
        for c in e.codes.tolist():
            counts[cfg.table[c]] = counts.get(cfg.table[c], 0) + 1
    vocab = build_vocabulary(counts, config={"kind": "remi"})
    lut = vocab.lookup_table(cfg.table)
    return vocab, [(lut[e.codes], e.bar_starts) for e in encs]


def test_bpe_never_crosses_a_bar_and_reloads_bit_identical(tmp_path):
    vocab, songs = _songs()
    tok = train_bpe(songs, base_size=len(vocab), vocab_size=len(vocab) + 200)
    assert tok.get_vocab_size() > len(vocab)
    bar_id = vocab.index["Bar"]
    path = tmp_path / "bpe.json"
    save_bpe(tok, path)
    tok2 = load_bpe(path)
    for ids, bars in songs:
        new, new_bars = bpe_encode(tok, ids, bars)
        new2, new_bars2 = bpe_encode(tok2, ids, bars)
        assert np.array_equal(new, new2) and np.array_equal(new_bars, new_bars2)
        assert len(new) < len(ids)
        assert np.array_equal(bpe_decode(tok, new), ids)  # lossless
        # each BPE token holds a Bar only as its first element, and exactly at the new bar starts
        pieces = [bpe_decode(tok, [t]) for t in new.tolist()]
        with_bar = [k for k, p in enumerate(pieces) if bar_id in p.tolist()]
        assert with_bar == new_bars.tolist()
        assert all(pieces[k].tolist().index(bar_id) == 0 and pieces[k].tolist().count(bar_id) == 1 for k in with_bar)


def test_stage_with_bpe(small_corpus, tmp_path):
    from pipeline.formats.token_shards import read_token_shards
    from pipeline.stages import build_vocab as stage

    params = stage.Params(remi=stage.EventParams(bpe_vocab_size=400), valid_fraction=0.0, test_fraction=0.0)
    summary = stage.run(source=small_corpus, out=tmp_path / "v", kind="remi", params=params, workers=1)
    assert 0 < summary["bpe_tokens"] < summary["tokens"]
    tok = load_bpe(tmp_path / "v" / "shards" / "bpe" / "tokenizer.json")
    base = read_token_shards(tmp_path / "v" / "shards")
    learned = read_token_shards(tmp_path / "v" / "shards" / "bpe")
    for a, b in zip(base.column("tokens").to_pylist(), learned.column("tokens").to_pylist()):
        assert bpe_decode(tok, b).tolist() == a
