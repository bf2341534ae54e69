"""A plain ``pip install lakh-pipeline`` (no extras) into a fresh virtual environment: torch is not
installed, and the data stages run (slow: about a minute on 2 cores, most of it pip unpacking the
0.7 GB of dependencies; the wheel is built from a copy of the sources, pip installs for real from its
indexes). And, fast: a command whose extra is missing says which one in a line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import make_song

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "pipeline", "stages")


#: this process's environment less what would let the checkout or the test venv leak into the new venv
#: (with PYTHONPATH on the checkout, pip would take its egg-info for an installed lakh-pipeline)
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
ENV["PIPELINE_PROGRESS"] = "0"


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("env", ENV)
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert res.returncode == 0, f"{cmd}: exit {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    return res


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel and its runtime dependencies; returns its bin folder."""
    tmp = tmp_path_factory.mktemp("light")
    src = tmp / "src"
    src.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=skip)
        else:
            shutil.copy2(p, src / name)
    wheels = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, src])
    (wheel,) = wheels.glob("lakh_pipeline-*.whl")
    venv = tmp / "venv"
    # the base interpreter, not this test environment's venv (whose packages must not leak in)
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv])
    # one namespace: the wheel's only package is pipeline (stages/ goes in as pipeline.stages)
    with zipfile.ZipFile(wheel) as zf:
        tops = {n.split("/")[0] for n in zf.namelist() if not n.split("/")[0].endswith((".dist-info", ".data"))}
        assert tops == {"pipeline"}, tops
        assert "pipeline/stages/build_lpd.py" in zf.namelist()
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel])
    return venv / "bin"


def test_the_wheel_lists_every_package():
    """pyproject.toml names the packages (pipeline.stages maps to stages/): none may be left out."""
    import tomllib

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "pipeline").rglob("__init__.py")}
    assert set(conf["packages"]) == on_disk | {"pipeline.stages"}
    assert conf["package-dir"] == {"pipeline.stages": "stages"} and (ROOT / "stages" / "__init__.py").is_file()


@pytest.mark.slow
def test_no_torch_and_build_lpd_runs(light_venv, tmp_path):
    py = light_venv / "python"
    probe = _run([py, "-c", "import importlib.util as u; print(u.find_spec('torch') is None, "
                             "u.find_spec('librosa') is None, u.find_spec('dvc') is None)"])
    assert probe.stdout.split() == ["True", "True", "True"]  # no torch, no [report] or [dvc] extra

    midi = tmp_path / "midi"
    midi.mkdir()
    for i in range(3):
        (midi / f"song{i}.mid").write_bytes(make_song(i, tempo_bpm=100 + 10 * i))
    pipeline = light_venv / "pipeline"
    _run([pipeline, "--help"], cwd=tmp_path)
    _run([pipeline, "init", "."], cwd=tmp_path)
    res = _run([pipeline, "build-lpd", "midi", "--out", "lpd", "--workers", "1"], cwd=tmp_path)
    assert "3 files: 3 ok" in res.stdout
    summary = json.loads((tmp_path / "lpd" / "summary.json").read_text())
    assert (summary["songs"], summary["status"]["ok"]) == (3, 3)

    # a model command without the [models] extra: one line that names it, never a traceback
    res = subprocess.run([pipeline, "train", "lstm"], capture_output=True, text=True, cwd=tmp_path, env=ENV,
                         timeout=120)
    assert res.returncode == 1
    assert res.stderr.strip() == "error: this command needs torch, which " \
                                 "`pip install 'lakh-pipeline[models]'` installs"


@pytest.mark.parametrize("module, extra, args", [
    ("torch", "models", ["train", "lstm"]),
    ("librosa", "report", None),  # inspect --plot of an audio shard draws its spectrogram with librosa
])
def test_a_missing_extra_is_one_line(tmp_path, module, extra, args):
    """Without torch (or librosa) importable, the command that needs it names the extra (fast: no venv)."""
    _run([sys.executable, "-c", "from pipeline.cli import main; main()", "init", str(tmp_path)],
         env={**os.environ, "PYTHONPATH": str(ROOT)})
    code = f"import sys; sys.modules[{module!r}] = None\nfrom pipeline.cli import main; main()"
    if args is None:
        from pipeline.config import load_params
        from pipeline.stages import render_audio

        (tmp_path / "midi").mkdir()
        (tmp_path / "midi" / "a.mid").write_bytes(make_song(0))
        render_audio.run(source=tmp_path / "midi", out=tmp_path / "audio", workers=1,
                         params=load_params(render_audio.Params))
        (shard,) = (tmp_path / "audio" / "parquet").glob("*.parquet")
        args = ["inspect", str(shard), "--plot", str(tmp_path / "s.png")]
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_PROGRESS": "0"}, timeout=300)
    assert res.returncode == 1
    assert res.stderr.strip() == f"error: this command needs {module}, which " \
                                 f"`pip install 'lakh-pipeline[{extra}]'` installs"
