"""dvc.yaml's code dependencies follow from the imports (scripts/dvc_deps.py): every project module a
stage's command can run is in that stage's ``deps``, so a change to it reruns the stage and DVC never
serves a cached output made by other code."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("dvc_deps", ROOT / "scripts" / "dvc_deps.py")
dvc_deps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dvc_deps)

STAGES = list(dvc_deps.stages())


@pytest.mark.parametrize("name,cmd,deps", STAGES, ids=[s[0] for s in STAGES])
def test_stage_deps_hold_its_code_closure(name, cmd, deps):
    key = dvc_deps.command_key(cmd)
    assert key in dvc_deps.ENTRY, f"{name}: no entry module known for `pipeline {key}` (add it to ENTRY)"
    missing = dvc_deps.missing(name, cmd, deps)
    assert not missing, (f"dvc.yaml stage {name} runs these modules but does not list them in deps "
                         f"(python scripts/dvc_deps.py --write): {missing}")


def test_entry_table_matches_the_cli():
    """Every stage module ENTRY names is imported by some command function of cli.py, and every
    stage module cli.py imports is an entry."""
    tree = ast.parse((ROOT / "pipeline" / "cli.py").read_text())
    imported = {f"stages/{a.name}.py" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "pipeline.stages"
                for a in n.names}
    entries = {files[0] for files in dvc_deps.ENTRY.values()}
    assert entries == imported


def test_closure_follows_function_level_and_package_imports():
    c = dvc_deps.closure(["stages/lstm.py"])
    assert "pipeline/training/solver.py" in c  # imported inside a function of stages/lstm.py
    assert "pipeline/numerics.py" in c  # imported by the solver
    assert "pipeline/tokens/__init__.py" in c  # a package __init__ with code, run on the way
    assert not any(f.startswith("tests/") or f == "pipeline/cli.py" for f in c)


def test_a_missing_module_is_reported(tmp_path):
    """The check can fail: drop one module of a stage's closure from its deps."""
    name, cmd, deps = next(s for s in STAGES if s[0] == "train_musegan")
    full = deps + sorted(dvc_deps.closure(dvc_deps.ENTRY[dvc_deps.command_key(cmd)]))
    assert dvc_deps.missing(name, cmd, full) == []
    assert dvc_deps.missing(name, cmd, [d for d in full if d != "pipeline/numerics.py"]) == ["pipeline/numerics.py"]
