#!/usr/bin/env python
"""Benchmark: memory and throughput of build-lpd, build-vocab and render-audio as the input grows.

    .venv/bin/python benchmarks/bench_scale.py [--source FOLDER] [--sizes 100,1000,10000]
        [--render-sizes 100,1000] [--render-seconds 20] [--workers 1,2]
        [--stages build_lpd,build_vocab,render_audio] [--kind remi] [--work DIR] [--out JSON]

Inputs: N files made from the MIDI files of ``--source`` (default ``datasets/corpus/midi``, the
built-in corpus) by repeating them under new ids: copy k of a file gets k zero bytes appended
(ignored by every reader, a new MD5, so no copy is a duplicate), named ``<md5[0]>/<md5>.mid`` as in
LMD-full. Made once per size under ``--work``.

Each run is the stage's CLI in a fresh subprocess (``pipeline <stage> SRC --out <fresh> --workers
W --params <params.yaml with render_seconds = --render-seconds>``), timed end to end (interpreter
start, a local dask cluster for W > 1, manifest). Its process tree is sampled every 50 ms: the
peak resident memory (``VmHWM``) of the main process, of each worker process (with ``--workers 1``
the work runs in the main process) and of FluidSynth. files/s counts every input file.

The LMD-full line extrapolates each stage to 176,581 files on this machine: the time of the
second-largest size plus the remaining files at the marginal rate between the two largest sizes
(which leaves out start-up costs), for each worker count.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = str(Path(sys.executable).with_name("pipeline"))
LMD_FULL = 176_581
SUFFIXES = (".mid", ".midi", ".rmi")


def make_inputs(source: Path, n: int, work: Path) -> Path:
    """``n`` distinct files from the files of ``source``, in LMD-full's layout (cached)."""
    dest = work / f"inputs-{hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]}-{n}"
    if (dest / ".complete").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise SystemExit(f"error: no MIDI files under {source}")
    blobs = [p.read_bytes() for p in files]
    for k in range(n):
        raw = blobs[k % len(blobs)] + b"\0" * (k // len(blobs))
        md5 = hashlib.md5(raw).hexdigest()
        (dest / md5[0]).mkdir(parents=True, exist_ok=True)
        (dest / md5[0] / f"{md5}.mid").write_bytes(raw)
    (dest / ".complete").write_text(f"{n}\n")
    return dest


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


class TreeSampler(threading.Thread):
    """Peak resident memory (kB) per process of a process tree, by role."""

    def __init__(self, root_pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(root_pid)
        self.interval = interval
        self.stop = threading.Event()
        self.peak: dict[int, int] = {}
        self.role: dict[int, str] = {}

    def _role(self, proc) -> str:
        if proc.pid == self.root.pid:
            return "main"
        try:
            cmd = " ".join(proc.cmdline())
        except Exception:  # noqa: BLE001 - gone
            return "other"
        if "fluidsynth" in cmd:
            return "fluidsynth"
        if "multiprocessing" in cmd and "resource_tracker" not in cmd:
            return "worker"
        return "other"

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except Exception:  # noqa: BLE001 - the root ended
                procs = []
            for proc in procs:
                st = _status(proc.pid)
                if not st:
                    continue
                if proc.pid not in self.role:
                    self.role[proc.pid] = self._role(proc)
                self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), st.get("VmHWM", 0), st.get("VmRSS", 0))
            time.sleep(self.interval)

    def summary(self) -> dict:
        by_role: dict[str, list[int]] = {}
        for pid, kb in self.peak.items():
            by_role.setdefault(self.role[pid], []).append(kb)
        mb = lambda kb: round(kb / 1024, 1)  # noqa: E731
        return {"main_mb": mb(max(by_role.get("main", [0]))),
                "worker_mb": mb(max(by_role.get("worker", [0]))) if "worker" in by_role else None,
                "workers_seen": len(by_role.get("worker", [])),
                "fluidsynth_mb": mb(max(by_role.get("fluidsynth", [0]))) if "fluidsynth" in by_role else None}


