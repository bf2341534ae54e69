"""What pinned numerics cost: training steps per second of every model family with native kernels
against pinned ones (pipeline/numerics.py), on this machine, in one run.

Each family trains with its real training code and the sizes of params.yaml on seeded synthetic
data (benchmarks/numerics_probe.py), in fresh processes, alternating native and pinned runs; the
figure is the median over the repeats. The same thread counts (the params' ``threads``) are used
both ways, so the ratio is the kernels' alone.

    python benchmarks/bench_numerics.py [--steps N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "benchmarks" / "numerics_probe.py"
sys.path.insert(0, str(ROOT))

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

#: steps per family: enough for a second or more of training each on a 2-core CPU
STEPS = {"lstm": 40, "musegan": 12, "vqvae": 6, "prior": 20, "upsampler": 30}


def run(native: bool, family: str, steps: int) -> dict:
    from pipeline import numerics

    env = {k: v for k, v in os.environ.items() if k not in set(numerics.pinned_env()) | {numerics.OPT_OUT}}
    if native:
        env[numerics.OPT_OUT] = "1"
    res = subprocess.run([sys.executable, str(PROBE), "--steps", str(steps), "--families", family, "--json"],
                         env=env, capture_output=True, text=True, timeout=1800)
    if res.returncode:
        raise SystemExit(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every family's step count")
    args = ap.parse_args(argv)
    import torch

    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, "
          f"native ATen capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'family':10s} {'steps':>5s} {'native steps/s':>15s} {'pinned steps/s':>15s} {'pinned/native time':>19s}")
    rows = []
    for fam, steps in STEPS.items():
        steps = max(2, int(steps * args.scale))
        rate = {True: [], False: []}
        for _ in range(args.repeats):
            for native in (True, False):
                r = run(native, fam, steps)["families"][fam]
                rate[native].append(r["steps"] / r["seconds"])
        nat, pin = statistics.median(rate[True]), statistics.median(rate[False])
        rows.append((fam, steps, nat, pin))
        print(f"{fam:10s} {steps:5d} {nat:15.2f} {pin:15.2f} {nat / pin:18.2f}x", flush=True)
    total_nat = sum(s / n for _, s, n, _ in rows)
    total_pin = sum(s / p for _, s, _, p in rows)
    print(f"all families: {total_pin:.1f} s pinned against {total_nat:.1f} s native = {total_pin / total_nat:.2f}x the time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
