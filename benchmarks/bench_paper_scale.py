#!/usr/bin/env python
"""Benchmark: one training step of each family at the papers' sizes, on this CPU, with an estimate for one GPU.

    .venv/bin/python benchmarks/bench_paper_scale.py [--parts lstm,musegan,...] [--repeat 2] [--out JSON]

The sizes are ``pipeline paper-config FAMILY`` (``pipeline/defaults/paper/*.yaml``) laid over the
packaged params.yaml. Each part runs in a fresh subprocess with synthetic inputs of the real shapes
(random token ids, sparse random phrases, noise audio, random codes): the model's own training
step (forward, backward, Adam step; the same loss functions the training loops call), once to warm
up and then ``--repeat`` times, timed. The subprocess's peak resident memory (``VmHWM``) minus its
resident memory before the model was built is the step's memory (parameters, gradients, Adam
moments, activations; fp32).

A full-size step of most parts does not fit this machine's time or memory (batch 64 of the LSTM and
MuseGAN, the VQ-VAE's 262144-sample crops, 48-layer transformers over 8192 codes), so every part
is measured at two small sizes and extrapolated, as its ``measured at`` column says: time, FLOPs
and memory linear in the batch (LSTM at batch 8 and 16, MuseGAN 4 and 8, VQ-VAE 1 and 2), and in
depth and batch for the transformers (1 and 2 layers at batch 1 and 2: a term per layer, per sample
and per layer and sample).

FLOPs per step are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and
convolutions, forward and backward) at the measured size and extrapolated the same way. The GPU
column is an estimate, not a measurement: FLOPs / (0.4 x 989 TFLOP/s), i.e. 40% of an H100 SXM's
dense BF16 tensor-core peak, as bf16 autocast (``precision: bf16``) could reach; memory on a GPU
is about the CPU figure (fp32, no autocast), less the activations halved under bf16.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: H100 SXM dense BF16 tensor-core peak, FLOP/s, and the fraction of it assumed sustained
H100_BF16 = 989e12
UTILISATION = 0.4

PARTS = ("lstm", "lstm_attention", "musegan", "jamming", "vqvae", "prior", "upsampler")


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _params(family: str) -> dict:
    from pipeline import paper_configs
    from pipeline.config import PACKAGED_PARAMS

    return paper_configs.merged_params(family, PACKAGED_PARAMS)


# ---------------------------------------------------------------------------------------------
# one part, in its own process


def _lstm_step(doc: dict, attention: bool, batch: int, layers: int | None):
    import torch

    from pipeline.training import lstm as fam

    m, t = doc["lstm"]["model"], doc["lstm"]["train"]
    vocab = 400  # about the notes vocabulary of a few hundred songs (the built-in corpus: 274)
    model = fam.build_model(vocab, embedding=m["embedding"], hidden=m["hidden"], layers=layers or m["layers"],
                            dropout=m["dropout"], attention=attention, attention_dim=m["attention_dim"])
    opt = torch.optim.Adam(model.parameters(), lr=t["lr"])
    g = torch.Generator().manual_seed(0)
    x = torch.randint(4, vocab, (batch, t["window"] + 1), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = fam.step(model, x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        opt.step()
    # FlopCounterMode does not see the fused LSTM kernel: its matrix products, counted by hand
    # (per layer and step 4 gates of (input + hidden) x hidden multiply-adds; backward twice the forward)
    h, n_in = m["hidden"], (m["embedding"] or vocab)
    lstm_flops = sum(3 * 2 * 4 * h * ((n_in if i == 0 else h) + h) for i in range(layers or m["layers"])) \
        * batch * t["window"]
    return model, step, {"batch": t["batch_size"], "layers": m["layers"], "uncounted_flops": lstm_flops}


def _musegan_step(doc: dict, variant: str, batch: int, layers: int | None):
    import torch

    from pipeline.models.musegan import MuseGANConfig, build
    from pipeline.training import musegan as fam

    m, t = doc["musegan"]["model"], doc["musegan"]["train"]
    ph = doc["build_phrases"]
    cfg = MuseGANConfig(variant=variant, n_tracks=5, n_bars=ph["phrase_bars"], steps_per_bar=ph["steps_per_bar"],
                        n_pitches=ph["n_pitches"], z_dim=m["z_dim"], width=m["width"], condition_track=1)
    gen, critic = build(cfg)
    opt_g, opt_d = fam._optimizers(gen, critic, fam.GanConfig(lr=t["lr"], beta1=t["beta1"], beta2=t["beta2"]))
    g = torch.Generator().manual_seed(0)
    shape = (batch, ph["phrase_bars"], ph["steps_per_bar"], ph["n_pitches"], 5)
    real = torch.where(torch.rand(shape, generator=g) < 0.02, 1.0, -1.0)

    def step():  # n_critic critic updates and one generator update: one generator step of the loop
        for _ in range(t["n_critic"]):
            z = gen.sample_latents(batch, g)
            alpha = torch.rand(batch, generator=g)
            with torch.no_grad():
                fake = gen(z, None)
            gp = fam.gradient_penalty(critic, real, fake, alpha, t["gp_weight"], critic.groups)
            d_loss = -(critic(real).mean(0) - critic(fake).mean(0)).sum() + gp
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        z = gen.sample_latents(batch, g)
        g_loss = -critic(gen(z, None)).mean(0).sum()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()

    def count():  # FlopCounterMode cannot run the penalty's double backward: the pieces, counted apart
        from torch.utils.flop_counter import FlopCounterMode

        def flops(fn):
            with FlopCounterMode(display=False) as fc:
                fn()
            return fc.get_total_flops()
        z = gen.sample_latents(batch, g)
        gen_fwd = flops(lambda: gen(z, None).detach())
        critic_pass = flops(lambda: critic(real).sum().backward())  # forward + backward
        gen_update = flops(lambda: critic(gen(z, None)).sum().backward())
        opt_d.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
        # a critic update: G forward, D on real and fake (2 passes), the penalty: D on x_hat with its
        # input gradient (1 pass) and the backward through that graph (about 2 passes)
        return t["n_critic"] * (gen_fwd + 5 * critic_pass) + gen_update

    class Both(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gen, self.critic = gen, critic
    return Both(), step, {"batch": t["batch_size"], "layers": None, "count": count}


def _vqvae_step(doc: dict, batch: int, layers: int | None):
    import torch

    from pipeline.training.vqvae import build_model

    m, t = doc["vqvae"]["model"], doc["vqvae"]["train"]
    kw = {**{k: m[k] for k in ("hop_lengths", "stride", "width", "depth", "dilation_growth", "codebook_size",
                               "code_width", "mu", "commit", "restart_threshold")},
          "spectral_weight": t["spectral_weight"],
          "stft": [list(r) for r in zip(t["stft_n_fft"], t["stft_hop"], t["stft_window"])]}
    model = build_model(kw)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=t["lr"])
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(batch, t["crop_samples"], generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        _, losses, _ = model(x, generator=g)
        losses["loss"].backward()
        opt.step()
    return model, step, {"batch": t["batch_size"], "layers": None}


def _prior_step(doc: dict, upsampler: bool, batch: int, layers: int | None):
    import torch

    from pipeline.models.jukebox import JukeboxPrior, PriorConfig
    from pipeline.training.jukebox import model_bits

    jm = doc["jukebox"]["upsampler" if upsampler else "prior"]
    t = doc["jukebox"]["train"]
    bins = doc["vqvae"]["model"]["codebook_size"]
    kw = dict(bins=bins, width=jm["width"], layers=layers or jm["layers"], heads=jm["heads"], context=jm["context"],
              blocksize=jm["blocksize"], pattern=tuple(jm["pattern"]), mlp_ratio=jm["mlp_ratio"], dropout=jm["dropout"])
    ratio = 4
    if upsampler:
        kw.update(cond_ratio=ratio, cond_depth=jm["cond_depth"], cond_dilation_growth=jm["cond_dilation_growth"],
                  cond_dilation_cycle=jm["cond_dilation_cycle"], cond_width=jm["cond_width"])
    model = JukeboxPrior(PriorConfig(**kw))
    opt = torch.optim.Adam(model.parameters(), lr=t["lr"])
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, bins, (batch, jm["context"]), generator=g)
    cond = torch.randint(0, bins, (batch, jm["context"] // ratio), generator=g) if upsampler else None

    def step():
        opt.zero_grad(set_to_none=True)
        model_bits(model, codes, cond).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        opt.step()
    return model, step, {"batch": t["batch_size"], "layers": jm["layers"]}


def run_part(part: str, batch: int, layers: int | None, repeat: int) -> dict:
    """One part at ``batch`` (and ``layers``): seconds per step, FLOPs per step, memory, parameters."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    family = {"lstm": "lstm", "lstm_attention": "lstm", "musegan": "musegan", "jamming": "musegan"}.get(part, "jukebox")
    doc = _params(family)
    base = _rss_kb("VmRSS")
    if part in ("lstm", "lstm_attention"):
        model, step, full = _lstm_step(doc, part == "lstm_attention", batch, layers)
    elif part in ("musegan", "jamming"):
        model, step, full = _musegan_step(doc, part, batch, layers)
    elif part == "vqvae":
        model, step, full = _vqvae_step(doc, batch, layers)
    else:
        model, step, full = _prior_step(doc, part == "upsampler", batch, layers)
    count = full.pop("count", None)
    if count is not None:
        flops = count()
        step()  # warm-up
    else:
        with FlopCounterMode(display=False) as fc:
            step()  # warm-up, counted
        flops = fc.get_total_flops() + full.pop("uncounted_flops", 0)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"part": part, "batch": batch, "layers": layers, "seconds": min(times), "flops": flops,
            "memory_mb": (_rss_kb("VmHWM") - base) / 1024,
            "parameters": sum(p.numel() for p in model.parameters()), "full": full}


