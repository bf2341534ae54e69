"""Real `dvc repro` in a fresh clone of this repository, with the committed params: every stage runs
in under 30 minutes, a second run does nothing, a changed param reruns only the stages that read it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.dvc, pytest.mark.slow]

#: the whole pipeline must finish within this on a 2-core machine without a GPU
LIMIT_S = 30 * 60


def _git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


@pytest.fixture
def clone(tmp_path) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and this project's repository")
    dst = tmp_path / "clone"
    _git("clone", "-q", str(ROOT), str(dst), cwd=tmp_path)
    # the working tree's uncommitted code and params, so the test checks what is being changed
    for rel in ("dvc.yaml", "params.yaml", "pipeline", "stages"):
        src = ROOT / rel
        if src.is_dir():
            shutil.rmtree(dst / rel)
            shutil.copytree(src, dst / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst / rel)
    return dst


def dvc(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(cwd), PIPELINE_PROGRESS="0", PIPELINE_WORKERS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    res = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=LIMIT_S)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def _committed_code_unchanged() -> bool:
    """True when the working tree's code, params and pipeline equal the last commit's."""
    diff = _git("status", "--porcelain", "--", "dvc.yaml", "dvc.lock", "params.yaml", "pipeline", "stages", cwd=ROOT)
    return not diff.stdout.strip()


def _flat(doc: dict, prefix: str = "") -> list[str]:
    """The dotted keys `dvc metrics show` makes columns of."""
    keys = []
    for k, v in doc.items():
        keys += _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return keys


def ran(stdout: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", stdout))


def test_repro_then_nothing_then_only_what_changed(clone):
    """The default params.yaml (the small CPU configs), the built-in corpus, one worker."""
    t0 = time.monotonic()
    first = dvc("repro", cwd=clone).stdout
    minutes = (time.monotonic() - t0) / 60
    assert minutes < LIMIT_S / 60, f"dvc repro took {minutes:.1f} min"
    stages = set(dvc("stage", "list", "--name-only", cwd=clone).stdout.split())
    # every stage with cached outputs runs (a clone has none); a stage whose outputs are all committed
    # metrics (the evaluations) runs only if its inputs came out different from the committed dvc.lock
    assert ran(first) <= stages
    assert ran(first) >= {"corpus", "build_lpd", "build_phrases", "render_audio", "train_musegan@musegan",
                          "sample_musegan@track_conditional", "train_vqvae", "train_jukebox_prior", "train_jukebox_upsampler@0",
                          "sample_jukebox@primed", "train_lstm@lstm_attention", "report"}
    if _committed_code_unchanged():
        # the same bytes and numbers as this repository: dvc.lock (every output's hash) and every
        # committed metric are unchanged, so no evaluation had to run again
        assert (clone / "dvc.lock").read_text() == (ROOT / "dvc.lock").read_text()
        changed = _git("status", "--porcelain", "--untracked-files=no", cwd=clone).stdout.split("\n")
        assert not [c for c in changed if c.strip() and "datasets/" in c], changed
        assert not {s for s in stages if s.startswith("evaluate_")} & ran(first)
    metrics = yaml.safe_load((clone / "datasets" / "lpd" / "summary.json").read_text())
    assert metrics["files"] == 175 and metrics["status"]["ok"] == 175
    report = (clone / "datasets" / "report" / "report.md").read_text()
    assert "## MuseGAN family" in report and "## Jukebox VQ-VAE" in report and "## LSTM note models" in report

    # every declared plot renders, with no error (rows of one metrics file must share their keys)
    plots = json.loads(dvc("plots", "show", "--json", cwd=clone).stdout)
    assert not plots.get("errors"), plots.get("errors")
    declared = set()
    for st in yaml.safe_load((clone / "dvc.yaml").read_text())["stages"].values():
        for p in st.get("do", st).get("plots", []):
            path = next(iter(p)) if isinstance(p, dict) else p
            declared |= {path.replace("${item}", str(i)) for i in st.get("foreach", [None])}
    assert len(declared) == 12 and set(plots["data"]) == declared, (declared, set(plots["data"]))

    # dvc metrics show is readable: the data summaries and each family's headline scores.json files
    # (a handful of shared keys per family; every other number stays in the evaluation.json artefacts)
    shown = json.loads(dvc("metrics", "show", "--json", cwd=clone).stdout)
    files = shown[""]["data"]
    assert not [f for f, v in files.items() if "error" in v], files
    columns = {key for v in files.values() for key in _flat(v["data"])}
    assert 20 <= len(columns) <= 60, sorted(columns)
    musegan = [set(_flat(v["data"])) for f, v in files.items() if "/musegan/scores/" in f]
    assert len(musegan) == 7 and all(k == musegan[0] for k in musegan)

    second = dvc("repro", cwd=clone).stdout
    assert "Running stage" not in second and "up to date" in second

    # a sampling param of one family: its samplers, its evaluation and the report, nothing else
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["musegan"]["sample"]["n"] = 6
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = dvc("repro", cwd=clone).stdout
    variants = ["jamming", "composer", "hybrid", "temporal", "track_conditional", "musegan"]
    assert ran(third) == {*(f"sample_musegan@{v}" for v in variants), "evaluate_musegan", "report"}

    # a param that chooses inputs: lstm.vocab reaches dvc.yaml through templating (${lstm.vocab}), so
    # changing it in params.yaml is all it takes: the LSTM stages read the remi shards, and only they rerun
    params["lstm"]["vocab"] = "remi"
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    fourth = dvc("repro", cwd=clone).stdout
    lstm = [f"{step}_lstm@{v}" for step in ("train", "sample", "evaluate") for v in ("lstm", "lstm_attention")]
    assert ran(fourth) == {*lstm, "report"}
    doc = json.loads((clone / "datasets/models/lstm/lstm/train.json").read_text())
    assert doc["vocab"] == "remi" and doc["numerics"]["pinned"] is True
