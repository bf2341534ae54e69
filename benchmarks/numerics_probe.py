"""Train every model family a few steps on seeded synthetic data, with the real training code and
the sizes of a params.yaml, and print one line per family: the SHA-256 of the trained weights, the
final loss and the training steps per second.

The numerics of this process are those of the model commands: pinned (``pipeline.numerics.pin``)
unless ``PIPELINE_NATIVE_NUMERICS=1`` or ``--native``. Run it under two CPU settings and compare the
digests (``tests/test_numerics.py`` and ``benchmarks/bench_numerics.py`` do):

    python benchmarks/numerics_probe.py --steps 3 --json
    PIPELINE_NATIVE_NUMERICS=1 ATEN_CPU_CAPABILITY=default python benchmarks/numerics_probe.py --steps 3

Families: ``lstm`` (lstm_attention: LSTM + attention, ``fit``'s step: Adam, clipping), ``musegan``
(the full MuseGAN, WGAN-GP with gradient penalty and ``n_critic`` critic updates per step),
``vqvae`` (multi-level VQ-VAE, L2 + multi-resolution STFT + commitment, EMA codebooks) and
``prior`` (the Jukebox top-level prior, factorized attention) and ``upsampler`` (level 0, with its
conditioner). A step is one generator/optimizer update.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAMILIES = ("lstm", "musegan", "vqvae", "prior", "upsampler")


def _digest(*modules) -> str:
    import hashlib

    h = hashlib.sha256()
    for m in modules:
        for k, v in sorted(m.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def probe_lstm(params_path: Path, steps: int, out: Path) -> dict:
    import numpy as np
    import torch

    from pipeline.config import load_section
    from pipeline.training import lstm as fam
    from pipeline.training.solver import seed_everything
    from pipeline.stages import lstm as stage

    p = load_section(stage.Params, "lstm", params_path)
    t = p.train
    seed_everything(t.seed, threads=t.threads)
    vocab = 320
    model = stage._model(p, "lstm_attention", vocab)
    rng = np.random.default_rng(t.seed)
    data = torch.from_numpy(rng.integers(4, vocab, size=(steps, t.batch_size, t.window + 1)).astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=t.lr)
    model.train()
    t0 = time.perf_counter()
    for s in range(steps):
        opt.zero_grad()
        loss = fam.step(model, data[s])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
    sec = time.perf_counter() - t0
    return {"digest": _digest(model), "loss": float(loss.detach()), "seconds": sec, "steps": steps}


def probe_musegan(params_path: Path, steps: int, out: Path) -> dict:
    import numpy as np

    from pipeline.config import load_section
    from pipeline.models.musegan import build
    from pipeline.training import musegan as fam
    from pipeline.training.solver import seed_everything
    from pipeline.stages import build_phrases as phrases_stage
    from pipeline.stages import musegan as stage

    p = load_section(stage.Params, "musegan", params_path)
    ph = load_section(phrases_stage.Params, "build_phrases", params_path)
    t = p.train
    tracks = ("Drums", "Piano", "Guitar", "Bass", "Strings")
    rng = np.random.default_rng(t.seed)
    x = rng.random((max(4 * t.batch_size, 16), ph.phrase_bars, ph.steps_per_bar, ph.n_pitches, len(tracks))) < 0.03
    seed_everything(t.seed, threads=t.threads)
    gen, critic = build(stage.model_config(p, "musegan", x.shape, tracks))
    cfg = fam.GanConfig(steps=steps, batch_size=t.batch_size, lr=t.lr, beta1=t.beta1, beta2=t.beta2,
                        n_critic=t.n_critic, gp_weight=t.gp_weight, seed=t.seed, checkpoint_every=10 ** 9)
    t0 = time.perf_counter()
    res = fam.train(gen, critic, x, cfg=cfg, out=out / "musegan", resume=False)
    sec = time.perf_counter() - t0
    last = res["history"][-1]
    return {"digest": _digest(gen, critic), "loss": float(last.get("g_loss", float("nan"))), "seconds": sec,
            "steps": steps}


def _vqvae(params_path: Path):
    import numpy as np

    from pipeline.config import load_section
    from pipeline.training import vqvae as fam
    from pipeline.training.solver import seed_everything
    from pipeline.stages import vqvae as stage

    p = load_section(stage.Params, "vqvae", params_path)
    t = p.train
    rng = np.random.default_rng(t.seed)
    n, length = 6, max(2 * t.crop_samples, 44100)
    pcm = [(np.sin(np.arange(length) * (0.01 + 0.003 * i))[None] * 8000
            + rng.normal(0, 800, (1, length))).astype(np.int16) for i in range(n)]
    bank = fam.ClipBank(ids=[f"{i:032x}" for i in range(n)], clips=[0] * n, valid=[length] * n, pcm=pcm,
                        sample_rate=44100)
    stft = tuple(zip(t.stft_n_fft, t.stft_hop, t.stft_window))
    stats = fam.data_stats(bank, stft, samples=t.crop_samples, crops=4, seed=t.seed)
    seed_everything(t.seed, threads=t.threads)
    model = fam.build_model(stage.model_kwargs(p))
    model.set_data_stats(stats["data_var"], stats["spec_rms"])
    return p, fam, bank, model


def probe_vqvae(params_path: Path, steps: int, out: Path) -> dict:
    p, fam, bank, model = _vqvae(params_path)
    t = p.train
    valid = fam.fixed_crops(bank, samples=t.crop_samples, n=2, seed=t.seed)
    cfg = fam.TrainConfig(steps=steps, batch_size=t.batch_size, crop_samples=t.crop_samples, lr=t.lr,
                          grad_clip=t.grad_clip, log_every=1, valid_every=10 ** 9, seed=t.seed)
    t0 = time.perf_counter()
    res = fam.train(model, bank, valid=valid, cfg=cfg, out=out / "vqvae", resume=False)
    sec = time.perf_counter() - t0
    return {"digest": _digest(model), "loss": float(res["history"][-1]["loss"]), "seconds": sec, "steps": steps}


def _prior(params_path: Path, steps: int, out: Path, level_from_top: int) -> dict:
    import numpy as np
    import torch

    from pipeline.config import load_section
    from pipeline.models.jukebox import JukeboxPrior
    from pipeline.training import jukebox as fam
    from pipeline.training.solver import seed_everything
    from pipeline.stages import jukebox as stage

    _, _, _, vq = _vqvae(params_path)
    p = load_section(stage.Params, "jukebox", params_path)
    t = p.train
    level = vq.levels - 1 - level_from_top
    cfg = stage.model_config(p, vq, level)
    seed_everything(t.seed, threads=t.threads)
    rng = np.random.default_rng(t.seed)
    n = max(2 * t.batch_size, 8)
    codes = rng.integers(0, cfg.bins, size=(n, 2 * cfg.context)).astype(np.int64)
    upper = None
    if level_from_top:
        upper = rng.integers(0, cfg.bins, size=(n, 2 * cfg.context // cfg.cond_ratio)).astype(np.int64)
    torch.manual_seed(t.seed)
    model = JukeboxPrior(cfg)
    tc = fam.TrainConfig(steps=steps, batch_size=t.batch_size, lr=t.lr, warmup=t.warmup, grad_clip=t.grad_clip,
                         seed=t.seed, checkpoint_every=10 ** 9)
    t0 = time.perf_counter()
    res = fam.train(model, codes, upper, cfg=tc, out=out / f"prior{level}", resume=False)
    sec = time.perf_counter() - t0
    return {"digest": _digest(model), "loss": float(res["history"][-1]["train_bits"]), "seconds": sec,
            "steps": steps}


def probe_prior(params_path: Path, steps: int, out: Path) -> dict:
    return _prior(params_path, steps, out, 0)


def probe_upsampler(params_path: Path, steps: int, out: Path) -> dict:
    return _prior(params_path, steps, out, 1)


PROBES = {"lstm": probe_lstm, "musegan": probe_musegan, "vqvae": probe_vqvae, "prior": probe_prior,
          "upsampler": probe_upsampler}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--native", action="store_true", help="native kernels (as PIPELINE_NATIVE_NUMERICS=1)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args(argv)
    from pipeline import numerics

    numerics.pin(args.native)  # before torch and numpy load, as the model commands do
    import torch

    numerics.configure_torch()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fam in args.families.split(","):
            results[fam] = PROBES[fam](args.params, args.steps, Path(tmp))
    doc = {"numerics": numerics.record(), "capability": torch.backends.cpu.get_cpu_capability(),
           "families": results}
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"numerics: {'pinned' if doc['numerics']['pinned'] else 'native'}, "
              f"ATen capability {doc['capability']}, {torch.get_num_threads()} threads")
        for fam, r in results.items():
            print(f"{fam:10s} {r['digest'][:16]}  loss {r['loss']:.6f}  {r['steps'] / r['seconds']:.2f} steps/s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PIPELINE_PROGRESS", "0")
    sys.exit(main())
