"""The build_vocab stage end to end: manifest, vocabulary, shards, determinism, CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import from_dict, load_params, section_doc
from pipeline.errors import ParamsError
from pipeline.formats.token_shards import read_token_shards
from pipeline.tokens.events import EventConfig, decode
from pipeline.formats.vocab import load_vocabulary
from pipeline.stages import build_vocab as stage

KINDS = ("notes", "remi", "midilike")


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", KINDS)
def test_every_input_gets_a_row_and_shards_match(corpus_dir, tmp_path, kind):
    out = tmp_path / kind
    summary = stage.run(source=corpus_dir, out=out, kind=kind, params=stage.Params(shard_size=16), workers=1)
    m = pd.read_parquet(out / "manifest.parquet")
    inputs = sorted(p.name for p in corpus_dir.rglob("*") if p.is_file())
    assert sorted(Path(s).name for s in m.source) == inputs and summary["files"] == len(inputs)
    assert "internal.bug" not in summary["codes"]
    assert set(m.status) <= {"ok", "recovered", "skipped", "error"}
    bad = m[m.status.isin(["skipped", "error"])]
    assert bad.code.notna().all() and (bad.message.str.len() > 10).all()
    vocab = load_vocabulary(out / "vocab.json", expect_config=stage.token_config(kind, stage.Params(shard_size=16)))
    table = read_token_shards(out / "shards", vocab=vocab)
    ok = m[m.status.isin(["ok", "recovered"])]
    assert set(table.column("id").to_pylist()) == set(ok.id)
    assert sum(len(t) for t in table.column("tokens").to_pylist()) == summary["tokens"] == ok.n_tokens.sum()
    assert summary["unk_tokens"] == 0  # min_count 1: every token of the data is in the vocabulary
    schema = json.loads((out / "shards" / "schema.json").read_text())
    assert schema["vocab_hash"] == vocab.hash and schema["token_kind"] == kind
    assert schema["kind"] == "lakh-pipeline/token-shards" and schema["vocabulary"]["id"] == vocab.hash
    # splits in the shards are the manifest's
    split = dict(zip(ok.id, ok.split))
    assert all(split[i] == s for i, s in zip(table.column("id").to_pylist(), table.column("split").to_pylist()))
    # bar starts are increasing token indices, one per bar
    for toks, bars in zip(table.column("tokens").to_pylist()[:5], table.column("bar_starts").to_pylist()[:5]):
        assert np.all(np.diff(bars) >= 0) and (len(bars) == 0 or bars[-1] <= len(toks))
        if kind != "notes":
            assert all(vocab.tokens[toks[b]] == "Bar" for b in bars)


def test_remi_shard_decodes_back_to_the_song(small_corpus, tmp_path):
    out = tmp_path / "remi"
    stage.run(source=small_corpus, out=out, kind="remi", params=stage.Params(), workers=1)
    vocab = load_vocabulary(out / "vocab.json")
    row = read_token_shards(out / "shards", vocab=vocab).slice(0, 1).to_pylist()[0]
    toks = vocab.strings(row["tokens"])
    assert toks[0] == "Bar" and row["bar_starts"][0] == 0
    raw = decode(toks, EventConfig())
    assert raw[:4] == b"MThd"
    # cut bars 1..2 and they still parse
    b = row["bar_starts"]
    assert vocab.strings(row["tokens"][b[1]:b[2]])[0] == "Bar"


def test_min_count_maps_rare_tokens_to_unk(small_corpus, tmp_path):
    out = tmp_path / "notes"
    summary = stage.run(source=small_corpus, out=out, kind="notes", params=stage.Params(min_count=5), workers=1)
    vocab = load_vocabulary(out / "vocab.json")
    assert all(c >= 5 for c in vocab.counts[4:])
    assert summary["unk_tokens"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["notes", "remi"])
def test_one_and_two_workers_give_identical_bytes(corpus_dir, tmp_path, kind):
    params = stage.Params(shard_size=8)
    stage.run(source=corpus_dir, out=tmp_path / "w1", kind=kind, params=params, workers=1)
    stage.run(source=corpus_dir, out=tmp_path / "w2", kind=kind, params=params, workers=2)
    assert tree_digest(tmp_path / "w1") == tree_digest(tmp_path / "w2")


def test_duplicates_are_skipped(small_corpus, tmp_path):
    (small_corpus / "b" / "copy.mid").write_bytes((small_corpus / "a" / "song0.mid").read_bytes())
    out = tmp_path / "v"
    stage.run(source=small_corpus, out=out, kind="midilike", params=stage.Params(shard_size=3), workers=1)
    m = pd.read_parquet(out / "manifest.parquet").set_index("source")
    assert m.loc["b/copy.mid", "code"] == "skip.duplicate" and "a/song0.mid" in m.loc["b/copy.mid", "message"]
    ids = pq.read_table(out / "shards" / "midilike-00000.parquet").column("id").to_pylist()
    assert len(ids) == len(set(ids))
    assert sum(len(pq.read_table(p)) for p in (out / "shards").glob("*.parquet")) == 8


def test_params_are_validated():
    with pytest.raises(ParamsError, match="build_vocab.max_size=70000"):
        stage.Params(max_size=70000)
    with pytest.raises(ParamsError, match="valid_fraction \\+ test_fraction"):
        stage.Params(valid_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ParamsError, match="unknown key"):
        from_dict(stage.Params, {"remi": {"resolutoin": 4}}, section="build_vocab")
    p = load_params(stage.Params, remi={"resolution": 4}, notes={"streams": "tracks"})
    assert p.remi.resolution == 4 and p.notes.streams == "tracks"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from pipeline.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=300)


def test_cli(tmp_path, small_corpus):
    res = _cli("build-vocab", str(small_corpus), "--kind", "remi", "--out", str(tmp_path / "o"), "--workers", "1",
               "--params", str(Path(__file__).resolve().parents[1] / "params.yaml"))
    assert res.returncode == 0, res.stderr
    assert "10 files: 8 ok, 0 recovered, 0 skipped, 2 errors -> 8 songs" in res.stdout
    assert (tmp_path / "o" / "vocab.json").exists()
    res = _cli("build-vocab", str(small_corpus), "--kind", "bpe", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0  # not one of the option's choices
    assert "Invalid value for '--kind': 'bpe' is not one of 'notes', 'remi', 'midilike'" in res.stderr
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"build_vocab": section_doc("build_vocab", min_count=0)}))
    res = _cli("build-vocab", str(small_corpus), "--out", str(tmp_path / "o"), "--params", str(params))
    assert res.returncode == 1 and res.stderr.strip() == "error: build_vocab.min_count=0 must be >= 1"


def test_apply_a_saved_vocabulary_to_new_data(small_corpus, corpus_dir, tmp_path):
    params = stage.Params()
    stage.run(source=small_corpus, out=tmp_path / "a", kind="notes", params=params, workers=1)
    summary = stage.run(source=corpus_dir, out=tmp_path / "b", kind="notes", params=params, workers=1,
                        vocab_path=tmp_path / "a" / "vocab.json")
    a = load_vocabulary(tmp_path / "a" / "vocab.json")
    assert load_vocabulary(tmp_path / "b" / "vocab.json").hash == a.hash == summary["vocab_hash"]
    if corpus_dir != small_corpus:
        assert summary["unk_tokens"] > 0  # the real songs have chords the band songs never play
    # another config: refused, in one line
    res = _cli("build-vocab", str(small_corpus), "--kind", "notes", "--out", str(tmp_path / "c"), "--workers", "1",
               "--vocab", str(tmp_path / "a" / "vocab.json"), "--params", str(_params(tmp_path, "  notes:\n    rests: true\n")))
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0
    assert "config differs from the expected one in rests" in res.stderr


def _params(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "other.yaml"
    p.write_text(yaml.safe_dump({"build_vocab": section_doc("build_vocab", **yaml.safe_load("build_vocab:\n" + body)["build_vocab"])}))
    return p


def test_duplicates_across_shards_are_counted_once(small_corpus, tmp_path):
    stage.run(source=small_corpus, out=tmp_path / "once", kind="notes", params=stage.Params(shard_size=3), workers=1)
    (small_corpus / "b" / "zz_copy.mid").write_bytes((small_corpus / "a" / "song0.mid").read_bytes())
    stage.run(source=small_corpus, out=tmp_path / "twice", kind="notes", params=stage.Params(shard_size=3), workers=1)
    assert (tmp_path / "once" / "vocab.json").read_bytes() == (tmp_path / "twice" / "vocab.json").read_bytes()


def test_two_copies_in_a_later_shard_leave_the_song_in_the_shards_once(small_corpus, tmp_path):
    """a/song0.mid, then two copies of it in the last shard: the first copy is taken out of the
    shards after pass 1, the second (a repeat inside its shard) never enters them."""
    for name in ("x1.mid", "x2.mid"):
        (small_corpus / "c").mkdir(exist_ok=True)
        (small_corpus / "c" / name).write_bytes((small_corpus / "a" / "song0.mid").read_bytes())
    out = tmp_path / "v"
    stage.run(source=small_corpus, out=out, kind="remi", params=stage.Params(shard_size=2), workers=1)
    m = pd.read_parquet(out / "manifest.parquet").set_index("source")
    assert list(m.loc[["c/x1.mid", "c/x2.mid"], "message"]) == ["same bytes as a/song0.mid"] * 2
    ids = [i for p in sorted((out / "shards").glob("remi-*.parquet")) for i in pq.read_table(p).column("id").to_pylist()]
    assert len(ids) == len(set(ids)) == (m.status == "ok").sum() + (m.status == "recovered").sum()


def test_archive_gives_the_same_outputs_as_the_folder(small_corpus, tmp_path):
    import tarfile

    (small_corpus / "b" / "zz_copy.mid").write_bytes((small_corpus / "a" / "song0.mid").read_bytes())
    archive = tmp_path / "small.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(small_corpus.rglob("*")):
            if p.is_file():
                tar.add(p, arcname=p.relative_to(small_corpus).as_posix())
    params = stage.Params(shard_size=3)
    stage.run(source=small_corpus, out=tmp_path / "folder", kind="remi", params=params, workers=1)
    stage.run(source=archive, out=tmp_path / "archive", kind="remi", params=params, workers=1)
    assert tree_digest(tmp_path / "folder") == tree_digest(tmp_path / "archive")


def test_resume_skips_finished_shards(small_corpus, tmp_path, monkeypatch):
    out = tmp_path / "v"
    params = stage.Params(shard_size=3)
    stage.run(source=small_corpus, out=out, kind="remi", params=params, workers=1)
    before = tree_digest(out)
    (out / "shards" / "remi-00001.parquet").unlink()  # an interrupted run
    calls = []
    real = stage.tokenize_one
    monkeypatch.setattr(stage, "tokenize_one", lambda raw, key, *a: calls.append(key) or real(raw, key, *a))
    stage.run(source=small_corpus, out=out, kind="remi", params=params, workers=1)
    assert tree_digest(out) == before
    assert sorted(set(calls)) == sorted(k for k in calls)  # each file of shard 1 once: pass 2 only
    assert len(calls) == 3
    # other params: nothing reused
    calls.clear()
    stage.run(source=small_corpus, out=out, kind="remi", params=stage.Params(shard_size=3, min_count=2), workers=1)
    assert len(calls) > 10


def test_second_build_into_the_same_folder_is_refused(small_corpus, tmp_path):
    from pipeline.errors import StageError
    from pipeline.stagekit import OutputLock
    from pipeline.stages import build_vocab as stage

    out = tmp_path / "vocab"
    with OutputLock(out):
        with pytest.raises(StageError, match="another build"):
            stage.run(source=small_corpus, out=out, kind="remi", params=stage.Params(), workers=1)
