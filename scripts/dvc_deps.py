"""dvc.yaml's code dependencies, computed from the imports.

Every ``pipeline ...`` command of a stage runs a ``stages/`` module (``ENTRY``); the code it can run
is the closure of that module's imports of the project's packages (at module level and inside
functions, with the package ``__init__.py`` files Python executes on the way). ``pipeline/cli.py`` is
a thin wrapper and is left out, so that a help text does not rerun the pipeline.

    python scripts/dvc_deps.py           # list what each stage misses (exit 1 when any)
    python scripts/dvc_deps.py --write   # rewrite the .py deps of every stage in dvc.yaml

``--write`` replaces each stage's ``pipeline/``/``stages/`` ``.py`` deps with its closure (minus files a
directory dep already covers) and leaves data, directory and other deps (``_smf.c``) where they are.
``tests/test_dvc_deps.py`` fails when a stage misses a module of its closure.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages")
NUMERICS = "pipeline/numerics.py"  # the model commands pin numerics before anything else

#: ``pipeline <command> [<family>]`` -> the modules it runs
ENTRY = {
    "corpus": ["stages/corpus.py"],
    "build-lpd": ["stages/build_lpd.py"],
    "render-audio": ["stages/render_audio.py"],
    "ingest-audio": ["stages/ingest_audio.py"],
    "build-vocab": ["stages/build_vocab.py"],
    "build-phrases": ["stages/build_phrases.py"],
    "train lstm": ["stages/lstm.py", NUMERICS],
    "sample lstm": ["stages/lstm.py", NUMERICS],
    "evaluate lstm": ["stages/lstm.py", NUMERICS],
    "train vqvae": ["stages/vqvae.py", NUMERICS],
    "train jukebox": ["stages/jukebox.py", NUMERICS],
    "sample jukebox": ["stages/jukebox.py", NUMERICS],
    "evaluate jukebox": ["stages/jukebox.py", NUMERICS],
    "train musegan": ["stages/musegan.py", NUMERICS],
    "sample musegan": ["stages/musegan.py", NUMERICS],
    "evaluate musegan": ["stages/musegan.py", NUMERICS],
    "report": ["stages/report.py", NUMERICS],
}


def module_files(name: str) -> list[str]:
    """The project files Python executes to import ``name`` (package ``__init__``s first)."""
    parts = name.split(".")
    if parts[:2] == ["pipeline", "stages"]:  # the repository's stages/, installed as pipeline.stages
        return module_files("pipeline") + module_files(".".join(["stages", *parts[2:]]))
    if parts[0] not in PACKAGES:
        return []
    files = []
    for i in range(1, len(parts) + 1):
        base = ROOT.joinpath(*parts[:i])
        if (base / "__init__.py").is_file():
            files.append(base / "__init__.py")
        elif base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
            break
        else:
            break
    return [f.relative_to(ROOT).as_posix() for f in files]


def imports_of(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.update(module_files(alias.name))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(module_files(node.module))
            for alias in node.names:  # `from pipeline import numerics`: a submodule
                found.update(module_files(f"{node.module}.{alias.name}"))
    return found


def closure(entries: list[str]) -> set[str]:
    """Every project module the entries can run (empty ``__init__.py`` files left out)."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo.extend(imports_of(f) - seen)
    return {f for f in seen if (ROOT / f).stat().st_size > 0}


def command_key(cmd: str) -> str:
    words = cmd.split()
    if not words or words[0] != "pipeline":
        raise ValueError(f"not a pipeline command: {cmd!r}")
    return " ".join(words[1:3]) if words[1] in {"train", "sample", "evaluate"} else words[1]


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def stages(text: str | None = None):
    """(name, cmd, deps) for every stage of dvc.yaml."""
    import yaml

    doc = yaml.safe_load(text if text is not None else (ROOT / "dvc.yaml").read_text())
    for name, stage in doc["stages"].items():
        body = stage.get("do", stage)
        deps = [d if isinstance(d, str) else next(iter(d)) for d in body.get("deps", [])]
        yield name, body["cmd"], deps


def missing(name: str, cmd: str, deps: list[str]) -> list[str]:
    return sorted(f for f in closure(ENTRY[command_key(cmd)]) if not covered(f, deps))


def _is_code(dep: str) -> bool:
    return dep.endswith(".py") and dep.split("/")[0] in PACKAGES


def write() -> int:
    """Rewrite the .py code deps of every stage in dvc.yaml; returns how many stages changed."""
    lines = (ROOT / "dvc.yaml").read_text().splitlines(keepends=True)
    wanted = {}
    for name, cmd, deps in stages():
        keep = [d for d in deps if not _is_code(d)]
        wanted[name] = sorted(f for f in closure(ENTRY[command_key(cmd)]) if not covered(f, keep))
    out, i, stage, changed = [], 0, None, 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if indent == 2 and stripped.endswith(":") and not stripped.startswith("-"):
            stage = stripped[:-1]
        if stripped.split("#")[0].strip() == "deps:" and stage in wanted:
            out.append(line)
            item = " " * (indent + 2) + "- "
            i += 1
            old = []
            while i < len(lines) and lines[i].startswith(item):
                old.append(lines[i])
                i += 1
            other = [l for l in old if not _is_code(l.strip()[2:])]
            new = other + [f"{item}{f}\n" for f in wanted[stage]]
            changed += new != old
            out.extend(new)
            continue
        out.append(line)
        i += 1
    (ROOT / "dvc.yaml").write_text("".join(out))
    return changed


def main(argv: list[str]) -> int:
    if "--write" in argv:
        print(f"dvc.yaml: code deps rewritten in {write()} stage(s)")
        return 0
    bad = 0
    for name, cmd, deps in stages():
        m = missing(name, cmd, deps)
        if m:
            bad += 1
            print(f"{name}: missing {', '.join(m)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
