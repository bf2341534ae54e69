"""The build_lpd stage end to end: manifest, outputs, determinism, resume, lock, archives, cluster."""

from __future__ import annotations

import hashlib
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pypianoroll
import pytest

from pipeline.errors import StageError
from pipeline.stages import build_lpd as stage


def tree_digest(root: Path, *, skip=(".lock",)) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}


def build(src: Path, out: Path, **kw) -> dict:
    params = kw.pop("params", stage.Params())
    return stage.run(source=src, out=out, params=params, **kw)


def test_every_input_gets_a_row(corpus_dir, tmp_path):
    out = tmp_path / "lpd"
    summary = build(corpus_dir, out, workers=1)
    m = pd.read_parquet(out / "manifest.parquet")
    inputs = sorted(p.name for p in corpus_dir.rglob("*") if p.is_file())
    assert sorted(Path(s).name for s in m.source) == inputs
    assert summary["files"] == len(inputs)
    assert "internal.bug" not in summary["codes"]
    assert set(m.status) <= {"ok", "recovered", "skipped", "error"}
    bad = m[m.status.isin(["skipped", "error"])]
    assert bad.code.notna().all() and (bad.message.str.len() > 10).all()
    ok = m[m.status.isin(["ok", "recovered"])]
    assert ok.id.str.fullmatch(r"[0-9a-f]{32}").all()
    assert (ok.n_bars > 0).all() and (ok.n_steps == ok.n_beats * 24).all()
    for sid in ok.id:
        assert (out / "songs" / sid[0] / f"{sid}.npz").exists()
    json.loads((out / "summary.json").read_text())


def test_shared_corpus_statuses(shared_midi, tmp_path):
    """The 14 files pretty_midi cannot read: each is recovered or has a precise reason."""
    out = tmp_path / "lpd"
    build(shared_midi, out, workers=1)
    m = pd.read_parquet(out / "manifest.parquet").set_index("source")
    assert m.loc["drywetmidi__Dancecube_-_Panic.mid", "code"] == "midi.not_midi"
    assert "HTML" in m.loc["drywetmidi__Dancecube_-_Panic.mid", "message"]
    assert m.loc["midly__Beethoven.rmi", "status"] == "recovered"
    assert "RIFF" in m.loc["midly__Beethoven.rmi", "message"]
    assert m.loc["480b1fd5a7d986dc875a5770495deac7.mid", "status"] == "recovered"
    assert "key signature" in m.loc["480b1fd5a7d986dc875a5770495deac7.mid", "message"]
    assert "clipped" in m.loc["06c318c7d5465f102765d6f101320ed5.mid", "message"]
    assert "truncated" in m.loc["midly__PiDamaged.mid", "message"]
    assert m.loc["MidiTok__empty.mid", "code"] == "skip.no_notes"
    # the Lakh files are named by their MD5: our id is the MD5 of the bytes, as in LMD
    lakh = [s for s in m.index if len(Path(s).stem) == 32]
    assert len(lakh) == 12
    assert all(m.loc[s, "id"] == Path(s).stem for s in lakh)
    manifest_tsv = pd.read_csv(shared_midi / "MANIFEST.tsv", sep="\t")
    unreadable = manifest_tsv[manifest_tsv.n_inst.isna()].file
    for name in unreadable:
        row = m.loc[name]
        assert row.status in ("recovered", "skipped", "error"), name
        assert isinstance(row.message, str) and row.message, name


