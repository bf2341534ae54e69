#!/usr/bin/env python
"""Benchmark: our build-lpd path against the reference (pretty_midi + pypianoroll 1.0.4), in one run.

    .venv/bin/python benchmarks/bench_build_lpd.py [FOLDER] [--repeat N] [--cli-runs N] [--out JSON]

FOLDER (default ``../shared/midi`` from the project root) is any folder of .mid/.midi/.rmi files
(searched recursively). Everything runs on one core (``--workers 1``, thread pools pinned to 1).

Paths timed
-----------
- ours, whole process: ``.venv/bin/pipeline build-lpd <folder> --out <fresh tmp> --workers 1``
  over the files repeated ``--repeat`` times as distinct songs (copy k has k zero bytes appended
  after its last chunk: every MIDI reader ignores them, but the MD5 differs, so no copy is a
  duplicate); timed end to end (interpreter start, imports, listing, hashing, conversion, song
  NPZs, tensor shards, manifest); files/s is input files over wall time. Run ``--cli-runs``
  times (3 by default), each into a fresh folder kept until the end; the median counts (one run
  of ~2 s is at the mercy of a busy moment on a shared machine; the reference's 500 files
  average that out).
- ours, in-process: read the bytes, ``stages.build_lpd.convert_one`` + ``pipeline.formats.song_npz.
  pianoroll_npz_bytes``, written to a temp file; after one warm-up file, timed per file.
- reference, in-process: ``pypianoroll.read(path, resolution=24, mode="sum")`` (1.0.4's
  ``mode="max"`` adds velocities with uint8 overflow; its ``"sum"`` branch is the one that takes
  the maximum), LPD-5 merge by ``family_of`` with ``np.maximum``, ``np.savez_compressed`` of the
  five dense rolls to a temp file; timed per file, files it cannot read are failures (timed too).
- context: ``pretty_midi.PrettyMIDI(path)`` parse alone.

Equality (not timed, first repeat): ours with ``semantics="pypianoroll"`` against the reference's
merged (5, n_steps, 128) roll, and ours with ``semantics="lpd"`` against the test oracle
``tests/reference_lpd.py:parse_lpd030``.
"""

from __future__ import annotations

import os

# one core: no hidden thread pools, here or in the CLI subprocess (set before numpy is imported)
_ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")}
for _k, _v in _ONE_THREAD.items():
    os.environ.setdefault(_k, _v)

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESOLUTION = 24
N_TRACKS = 5  # LPD-5


# ----------------------------------------------------------------------------------------- inputs

def list_midi(folder: Path) -> list[Path]:
    from pipeline.sources import is_midi_name

    files = [p for p in folder.rglob("*") if p.is_file() and is_midi_name(p.name)]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def stage_inputs(files: list[Path], folder: Path, dest: Path) -> None:
    for p in files:
        target = dest / p.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, target)


# ------------------------------------------------------------------------------- ours, whole CLI

def pipeline_exe() -> Path:
    exe = Path(sys.executable).parent / "pipeline"
    return exe if exe.exists() else ROOT / ".venv" / "bin" / "pipeline"


