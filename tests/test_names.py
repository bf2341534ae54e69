"""One name per thing: each fixed tuple of names is defined once (pipeline/names.py, pipeline/splits.py),
and a model family has one name in params.yaml, the CLI, dvc.yaml, the modules and the folders."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import yaml

from pipeline import names

ROOT = Path(__file__).resolve().parents[1]


def test_each_constant_is_assigned_once():
    """VARIANTS, KINDS, MODES, SPLITS and their prefixed forms: one module-level assignment each."""
    where = defaultdict(list)
    for path in sorted((ROOT / "pipeline").rglob("*.py")) + sorted((ROOT / "stages").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id.rsplit("_", 1)[-1] in {"VARIANTS", "KINDS", "MODES", "SPLITS", "PARTS"}:
                    where[t.id].append(path.relative_to(ROOT).as_posix())
    assert {k: v for k, v in where.items() if len(v) > 1} == {}
    assert where["SPLITS"] == ["pipeline/splits.py"] and where["KINDS"] == ["pipeline/schema.py"]


def test_a_family_has_one_name_everywhere():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for family in names.FAMILIES:
        assert family in params, family
        assert (ROOT / "stages" / f"{family}.py").exists() and (ROOT / "pipeline" / "models" / f"{family}.py").exists()
        assert (ROOT / "pipeline" / "training" / f"{family}.py").exists()
        assert any(s == f"train_{family}" or s.startswith(f"train_{family}_") for s in stages), family
        family_stages = [s for s in stages if s.split("_", 1)[-1].startswith(family)]
        for s in family_stages:
            cmd = stages[s]["do"]["cmd"] if "do" in stages[s] else stages[s]["cmd"]
            assert cmd.split()[1:3] == [s.split("_", 1)[0], family], (s, cmd)
    for part in names.JUKEBOX_PARTS:
        assert part in params["jukebox"] and f"train_jukebox_{part}" in stages