def test_npz_loads_in_pypianoroll_and_matches_the_tensor(corpus_dir, tmp_path):
    out = tmp_path / "lpd"
    build(corpus_dir, out, workers=1)
    m = pd.read_parquet(out / "manifest.parquet")
    ok = m[m.status.isin(["ok", "recovered"])].head(6)
    table = pq.read_table(out / "tensors" / "lpd5-00000.parquet").to_pandas().set_index("id")
    shard = np.load(out / "tensors" / "lpd5-00000.npz", allow_pickle=False)
    x = np.zeros(shard["shape"], bool)
    x[tuple(shard["nonzero"])] = True
    ids = list(shard["ids"])
    for sid in ok.id:
        mt = pypianoroll.load(out / "songs" / sid[0] / f"{sid}.npz")
        assert [t.name for t in mt.tracks] == ["Drums", "Piano", "Guitar", "Bass", "Strings"]
        assert [t.program for t in mt.tracks] == [0, 0, 24, 32, 48]
        assert [t.is_drum for t in mt.tracks] == [True, False, False, False, False]
        rolls = np.stack([t.pianoroll for t in mt.tracks])
        db = np.flatnonzero(mt.downbeat)
        assert db[0] == 0 and len(mt.tempo) == rolls.shape[1]
        # the 5-D tensor row = the roll cut at the downbeats (bars of <= 96 steps)
        row = table.loc[sid]
        n_bars = int(row.n_bars)
        assert n_bars == len(db)
        dense = np.zeros((n_bars, 96, 128, 5), np.uint8)
        dense[row.bar, row.step, row.pitch, row.track] = row.velocity
        bounds = list(db) + [rolls.shape[1]]
        for b in range(min(n_bars, 20)):
            seg = rolls[:, bounds[b]:bounds[b + 1]][:, :96]
            assert np.array_equal(dense[b, : seg.shape[1]], seg.transpose(1, 2, 0))
        k = ids.index(sid)
        assert np.array_equal(x[k, :n_bars], dense > 0)
        assert not x[k, n_bars:].any()


def test_same_bytes_with_one_or_two_workers(small_corpus, tmp_path):
    params = stage.Params(shard_size=3)
    a, b = tmp_path / "a", tmp_path / "b"
    build(small_corpus, a, workers=1, params=params)
    build(small_corpus, b, workers=2, params=params)
    da, db = tree_digest(a), tree_digest(b)
    assert da == db
    assert len([k for k in da if k.startswith("tensors/lpd5-")]) == 2 * 4  # 10 files / 3 per shard


def test_resume_skips_finished_shards_and_redoes_missing_ones(small_corpus, tmp_path):
    params = stage.Params(shard_size=3)
    out = tmp_path / "lpd"
    build(small_corpus, out, workers=1, params=params)
    before = tree_digest(out)
    shard1 = out / "tensors" / "lpd5-00001.parquet"
    mtime0 = (out / "tensors" / "lpd5-00000.parquet").stat().st_mtime_ns
    shard1.unlink()  # as if the run had died before this shard was complete
    build(small_corpus, out, workers=1, params=params)
    assert tree_digest(out) == before
    assert (out / "tensors" / "lpd5-00000.parquet").stat().st_mtime_ns == mtime0  # not redone


def test_changed_params_redo_everything(small_corpus, tmp_path):
    out = tmp_path / "lpd"
    build(small_corpus, out, workers=1)
    build(small_corpus, out, workers=1, params=stage.Params(tracks="lpd17"))
    names = sorted(p.name for p in (out / "tensors").iterdir())
    assert names == ["lpd17-00000.npz", "lpd17-00000.parquet", "schema.json"]
    assert json.loads((out / "tensors" / "schema.json").read_text())["track_order"][16] == "Sound Effects"


def test_second_build_into_the_same_folder_is_refused(small_corpus, tmp_path):
    out = tmp_path / "lpd"
    from pipeline.stagekit import OutputLock

    with OutputLock(out):
        with pytest.raises(StageError, match="another build"):
            build(small_corpus, out, workers=1)


def test_archive_gives_the_same_outputs_as_the_folder(small_corpus, tmp_path):
    archive = tmp_path / "small.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(small_corpus.rglob("*")):
            if p.is_file():
                tar.add(p, arcname=str(p.relative_to(small_corpus)))
    params = stage.Params(shard_size=4)
    build(small_corpus, tmp_path / "f", workers=1, params=params)
    build(archive, tmp_path / "t", workers=1, params=params)
    assert tree_digest(tmp_path / "f") == tree_digest(tmp_path / "t")