def run_cli(src: Path, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DASK_SCHEDULER_ADDRESS", "PIPELINE_WORKERS")}
    env.update(_ONE_THREAD, PIPELINE_PROGRESS="0")
    cmd = [str(pipeline_exe()), "build-lpd", str(src), "--out", str(out), "--workers", "1",
           "--params", str(ROOT / "params.yaml")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    summary = None
    if (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
    return {"seconds": seconds, "rc": proc.returncode, "stdout": proc.stdout.strip(),
            "stderr": proc.stderr.strip()[-2000:], "summary": summary}


# -------------------------------------------------------------------------------- ours, in-process

def ours_one(path: Path, key: str, params, tmp_file: Path) -> tuple[bool, str | None]:
    """Read, convert, serialise and write one file as the CLI's worker does (timed by the caller)."""
    from pipeline.errors import MidiError
    from pipeline.formats.song_npz import pianoroll_npz_bytes
    from pipeline.stages.build_lpd import convert_one

    raw = path.read_bytes()
    song_id = hashlib.md5(raw).hexdigest()
    try:
        pr, _bars, _info = convert_one(raw, key, params)
    except MidiError as exc:
        return False, exc.code
    except Exception as exc:  # noqa: BLE001 - a bug, still a failure to count
        return False, f"internal.bug: {type(exc).__name__}: {exc}"
    tmp_file.write_bytes(pianoroll_npz_bytes(pr, song_id))
    return True, None


# -------------------------------------------------------------------------------------- reference

def reference_one(path: Path, tmp_file: Path) -> np.ndarray:
    """pypianoroll 1.0.4 read + LPD-5 merge by maximum + savez_compressed; the merged roll."""
    import pypianoroll

    from pipeline.symbolic.lpd import family_of

    mt = pypianoroll.read(path, resolution=RESOLUTION, mode="sum")
    n_steps = mt.tracks[0].pianoroll.shape[0] if mt.tracks else len(mt.tempo)
    fam = family_of(np.array([t.program for t in mt.tracks], np.int64),
                    np.array([t.is_drum for t in mt.tracks], bool), "lpd5")
    merged = np.zeros((N_TRACKS, n_steps, 128), np.uint8)
    for track, f in zip(mt.tracks, fam):
        if f >= 0:
            np.maximum(merged[f], track.pianoroll, out=merged[f], casting="unsafe")
    with open(tmp_file, "wb") as fh:
        np.savez_compressed(fh, **{f"track_{k}": merged[k] for k in range(N_TRACKS)})
    return merged


def merge_oracle(tracks, n_steps: int) -> np.ndarray:
    from pipeline.symbolic.lpd import family_of

    fam = family_of(np.array([t[1] for t in tracks], np.int64), np.array([t[2] for t in tracks], bool), "lpd5")
    merged = np.zeros((N_TRACKS, n_steps, 128), np.uint8)
    for (roll, _, _), f in zip(tracks, fam):
        if f >= 0:
            np.maximum(merged[f], roll, out=merged[f])
    return merged


# --------------------------------------------------------------------------------------- equality

def _dense(pr) -> np.ndarray:
    return np.stack([pr.dense(k) for k in range(N_TRACKS)])


def _shifted_velocity_score(score, first_beat: float):
    """The score with pypianoroll 1.0's velocity indexing: in each melodic instrument, the k-th
    note kept (ending after the first beat) gets the velocity of the instrument's k-th note."""
    vel = score.note_vel.copy()
    for i in np.flatnonzero(~score.inst_is_drum):
        j = np.flatnonzero(score.note_inst == i)  # pretty_midi's instrument.notes order
        kept = j[score.note_end[j] > first_beat]
        vel[kept] = score.note_vel[j[: len(kept)]]
    return dataclasses.replace(score, note_vel=vel)


def _diff_detail(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f"shape ours {a.shape} vs reference {b.shape}"
    d = a != b
    per_track = [int(x) for x in d.sum(axis=(1, 2))]
    bin_d = (a > 0) != (b > 0)
    return (f"{int(d.sum())} cells differ (per track {per_track}), {int(bin_d.sum())} in the binarized roll "
            f"({int(((a > 0) & ~(b > 0)).sum())} only ours, {int((~(a > 0) & (b > 0)).sum())} only reference)")


def compare_file(path: Path, key: str, ref: np.ndarray | None, ref_err: str | None, params) -> dict:
    """Ours (pypianoroll semantics) vs the reference, and ours (lpd semantics) vs the oracle."""
    import pretty_midi

    from pipeline.errors import MidiError
    from pipeline.io.midi import read_midi
    from pipeline.symbolic.lpd import beat_grid, to_pianoroll
    from tests.reference_lpd import parse_lpd030

    res: dict = {"file": key}
    raw = path.read_bytes()
    score = None
    try:
        score = read_midi(raw, key)
    except MidiError as exc:
        res["ours_error"] = exc.code

    def ours(semantics: str, sc=None):
        try:
            return _dense(to_pianoroll(sc or score, resolution=RESOLUTION, tracks="lpd5", semantics=semantics,
                                       max_beats=params.max_beats)), None
        except MidiError as exc:
            return None, exc.code

    # --- pypianoroll 1.0 semantics vs pypianoroll 1.0.4 itself
    if score is not None:
        a, err = ours("pypianoroll")
    else:
        a, err = None, res["ours_error"]
    if ref is None:
        res["vs_reference"] = "reference failed" if a is not None else "both failed"
        res["reference_error"] = ref_err
    elif a is None:
        res["vs_reference"] = "ours failed"
        res["ours_error"] = err
        res["reference_nonzero_cells"] = int(np.count_nonzero(ref))
    elif a.shape == ref.shape and np.array_equal(a, ref):
        res["vs_reference"] = "equal"
    elif a.shape == ref.shape and np.array_equal(a > 0, ref > 0):
        first, _ = beat_grid(score, max_beats=20_000)
        res["vs_reference"] = "velocity only"
        res["notes_end_before_first_beat"] = bool((score.note_end <= first).any())
        shifted, _ = ours("pypianoroll", _shifted_velocity_score(score, first))
        res["shift_reproduces_reference"] = shifted is not None and bool(np.array_equal(shifted, ref))
        res["detail"] = _diff_detail(a, ref)
    else:
        res["vs_reference"] = "different"
        res["detail"] = _diff_detail(a, ref)

    # --- lpd semantics vs the test oracle (pypianoroll 0.3.0 rules)
    try:
        pm = pretty_midi.PrettyMIDI(str(path))
        tracks, _tempo, _down = parse_lpd030(pm, RESOLUTION)
        o = merge_oracle(tracks, len(_tempo))  # the oracle's tempo has one entry per step
    except Exception as exc:  # noqa: BLE001
        o, res["oracle_error"] = None, f"{type(exc).__name__}: {exc}"
    b, err = ours("lpd") if score is not None else (None, res.get("ours_error"))
    if o is None:
        res["vs_oracle"] = "oracle failed" if b is not None else "both failed"
    elif b is None:
        res["vs_oracle"] = "ours failed"
        res["ours_lpd_error"] = err
        res["oracle_nonzero_cells"] = int(np.count_nonzero(o))
    elif b.shape == o.shape and np.array_equal(b, o):
        res["vs_oracle"] = "equal"
    else:
        res["vs_oracle"] = "different"
        res["oracle_detail"] = _diff_detail(b, o)
    return res


# ------------------------------------------------------------------------------------------- main

def cpu_description() -> str:
    """The CPU model and the widest vector level it offers (what a run's figures depend on)."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", "unknown CPU", platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    level = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE4.2 or less"
    return f"{model} ({level}), {os.cpu_count()} cores"


class PhaseTimer:
    """Exclusive wall time per phase: functions wrapped in place; a wrapped call inside another
    counts for itself only (its time is taken out of the caller's phase)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[float] = []  # time spent in nested wrapped calls, per open call
        self._undo: list = []

    def wrap(self, owner, attr: str, phase: str) -> None:
        fn = getattr(owner, attr)

        def timed(*a, **k):
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                dt = time.perf_counter() - t0
                nested = self._stack.pop()
                self.seconds[phase] = self.seconds.get(phase, 0.0) + dt - nested
                self.calls[phase] = self.calls.get(phase, 0) + 1
                if self._stack:
                    self._stack[-1] += dt

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, fn))

    def restore(self) -> None:
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)
        self._undo.clear()


def phase_breakdown(src: Path, out: Path, params) -> dict:
    """One in-process ``build_lpd.run(workers=1)`` over ``src`` with every phase timed (exclusive)."""
    import pipeline.formats.manifest as manifest
    import pipeline.files as files
    import pipeline.formats.song_npz as song_npz
    import pipeline.formats.tensor_shards as tensor_shards
    import pipeline.sources as sources
    import pipeline.stages.build_lpd as stage

    t = PhaseTimer()
    t.wrap(sources, "open_source", "list the source")
    t.wrap(stage, "read_input_file", "read input files")
    t.wrap(stage, "convert_one", "convert (read_midi, to_pianoroll, to_bars)")
    t.wrap(song_npz, "pianoroll_npz_bytes", "encode song NPZs")
    t.wrap(files, "atomic_write_bytes", "write files (songs, markers, schemas)")
    t.wrap(tensor_shards, "write_tensor_shard", "tensor shards (Parquet + NPZ)")
    t.wrap(manifest, "write_manifest", "manifest (Parquet)")
    t0 = time.perf_counter()
    try:
        stage.run(source=src, out=out, params=params, workers=1)
    finally:
        total = time.perf_counter() - t0
        t.restore()
    phases = dict(t.seconds)
    phases["other (hashing, rows, summary, bookkeeping)"] = total - sum(phases.values())
    return {"total_seconds": total, "phases": phases, "calls": t.calls}


def _row(name: str, files: int, ok: int, seconds: float) -> dict:
    return {"path": name, "files": files, "ok": ok, "failed": files - ok, "seconds": seconds,
            "files_per_s": files / seconds if seconds > 0 else float("nan")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", type=Path, default=ROOT.parent / "shared" / "midi",
                    help="folder of .mid/.midi/.rmi files (default: ../shared/midi from the project root)")
    ap.add_argument("--repeat", type=int, default=10, help="passes over the file list (default 10)")
    ap.add_argument("--cli-runs", type=int, default=5, help="whole-process CLI runs; the median counts (default 5)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "build_lpd.json",
                    help="JSON result (default benchmarks/out/build_lpd.json)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.cli_runs < 1:
        ap.error("--cli-runs must be >= 1")
    folder = args.folder.resolve()
    if not folder.is_dir():
        ap.error(f"{folder}: not a folder")
    files = list_midi(folder)
    if not files:
        ap.error(f"{folder}: no .mid/.midi/.rmi files")
    keys = [p.relative_to(folder).as_posix() for p in files]
    n, reps = len(files), args.repeat
    warnings.simplefilter("ignore")  # pretty_midi's RuntimeWarnings, for both paths alike

    import pretty_midi
    import pypianoroll  # noqa: F401

    from pipeline.config import load_section
    from pipeline.stages.build_lpd import Params

    params = load_section(Params, "build_lpd", ROOT / "params.yaml")
    cpu = cpu_description()
    print(f"CPU: {cpu}")
    print(f"{n} files from {folder}, {sum(p.stat().st_size for p in files) / 1e6:.2f} MB, repeat {reps}; "
          f"params: semantics={params.semantics}, tracks={params.tracks}, resolution={params.resolution}")
    result: dict = {
        "folder": str(folder), "files": keys, "repeat": reps,
        "env": {"python": platform.python_version(), "numpy": np.__version__,
                "pypianoroll": pypianoroll.__version__ if hasattr(pypianoroll, "__version__") else None,
                "pretty_midi": getattr(pretty_midi, "__version__", None), "cpus": os.cpu_count(),
                "machine": platform.machine(), "platform": platform.platform(), "cpu": cpu},
        "params": dataclasses.asdict(params),
    }
    rows = []

    with tempfile.TemporaryDirectory(prefix="bench_build_lpd_") as tmpdir:
        tmp = Path(tmpdir)
        src = tmp / "in"
        stage_inputs(files, folder, src)
        tmp_file = tmp / "song.npz"

        # 1. ours, whole process: ONE CLI run over the files repeated `reps` times as distinct
        #    songs (copy k gets k zero bytes after its last track chunk: ignored by every MIDI
        #    reader, but a new MD5, so no copy is skipped as a duplicate)
        many = tmp / "many"
        for k in range(reps):
            for p, key in zip(files, keys):
                target = many / f"r{k:03d}" / key
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(p.read_bytes() + b"\0" * k)
        runs = []
        # each run into a fresh folder, kept until the end: deleting thousands of files just
        # before the next run makes ext4 skip the recently freed inodes when it allocates new
        # ones, a cost of the benchmark's own churn that a real run never meets
        for k in range(args.cli_runs):
            r = run_cli(many, tmp / f"out_many{k}")
            runs.append(r)
            if r["rc"] != 0:
                print(f"  CLI run: exit {r['rc']}\n{r['stderr']}")
            if r["summary"] and r["summary"]["files"] != n * reps:
                print(f"  CLI run: saw {r['summary']['files']} files, expected {n * reps}")
        cli_s = float(np.median([r["seconds"] for r in runs]))
        cli_ok = (r["summary"]["status"]["ok"] + r["summary"]["status"]["recovered"]) if r["summary"] else 0
        rows.append(_row(f"ours: pipeline build-lpd CLI (whole process, median of {len(runs)})", n * reps, cli_ok,
                         cli_s))
        last = runs[-1]["summary"] or {}
        result["ours_cli"] = {"runs_seconds": [r["seconds"] for r in runs], "rc": [r["rc"] for r in runs],
                              "stdout": runs[-1]["stdout"], "summary": last}

        # where a whole run's time goes: the same files, in-process, every phase timed
        result["phases"] = phase_breakdown(many, tmp / "out_phases", params)

        # context for 1.: the CLI's fixed cost per run (start, imports, outputs) on a one-file folder
        one = tmp / "one"
        stage_inputs(files[:1], folder, one)
        fixed = []
        for k in range(3):
            fixed.append(run_cli(one, tmp / f"one_out{k}")["seconds"])
        result["ours_cli"]["one_file_run_seconds"] = fixed

        # 2. ours, in-process: convert_one + NPZ bytes, after a warm-up
        for p, key in zip(files, keys):
            if ours_one(p, key, params, tmp_file)[0]:
                break
        times = np.zeros((reps, n))
        status: list = [None] * n
        for r in range(reps):
            for i, (p, key) in enumerate(zip(files, keys)):
                t0 = time.perf_counter()
                ok, err = ours_one(p, key, params, tmp_file)
                times[r, i] = time.perf_counter() - t0
                status[i] = (ok, err)
        rows.append(_row("ours: in-process convert_one + NPZ", n * reps, reps * sum(s[0] for s in status),
                         float(times.sum())))
        result["ours_inprocess"] = {"per_file_mean_s": dict(zip(keys, times.mean(0).tolist())),
                                    "failures": {k: s[1] for k, s in zip(keys, status) if not s[0]}}

        # 3. reference: pypianoroll.read + merge + savez_compressed (equality checks untimed, first pass)
        for p in files:
            try:
                reference_one(p, tmp_file)
                break
            except Exception:  # noqa: BLE001
                pass
        times = np.zeros((reps, n))
        ref_fail: dict[str, str] = {}
        comparisons = []
        for r in range(reps):
            for i, (p, key) in enumerate(zip(files, keys)):
                merged, err = None, None
                t0 = time.perf_counter()
                try:
                    merged = reference_one(p, tmp_file)
                except Exception as exc:  # noqa: BLE001
                    err = f"{type(exc).__name__}: {exc}"
                times[r, i] = time.perf_counter() - t0
                if err:
                    ref_fail[key] = err
                if r == 0:
                    comparisons.append(compare_file(p, key, merged, err, params))
                del merged
        rows.append(_row("reference: pypianoroll.read + merge + savez", n * reps, (n - len(ref_fail)) * reps,
                         float(times.sum())))
        result["reference"] = {"per_file_mean_s": dict(zip(keys, times.mean(0).tolist())), "failures": ref_fail}
        result["comparisons"] = comparisons

        # 4. context: pretty_midi parse alone
        times = np.zeros((reps, n))
        pm_fail = 0
        for r in range(reps):
            for i, p in enumerate(files):
                t0 = time.perf_counter()
                try:
                    pretty_midi.PrettyMIDI(str(p))
                except Exception:  # noqa: BLE001
                    pm_fail += r == 0
                times[r, i] = time.perf_counter() - t0
        rows.append(_row("context: pretty_midi.PrettyMIDI parse only", n * reps, (n - pm_fail) * reps,
                         float(times.sum())))

    # ---------------------------------------------------------------------------------- report
    result["rows"] = rows
    w = max(len(r["path"]) for r in rows)
    print(f"\n{'path':<{w}}  {'files':>6}  {'ok':>5}  {'failed':>6}  {'seconds':>8}  {'files/s':>8}")
    for r in rows:
        print(f"{r['path']:<{w}}  {r['files']:>6}  {r['ok']:>5}  {r['failed']:>6}  {r['seconds']:>8.2f}  "
              f"{r['files_per_s']:>8.1f}")
    ref_rate = rows[2]["files_per_s"]
    result["speedup_whole_process"] = rows[0]["files_per_s"] / ref_rate
    result["speedup_in_process"] = rows[1]["files_per_s"] / ref_rate
    print(f"\nCPU: {cpu}")
    print(f"speed-up (whole process, 1 core): {result['speedup_whole_process']:.1f}x")
    print(f"speed-up (in-process conversion): {result['speedup_in_process']:.1f}x")
    common = [k for k in keys if k not in result["ours_inprocess"]["failures"] and k not in ref_fail]
    if common:
        ours_t = sum(result["ours_inprocess"]["per_file_mean_s"][k] for k in common)
        ref_t = sum(result["reference"]["per_file_mean_s"][k] for k in common)
        result["speedup_in_process_common"] = ref_t / ours_t
        print(f"speed-up (in-process, only the {len(common)} files both convert): {ref_t / ours_t:.1f}x "
              f"({len(common) / ours_t:.1f} vs {len(common) / ref_t:.1f} files/s)")
    print("(files/s counts every input file, failures included; CLI runs: "
          + ", ".join(f"{s:.2f}s" for s in result["ours_cli"]["runs_seconds"]) + ")")
    print(f"CLI run on a one-file folder ({keys[0]}), median of 3: "
          f"{float(np.median(result['ours_cli']['one_file_run_seconds'])):.2f}s (mostly the fixed cost of a run)")
    ph = result["phases"]
    startup = float(np.median(result["ours_cli"]["one_file_run_seconds"]))
    print(f"\nwhere the whole run goes ({n * reps} files; in-process build_lpd.run, exclusive times; "
          f"the CLI adds its start-up, ~{startup:.2f}s on a one-file run):")
    for name, sec in sorted(ph["phases"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<48s} {sec:6.2f}s  {100 * sec / ph['total_seconds']:5.1f}%")
    print(f"  {'total':<48s} {ph['total_seconds']:6.2f}s; CLI median {cli_s:.2f}s")
    if last:
        print(f"CLI summary (one run): status {last['status']}, codes {last['codes']}")
    if result["ours_inprocess"]["failures"]:
        print("ours failed (in-process): " + ", ".join(f"{k} [{v}]" for k, v in result["ours_inprocess"]["failures"].items()))
    if ref_fail:
        print("reference failed:")
        for k, v in ref_fail.items():
            print(f"  {k}: {v[:150]}")

    def count(field: str, value: str) -> list[dict]:
        return [c for c in comparisons if c[field] == value]

    vel = count("vs_reference", "velocity only")
    explained = [c for c in vel if c["notes_end_before_first_beat"] and c["shift_reproduces_reference"]]
    diff = count("vs_reference", "different")
    print(f"\nours (semantics=pypianoroll) vs reference, where both succeed: "
          f"{len(count('vs_reference', 'equal'))} equal, {len(vel)} binarized equal / velocities differ "
          f"({len(explained)} explained: notes end at or before the first beat, and pypianoroll's "
          f"shifted velocity indexing reproduces the reference exactly), {len(diff)} different otherwise")
    for c in vel:
        if c not in explained:
            print(f"  UNEXPLAINED velocity difference: {c['file']}: {c['detail']} (notes end before first beat: "
                  f"{c['notes_end_before_first_beat']}, shift reproduces: {c['shift_reproduces_reference']})")
    for c in diff:
        print(f"  DIFFERENT: {c['file']}: {c['detail']}")
    for c in count("vs_reference", "ours failed"):
        print(f"  ours failed, reference read it: {c['file']} [{c['ours_error']}], reference has "
              f"{c['reference_nonzero_cells']} non-zero cells")
    print(f"  (reference failed on {len(count('vs_reference', 'reference failed'))}, "
          f"both failed on {len(count('vs_reference', 'both failed'))})")
    odiff = count("vs_oracle", "different")
    print(f"ours (semantics=lpd) vs tests/reference_lpd.parse_lpd030: {len(count('vs_oracle', 'equal'))} equal, "
          f"{len(odiff)} different (oracle failed on {len(count('vs_oracle', 'oracle failed'))}, "
          f"ours failed on {len(count('vs_oracle', 'ours failed'))}, both on {len(count('vs_oracle', 'both failed'))})")
    for c in odiff:
        print(f"  DIFFERENT: {c['file']}: {c['oracle_detail']}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out}")
    return 1 if diff or len(explained) != len(vel) else 0


if __name__ == "__main__":
    sys.exit(main())
