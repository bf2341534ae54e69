"""The paper-scale configs (pipeline/defaults/paper/*.yaml): each loads through the stages' typed
params, changes only keys params.yaml has, and its `dvc exp run -S` arguments give DVC the same
values as the merged params file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import paper_configs
from pipeline.cli import check_paper_params
from pipeline.config import PACKAGED_PARAMS, read_params
from pipeline.errors import ParamsError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("family", paper_configs.FAMILIES)
def test_every_paper_config_loads_through_the_typed_params(family):
    doc = paper_configs.merged_params(family, PACKAGED_PARAMS)
    over = paper_configs.overrides(family)
    check_paper_params({k: doc[k] for k in over})
    base = read_params(PACKAGED_PARAMS)
    # it changes something in every section it names, and nothing outside them
    assert all(doc[k] != base[k] for k in over)
    assert all(doc[k] == base[k] for k in base if k not in over)


def test_a_paper_config_key_params_yaml_lacks_is_one_error(tmp_path):
    base = read_params(PACKAGED_PARAMS)
    del base["lstm"]["model"]["hidden"]
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(base))
    with pytest.raises(ParamsError, match="lstm.model.hidden is not a key of"):
        paper_configs.merged_params("lstm", p)


def test_a_wrong_value_is_refused_by_the_stage_params():
    doc = paper_configs.merged_params("lstm", PACKAGED_PARAMS)
    doc["lstm"]["model"]["hidden"] = -3
    with pytest.raises(ParamsError, match="hidden"):
        check_paper_params({"lstm": doc["lstm"]})


def test_the_cli_writes_a_params_file_the_training_reads(tmp_path):
    out = tmp_path / "paper.yaml"
    res = subprocess.run([sys.executable, "-m", "pipeline", "paper-config", "musegan", "--out", str(out),
                          "--params", str(PACKAGED_PARAMS)], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert read_params(out) == paper_configs.merged_params("musegan", PACKAGED_PARAMS)
    bad = subprocess.run([sys.executable, "-m", "pipeline", "paper-config", "gpt"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "lstm, musegan, jukebox" in bad.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git for a DVC repository")
@pytest.mark.parametrize("family", paper_configs.FAMILIES)
def test_dvc_exp_run_set_args_give_the_merged_values(tmp_path, family):
    """`dvc exp run -S ...` (a real DVC, on a one-stage repository that reads the sections)
    leaves params.yaml holding exactly what merged_params gives."""
    shutil.copy(PACKAGED_PARAMS, tmp_path / "params.yaml")
    sections = sorted(paper_configs.overrides(family))
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"noop": {"cmd": "true", "params": sections}}}))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}

    def run(*cmd):
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "base")
    run(sys.executable, "-m", "dvc", "exp", "run", *paper_configs.set_args(family))
    got = read_params(tmp_path / "params.yaml")
    want = paper_configs.merged_params(family, PACKAGED_PARAMS)
    assert {k: got[k] for k in sections} == {k: want[k] for k in sections}
