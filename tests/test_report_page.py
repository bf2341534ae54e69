"""The report page in a real browser: headless Chromium (Debian's ``chromium``) opens
``index.html`` from disk; no console error, every image decodes, every ``<audio>`` loads its
metadata (MIDI samples rendered through FluidSynth), and a screenshot is written (its path is
printed; ``REPORT_SCREENSHOT=path.png`` keeps a copy there)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from pipeline.stages import report as stage
from tests.browser import chromium, visit

ROOT = Path(__file__).resolve().parents[1]


def _png(path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 1.5))
    ax.imshow(np.random.default_rng(seed).random((8, 16)), aspect="auto")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _mid(path: Path, pitch: int) -> None:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    for i in range(4):
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=pitch + 2 * i, start=0.25 * i, end=0.25 * i + 0.3))
    pm.instruments.append(inst)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))


def _wav(path: Path, hz: float) -> None:
    import soundfile as sf

    t = np.arange(22050) / 44100
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 44100)


def _manifest(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n = 12
    cols = {"id": [f"{i:032x}" for i in range(n)], "status": ["ok"] * (n - 1) + ["skipped"],
            "n_bars": rng.integers(8, 400, n).tolist(), "duration": rng.uniform(20, 300, n).tolist(),
            "tempo_min": rng.uniform(60, 120, n).tolist(), "tempo_max": rng.uniform(100, 180, n).tolist(),
            "time_signatures": [["4/4"], ["3/4"], ["4/4", "6/8"]] * 4}
    for f in ("drums", "piano", "guitar", "bass", "strings"):
        cols[f"notes_{f}"] = rng.integers(0, 3000, n).tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)


@pytest.fixture
def workspace(tmp_path) -> Path:
    ds = tmp_path / "datasets"
    (ds / "lpd").mkdir(parents=True)
    (ds / "lpd" / "summary.json").write_text(json.dumps(
        {"files": 12, "songs": 11, "bars": 900, "status": {"ok": 11, "recovered": 0, "skipped": 1, "error": 0}}))
    _manifest(ds / "lpd" / "manifest.parquet")
    for i, variant in enumerate(("small", "large")):  # a symbolic family: MIDI samples with piano-rolls
        v = ds / "models" / "toy" / variant
        v.mkdir(parents=True)
        (v / "evaluation.md").write_text(f"# {variant} on notes\n\n| pieces | UPC |\n|---|---|\n| samples | {i + 3}.5 |\n| data | 4.0 |\n")
        (v / "metrics.json").write_text(json.dumps([{"epoch": e, "train_loss": 5.0 - e - i, "valid_loss": 5.5 - e,
                                                     "valid_perplexity": 10.0 ** (3 - e)} for e in (1, 2, 3)]))
        for k in range(2):
            _png(v / "samples" / f"sample_{k:02d}.png", 2 * i + k)
            _mid(v / "samples" / f"sample_{k:02d}.mid", 60 + 5 * k)
    aud = ds / "models" / "audiofam"  # an audio family: WAV samples (one without a picture)
    (aud / "prior").mkdir(parents=True)
    (aud / "prior" / "metrics.json").write_text(json.dumps([{"step": s, "train_bits": 8.0 / s} for s in range(1, 20)]))
    _wav(aud / "samples" / "ancestral" / "level_0" / "sample_00.wav", 440.0)
    _png(aud / "samples" / "ancestral" / "level_0" / "sample_00.png", 9)
    _wav(aud / "samples" / "primed" / "prompt_00.wav", 330.0)
    return ds


def _render() -> dict:
    from pipeline.config import read_params

    return read_params(ROOT / "params.yaml")["render_audio"]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_page_is_self_contained_and_reproducible(workspace):
    out = workspace / "report"
    s = stage.run(datasets=workspace, out=out, render=_render(), params={"x": 1})
    assert s["players"] == 2 * 2 + 2 and s["not_rendered"] == 0
    text = (out / "index.html").read_text()
    assert "http://" not in text.replace('href="https://arxiv.org', "") and "<script" not in text
    # every src (images, audio) lies under assets/; links to the sample files resolve too
    srcs = re.findall(r'src="([^"]+)"', text)
    assert srcs and all(src.startswith("assets/") and (out / src).is_file() for src in srcs)
    for href in re.findall(r'href="([^"#][^"]*)"', text):
        assert href.startswith("https://") or (out / href).is_file(), href
    assert text.count("<audio") == 6
    assert (out / "assets" / "data" / "tempo.png").is_file() and (out / "assets" / "curves" / "toy.png").is_file()
    first = _files(out)
    stage.run(datasets=workspace, out=out, render=_render(), params={"x": 1})
    assert _files(out) == first  # same inputs, same bytes (the MP3s included)


def test_page_without_synth_settings_lists_midi_without_players(workspace):
    s = stage.run(datasets=workspace, out=workspace / "r")
    assert s["players"] == 2 and s["not_rendered"] == 4
    assert "not rendered" in (workspace / "r" / "index.html").read_text()


@pytest.mark.skipif(chromium() is None, reason="no chromium (scripts/setup.sh installs Debian's chromium)")
def test_page_in_headless_chromium(workspace, tmp_path):
    out = workspace / "report"
    stage.run(datasets=workspace, out=out, render=_render(), params={"x": 1})
    shot = tmp_path / "report_page.png"
    seen = visit(out / "index.html", shot)
    print(f"screenshot: {shot}")
    if os.environ.get("REPORT_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["REPORT_SCREENSHOT"])
    assert seen["title"] == "lakh-pipeline report"
    assert seen["errors"] == []
    assert len(seen["imgs"]) >= 10 and all(i["complete"] and i["w"] > 0 for i in seen["imgs"]), seen["imgs"]
    assert len(seen["audio"]) == 6
    for a in seen["audio"]:
        assert a["canPlay"] in ("probably", "maybe") and a["error"] is None and a["ready"] >= 1, a
        assert a["duration"] > 0.05, a
    assert shot.stat().st_size > 10_000
