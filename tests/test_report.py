"""pipeline report: one page over real stage outputs (summaries, evaluations, curves, samples)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import StageError
from pipeline.stages import report as stage


def _png(path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.imshow(np.random.default_rng(seed).random((8, 8)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _mid(path: Path) -> None:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes.append(pretty_midi.Note(velocity=90, pitch=60, start=0.0, end=0.5))
    pm.instruments.append(inst)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))


@pytest.fixture
def workspace(tmp_path) -> Path:
    ds = tmp_path / "datasets"
    (ds / "lpd").mkdir(parents=True)
    (ds / "lpd" / "summary.json").write_text(json.dumps(
        {"files": 9, "songs": 8, "bars": 120, "status": {"ok": 7, "recovered": 1, "skipped": 1, "error": 0}}))
    # a family with variants, each with its own evaluation, curves and samples
    for i, variant in enumerate(("small", "large")):
        v = ds / "models" / "toy" / variant
        v.mkdir(parents=True)
        (v / "evaluation.md").write_text(f"# {variant} on notes\n\n| pieces | UPC |\n|---|---|\n| samples | {i + 3}.5 |\n| data | 4.0 |\n")
        (v / "metrics.json").write_text(json.dumps([{"epoch": e, "train_loss": 5.0 - e - i, "valid_loss": 5.5 - e}
                                                    for e in (1, 2, 3)]))
        _png(v / "samples" / "sample_00.png", i)
        _mid(v / "samples" / "sample_00.mid")
        _mid(v / "samples" / "sample_01.mid")
    # a family evaluated as a whole (one table over its variants), curves per variant
    fam = ds / "models" / "gan"
    (fam / "a").mkdir(parents=True)
    (fam / "evaluation.md").write_text("# GAN metrics\n\n| model | EB |\n|---|---|\n| training data | 0.1 |\n| a | 0.3 |\n")
    (fam / "a" / "metrics.json").write_text(json.dumps([{"step": s, "d_loss": -s, "g_loss": s / 2} for s in range(5)]))
    return ds


def test_report_lists_data_metrics_curves_and_samples(workspace, tmp_path):
    out = workspace / "report"
    s = stage.run(datasets=workspace, out=out, images_per_part=1, links_per_part=1)
    assert s["families"] == {"gan": {"parts": ["gan", "a"], "samples": 0},
                             "toy": {"parts": ["large", "small"], "samples": 4}}
    text = (out / "report.md").read_text()
    assert "| build_lpd | 9 | 7 | 1 | 1 | 0 | 8 songs, 120 bars |" in text
    assert "### small on notes" in text and "| samples | 3.5 |" in text and "| a | 0.3 |" in text
    assert "## GAN metrics" in text  # the family-level page's title, demoted one level
    assert "and 1 more" in text  # two MIDI files, one link shown
    # every link and image resolves from the report's folder
    targets = re.findall(r"\]\(([^)]+)\)", text)
    assert len(targets) == 2 + 2 + 2  # two curve figures, one image and one link per toy variant
    for t in targets:
        assert (out / t).is_file(), t
    assert (out / "toy_curves.png").stat().st_size > 1000 and (out / "gan_curves.png").is_file()
    # same outputs, same bytes
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    stage.run(datasets=workspace, out=out, images_per_part=1, links_per_part=1)
    assert first == {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_report_cli(workspace):
    res = CliRunner().invoke(app, ["report", "--datasets", str(workspace), "--out", str(workspace / "r")])
    assert res.exit_code == 0, res.output
    assert "toy (2)" in res.output and (workspace / "r" / "report.md").is_file()
    assert "4 audio players" in res.output and (workspace / "r" / "index.html").is_file()  # MIDI rendered
    bad = workspace / "p.yaml"
    bad.write_text("corpus: {}\n")
    res = CliRunner().invoke(app, ["report", "--datasets", str(workspace), "--params", str(bad)])
    assert res.exit_code != 0 and "no render_audio section" in str(res.exception)
    res = CliRunner().invoke(app, ["report", "--datasets", str(workspace / "missing")])
    assert res.exit_code != 0
    assert isinstance(res.exception, StageError) and "no datasets folder" in str(res.exception)
