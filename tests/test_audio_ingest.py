"""Stage ingest_audio: recordings at any rate -> 44.1 kHz shards; undecodable files are rows."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import soundfile as sf

from pipeline.stages import ingest_audio as stage

ROOT = Path(__file__).resolve().parents[1]

SR = 44100


def _tone(freq: float, sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    if channels == 2:
        x = np.stack([x, 0.25 * np.sin(2 * np.pi * 2 * freq * t)], axis=1)
    return x.astype(np.float32)


def test_ingest_resamples_downmixes_and_reports_bad_files(tmp_path):
    src = tmp_path / "rec"
    (src / "sub").mkdir(parents=True)
    sf.write(src / "a22050.wav", _tone(440, 22050, 2.0), 22050, subtype="PCM_16")
    sf.write(src / "sub" / "b48000.flac", _tone(220, 48000, 1.5, channels=2), 48000, subtype="PCM_24")
    (src / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    (src / "notes.txt").write_text("not audio, not listed")
    params = stage.Params(clip_samples=16384, downmix="mean", row_group_mb=1.0)
    summary = stage.run(source=src, out=tmp_path / "out", params=params, workers=1)
    m = pd.read_parquet(tmp_path / "out" / "manifest.parquet").set_index("source")
    assert sorted(m.index) == ["a22050.wav", "broken.wav", "sub/b48000.flac"]
    assert m.loc["broken.wav", "status"] == "error" and m.loc["broken.wav", "code"] == "audio.undecodable"
    assert m.loc["broken.wav", "message"]
    assert m.loc["a22050.wav", "source_sample_rate"] == 22050 and m.loc["sub/b48000.flac", "source_channels"] == 2
    assert m.loc["a22050.wav", "duration"] == 2.0 and m.loc["sub/b48000.flac", "duration"] == 1.5
    assert summary["status"] == {"ok": 2, "recovered": 0, "skipped": 0, "error": 1}

    part = next((tmp_path / "out" / "parquet").glob("*.parquet"))
    t = pq.read_table(part).to_pandas()
    assert set(t.sample_rate) == {SR} and set(t.channels) == {1} and t.start_bar.isna().all()
    assert len(t) == summary["clips"] == m.n_clips.sum()
    # the 440 Hz tone survives resampling: its spectrum peaks at 440 Hz at 44.1 kHz
    row = t[t.source == "a22050.wav"].iloc[0]
    x, sr = sf.read(io.BytesIO(row.audio["bytes"]), dtype="float32")
    assert sr == SR and len(x) == 16384
    spec = np.abs(np.fft.rfft(x[: row.valid_samples]))
    assert abs(np.argmax(spec) * SR / len(x[: row.valid_samples]) - 440) < 5
    assert 0.45 < np.abs(x).max() < 0.55


def test_ingest_is_deterministic(tmp_path):
    src = tmp_path / "rec"
    src.mkdir()
    sf.write(src / "a.wav", _tone(330, 48000, 1.0, channels=2), 48000)
    params = stage.Params(clip_samples=8192, downmix="random")
    stage.run(source=src, out=tmp_path / "a", params=params, workers=1)
    stage.run(source=src, out=tmp_path / "b", params=params, workers=1)
    for sub in ("parquet", "npz"):
        for p in sorted((tmp_path / "a" / sub).iterdir()):
            assert p.read_bytes() == (tmp_path / "b" / sub / p.name).read_bytes()


def test_ingest_reads_mp3_and_runs_from_the_cli(tmp_path):
    import subprocess
    import sys

    if "MP3" not in sf.available_formats():  # libsndfile < 1.1
        import pytest

        pytest.skip("this libsndfile cannot decode MP3")
    src = tmp_path / "rec"
    src.mkdir()
    sf.write(src / "tone.mp3", _tone(440, 32000, 1.0), 32000, format="MP3")
    res = subprocess.run([sys.executable, "-c", "from pipeline.cli import main; main()", "ingest-audio", str(src),
                          "--out", str(tmp_path / "out"), "--workers", "1", "--params", str(ROOT / "params.yaml")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "1 files: 1 ok" in res.stdout
    m = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert m.source_sample_rate[0] == 32000 and m.source_format[0].startswith("MP3")
    res = subprocess.run([sys.executable, "-c", "from pipeline.cli import main; main()", "ingest-audio",
                          str(tmp_path / "nope"), "--out", str(tmp_path / "o2")], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 1 and res.stderr.strip().startswith("error: ") and "\n" not in res.stderr.strip()
