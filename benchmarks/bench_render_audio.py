#!/usr/bin/env python
"""Benchmark: the raw ``fluidsynth`` program against our whole render-audio stage, in one run.

    .venv/bin/python benchmarks/bench_render_audio.py [FOLDER] [--limit N] [--workers W] [--out JSON]

FOLDER (default ``datasets/corpus/midi``, else ``../shared/midi``) is searched recursively for
.mid/.midi/.rmi files; ``--limit N`` (default 24) takes N of them spread evenly over the sorted list.

Paths timed (same files, same synth settings: SoundFont, gain, reverb, chorus, polyphony,
period size, one synth thread, 44.1 kHz float32 stereo):

- raw: ``fluidsynth -q -ni -F out.raw -T raw -O float -r 44100 -z P -g G -o synth.cpu-cores=1 ...
  SF2 FILE`` per file, ``W`` processes at a time, each writing a raw file to a temp folder;
  audio seconds = bytes / 8 / 44100 (FluidSynth renders until its player stops and its voices
  have died, which is usually a few seconds past the MIDI end).
- ours (CLI, whole process): ``pipeline render-audio <files> --out <fresh tmp> --workers W`` with
  the ``render_audio`` params of params.yaml except ``render_seconds: 0`` and ``clips_per_song: 0``
  (whole songs, every clip) and ``shard_size`` lowered to give at least 4 tasks per worker
  (a task is a shard: with fewer tasks than workers, workers idle): interpreter start, imports, hashing, read_midi, render (streamed),
  trim, peak limit, downmix, clips, FLAC encode, Parquet and NPZ shards, manifest; audio seconds =
  the trimmed song durations of the manifest (end of MIDI + release tail at most).

Prints seconds of audio per second of wall time for each, and the ratio ours/raw of wall times
(goal: <= 1.25).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _files(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi", ".rmi") and p.is_file())
    if limit and len(files) > limit:
        step = len(files) / limit
        files = [files[int(i * step)] for i in range(limit)]
    return files


def main() -> int:
    import yaml

    from pipeline.audio.render import fluidsynth_path, make_settings
    from pipeline.config import from_dict
    from pipeline.stages.render_audio import Params

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    default = ROOT / "datasets" / "corpus" / "midi"
    if not default.is_dir():
        default = ROOT.parent / "shared" / "midi"
    ap.add_argument("folder", nargs="?", type=Path, default=default)
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "render_audio.json")
    args = ap.parse_args()

    section = (yaml.safe_load((ROOT / "params.yaml").read_text()) or {}).get("render_audio") or {}
    files = _files(args.folder, args.limit)
    # whole songs, every clip; tasks of at most params' shard_size files, and at least 4 per worker
    shard_size = max(1, min(int(section.get("shard_size", 16)), -(-len(files) // (4 * max(1, args.workers)))))
    section = dict(section, render_seconds=0.0, clips_per_song=0, shard_size=shard_size)
    params = from_dict(Params, section, section="render_audio")
    settings = make_settings(soundfont=params.soundfont, sample_rate=params.sample_rate, gain=params.gain,
                             reverb=params.reverb, chorus=params.chorus, period_size=params.period_size,
                             polyphony=params.polyphony)
    exe = fluidsynth_path()
    if not files:
        print(f"error: no MIDI files under {args.folder}", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        tmp = Path(tmp)
        src = tmp / "midi"
        src.mkdir()
        for i, f in enumerate(files):
            shutil.copy(f, src / f"{i:04d}_{f.name}")
        inputs = sorted(src.iterdir())

        # raw fluidsynth
        raw_dir = tmp / "raw"
        raw_dir.mkdir()

        def one(p: Path) -> int:
            out = raw_dir / (p.stem + ".raw")
            cmd = settings.command(exe, str(p))
            cmd[cmd.index("-F") + 1] = str(out)
            subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=False)
            size = out.stat().st_size if out.exists() else 0
            out.unlink(missing_ok=True)
            return size

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
            sizes = list(pool.map(one, inputs))
        raw_s = time.perf_counter() - t0
        raw_audio = sum(sizes) / 8 / params.sample_rate

        # our stage, whole process
        pfile = tmp / "params.yaml"
        pfile.write_text(yaml.safe_dump({"render_audio": section}))
        env = dict(os.environ, PIPELINE_PROGRESS="0")
        cmd = [sys.executable, "-c", "from pipeline.cli import main; main()", "render-audio", str(src),
               "--out", str(tmp / "audio"), "--workers", str(args.workers), "--params", str(pfile)]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        ours_s = time.perf_counter() - t0
        if res.returncode != 0:
            print(res.stdout + res.stderr, file=sys.stderr)
            return 1
        import pandas as pd

        m = pd.read_parquet(tmp / "audio" / "manifest.parquet")
        ours_audio = float(m.duration.fillna(0).sum())
        shard_bytes = sum(p.stat().st_size for p in (tmp / "audio").glob("*/audio-*"))
        statuses = m.status.value_counts().to_dict()

    result = {
        "files": len(files), "folder": str(args.folder), "workers": args.workers, "shard_size": shard_size,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "settings": settings.as_record(),
        "raw": {"wall_s": round(raw_s, 3), "audio_s": round(raw_audio, 1),
                "audio_s_per_s": round(raw_audio / raw_s, 2)},
        "ours": {"wall_s": round(ours_s, 3), "audio_s": round(ours_audio, 1),
                 "audio_s_per_s": round(ours_audio / ours_s, 2), "statuses": statuses,
                 "shard_mb": round(shard_bytes / 2**20, 1)},
        "ratio_wall": round(ours_s / raw_s, 3),
    }
    print(f"{len(files)} files from {args.folder}, {args.workers} worker(s), {settings.synth}, {settings.soundfont}")
    print(f"{'path':<38}{'wall s':>9}{'audio s':>10}{'audio s / s':>13}")
    print(f"{'raw fluidsynth (-F file, per file)':<38}{raw_s:>9.2f}{raw_audio:>10.1f}{raw_audio / raw_s:>13.1f}")
    print(f"{'ours: pipeline render-audio (CLI)':<38}{ours_s:>9.2f}{ours_audio:>10.1f}{ours_audio / ours_s:>13.1f}")
    print(f"ratio of wall times ours/raw: {ours_s / raw_s:.3f} (goal <= 1.25); shards {result['ours']['shard_mb']} MB; "
          f"statuses {statuses}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
