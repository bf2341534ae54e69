"""pipeline.data: PyTorch datasets over the tensor, token and audio shards, and aligned views.

The shards are built once per module by the real stages (build_lpd, build_vocab remi,
render_audio) from the songs of the ``small_corpus`` fixture."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from pipeline.data import AudioClips, PianorollBars, TokenStream, TokenWindows, aligned
from pipeline.data.aligned import bar_bounds
from pipeline.formats.token_shards import windows
from pipeline.stages import build_lpd, build_vocab, render_audio
from tests.conftest import make_song

HAS_FLUIDSYNTH = shutil.which("fluidsynth") is not None
needs_fluidsynth = pytest.mark.skipif(not HAS_FLUIDSYNTH, reason="the fluidsynth program is absent")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, Path]:
    """The small_corpus songs (made here: that fixture is per test) through the three stages."""
    root = tmp_path_factory.mktemp("data")
    src = root / "small"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    for i in range(8):  # as conftest.small_corpus
        ts = [(4, 4), (3, 4), (6, 8)][i % 3]
        (src / ("a" if i < 4 else "b") / f"song{i}.mid").write_bytes(make_song(i, ts=ts, tempo_bpm=90 + 10 * i))
    (src / "b" / "page.mid").write_bytes(b"<!DOCTYPE html><html><body>404</body></html>")
    (src / "b" / "empty.midi").write_bytes(b"")
    out = {"src": src, "lpd": root / "lpd", "vocab": root / "vocab"}
    build_lpd.run(source=src, out=out["lpd"], params=build_lpd.Params(shard_size=3), workers=1)
    build_vocab.run(source=src, out=out["vocab"], kind="remi", params=build_vocab.Params(shard_size=3), workers=1)
    if HAS_FLUIDSYNTH:
        out["audio"] = root / "audio"
        # clips of ~3 s starting on downbeats (a bar is at most 2.67 s here); small row groups
        render_audio.run(source=src, out=out["audio"], workers=1,
                         params=render_audio.Params(render_seconds=6.0, clip_samples=131072, shard_size=3,
                                                    row_group_mb=0.1, clip_offset="bar", clips_per_song=0))
        out["stereo"] = root / "stereo"
        render_audio.run(source=src / "a", out=out["stereo"], workers=1,
                         params=render_audio.Params(render_seconds=2.0, clip_samples=22016, shard_size=2,
                                                    downmix="none", clip_offset="seeded", clips_per_song=0))
    return out


def _dense_from_parquet(lpd: Path) -> dict[str, np.ndarray]:
    """Velocity tensors rebuilt from the Parquet rows with pyarrow and numpy only."""
    out = {}
    for p in sorted((lpd / "tensors").glob("*.parquet")):
        for row in pq.read_table(p).to_pylist():
            x = np.zeros((row["n_bars"], 96, 128, 5), np.float32)
            x[row["bar"], row["step"], row["pitch"], row["track"]] = row["velocity"]
            out[row["id"]] = x
    return out


def _loader_items(ds, workers: int) -> list[torch.Tensor]:
    dl = DataLoader(ds, batch_size=None, num_workers=workers, shuffle=False)
    return [x.clone() for x in dl]


# -- piano-roll bars ------------------------------------------------------------------------------

def test_pianoroll_items_are_the_parquet_tensors(shards):
    dense = _dense_from_parquet(shards["lpd"])
    ds = PianorollBars(shards["lpd"], bars=2)
    vel = PianorollBars(shards["lpd"] / "tensors", bars=2, binarize=False)
    assert len(ds) == sum(n // 2 for n in (x.shape[0] for x in dense.values())) == len(vel) > 0
    for i, (sid, b) in enumerate(ds.index):
        x = ds[i]
        assert x.dtype == torch.float32 and x.shape == (2, 96, 128, 5)
        assert torch.equal(x, torch.from_numpy((dense[sid][b : b + 2] > 0).astype(np.float32)))
        assert torch.equal(vel[i], torch.from_numpy(dense[sid][b : b + 2]))
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(ValueError, match="bars=0"):
        PianorollBars(shards["lpd"], bars=0)


def test_pianoroll_random_access_and_overlapping_windows(shards):
    ds = PianorollBars(shards["lpd"], bars=3, hop=1, cache_rows=1)
    seq = [ds[i] for i in range(len(ds))]
    order = np.random.default_rng(0).permutation(len(ds))
    for i in order:
        assert torch.equal(ds[int(i)], seq[int(i)])
    assert len(ds) == sum(n - 2 for _, _, n in ds.songs.values())


def test_pianoroll_dataloader_workers(shards):
    ds = PianorollBars(shards["lpd"], bars=2)
    a, b = _loader_items(ds, 0), _loader_items(ds, 2)
    assert len(a) == len(b) == len(ds)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # spawned workers get a pickled copy: no handle or cache crosses the process boundary
    ds[0]
    assert ds._files._files and ds._cache._items
    dl = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    assert all(torch.equal(x, y) for x, y in zip(dl, a))


# -- tokens -------------------------------------------------------------------------------------

def _train_rows(vocab: Path) -> list[dict]:
    rows = []
    for p in sorted((vocab / "shards").glob("*.parquet")):
        rows += [r for r in pq.read_table(p).to_pylist() if r["split"] == "train"]
    return rows


def test_token_windows(shards):
    ds = TokenWindows(shards["vocab"], length=32, stride=16)
    expect = [w for r in _train_rows(shards["vocab"]) for w in windows(np.array(r["tokens"]), 32, 16)]
    assert len(ds) == len(expect) > 0
    for i in np.random.default_rng(1).permutation(len(ds)):
        x = ds[int(i)]
        assert x.dtype == torch.int64 and x.shape == (32,)
        assert np.array_equal(x.numpy(), expect[int(i)])
    assert all(s == "all" for _, s, _ in ds.index)
    assert len(TokenWindows(shards["vocab"] / "shards", length=32, stride=16, split=None)) >= len(ds)
    a, b = _loader_items(ds, 0), _loader_items(ds, 2)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == len(b) == len(ds)


def _keys(items) -> Counter:
    return Counter(tuple(x.tolist()) for x in items)


def test_token_stream_splits_shards_across_workers(shards):
    ds = TokenStream(shards["vocab"], length=32, stride=16, seed=3)
    assert len(ds.paths) >= 3  # more shards than workers
    parts = [ds.shards_for(w, 2) for w in range(2)]
    assert sorted(p for part in parts for _, p in part) == sorted(ds.paths)  # each shard once
    one, two = _loader_items(ds, 0), _loader_items(ds, 2)
    expect = Counter(tuple(w.tolist()) for r in _train_rows(shards["vocab"])
                     for w in windows(np.array(r["tokens"], np.int64), 32, 16))
    assert _keys(one) == _keys(two) == expect  # same windows, none twice, whatever the workers
    # deterministic for a seed; another epoch or seed reorders
    again = list(TokenStream(shards["vocab"], length=32, stride=16, seed=3))
    assert [tuple(x.tolist()) for x in again] == [tuple(x.tolist()) for x in one]
    ds.set_epoch(1)
    assert _keys(list(ds)) == expect
    plain = list(TokenStream(shards["vocab"], length=32, stride=16, shuffle=False))
    assert _keys(plain) == expect


# -- audio --------------------------------------------------------------------------------------

@needs_fluidsynth
def test_audio_clips_decode_to_clip_length(shards):
    ds = AudioClips(shards["audio"])
    table = pq.read_table(shards["audio"] / "parquet")
    assert len(ds) == table.num_rows > 0
    assert len(pq.ParquetFile(sorted((shards["audio"] / "parquet").glob("*.parquet"))[0]).metadata.to_dict()
               ["row_groups"]) > 1  # rows are found across row groups
    for i in np.random.default_rng(2).permutation(len(ds)):
        i = int(i)
        x, m = ds[i], ds.meta[i]
        assert x.dtype == torch.float32 and x.shape == (m["samples"],) == (131072,)
        row = pq.read_table(ds.paths[ds._where[i][0]]).slice(ds._where[i][1], 1).to_pylist()[0]
        ref, sr = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="float32")
        assert sr == m["sample_rate"] == 44100 and np.array_equal(x.numpy(), ref)
    a, b = _loader_items(ds, 0), _loader_items(ds, 2)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == len(b) == len(ds)


@needs_fluidsynth
def test_audio_clips_random_downmix_of_stereo(shards):
    st = AudioClips(shards["stereo"], mono=False)
    mono = AudioClips(shards["stereo"], seed=7)
    assert len(st) == len(mono) > 1
    weights = []
    for i in range(len(st)):
        x = st[i]
        assert x.shape == (2, 22016) and x.dtype == torch.float32
        m = np.float32(mono.mix_weight(i))
        weights.append(float(m))
        assert 0.0 <= m < 1.0
        assert torch.equal(mono[i], m * x[0] + (np.float32(1) - m) * x[1])
        assert torch.equal(mono[i], AudioClips(shards["stereo"], seed=7)[i])  # seeded per item
    assert len(set(weights)) == len(weights)
    before = mono.mix_weight(0)
    mono.set_epoch(1)
    assert mono.mix_weight(0) != before


# -- aligned views ------------------------------------------------------------------------------

@needs_fluidsynth
def test_aligned_bars_across_modalities(shards):
    lpd, vocab, audio = shards["lpd"], shards["vocab"], shards["audio"]
    bar_id = json.loads((vocab / "vocab.json").read_text())["tokens"]["Bar"]
    clips = AudioClips(audio)
    bars = PianorollBars(lpd, bars=1)
    checked = 0
    for i, m in enumerate(clips.meta):
        sid, b = m["id"], m["start_bar"]
        if b < 0 or m["end_bar"] <= b + 1:
            continue
        bounds = bar_bounds(lpd, sid)
        lo, hi = np.round(bounds[[b, b + 1]] * 44100).astype(int)
        if hi > m["start_sample"] + m["samples"]:
            continue
        r = aligned(sid, b, b + 1, lpd=lpd, vocab=vocab, audio=clips)
        n_bars = bars.songs[sid][2]
        assert r["n_bars"] == r["token_bars"] == n_bars == len(bounds) - 1
        assert torch.equal(r["pianoroll"], bars.bars_of(sid, b, b + 1)) and r["pianoroll"].shape[0] == 1
        assert r["tokens"][0].item() == bar_id and (r["tokens"] == bar_id).sum().item() == 1
        # clip_offset=bar: the clip starts exactly on its first bar, as computed from the shards alone
        assert lo == m["start_sample"] and r["sample_range"] == (lo, hi)
        assert r["audio_exact"] and r["audio"].shape == (hi - lo,)
        assert torch.equal(r["audio"], clips[i][: hi - lo])
        checked += 1
    assert checked >= 4

    sid = clips.meta[0]["id"]
    n = bars.songs[sid][2]
    whole = aligned(sid, 0, n, lpd=lpd, vocab=vocab)
    row = next(r for p in sorted((vocab / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()
               if r["id"] == sid)
    assert whole["tokens"].tolist() == row["tokens"] and whole["pianoroll"].shape == (n, 96, 128, 5)
    assert whole["audio"] is None and whole["clips"] == []  # audio not asked for
    parts = [aligned(sid, k, k + 1, vocab=vocab)["tokens"] for k in range(n)]
    assert torch.equal(torch.cat(parts), whole["tokens"])
    # without the build_lpd song files the bar times are unknown: the overlapping clips, whole
    fallback = aligned(sid, 0, 1, audio=audio)
    assert not fallback["audio_exact"] and fallback["audio"] is None and fallback["clips"]
    for c in fallback["clips"]:
        assert c["start_bar"] < 1 and c["end_bar"] > 0 and c["audio"].shape == (131072,)
    with pytest.raises(ValueError):
        aligned(sid, 2, 2, lpd=lpd)


def test_a_wrong_split_name_is_an_error(shards):
    """A typo ('training') used to read as an empty split: 0 items and no word of why."""
    from pipeline.data import TokenStream

    for cls in (TokenWindows, TokenStream):
        with pytest.raises(ValueError, match=r"split='training' is not a split.*train, valid, test"):
            cls(shards["vocab"], length=32, stride=16, split="training")
    TokenWindows(shards["vocab"], length=32, stride=16, split="valid")  # a real split still opens
