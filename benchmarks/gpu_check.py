"""GPU check: every model family's real training loop for a few steps, per precision, with steps/s
and peak memory.

    scripts/gpu_check.sh [--steps N] [--precisions fp32,bf16,fp16] [--families ...] [--compile]
    .venv/bin/python benchmarks/gpu_check.py --device cpu --steps 2 --precisions fp32,bf16   # smoke test

What runs: the training functions the stages call (``solver.fit`` for the LSTMs,
``training.musegan.train``, ``training.vqvae.train``, ``training.jukebox.train``) with the model sizes
of ``params.yaml`` and seeded synthetic inputs of the real shapes (token windows, bool phrases
``(bars, steps, pitches, tracks)`` of ``build_phrases``, 16-bit noise clips, random codes), each into
a temporary folder; nothing needs ``dvc repro`` first. Families: ``lstm``, ``lstm_attention``,
``musegan``, ``jamming``, ``vqvae``, ``jukebox_prior``, ``jukebox_upsampler`` (the level below the top).

Settings as in ``pipeline train``: ``solver.seed_everything`` (deterministic algorithms; with pinned
numerics also deterministic cuDNN, no TF32). Measured: an optimizer step hook (after ``torch.cuda.synchronize``) timestamps every step; steps/s is
counted after ``--warmup`` steps (the first steps pay for cuDNN autotuning, allocation and, with
``--compile``, compilation); a MuseGAN step is one generator update with its ``n_critic`` critic
updates. Peak memory is ``torch.cuda.max_memory_allocated`` of the run (CUDA only). With two or
more GPUs, every family runs again on 2 GPUs under ``torch.distributed.run`` (``world`` 2 in the
table; steps/s of global batches, peak memory of rank 0); ``--ddp`` asks for those rows on the CPU
too (2 processes, gloo: a smoke test of the same path).

Exit codes: 0 every row ran with a finite loss; 1 a row failed or its loss was not finite;
2 ``--device cuda`` (the default) on a machine without CUDA: one line saying so, nothing run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FAMILIES = ("lstm", "lstm_attention", "musegan", "jamming", "vqvae", "jukebox_prior", "jukebox_upsampler")
#: the families whose training loops run under DDP (torchrun): all of them
DDP_FAMILIES = FAMILIES
#: where ``compile`` is a param (the jukebox transformer, the VQ-VAE's convolutions)
COMPILE_FAMILIES = ("vqvae", "jukebox_prior", "jukebox_upsampler")
VOCAB_SIZE = 512  # synthetic token vocabulary (the built notes vocabulary has a few hundred ids)


class StepClock:
    """Timestamps of every ``optimizer.step()`` (per optimizer), after a CUDA synchronize."""

    def __init__(self, cuda: bool) -> None:
        import torch

        self.cuda = cuda
        self.times: dict[int, list[float]] = {}
        self.start = time.perf_counter()
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self._handle = register_optimizer_step_post_hook(self._hook)

    def _hook(self, optimizer, args, kwargs) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        self.times.setdefault(id(optimizer), []).append(time.perf_counter())

    def close(self) -> None:
        self._handle.remove()

    def rate(self, warmup: int) -> tuple[int, float | None]:
        """(steps, steps/s) of the optimizer that stepped least often (MuseGAN: the generator)."""
        if not self.times:
            return 0, None
        ts = min(self.times.values(), key=len)
        w = min(warmup, len(ts) - 2) if len(ts) >= 2 else 0
        if len(ts) - 1 - w > 0 and ts[-1] > ts[w]:
            return len(ts), (len(ts) - 1 - w) / (ts[-1] - ts[w])
        return len(ts), len(ts) / max(ts[-1] - self.start, 1e-9)


# ---------------------------------------------------------------------------------------------
# one family, one precision, one process (or one rank)


def _lstm(attention: bool, *, steps: int, precision: str, device, out: Path) -> float:
    import numpy as np

    from pipeline.config import load_params
    from pipeline.stages import lstm as stage
    from pipeline.training import lstm as fam
    from pipeline.training.solver import FitConfig, fit

    p = load_params(stage.Params)
    m, t = p.model, p.train
    model = fam.build_model(VOCAB_SIZE, embedding=m.embedding, hidden=m.hidden, layers=m.layers, dropout=m.dropout,
                            attention=attention, attention_dim=m.attention_dim).to(device)
    rng = np.random.default_rng(0)
    data = rng.integers(4, VOCAB_SIZE, (steps * t.batch_size, t.window + 1)).astype(np.int64)
    valid = data[:t.batch_size]
    res = fit(model, train=data, valid=valid, out=out, train_step=fam.step, loss_fn=fam.loss_sums, resume=False,
              cfg=FitConfig(epochs=1, batch_size=t.batch_size, lr=t.lr, patience=1, grad_clip=t.grad_clip,
                            max_windows=len(data), max_eval_windows=len(valid), seed=t.seed, precision=precision),
              count=fam.target_tokens)
    return res["history"][-1]["train_loss"]


def _musegan(variant: str, *, steps: int, precision: str, device, out: Path) -> float:
    import numpy as np

    from pipeline.config import load_params
    from pipeline.models.musegan import build
    from pipeline.stages import build_phrases
    from pipeline.stages import musegan as stage
    from pipeline.training import musegan as fam

    p = load_params(stage.Params)
    ph = load_params(build_phrases.Params)
    tracks = 5  # LPD-5
    shape = (ph.phrase_bars, ph.steps_per_bar, ph.n_pitches, tracks)
    t = p.train
    n = max(t.batch_size * t.n_critic * steps, t.batch_size)
    data = np.random.default_rng(0).random((n, *shape)) < 0.02
    names = ("Drums", "Piano", "Guitar", "Bass", "Strings")
    gen, critic = build(stage.model_config(p, variant, data.shape, names))
    gen.to(device)
    critic.to(device)
    res = fam.train(gen, critic, data, out=out, resume=False,
                    cfg=fam.GanConfig(steps=steps, batch_size=t.batch_size, lr=t.lr, beta1=t.beta1, beta2=t.beta2,
                                      n_critic=t.n_critic, gp_weight=t.gp_weight, seed=t.seed,
                                      checkpoint_every=steps, precision=precision))
    return res["final_d_loss"]


def _vqvae(*, steps: int, precision: str, device, out: Path, compile: bool) -> float:
    import numpy as np

    from pipeline.config import load_params
    from pipeline.stages import vqvae as stage
    from pipeline.training import vqvae as fam

    p = load_params(stage.Params)
    t = p.train
    rng = np.random.default_rng(0)
    clips = 4
    samples = 4 * t.crop_samples
    pcm = [(rng.standard_normal((1, samples)) * 3000).clip(-32768, 32767).astype(np.int16) for _ in range(clips)]
    bank = fam.ClipBank(ids=[f"{i:032x}" for i in range(clips)], clips=[0] * clips, valid=[samples] * clips,
                        pcm=pcm, sample_rate=44100)
    model = fam.build_model(stage.model_kwargs(p))
    model.set_data_stats(float((3000 / 32768) ** 2), [1.0] * len(t.stft_n_fft))
    model.to(device)
    valid = fam.fixed_crops(bank, samples=t.crop_samples, n=2, seed=t.seed)
    res = fam.train(model, bank, valid=valid, out=out, resume=False,
                    cfg=fam.TrainConfig(steps=steps, batch_size=t.batch_size, crop_samples=t.crop_samples, lr=t.lr,
                                        grad_clip=t.grad_clip, log_every=steps, valid_every=steps, seed=t.seed,
                                        precision=precision, compile=compile))
    return res["history"][-1]["loss"]


def _jukebox(upsampler: bool, *, steps: int, precision: str, device, out: Path, compile: bool) -> float:
    import numpy as np

    from pipeline.config import load_params
    from pipeline.models.jukebox import JukeboxPrior
    from pipeline.stages import jukebox as stage
    from pipeline.stages import vqvae as vq_stage
    from pipeline.training import jukebox as fam

    p = load_params(stage.Params)
    vm = load_params(vq_stage.Params).model
    vq = SimpleNamespace(codebook_size=vm.codebook_size, hop_lengths=tuple(vm.hop_lengths), levels=len(vm.hop_lengths))
    top = vq.levels - 1
    level = top - 1 if upsampler else top
    cfg = stage.model_config(p, vq, level)
    rng = np.random.default_rng(0)
    length = 2 * cfg.context
    codes = rng.integers(0, cfg.bins, (8, length)).astype(np.int64)
    upper = rng.integers(0, cfg.bins, (8, length // cfg.cond_ratio)).astype(np.int64) if upsampler else None
    model = JukeboxPrior(cfg).to(device)
    t = p.train
    res = fam.train(model, codes, upper, out=out, resume=False,
                    cfg=fam.TrainConfig(steps=steps, batch_size=t.batch_size, lr=t.lr, warmup=t.warmup,
                                        grad_clip=t.grad_clip, seed=t.seed, checkpoint_every=steps,
                                        precision=precision, compile=compile))
    return res["history"][-1]["train_bits"]


def run_family(family: str, *, device: str, precision: str, steps: int, warmup: int, compile: bool = False) -> dict:
    """One training run of ``family``; ``{"steps", "steps_per_s", "peak_mib", "loss"}``."""
    import torch

    from pipeline.training import distributed
    from pipeline.training.solver import resolve_device, seed_everything

    ctx = distributed.setup(device)  # under torchrun: this rank's device; else as asked
    dev = resolve_device(ctx.device)
    seed_everything(0)  # as the stages do: deterministic algorithms (and cuDNN settings) included
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    clock = StepClock(cuda)
    try:
        with tempfile.TemporaryDirectory(prefix=f"gpu_check_{family}_") as tmp:
            kw = dict(steps=steps, precision=precision, device=dev, out=Path(tmp))
            if family in ("lstm", "lstm_attention"):
                loss = _lstm(family == "lstm_attention", **kw)
            elif family in ("musegan", "jamming"):
                loss = _musegan(family, **kw)
            elif family == "vqvae":
                loss = _vqvae(compile=compile, **kw)
            elif family in ("jukebox_prior", "jukebox_upsampler"):
                loss = _jukebox(family == "jukebox_upsampler", compile=compile, **kw)
            else:
                raise ValueError(f"unknown family {family!r} (one of {', '.join(FAMILIES)})")
    finally:
        clock.close()
    n, rate = clock.rate(warmup)
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None
    return {"steps": n, "steps_per_s": rate, "peak_mib": peak, "loss": None if loss is None else float(loss)}


# ---------------------------------------------------------------------------------------------
# the table


def _ddp_row(family: str, precision: str, args) -> dict:
    """``family`` on 2 GPUs: this script under ``torch.distributed.run``; rank 0 prints a JSON line."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", __file__,
           "--worker", "--families", family, "--precisions", precision, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--device", args.device]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PIPELINE_PROGRESS": "0", "PYTHONPATH": path}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"torchrun exit {proc.returncode}: {tail}"}


