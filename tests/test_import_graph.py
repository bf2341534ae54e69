"""The project's import graph is layered (issue #14): no cycle among the modules of ``pipeline/``
and ``stages/``, no stage imports another stage, and no library module imports a stage except
``pipeline.cli`` (the top layer, which dispatches to the stages).

Imports are read with ``ast`` from every ``.py`` file, at module level and inside functions (a
function-level import is still a dependency, only a deferred one). ``from pipeline.io import midi``
is an edge to ``pipeline.io.midi`` when that is a module, else to ``pipeline.io``; relative imports
are resolved against the importing module's package. Imports outside the two packages are ignored.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages")
CLI = "pipeline.cli"


#: the stage modules live in the repository's ``stages/`` and are installed as ``pipeline.stages``
STAGES = "pipeline.stages"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[0] == "stages":
        parts.insert(0, "pipeline")
    return ".".join(parts)


def is_stage(name: str) -> bool:
    return name.startswith(STAGES + ".")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """``{dotted name: file}`` for every module and package under the project's packages."""
    return {module_name(p, root): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> dict[str, int]:
    """``{project module: line of the first import of it}`` for one file (every import, at any depth)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            targets = [f"{mod}.{alias.name}" if f"{mod}.{alias.name}" in modules else mod for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import pipeline.io.midi.x`: the deepest module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.setdefault(target, node.lineno)
    return found


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    modules = project_modules(root)
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, dict[str, int] | set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]`` (depth-first, in sorted order), or None when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def _describe(graph, cycle: list[str]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


GRAPH = import_graph()


# ---------------------------------------------------------------------------------------------
# the checker itself


def test_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"b", "c"}}) is None
    assert find_cycle({"x": {"x"}}) == ["x", "x"]
    # a diamond is not a cycle
    assert find_cycle({"top": {"left", "right"}, "left": {"bottom"}, "right": {"bottom"}, "bottom": set()}) is None


def test_imports_are_resolved_at_every_depth(tmp_path):
    (tmp_path / "pipeline" / "io").mkdir(parents=True)
    (tmp_path / "stages").mkdir()
    for f in ("pipeline/__init__.py", "pipeline/io/__init__.py", "pipeline/io/midi.py", "pipeline/errors.py",
              "stages/__init__.py", "stages/b.py"):
        (tmp_path / f).write_text("")
    (tmp_path / "pipeline" / "io" / "npz.py").write_text("from . import midi\nfrom ..errors import X\n")
    (tmp_path / "stages" / "a.py").write_text(
        "import os\n"
        "from pipeline.io import midi\n"
        "from pipeline.errors import MidiError\n"
        "def run():\n"
        "    import pipeline.stages.b\n")
    graph = import_graph(tmp_path)
    assert graph["pipeline.stages.a"] == {"pipeline.io.midi": 2, "pipeline.errors": 3, "pipeline.stages.b": 5}
    assert graph["pipeline.io.npz"] == {"pipeline.io.midi": 1, "pipeline.errors": 2}
    (tmp_path / "pipeline" / "io" / "midi.py").write_text("def f():\n    from pipeline.io.npz import g\n")
    assert find_cycle(import_graph(tmp_path)) == ["pipeline.io.midi", "pipeline.io.npz", "pipeline.io.midi"]


def test_the_graph_sees_the_project():
    """The real graph holds top-level and function-level edges (a parser that found nothing would
    pass every test below)."""
    assert {"pipeline.cli", "pipeline.schema", "pipeline.stages.render_audio", "pipeline.stages.jukebox"} <= set(GRAPH)
    assert "pipeline.audio.shard_stage" in GRAPH["pipeline.stages.render_audio"]  # top level
    assert "pipeline.training.vqvae" in GRAPH["pipeline.stages.jukebox"]  # inside functions only
    assert "pipeline.stages.render_audio" in GRAPH[CLI]


# ---------------------------------------------------------------------------------------------
# the rules


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, f"import cycle: {_describe(GRAPH, cycle)}"


def test_no_stage_imports_another_stage():
    bad = [f"{m} imports {t} (line {line})" for m, deps in sorted(GRAPH.items()) if is_stage(m)
           for t, line in sorted(deps.items()) if is_stage(t)]
    assert not bad, "a stage imports another stage (move the shared code into pipeline/): " + "; ".join(bad)


def test_only_the_cli_imports_stages():
    bad = [f"{m} imports {t} (line {line})" for m, deps in sorted(GRAPH.items())
           if m.split(".")[0] == "pipeline" and m != CLI and not is_stage(m)
           for t, line in sorted(deps.items()) if is_stage(t)]
    assert not bad, "a library module imports a stage: " + "; ".join(bad)


def test_stages_are_imported_as_pipeline_stages():
    """The wheel installs stages/ as pipeline.stages only: an `import stages...` would work in the
    repository (its root on sys.path) and nowhere else, and load the same file twice under two names."""
    bad = []
    for pkg in ("pipeline", "stages", "tests", "benchmarks", "scripts"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                bad += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == "stages"]
    assert not bad, "import pipeline.stages, not stages: " + ", ".join(bad)