def test_duplicates_across_shards(small_corpus, tmp_path):
    (small_corpus / "c").mkdir()
    (small_corpus / "c" / "copy.mid").write_bytes((small_corpus / "a" / "song0.mid").read_bytes())
    out = tmp_path / "lpd"
    build(small_corpus, out, workers=1, params=stage.Params(shard_size=2))
    m = pd.read_parquet(out / "manifest.parquet").set_index("source")
    assert m.loc["c/copy.mid", "status"] == "skipped"
    assert m.loc["c/copy.mid", "code"] == "skip.duplicate"
    assert m.loc["c/copy.mid", "message"] == "same bytes as a/song0.mid"
    ids = []
    for p in sorted((out / "tensors").glob("*.parquet")):
        ids += pq.read_table(p).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 8


def test_lmd_matched_layout_and_lpd_subsets(small_corpus, tmp_path):
    src = tmp_path / "lmd_matched"
    songs = sorted((small_corpus / "a").glob("*.mid"))
    md5 = [hashlib.md5(p.read_bytes()).hexdigest() for p in songs]
    layout = {"TRAAAGR128F425B14B": [0, 3], "TRAAAAW128F429D538": [2, 1]}
    for msd, idxs in layout.items():
        d = src / "A" / "A" / "A" / msd
        d.mkdir(parents=True)
        for i in idxs:
            (d / f"{md5[i]}.mid").write_bytes(songs[i].read_bytes())
    scores = {"TRAAAGR128F425B14B": {md5[0]: 0.5, md5[3]: 0.9}, "TRAAAAW128F429D538": {md5[2]: 0.7, md5[1]: 0.2}}
    (tmp_path / "match_scores.json").write_text(json.dumps(scores))
    out = tmp_path / "lpd"
    build(src, out, workers=1, match_scores=tmp_path / "match_scores.json")
    m = pd.read_parquet(out / "manifest.parquet").set_index("id")
    assert m.loc[md5[0], "msd_id"] == "TRAAAGR128F425B14B"
    assert m.lpd_matched.all()
    # song3 (4/4 at t=0, best score for its MSD id) is cleansed and song0 loses to it; the best
    # match of the other MSD id is song2 in 6/8, so that id has no cleansed file (LPD does not
    # fall back to the next best match)
    assert bool(m.loc[md5[3], "lpd_cleansed"]) and not bool(m.loc[md5[0], "lpd_cleansed"])
    assert m.loc[md5[3], "match_msd_id"] == "TRAAAGR128F425B14B"
    assert m.loc[md5[2], "time_signatures"].tolist() == ["6/8"]
    assert not m.loc[[md5[2], md5[1]], "lpd_cleansed"].any()


@pytest.mark.cluster
def test_runs_on_a_dask_cluster(small_corpus, tmp_path):
    from distributed import LocalCluster

    params = stage.Params(shard_size=2)
    build(small_corpus, tmp_path / "local", workers=1, params=params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster:
            build(small_corpus, tmp_path / "cluster", scheduler=cluster.scheduler_address, params=params)
    assert tree_digest(tmp_path / "local") == tree_digest(tmp_path / "cluster")


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_follow_the_process_umask(small_corpus, tmp_path, umask, mode):
    """Others on a shared server can read the dataset: every file gets the umask's mode (mkstemp's
    0600 used to leak through the atomic writes)."""
    import os
    import stat
    import subprocess
    import sys

    out = tmp_path / "lpd"
    exe = Path(sys.executable).with_name("pipeline")
    res = subprocess.run(["bash", "-c", f"umask {umask:03o}; exec {exe} build-lpd {small_corpus} --out {out} --workers 1"],
                         capture_output=True, text=True, env={**os.environ, "PIPELINE_PROGRESS": "0"}, timeout=300)
    assert res.returncode == 0, res.stderr
    files = [p for p in out.rglob("*") if p.is_file() and p.name != ".lock"]
    assert len(files) > 10
    modes = {oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert modes == {oct(mode)}, {p.relative_to(out).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