def _fmt(row: dict) -> str:
    def num(v, f):
        return f"{'-':>10}" if v is None else format(v, f)

    if "error" in row:
        what = f"FAILED: {row['error']}"
    else:
        what = (f"{num(row['steps_per_s'], '10.2f')} {num(row['peak_mib'], '10.1f')} "
                f"{num(row['loss'], '10.4f')}")
    return f"{row['family']:<18} {row['precision']:<5} {row['compile']!s:<7} {row['world']:>5}  {what}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke test: no timings worth reading)")
    ap.add_argument("--steps", type=int, default=20, help="training steps per run (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="steps left out of steps/s (default 3)")
    ap.add_argument("--precisions", default=None,
                    help="comma-separated (default: fp32,bf16,fp16 on CUDA, fp32,bf16 on the CPU)")
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated (default: {','.join(FAMILIES)})")
    ap.add_argument("--compile", action="store_true",
                    help=f"also run {', '.join(COMPILE_FAMILIES)} with compile on (bf16; compiling takes minutes)")
    ap.add_argument("--no-ddp", action="store_true", help="skip the 2-GPU rows even with 2 GPUs")
    ap.add_argument("--ddp", action="store_true", help="the 2-process rows on the CPU too (gloo; a smoke test)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on the CPU (0: torch's default)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("gpu_check: needs CUDA (torch.cuda.is_available() is False here); nothing run "
              "(`--device cpu` runs the same loops as a smoke test)")
        return 2
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        print(f"gpu_check: unknown famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)} "
              f"(one of {', '.join(FAMILIES)})")
        return 2
    precisions = [p for p in (args.precisions or ("fp32,bf16,fp16" if cuda else "fp32,bf16")).split(",") if p]
    if args.steps < 1:
        print(f"gpu_check: --steps={args.steps} must be at least 1")
        return 2

    if args.worker:  # one rank of a DDP row
        from pipeline.training import distributed

        row = run_family(families[0], device=args.device, precision=precisions[0], steps=args.steps,
                         warmup=args.warmup)
        if distributed.current().is_main:
            print(json.dumps({"family": families[0], "precision": precisions[0], "compile": False, "world": 2,
                              **row}), flush=True)
        return 0

    runs = [(f, p, False) for f in families for p in precisions]
    if args.compile:
        runs += [(f, "bf16", True) for f in families if f in COMPILE_FAMILIES]
    ddp = not args.no_ddp and ((cuda and torch.cuda.device_count() >= 2) or (args.ddp and not cuda))
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"gpu_check on {name} ({torch.cuda.device_count() if cuda else 0} GPU(s)), torch {torch.__version__}, "
          f"{args.steps} steps per run, steps/s after {args.warmup} warm-up steps")
    print(f"{'family':<18} {'prec':<5} {'compile':<7} {'world':>5}  {'steps/s':>10} {'peak MiB':>10} {'loss':>10}")
    failed = 0
    t0 = time.perf_counter()
    for family, precision, comp in runs:
        row = {"family": family, "precision": precision, "compile": comp, "world": 1}
        try:
            row.update(run_family(family, device=args.device, precision=precision, steps=args.steps,
                                  warmup=args.warmup, compile=comp))
        except Exception as exc:  # one failed row must not hide the others
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if "error" not in row and not (row["loss"] is not None and math.isfinite(row["loss"])):
            row["error"] = f"loss {row['loss']} is not finite"
        failed += "error" in row
        print(_fmt(row), flush=True)
    if ddp:
        for family in [f for f in families if f in DDP_FAMILIES]:
            for precision in precisions:
                row = {"family": family, "precision": precision, "compile": False, "world": 2,
                       **_ddp_row(family, precision, args)}
                if "error" not in row and not (row.get("loss") is not None and math.isfinite(row["loss"])):
                    row["error"] = f"loss {row.get('loss')} is not finite"
                failed += "error" in row
                print(_fmt(row), flush=True)
    elif cuda:
        print(f"(DDP rows skipped: {torch.cuda.device_count()} GPU(s))" if not args.no_ddp else "(DDP rows skipped)")
    print(f"{len(runs)} single-process run(s) in {time.perf_counter() - t0:.0f} s; {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