def run_stage(stage: str, src: Path, out: Path, params: Path, workers: int, kind: str) -> dict:
    cmd = [PIPELINE, stage.replace("_", "-"), str(src), "--out", str(out), "--workers", str(workers),
           "--params", str(params)] + (["--kind", kind] if stage == "build_vocab" else [])
    env = {k: v for k, v in os.environ.items() if k not in ("DASK_SCHEDULER_ADDRESS", "PIPELINE_WORKERS")}
    env["PIPELINE_PROGRESS"] = "0"
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, cwd=ROOT)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed ({proc.returncode}): {stderr.strip()[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"seconds": round(seconds, 2), **sampler.summary(), "status": summary["status"],
            "output_mb": round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20, 1),
            "line": stdout.strip().splitlines()[-1] if stdout.strip() else ""}


def write_params(path: Path, render_seconds: float) -> Path:
    import yaml

    doc = yaml.safe_load((ROOT / "params.yaml").read_text())
    doc["render_audio"]["render_seconds"] = render_seconds
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def extrapolate(rows: list[dict]) -> dict[int, float]:
    """Seconds for LMD-full per worker count, from the two largest sizes of one stage."""
    out = {}
    for w in sorted({r["workers"] for r in rows}):
        pts = sorted((r["files"], r["seconds"]) for r in rows if r["workers"] == w)
        if len(pts) < 2:
            continue
        (n1, t1), (n2, t2) = pts[-2], pts[-1]
        marginal = max(t2 - t1, 0.0) / (n2 - n1)
        out[w] = t1 + (LMD_FULL - n1) * marginal
    return out


def table(results: list[dict]) -> str:
    lines = ["| stage | files | workers | wall s | files/s | peak MB main | peak MB per worker | peak MB FluidSynth | output MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        worker = r["worker_mb"] if r["worker_mb"] is not None else f"{r['main_mb']} (in main)"
        lines.append(f"| {r['stage']} | {r['files']:,} | {r['workers']} | {r['seconds']} | {r['files'] / r['seconds']:.1f} | "
                     f"{r['main_mb']} | {worker} | {r['fluidsynth_mb'] or '-'} | {r['output_mb']} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=ROOT / "datasets" / "corpus" / "midi")
    ap.add_argument("--sizes", default="100,1000,10000", help="input sizes for build-lpd and build-vocab")
    ap.add_argument("--render-sizes", default="100,1000", help="input sizes for render-audio")
    ap.add_argument("--render-seconds", type=float, default=20.0,
                    help="render_audio.render_seconds (params.yaml: 20; 0 = whole songs)")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--stages", default="build_lpd,build_vocab,render_audio")
    ap.add_argument("--kind", default="remi", help="build-vocab's --kind")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_scale")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "scale.json")
    args = ap.parse_args()

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    params = write_params(work / "params.yaml", args.render_seconds)
    workers = [int(w) for w in args.workers.split(",")]
    results: list[dict] = []
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "load_before": os.getloadavg(),
            "source": str(args.source), "render_seconds": args.render_seconds, "kind": args.kind,
            "command": " ".join([Path(sys.executable).name, *sys.argv])}
    for stage in args.stages.split(","):
        sizes = [int(n) for n in (args.render_sizes if stage == "render_audio" else args.sizes).split(",")]
        for n in sizes:
            src = make_inputs(args.source, n, work)
            for w in workers:
                out = work / f"out-{stage}"
                shutil.rmtree(out, ignore_errors=True)
                r = {"stage": stage, "files": n, "workers": w, **run_stage(stage, src, out, params, w, args.kind)}
                shutil.rmtree(out, ignore_errors=True)
                results.append(r)
                print(f"{stage:13s} {n:>7,} files  {w} worker(s)  {r['seconds']:8.1f} s  {n / r['seconds']:7.1f} files/s  "
                      f"main {r['main_mb']} MB  worker {r['worker_mb']} MB  fluidsynth {r['fluidsynth_mb']} MB  "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    info["load_after"] = os.getloadavg()
    print()
    print(table(results))
    print()
    lmd = {}
    for stage in args.stages.split(","):
        rows = [r for r in results if r["stage"] == stage]
        ext = extrapolate(rows)
        lmd[stage] = ext
        big = max(r["files"] for r in rows)
        at = {r["workers"]: r["seconds"] for r in rows if r["files"] == big}
        speedup = f"{at[1] / at[2]:.2f}x" if 1 in at and 2 in at else "-"
        print(f"{stage}: 1 -> 2 workers at {big:,} files: {speedup}; LMD-full ({LMD_FULL:,} files): "
              + ", ".join(f"{w} worker(s) {s / 3600:.2f} h" for w, s in ext.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, "results": results, "lmd_full_seconds": lmd}, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
