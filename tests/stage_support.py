"""Helpers for the tests that run whole stages under faults (tests/test_cluster_stages.py,
tests/test_crash_safety.py): a corpus of many small songs, small params per stage, the stage's
CLI command line, and digests of every output file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import make_song

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = str(Path(sys.executable).with_name("pipeline"))

STAGES = ("build_lpd", "build_vocab", "render_audio")

needs_fluidsynth = pytest.mark.skipif(shutil.which("fluidsynth") is None,
                                      reason="the fluidsynth program is absent (apt-get install fluidsynth)")
#: the stages as pytest params, render_audio skipped where FluidSynth is absent
STAGE_PARAMS = [pytest.param(s, marks=needs_fluidsynth) if s == "render_audio" else s for s in STAGES]

#: small shards, so that a run is many tasks (and a kill lands between them); short renders
SECTIONS = {
    "build_lpd": {"shard_size": 2},
    "build_vocab": {"shard_size": 2},
    "render_audio": {"shard_size": 1, "render_seconds": 1.0, "release_tail": 0.5, "clips_per_song": 1,
                     "clip_samples": 32768},
}

#: each stage's resume markers (one per finished task)
MARKERS = {"build_lpd": "shard-*.json", "build_vocab": "remi-*.json", "render_audio": "task-*.json"}


def make_corpus(root: Path, n: int, *, bad: bool = True) -> Path:
    """``n`` distinct small songs in two folders, a duplicate and (``bad``) two unusable files."""
    (root / "a").mkdir(parents=True, exist_ok=True)
    (root / "b").mkdir(exist_ok=True)
    for i in range(n):
        ts = [(4, 4), (3, 4), (6, 8)][i % 3]
        song = make_song(i, n_bars=2 + i % 3, ts=ts, tempo_bpm=80 + 7 * (i % 11))
        (root / ("a" if i % 2 else "b") / f"song{i:03d}.mid").write_bytes(song)
    (root / "b" / "copy_of_song000.mid").write_bytes((root / "b" / "song000.mid").read_bytes())
    if bad:
        (root / "a" / "page.mid").write_bytes(b"<!DOCTYPE html><html><body>404</body></html>")
        (root / "b" / "truncated.mid").write_bytes(make_song(999)[:200])
    return root


def params(stage: str):
    from pipeline.config import load_params

    module = __import__(f"pipeline.stages.{stage}", fromlist=["Params"])
    return load_params(module.Params, **SECTIONS[stage])


def write_params(path: Path) -> Path:
    from pipeline.config import section_doc

    path.write_text(yaml.safe_dump({s: section_doc(s, **over) for s, over in SECTIONS.items()}, sort_keys=True))
    return path


def run_stage(stage: str, source: Path, out: Path, *, workers: int = 1, scheduler: str | None = None) -> dict:
    """The stage's plain function (as the CLI calls it), with the small params."""
    module = __import__(f"pipeline.stages.{stage}", fromlist=["run"])
    kwargs = {"kind": "remi"} if stage == "build_vocab" else {}
    return module.run(source=source, out=out, params=params(stage), workers=workers, scheduler=scheduler, **kwargs)


def cli(stage: str, source: Path, out: Path, params_path: Path, *, workers: int = 1) -> list[str]:
    cmd = [PIPELINE, stage.replace("_", "-"), str(source), "--out", str(out), "--workers", str(workers),
           "--params", str(params_path)]
    return cmd + (["--kind", "remi"] if stage == "build_vocab" else [])


def cli_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DASK_SCHEDULER_ADDRESS", "PIPELINE_WORKERS")}
    env["PIPELINE_PROGRESS"] = "0"
    return env


def n_tasks(stage: str, n_files: int) -> int:
    size = SECTIONS[stage]["shard_size"]
    return (n_files + size - 1) // size


def markers(stage: str, out: Path) -> list[Path]:
    return sorted((out / ".state").glob(MARKERS[stage]))


def is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path (``.lock`` aside: it names its holder)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != ".lock":
            out[p.relative_to(folder).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def check_complete(path: Path) -> str | None:
    """None when the file under its final name is complete (parses to its end), else why not.
    A file that vanished while being read (replaced or removed by the stage) counts as complete."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_table(path)
        elif path.suffix == ".npz":
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
            if bad is not None:
                return f"{path}: member {bad} is damaged"
        elif path.suffix == ".json":
            json.loads(path.read_bytes())
        return None
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a partial file
        return f"{path}: {type(exc).__name__}: {exc}"