# ---------------------------------------------------------------------------------------------
# the driver


def _child(part: str, batch: int, layers: int | None, repeat: int) -> dict:
    cmd = [sys.executable, __file__, "--child", part, "--batch", str(batch), "--repeat", str(repeat)]
    if layers:
        cmd += ["--layers", str(layers)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"{part} (batch {batch}, layers {layers}) failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


#: the two batches a part is measured at (then linear in the batch up to the paper's)
PROBE_BATCHES = {"lstm": (8, 16), "lstm_attention": (8, 16), "musegan": (4, 8), "jamming": (4, 8), "vqvae": (1, 2)}


def measure(part: str, repeat: int) -> dict:
    """The part at its paper size, extrapolated from small batches (see the module docstring)."""
    if part in PROBE_BATCHES:
        b1, b2 = PROBE_BATCHES[part]
        a, b = _child(part, b1, None, repeat), _child(part, b2, None, repeat)
        B = a["full"]["batch"]

        def lin(k):
            return a[k] + (b[k] - a[k]) * (B - b1) / (b2 - b1)
        return {**a, "batch": B, "measured_at": f"batch {b1} and {b2}, linear in the batch",
                "est_seconds": lin("seconds"), "est_flops": lin("flops"), "est_memory_mb": lin("memory_mb")}
    runs = {(L, B): _child(part, B, L, repeat) for L in (1, 2) for B in (1, 2)}
    a = runs[1, 1]
    B, L = a["full"]["batch"], a["full"]["layers"]

    def bilinear(k):  # f(L, B) = f0 + alpha L + beta B + gamma L B, exact through the four points
        f = {lb: r[k] for lb, r in runs.items()}
        gamma = f[2, 2] - f[2, 1] - f[1, 2] + f[1, 1]
        alpha = f[2, 1] - f[1, 1] - gamma
        beta = f[1, 2] - f[1, 1] - gamma
        return f[1, 1] - alpha - beta - gamma + alpha * L + beta * B + gamma * L * B

    params = a["parameters"] + (runs[2, 1]["parameters"] - a["parameters"]) * (L - 1)
    return {**a, "batch": B, "layers": L, "parameters": params,
            "measured_at": "1 and 2 layers x batch 1 and 2; bilinear in depth and batch",
            "est_seconds": bilinear("seconds"), "est_flops": bilinear("flops"), "est_memory_mb": bilinear("memory_mb")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--layers", type=int)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(run_part(a.child, a.batch, a.layers, a.repeat)))
        return
    import torch

    from machine import cpu_model

    print(f"# {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; GPU column: FLOPs / ({UTILISATION:.0%} x {H100_BF16 / 1e12:.0f} TFLOP/s), an estimate")
    print(f"{'part':<15} {'params':>8} {'batch':>5} {'CPU s/step':>10} {'CPU MB':>8} {'GFLOP/step':>11} "
          f"{'GPU s/step (est.)':>17}  measured at")
    rows = []
    for part in a.parts.split(","):
        r = measure(part, a.repeat)
        r["est_gpu_seconds"] = r["est_flops"] / (UTILISATION * H100_BF16)
        rows.append(r)
        print(f"{part:<15} {r['parameters'] / 1e6:>7.2f}M {r['batch']:>5} {r['est_seconds']:>10.2f} "
              f"{r['est_memory_mb']:>8.0f} {r['est_flops'] / 1e9:>11.1f} {r['est_gpu_seconds']:>17.4f}  {r['measured_at']}",
              flush=True)
    if a.out:
        a.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
