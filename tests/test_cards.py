"""Dataset cards (README.md beside summary.json) and the lakh_pipeline.* key-value metadata of every
Parquet file the data stages write: the card's YAML header parses and has Hugging Face's keys, its
data_files globs match the Parquet files written, it is byte-identical across runs, and
``datasets.load_dataset(folder)`` reads the shards through it."""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.cards import front_matter, size_category
from pipeline.schema import read_parquet_metadata
from tests.conftest import make_song

HEADER_KEYS = {"license", "task_categories", "size_categories", "tags", "configs"}


def _songs(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"song{i}.mid").write_bytes(make_song(i, n_bars=4, ts=[(4, 4), (3, 4)][i % 2], tempo_bpm=90 + 10 * i))
    (root / "page.mid").write_bytes(b"<!DOCTYPE html><html><body>404</body></html>")
    return root


def check_card(folder: Path, *, tag: str) -> dict:
    """The card's header has the keys; every data_files glob matches Parquet files the stage wrote,
    and together they cover every shard but the manifest."""
    text = (folder / "README.md").read_text(encoding="utf-8")
    head = front_matter(text)
    assert HEADER_KEYS <= set(head), sorted(head)
    assert head["license"] in ("cc-by-4.0", "other")
    assert "music" in head["tags"] and tag in head["tags"]
    assert head["size_categories"] and head["size_categories"][0].startswith(("n<", "1K<"))
    assert "check your own sources' licences" in text
    assert "@phdthesis{raffel2016learning" in text
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")
                     if not any(part.startswith(".") for part in p.relative_to(folder).parts))
    covered = set()
    assert any(c.get("default") for c in head["configs"])
    for config in head["configs"]:
        for entry in config["data_files"]:
            hits = [w for w in written if fnmatch.fnmatch(w, entry["path"])]
            assert hits, f"{entry['path']} matches none of {written}"
            covered.update(hits)
    assert set(written) - covered <= {"manifest.parquet"}
    return head


def check_metadata(path: Path, fmt: str, *keys: str) -> dict:
    meta = read_parquet_metadata(path)
    assert meta["format"] == fmt and meta["format_version"] == "1", meta
    for k in keys:
        assert k in meta, (k, meta)
    return meta


def load_through_card(folder: Path, n_rows: int) -> None:
    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets is not installed (pip install datasets)")
    ds = datasets.load_dataset(str(folder), split="train", cache_dir=str(folder.parent / ".hf_cache"))
    assert ds.num_rows == n_rows


def test_size_category():
    assert [size_category(n) for n in (0, 999, 1000, 176_581, 10**7)] == [
        "n<1K", "n<1K", "1K<n<10K", "100K<n<1M", "10M<n<100M"]


@pytest.fixture(scope="module")
def lpd_builds(tmp_path_factory):
    from pipeline.stages import build_lpd as stage

    root = tmp_path_factory.mktemp("lpd")
    src = _songs(root / "midi")
    for name in ("a", "b"):
        stage.run(source=src, out=root / name, params=stage.Params(), workers=1)
    return root


def test_build_lpd_card_and_metadata(lpd_builds):
    a, b = lpd_builds / "a", lpd_builds / "b"
    assert (a / "README.md").read_bytes() == (b / "README.md").read_bytes()
    head = check_card(a, tag="symbolic-music")
    assert head["configs"][0]["data_files"] == [{"split": "train", "path": "tensors/*.parquet"}]
    text = (a / "README.md").read_text()
    for must in ("build_lpd", "params digest", "| `velocity` | `list<uint8>` |", "@inproceedings{dong2018musegan"):
        assert must in text
    shard = sorted((a / "tensors").glob("*.parquet"))[0]
    meta = check_metadata(shard, "tensor_shard", "track_order", "resolution", "bar_steps", "pitch_range")
    assert meta["track_order"] == '["Drums", "Piano", "Guitar", "Bass", "Strings"]'
    assert meta["resolution"] == "24" and meta["bar_steps"] == "96"
    assert check_metadata(a / "manifest.parquet", "manifest", "stage")["stage"] == "build_lpd"


def test_build_lpd_loads_through_its_card(lpd_builds, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(lpd_builds / "a", folder, ignore=shutil.ignore_patterns("songs", ".state", ".lock"))
    n = sum(pq.ParquetFile(p).metadata.num_rows for p in (folder / "tensors").glob("*.parquet"))
    load_through_card(folder, n)


def test_build_phrases_card_and_metadata(lpd_builds, tmp_path):
    from pipeline.stages import build_phrases as stage

    params = stage.Params(require_families=(), min_families=1, min_activity=0.01)
    for name in ("a", "b"):
        stage.run(lpd=lpd_builds / "a", out=tmp_path / name, params=params)
    a = tmp_path / "a"
    assert (a / "README.md").read_bytes() == (tmp_path / "b" / "README.md").read_bytes()
    text = (a / "README.md").read_text()
    head = front_matter(text)
    assert HEADER_KEYS <= set(head) and "symbolic-music" in head["tags"]
    assert any((a / "shards").glob("*.parquet"))
    check_card(a, tag="symbolic-music")
    shard = sorted((a / "shards").glob("*.parquet"))[0]
    check_metadata(shard, "phrase_shard", "track_order", "steps_per_bar", "phrase_bars", "lowest_pitch")
    check_metadata(a / "manifest.parquet", "manifest", "stage")


def test_build_vocab_card_metadata_and_load(tmp_path):
    from pipeline.stages import build_vocab as stage

    src = _songs(tmp_path / "midi")
    for name in ("a", "b"):
        stage.run(source=src, out=tmp_path / name, kind="remi", params=stage.Params(), workers=1)
    a = tmp_path / "a"
    assert (a / "README.md").read_bytes() == (tmp_path / "b" / "README.md").read_bytes()
    head = check_card(a, tag="symbolic-music")
    assert head["configs"][0]["data_files"] == [{"split": "train", "path": "shards/remi-*.parquet"}]
    shard = sorted((a / "shards").glob("remi-*.parquet"))[0]
    meta = check_metadata(shard, "token_shard", "vocab_hash", "specials")
    raw = pq.read_schema(shard).metadata
    assert raw[b"vocab_hash"].decode() == meta["vocab_hash"] and raw[b"schema_version"] == b"1"
    check_metadata(a / "manifest.parquet", "manifest", "stage")
    n = sum(pq.ParquetFile(p).metadata.num_rows for p in (a / "shards").glob("remi-*.parquet"))
    load_through_card(a, n)


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="the fluidsynth program is absent")
def test_render_audio_card_and_metadata(tmp_path):
    from pipeline.stages import render_audio as stage

    src = _songs(tmp_path / "midi", n=2)
    params = stage.Params(clip_samples=88192, row_group_mb=0.25, shard_size=3, render_seconds=0.0, clips_per_song=0)
    for name in ("a", "b"):
        stage.run(source=src, out=tmp_path / name, params=params, workers=1)
    a = tmp_path / "a"
    assert (a / "README.md").read_bytes() == (tmp_path / "b" / "README.md").read_bytes()
    head = check_card(a, tag="audio")
    assert head["configs"][0]["data_files"] == [{"split": "train", "path": "parquet/*.parquet"}]
    shard = sorted((a / "parquet").glob("*.parquet"))[0]
    assert check_metadata(shard, "audio_shard", "sample_rate")["sample_rate"] == str(params.sample_rate)
    assert b"huggingface" in pq.read_schema(shard).metadata
    assert check_metadata(a / "manifest.parquet", "manifest", "stage")["stage"] == "render_audio"
