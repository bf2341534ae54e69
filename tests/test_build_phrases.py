"""Stage build_phrases: 4-bar phrases in MuseGAN's NPZ format, Parquet shards and a manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.config import section_doc
from pipeline.errors import ParamsError, StageError
from pipeline.formats.phrase_shards import read_phrase_npz
from pipeline.formats.tensor_shards import schema_document as lpd_schema, write_tensor_shard
from pipeline.symbolic.bars import BarTensor
from pipeline.splits import SPLITS, song_split
from pipeline.stages import build_lpd
from pipeline.stages import build_phrases as stage
from pipeline.stages.build_phrases import Params, song_phrases


def split_of(song_id: str, p: Params) -> str:
    return song_split(song_id, valid_fraction=p.valid_fraction, test_fraction=p.test_fraction)


@pytest.fixture
def lpd(small_corpus, tmp_path) -> Path:
    out = tmp_path / "lpd"
    build_lpd.run(source=small_corpus, out=out, params=build_lpd.Params(), workers=1)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _song(n_bars: int, cells: list[tuple[int, int, int, int]]) -> dict:
    bar, step, pitch, track = (np.array(c) for c in zip(*cells)) if cells else ([],) * 4
    return dict(n_bars=n_bars, bar=np.asarray(bar), step=np.asarray(step), pitch=np.asarray(pitch),
                track=np.asarray(track))


def _fill(n_bars: int, tracks: dict[int, range], *, every: int = 1, pitch: int = 60) -> list:
    """A note at every ``every``-th step (of 96) of the given bars, per track."""
    return [(b, s, pitch, t) for t, bars in tracks.items() for b in bars for s in range(0, 96, every)]


def test_corpus_phrases_shapes_split_and_parquet_agree(lpd, tmp_path):
    out = tmp_path / "phrases"
    summary = stage.run(lpd=lpd, out=out, params=Params())
    assert summary["songs"] == 8
    man = pq.read_table(out / "manifest.parquet").to_pandas()
    assert summary["candidates"] == len(man) and man["selected"].sum() == sum(summary["phrases"].values())
    assert man["selected"].sum() > 0
    for sid, split in zip(man["id"], man["split"]):
        assert split == split_of(sid, Params())
    total = 0
    for split in SPLITS:
        with np.load(out / "npz" / f"{split}.npz") as z:
            shape, nonzero, ids, first = z["shape"], z["nonzero"], z["ids"], z["first_bar"]
        n = summary["phrases"][split]
        total += n
        assert tuple(shape) == (n, 4, 48, 84, 5) and nonzero.dtype == np.uint16 and nonzero.shape[0] == 5
        x = read_phrase_npz(out / "npz" / f"{split}.npz").dense()
        assert x.dtype == bool and x.shape == (n, 4, 48, 84, 5) and int(x.sum()) == nonzero.shape[1]
        # the Parquet rows give back the same tensor
        y = np.zeros_like(x)
        for p in sorted((out / "shards").glob(f"{split}-*.parquet")):
            for row in pq.read_table(p).to_pylist():
                assert row["split"] == split and ids[row["index"]] == row["id"]
                assert first[row["index"]] == row["first_bar"]
                y[row["index"], row["bar"], row["step"], row["pitch"], row["track"]] = True
        assert np.array_equal(x, y)
        sel = man[man["selected"] & (man["split"] == split)]
        assert sorted(zip(sel["id"], sel["first_bar"])) == sorted(zip(ids.tolist(), first.tolist()))
    assert total == int(man["selected"].sum())
    schema = json.loads((out / "schema.json").read_text())
    assert schema["tensor_shape"][1:] == [4, 48, 84, 5] and schema["track_order"][0] == "Drums"


def test_48_steps_are_every_other_of_96(lpd, tmp_path):
    stage.run(lpd=lpd, out=tmp_path / "p96", params=Params(steps_per_bar=96))
    stage.run(lpd=lpd, out=tmp_path / "p48", params=Params(steps_per_bar=48))
    for split in SPLITS:
        x96 = read_phrase_npz(tmp_path / "p96" / "npz" / f"{split}.npz").dense()
        x48 = read_phrase_npz(tmp_path / "p48" / "npz" / f"{split}.npz").dense()
        assert x96.shape[2] == 96 and np.array_equal(x96[:, :, ::2], x48)


def test_byte_identical_twice_and_rerun_in_place(lpd, tmp_path):
    stage.run(lpd=lpd, out=tmp_path / "a", params=Params())
    stage.run(lpd=lpd, out=tmp_path / "b", params=Params())
    a = _files(tmp_path / "a")
    assert a == _files(tmp_path / "b")
    stage.run(lpd=lpd, out=tmp_path / "a", params=Params())
    assert a == _files(tmp_path / "a")


def test_pitch_crop_and_downsampling_by_hand():
    cells = [(0, 0, 23, 1), (0, 0, 24, 1), (0, 2, 107, 1), (0, 4, 108, 1), (1, 1, 60, 3), (1, 3, 60, 3),
             (2, 94, 60, 0), (3, 95, 60, 0)]
    sp = song_phrases("0" * 32, **_song(4, cells), in_steps=96,
                      params=Params(require_families=(), min_families=0, min_activity=0.0))
    assert sp.selected.tolist() == [True] and sp.first_bar.tolist() == [0]
    got = sorted(map(tuple, sp.coords[0].T.tolist()))
    # pitch 23 and 108 dropped; 24 -> 0, 107 -> 83; odd steps dropped; step s -> s // 2
    assert got == [(0, 0, 0, 1), (0, 1, 83, 1), (2, 47, 36, 0)]
    sp96 = song_phrases("0" * 32, **_song(4, cells), in_steps=96,
                        params=Params(steps_per_bar=96, require_families=(), min_families=0, min_activity=0.0))
    assert len(sp96.coords[0].T) == 6  # only the two out-of-range pitches dropped
    # activity: Piano has notes at 2 of 4 * 48 steps
    assert sp.activity[0, 1] == np.float32(2 / 192)


def test_selection_rules():
    # 12 bars: Piano everywhere; Bass in bars 0-7; Drums in bars 0-3 only
    cells = _fill(12, {1: range(12), 3: range(8), 0: range(4)}, every=4)
    song = _song(12, cells)
    sp = song_phrases("ab" * 16, **song, in_steps=96, params=Params())
    assert sp.first_bar.tolist() == [0, 4, 8]
    assert sp.reason == ["selected", "selected", "inactive:Bass"] and sp.selected.tolist() == [True, True, False]
    assert np.allclose(sp.activity[0], [1 / 2, 1 / 2, 0, 1 / 2, 0])  # every 4th of 96 = every 2nd of 48
    sp = song_phrases("ab" * 16, **song, in_steps=96, params=Params(require_families=(), min_families=3))
    assert sp.reason == ["selected", "too_few_families", "too_few_families"]
    sp = song_phrases("ab" * 16, **song, in_steps=96, params=Params(min_activity=0.6))
    assert sp.reason == ["inactive:Piano,Bass"] * 3
    sp = song_phrases("ab" * 16, **song, in_steps=96, params=Params(hop_bars=1, require_families=("Piano",), min_families=1,
                                                                        max_phrases_per_song=0))
    assert sp.first_bar.tolist() == list(range(9)) and sp.selected.all()
    # at most N per song, drawn with the per-song seed: the same draw every time, another for another seed
    p = Params(hop_bars=1, require_families=("Piano",), min_families=1, max_phrases_per_song=3)
    draws = [song_phrases("ab" * 16, **song, in_steps=96, params=p).selected for _ in range(2)]
    assert draws[0].sum() == 3 and np.array_equal(draws[0], draws[1])
    rng = np.random.default_rng([p.seed, int("abababab", 16)])
    assert np.flatnonzero(draws[0]).tolist() == sorted(rng.choice(np.arange(9), size=3, replace=False).tolist())
    other = [song_phrases("ab" * 16, **song, in_steps=96, params=Params(hop_bars=1, require_families=("Piano",), min_families=1,
                                                                       max_phrases_per_song=3, seed=s)).selected
             for s in range(6)]
    assert any(not np.array_equal(o, draws[0]) for o in other)
    sp = song_phrases("ab" * 16, **song, in_steps=96, params=p)
    assert sorted(sp.reason).count("not_drawn") == 6
    # a song shorter than a phrase has no candidates
    assert len(song_phrases("ab" * 16, **_song(3, cells[:1]), in_steps=96, params=Params()).first_bar) == 0


def test_split_by_hash():
    ids = [f"{i:032x}" for i in range(2000)]
    splits = [split_of(s, Params()) for s in ids]
    frac = {s: splits.count(s) / len(ids) for s in SPLITS}
    assert abs(frac["valid"] - 0.1) < 0.03 and abs(frac["test"] - 0.1) < 0.03
    assert all(split_of(s, Params(valid_fraction=0.0, test_fraction=0.0)) == "train" for s in ids[:50])
    assert all(split_of(s, Params(valid_fraction=0.0, test_fraction=1.0)) == "test" for s in ids[:50])
    assert splits == [split_of(s, Params()) for s in ids]


def test_hand_made_lpd_end_to_end(tmp_path):
    lpd = tmp_path / "lpd"
    cells = _fill(4, {1: range(4), 3: range(4)}, every=2) + [(0, 0, 23, 4), (0, 0, 24, 4), (1, 0, 107, 4),
                                                          (1, 2, 108, 4)]
    bar, step, pitch, track = (np.array(c) for c in zip(*cells))
    t = BarTensor(n_bars=4, bar_steps=96, n_tracks=5, bar=bar.astype(np.int16), step=step.astype(np.int16),
                  pitch=pitch.astype(np.uint8), track=track.astype(np.uint8),
                  velocity=np.full(len(bar), 100, np.uint8), bars_padded=0, bars_cropped=0, bars_dropped=0)
    sid = next(f"{i:032x}" for i in range(1000) if split_of(f"{i:032x}", Params()) == "train")
    write_tensor_shard(lpd / "tensors" / "lpd5-00000.parquet", lpd / "tensors" / "lpd5-00000.npz", [sid], [t],
                       bar_steps=96, n_tracks=5)
    (lpd / "tensors" / "schema.json").write_text(json.dumps(lpd_schema(
        tracks=list(stage.TRACKS), programs=[0, 0, 24, 32, 48], bar_steps=96, resolution=24, semantics="lpd",
        other_meters="pad")))
    summary = stage.run(lpd=lpd, out=tmp_path / "out", params=Params())
    assert summary["phrases"] == {"train": 1, "valid": 0, "test": 0}
    x = read_phrase_npz(tmp_path / "out" / "npz" / "train.npz").dense()
    assert x.shape == (1, 4, 48, 84, 5)
    strings = x[0, :, :, :, 4]
    assert np.flatnonzero(strings.any(axis=(0, 1))).tolist() == [0, 83]  # 24 -> 0, 107 -> 83; 23, 108 gone
    assert strings.sum() == 2 and x[0, :, :, 36, 1].all() and x[0, :, :, 36, 3].all()
    empty = read_phrase_npz(tmp_path / "out" / "npz" / "valid.npz").dense()
    assert empty.shape == (0, 4, 48, 84, 5)


def test_bad_params_and_missing_input(tmp_path):
    for kw, text in [(dict(require_families=("Flute",)), "Flute"), (dict(min_activity=1.5), "min_activity=1.5"),
                     (dict(valid_fraction=0.6, test_fraction=0.6), "at most 1"),
                     (dict(lowest_pitch=100), "lowest_pitch=100"), (dict(hop_bars=0), "hop_bars=0")]:
        with pytest.raises(ParamsError, match=text):
            Params(**kw)
    with pytest.raises(StageError, match="build-lpd"):
        stage.run(lpd=tmp_path / "nope", out=tmp_path / "out", params=Params())


def test_steps_must_divide_the_input(lpd, tmp_path):
    with pytest.raises(ParamsError, match="steps_per_bar=40"):
        stage.run(lpd=lpd, out=tmp_path / "o", params=Params(steps_per_bar=40))


def test_cli(lpd, tmp_path):
    from pipeline.cli import app

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"build_phrases": section_doc("build_phrases", max_phrases_per_song=1)}))
    res = CliRunner().invoke(app, ["build-phrases", "--lpd", str(lpd), "--out", str(tmp_path / "o"),
                                   "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert "phrases in" in res.output
    assert (tmp_path / "o" / "summary.json").exists()


def test_lpd17_input_merges_into_the_same_lpd5_phrases(small_corpus, lpd, tmp_path):
    lpd17 = tmp_path / "lpd17"
    build_lpd.run(source=small_corpus, out=lpd17, params=build_lpd.Params(tracks="lpd17"), workers=1)
    stage.run(lpd=lpd, out=tmp_path / "a", params=Params())
    stage.run(lpd=lpd17, out=tmp_path / "b", params=Params())
    for split in SPLITS:
        assert np.array_equal(read_phrase_npz(tmp_path / "a" / "npz" / f"{split}.npz").dense(),
                              read_phrase_npz(tmp_path / "b" / "npz" / f"{split}.npz").dense())
    assert json.loads((tmp_path / "b" / "schema.json").read_text())["input_tracks"].startswith("lpd17")
