"""Real `dvc repro` in a fresh clone of this repository: runs, a second run does nothing, a
changed param reruns only the stages that read it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.dvc, pytest.mark.slow]


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
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["corpus"].update(music21_works=2, band_songs=6)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dst


def dvc(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(cwd), PIPELINE_PROGRESS="0", PIPELINE_WORKERS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    res = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_repro_then_nothing_then_only_what_changed(clone):
    first = dvc("repro", cwd=clone).stdout
    assert "Running stage 'corpus'" in first and "Running stage 'build_lpd'" in first
    assert (clone / "datasets" / "lpd" / "manifest.parquet").exists()
    metrics = yaml.safe_load((clone / "datasets" / "lpd" / "summary.json").read_text())
    assert metrics["files"] == 8 and metrics["status"]["ok"] == 8

    second = dvc("repro", cwd=clone).stdout
    assert "Running stage" not in second and "up to date" in second

    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["build_lpd"]["tracks"] = "lpd17"
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = dvc("repro", cwd=clone).stdout
    assert "Running stage 'build_lpd'" in third and "Running stage 'corpus'" not in third
    assert (clone / "datasets" / "lpd" / "tensors" / "lpd17-00000.parquet").exists()
