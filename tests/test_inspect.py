"""`pipeline inspect`: what a manifest, shard or song file holds, and its plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import PipelineError
from pipeline.inspection import describe, kind_of, plot
from stages import build_lpd, build_vocab


@pytest.fixture
def built(small_corpus, tmp_path) -> Path:
    build_lpd.run(source=small_corpus, out=tmp_path / "lpd", params=build_lpd.Params(), workers=1)
    build_vocab.run(source=small_corpus, out=tmp_path / "remi", kind="remi", params=build_vocab.Params(), workers=1)
    return tmp_path


def test_describes_each_kind(built):
    lpd = built / "lpd"
    assert describe(lpd / "manifest.parquet")[1:] == ["  10 input files", "  error: 2", "  ok: 8",
                                                       "    midi.empty_file: 1", "    midi.not_midi: 1"]
    assert describe(lpd / "tensors" / "lpd5-00000.parquet")[1].startswith("  8 songs, ")
    npz_line = describe(lpd / "tensors" / "lpd5-00000.npz")[1]
    assert npz_line.startswith("  shape (8, ") and npz_line.endswith("% dense)")
    song = next((lpd / "songs").rglob("*.npz"))
    assert kind_of(song) == "song-npz"
    lines = describe(song)
    assert [line.split(":")[0].strip() for line in lines[2:]] == ["Drums", "Piano", "Guitar", "Bass", "Strings"]
    tokens = describe(next((built / "remi" / "shards").glob("remi-*.parquet")))
    assert tokens[1].startswith("  8 songs, 8 streams, ")
    assert describe(lpd)[2:] == ["  manifest: 1", "  musegan-npz: 1", "  song-npz: 8", "  tensors: 1",
                                 "  schema songs/schema.json: lakh-pipeline/song-pianorolls v1 (ok)",
                                 "  schema tensors/schema.json: lakh-pipeline/pianoroll-tensors v1 (ok)"]
    assert describe(lpd / "tensors" / "lpd5-00000.parquet")[-1] == (
        "  schema schema.json: lakh-pipeline/pianoroll-tensors v1 (ok)")
    doc = json.loads((built / "remi" / "shards" / "schema.json").read_text())
    (built / "remi" / "shards" / "schema.json").write_text(json.dumps({**doc, "schema_version": 999}))
    assert describe(built / "remi")[-1] == ("  schema shards/schema.json: lakh-pipeline/token-shards v999 (refused: "
                                            "unsupported lakh-pipeline/token-shards schema_version: expected 1, "
                                            "found 999)")


def test_plots_are_pngs(built, tmp_path):
    song = next((built / "lpd" / "songs").rglob("*.npz"))
    for src, name in ((song, "song.png"), (built / "lpd" / "tensors" / "lpd5-00000.parquet", "bars.png")):
        out = plot(src, tmp_path / name)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(PipelineError, match="--plot draws"):
        plot(built / "lpd" / "manifest.parquet", tmp_path / "m.png")


def test_cli_missing_path_is_one_line(tmp_path):
    res = CliRunner().invoke(app, ["inspect", str(tmp_path / "nope")], standalone_mode=False, catch_exceptions=True)
    assert isinstance(res.exception, PipelineError)
    assert "no such file or folder" in str(res.exception)
