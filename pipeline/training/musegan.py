"""The MuseGAN family: WGAN-GP training, sampling, and phrases <-> arrays / MIDI / PNG.

Training (``train``): per generator step, ``critic_updates(step)`` critic updates on
``E[D(fake)] - E[D(real)] + gp_weight * E[(||grad D(x_hat)||_2 - 1)^2]`` (x_hat = real + alpha
(fake - real), alpha ~ U(0, 1) per phrase), then one generator update on ``-E[D(fake)]``; Adam with
``lr``, ``(beta1, beta2)`` for both. With one critic per track (jamming), each D_i has its own loss
and penalty (over its track) and G_i gets its critic's loss only: the losses are summed, and since
the parameters are disjoint and Adam works per parameter, that is the same as training the pairs
side by side.

What follows what (the official v1 code is salu133445/musegan ``musegan/core.py`` and
``v1/config.py``, the code of the AAAI 2018 paper):

- as the official v1 code: WGAN-GP with the penalty weight ``ModelConfig.lamda = 10`` and Adam
  ``(0.5, 0.9)`` (``v1/config.py``, the params.yaml defaults); the 5 critic updates per generator step
  of its "else" branch (``n_critic``); its critic schedule (100 updates at the first 25 generator
  steps and every 500th) **only** with ``critic_schedule="v1"``; generated phrases binarised at 0.
- ours: the default ``critic_schedule="fixed"`` (``n_critic`` at every step, no bursts); a fresh
  batch for every critic update (v1 feeds one batch to all the critic updates of a step and to its
  generator update); standard-normal latents (v1 draws ``np.random.normal(0, 0.1)``); epochs
  without replacement from a seeded permutation; stateless, resumable randomness (below); the
  default ``lr`` and sizes of params.yaml (v1: ``lr = 2e-4``, batch 64).
- the data are not the paper's: phrases from this corpus, the bass track as it is in the MIDI
  (not made monophonic).

Randomness is stateless: the phrases of critic update ``c`` (counted over the run) are batch
``c mod B`` of epoch ``c div B`` (B = batches per epoch, an epoch is a permutation drawn from
``default_rng([seed, epoch])``), and the latents and alphas of generator step ``s`` come from
a ``torch.Generator`` seeded from ``(seed, s, k)``. Nothing random is carried from step to step,
so a run resumed from a checkpoint repeats an uninterrupted one to the last bit (CPU).

Checkpoints (``checkpoints/last.pt``, every ``checkpoint_every`` steps and at the end): state
dicts of G, D and both optimizers, the step and the loss history; ``metrics.json``: one object
per generator step (step, d_loss, g_loss, gp, wasserstein = E[D(real)] - E[D(fake)]).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipeline.progress import training_bar
from pipeline.errors import StageError
from pipeline import figures
from pipeline.models.musegan import MuseGANCritic, MuseGANGenerator
from pipeline.training.precision import Precision, to_device
from pipeline.training.solver import Panel, load_checkpoint, save_checkpoint, write_metrics

#: phrases per forward pass when sampling (fixed, so results never depend on a batch size)
SAMPLE_CHUNK = 64
#: official config (midi section): programs and drum flags of the LPD-5 tracks
PROGRAMS = {"Drums": 0, "Piano": 0, "Guitar": 25, "Bass": 33, "Strings": 48}


# ---------------------------------------------------------------------------------------------
# data


def to_model(x: np.ndarray) -> torch.Tensor:
    """Bool phrases -> float32 over {-1, 1}."""
    return torch.from_numpy(np.asarray(x, np.float32) * 2.0 - 1.0)


def binarize(y: torch.Tensor) -> np.ndarray:
    """Generator output -> bool phrases (tanh > 0)."""
    return (y > 0).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# WGAN-GP


@dataclass(frozen=True, kw_only=True)
class GanConfig:
    steps: int = 200  # generator updates
    batch_size: int = 32
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.9
    n_critic: int = 5
    gp_weight: float = 10.0
    seed: int = 2026
    checkpoint_every: int = 50
    critic_schedule: str = "fixed"  # "fixed": n_critic every step; "v1": see critic_updates
    precision: str = "fp32"  # fp32 | bf16 | fp16 (``pipeline.training.precision``)


CRITIC_SCHEDULES = ("fixed", "v1")
#: the official v1 loop (musegan/core.py, MuseGAN.train, commit be3e348 of salu133445/musegan):
#: ``if counter < 25 or counter % 500 == 0: num_iters_D = 100 else: num_iters_D = 5``, with
#: ``counter`` the 0-based generator step
V1_WARMUP_STEPS = 25
V1_EVERY = 500
V1_CRITIC_UPDATES = 100


def critic_updates(step: int, n_critic: int, schedule: str = "fixed") -> int:
    """Critic updates before generator step ``step`` (1-based).

    ``"fixed"``: ``n_critic`` at every step. ``"v1"``: the official v1 code's schedule
    (``musegan/core.py`` of salu133445/musegan at commit be3e348, the code of the AAAI 2018
    paper): 100 critic updates at the first 25 generator steps and at every 500th step (the
    0-based counter ``step - 1`` below 25 or a multiple of 500: steps 1-25, 501, 1001, ...),
    ``n_critic`` otherwise (v1 hard-codes 5, the default ``n_critic``).
    """
    if schedule == "fixed":
        return n_critic
    if schedule == "v1":
        counter = step - 1
        return V1_CRITIC_UPDATES if counter < V1_WARMUP_STEPS or counter % V1_EVERY == 0 else n_critic
    raise ValueError(f"critic_schedule={schedule!r} must be one of {', '.join(CRITIC_SCHEDULES)}")


def critic_updates_before(step: int, n_critic: int, schedule: str = "fixed") -> int:
    """Critic updates run by generator steps ``1 .. step - 1`` (the batch counter of ``step``'s first)."""
    if schedule == "fixed":
        return (step - 1) * n_critic
    return sum(critic_updates(s, n_critic, schedule) for s in range(1, step))


def step_seed(seed: int, step: int, k: int) -> int:
    return int(np.random.SeedSequence([seed, step, k]).generate_state(1, np.uint64)[0] & ((1 << 63) - 1))


def batch_indices(seed: int, counter: int, n: int, batch_size: int) -> np.ndarray:
    """The phrases of critic update ``counter`` (0-based): epochs of ``n // batch_size`` batches."""
    per_epoch = n // batch_size
    epoch, j = divmod(counter, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return np.sort(order[j * batch_size:(j + 1) * batch_size])


def gradient_penalty(critic: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor,
                     weight: float, groups: tuple[tuple[int, ...], ...] | None = None) -> torch.Tensor:
    """``weight * sum_k mean_b (||d D_k(x_hat_b) / d x_hat_b||_2 - 1)^2`` at x_hat = real + alpha (fake - real).

    ``critic(x) -> (B, K)`` scores; critic k sees the tracks ``groups[k]`` (last axis) only, so its
    gradient is taken over those tracks (one critic over all tracks when ``groups`` is None).
    The norm has the official ``1e-8`` under the square root.
    """
    x_hat = interpolate(real, fake, alpha)
    return penalty(critic(x_hat), x_hat, weight, groups)


def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """x_hat = real + alpha (fake - real), detached, requiring grad (the penalty's input)."""
    shape = (-1,) + (1,) * (real.dim() - 1)
    return (real + alpha.reshape(shape) * (fake - real)).detach().requires_grad_(True)


def penalty(scores: torch.Tensor, x_hat: torch.Tensor, weight: float,
            groups: tuple[tuple[int, ...], ...] | None = None, *, scale: float | None = None) -> torch.Tensor:
    """``gradient_penalty`` from the critic's ``scores`` at ``x_hat`` (double backward: the
    gradient is taken with ``create_graph=True``, so the loss's backward reaches the critic).

    Mixed precision: call it outside autocast, so the norm and the penalty are computed in fp32
    (``x_hat`` is fp32, hence its gradient too; only the critic's own backward ops run in the
    autocast dtype). ``scale`` (fp16's loss scale): the scores are multiplied by it before the
    gradient is taken, so the critic's fp16 backward does not underflow, and the gradient is divided
    by it again (PyTorch's AMP recipe for gradient penalties); an overflow gives an inf penalty,
    and the GradScaler then skips that step."""
    out = scores.sum() if scale is None else scores.sum() * scale
    (grad,) = torch.autograd.grad(out, x_hat, create_graph=True)
    if scale is not None:
        grad = grad / scale
    sq = grad.pow(2).reshape(len(grad), -1, grad.shape[-1]).sum(1)  # (B, tracks)
    if groups is None or len(groups) == 1:
        sq = sq.sum(1, keepdim=True)
    else:
        sq = torch.stack([sq[:, g[0]:g[-1] + 1].sum(1) for g in groups], 1)
    slopes = torch.sqrt(sq + 1e-8)  # (B, critics)
    return weight * ((slopes - 1.0) ** 2).mean(0).sum()


def _condition(gen: MuseGANGenerator, real: torch.Tensor) -> torch.Tensor | None:
    c = gen.cfg
    return real[..., c.condition_track] if c.variant == "track_conditional" else None


def _optimizers(gen, critic, cfg: GanConfig):
    betas = (cfg.beta1, cfg.beta2)
    return (torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=betas),
            torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=betas))


def train(gen: MuseGANGenerator, critic: MuseGANCritic, data, *, cfg: GanConfig, out: Path,
          resume: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """WGAN-GP on ``data`` (bool phrases ``(n, bars, steps, pitches, tracks)``: an array, or any
    object whose ``data[idx]`` gives the rows ``idx`` as one, such as ``PhraseRows``); writes
    ``out/checkpoints/last.pt`` and ``out/metrics.json``; resumes from ``last.pt`` when it exists
    and ``resume`` (the caller checks that it was made with the same params). Returns a summary.

    Under ``torchrun`` (``pipeline.training.distributed``), every global batch (phrases, latents and
    alphas drawn exactly as in one process) is split across the ranks, ``rows[rank::world]``
    (``batch_size`` must divide by the world size, so every share is equal and the ranks' mean
    gradients average to the global batch's); G and D are wrapped in DistributedDataParallel, the
    generator's BatchNorm takes its statistics over the global batch (``sync_batch_norm``), and the
    critic sees real, fake and x_hat in one forward so that the gradient penalty's double
    backward runs inside one DDP iteration. The logged losses are the means over the ranks; rank 0
    alone writes checkpoints and metrics."""
    from pipeline.training import distributed

    ctx = distributed.current()
    if not ctx.is_main:
        log = None
    if ctx.active and cfg.batch_size % ctx.world:
        raise StageError(f"musegan.train.batch_size={cfg.batch_size} does not split over {ctx.world} processes "
                         "(use a multiple of the world size)")
    out = Path(out)
    ckpt = out / "checkpoints" / "last.pt"
    device = next(gen.parameters()).device
    opt_g, opt_d = _optimizers(gen, critic, cfg)
    amp_d, amp_g = Precision.of(cfg.precision, device), Precision.of(cfg.precision, device)  # a scaler each
    n = len(data)
    start, history, resumed = 1, [], False
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        if int(state["step"]) <= cfg.steps:
            try:
                gen.load_state_dict(state["generator"])
                critic.load_state_dict(state["critic"])
                opt_g.load_state_dict(state["opt_g"])
                opt_d.load_state_dict(state["opt_d"])
                amp_d.load(state, "scaler_d")
                amp_g.load(state, "scaler_g")
            except (RuntimeError, KeyError, ValueError) as exc:
                raise StageError(f"{ckpt}: does not fit this model ({str(exc).splitlines()[0]}); "
                                 "train again with --fresh") from None
            start, history, resumed = int(state["step"]) + 1, list(state["history"]), True

    def checkpoint(step: int) -> None:
        if ctx.is_main:
            save_checkpoint(ckpt, {"generator": gen.state_dict(), "critic": critic.state_dict(),
                                   "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step,
                                   "history": history, **amp_d.state("scaler_d"), **amp_g.state("scaler_g")})
            write_metrics(out / "metrics.json", history)
        ctx.barrier()

    distributed.sync_batch_norm(gen)  # (no-op in one process)
    gen_net, critic_net = ctx.wrap(gen), ctx.wrap(critic)

    gen.train()
    critic.train()
    groups = critic.groups
    bar = training_bar("musegan", cfg.steps, start - 1, log)
    counter = critic_updates_before(start, cfg.n_critic, cfg.critic_schedule)  # critic batches drawn so far
    for step in range(start, cfg.steps + 1):
        d_losses, gps, dists = [], [], []
        for p in critic.parameters():
            p.requires_grad_(True)
        n_updates = critic_updates(step, cfg.n_critic, cfg.critic_schedule)
        for k in range(n_updates):
            idx = batch_indices(cfg.seed, counter + k, n, cfg.batch_size)
            g = torch.Generator().manual_seed(step_seed(cfg.seed, step, k))
            z = {name: to_device(ctx.shard(t), device) for name, t in gen.sample_latents(len(idx), g).items()}
            alpha = to_device(ctx.shard(torch.rand(len(idx), generator=g)), device)
            real = to_device(to_model(data[ctx.shard(idx)]), device)
            with amp_d.autocast():  # (fp32: no autocast) the forward passes; the penalty below in fp32
                with torch.no_grad():
                    fake = gen(z, _condition(gen, real)).float()
                if ctx.active:  # one DDP forward for the three inputs: the penalty's graph is in this iteration
                    x_hat = interpolate(real, fake, alpha)
                    d_real, d_fake, d_hat = critic_net(torch.cat([real, fake, x_hat])).split(len(real))
                else:
                    d_real, d_fake = critic(real), critic(fake)
                    x_hat = interpolate(real, fake, alpha)
                    d_hat = critic(x_hat)
            gp = penalty(d_hat.float(), x_hat, cfg.gp_weight, groups, scale=amp_d.grad_scale())
            dist = (d_real.float().mean(0) - d_fake.float().mean(0)).sum()
            d_loss = -dist + gp
            opt_d.zero_grad(set_to_none=True)
            with ctx.collective(f"averaging the critic's gradients (step {step})"):
                amp_d.backward(d_loss)
            amp_d.step(opt_d)
            d_losses.append(float(d_loss.detach()))
            gps.append(float(gp.detach()))
            dists.append(float(dist.detach()))
        counter += n_updates
        for p in critic.parameters():
            p.requires_grad_(False)
        g = torch.Generator().manual_seed(step_seed(cfg.seed, step, n_updates))
        z = {name: to_device(ctx.shard(t), device) for name, t in gen.sample_latents(cfg.batch_size, g).items()}
        with amp_g.autocast():
            scores = critic(gen_net(z, _condition(gen, real)))  # given tracks: the last batch's
        g_loss = -scores.float().mean(0).sum()
        opt_g.zero_grad(set_to_none=True)
        with ctx.collective(f"averaging the generator's gradients (step {step})"):
            amp_g.backward(g_loss)
        amp_g.step(opt_g)
        row = [float(np.mean(d_losses)), float(g_loss.detach()), float(np.mean(gps)), float(np.mean(dists))]
        if ctx.active:  # equal shares: the global batch's values are the means over the ranks
            row = [v / ctx.world for v in ctx.all_sum(row)]
        history.append({"step": step, "d_loss": row[0], "g_loss": row[1], "gp": row[2], "wasserstein": row[3]})
        bar.step(note=f"g_loss {history[-1]['g_loss']:.3f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            checkpoint(step)
        if log and (step == start or step % 10 == 0 or step == cfg.steps):
            h = history[-1]
            log(f"step {step}: d_loss {h['d_loss']:.4f}, g_loss {h['g_loss']:.4f}, "
                f"gp {h['gp']:.4f}, W {h['wasserstein']:.4f}")
    for p in critic.parameters():
        p.requires_grad_(True)
    bar.close()
    if not ckpt.exists():  # zero steps asked: keep the initial weights
        checkpoint(0)
    if ctx.is_main:
        write_metrics(out / "metrics.json", history)
    ctx.barrier()
    last = history[-1] if history else {}
    return {"steps_run": len(history), "resumed": resumed, "final_d_loss": last.get("d_loss"),
            "final_g_loss": last.get("g_loss"), "final_wasserstein": last.get("wasserstein"),
            "history": history}


@torch.no_grad()
def generate(gen: MuseGANGenerator, n: int, *, seed: int, condition: np.ndarray | None = None) -> np.ndarray:
    """``n`` bool phrases (tanh > 0) from the generator in eval mode; latents drawn on the CPU from
    ``torch.Generator().manual_seed(seed)`` in chunks of ``SAMPLE_CHUNK``; ``condition``: bool
    ``(n, bars, steps, pitches)`` given tracks (track_conditional)."""
    gen.eval()
    device = next(gen.parameters()).device
    g = torch.Generator().manual_seed(seed)
    parts = []
    for i in range(0, n, SAMPLE_CHUNK):
        m = min(SAMPLE_CHUNK, n - i)
        z = {k: t.to(device) for k, t in gen.sample_latents(m, g).items()}
        cond = to_model(condition[i:i + m]).to(device) if condition is not None else None
        parts.append(binarize(gen(z, cond)))
    c = gen.cfg
    if not parts:
        return np.zeros((0, c.n_bars, c.steps_per_bar, c.n_pitches, c.n_tracks), bool)
    return np.concatenate(parts)


# ---------------------------------------------------------------------------------------------
# phrases -> MIDI and PNG


def phrase_to_midi(x: np.ndarray, *, track_names: tuple[str, ...], steps_per_bar: int, lowest_pitch: int = 24,
                   tempo: float = 100.0, velocity: int = 100, beats_per_bar: int = 4) -> bytes:
    """One bool phrase ``(bars, steps, pitches, tracks)`` -> a type-1 MIDI file: a tempo/4-4 track,
    then one track per piano-roll track (programs of the official config; Drums on channel 10).
    A run of consecutive active steps of one pitch is one note."""
    import mido

    from pipeline.formats.midi import midi_bytes, midi_file, track

    steps_per_beat = steps_per_bar // beats_per_bar
    tpq = 480 if 480 % steps_per_beat == 0 else steps_per_beat
    tick = tpq // steps_per_beat
    bars, steps, pitches, tracks = x.shape
    roll = x.reshape(bars * steps, pitches, tracks)
    out = [track(head=[mido.MetaMessage("set_tempo", tempo=int(round(6e7 / tempo)), time=0),
                       mido.MetaMessage("time_signature", numerator=beats_per_bar, denominator=4, time=0)],
                 end=bars * steps * tick)]
    channels = iter(c for c in range(16) if c != 9)
    for k, name in enumerate(track_names):
        drum = name == "Drums"
        ch = 9 if drum else next(channels)
        padded = np.zeros((len(roll) + 2, pitches), bool)
        padded[1:-1] = roll[:, :, k]
        diff = np.diff(padded.astype(np.int8), axis=0)
        events = []
        for on, edge in ((1, 1), (0, -1)):  # at one tick, note-offs (0) before note-ons (1)
            for t, p in zip(*np.nonzero(diff == edge)):
                events.append((int(t) * tick, (on, int(p)), mido.Message(
                    "note_on" if on else "note_off", channel=ch, note=lowest_pitch + int(p),
                    velocity=velocity if on else 0)))
        out.append(track(events, head=[mido.MetaMessage("track_name", name=name, time=0),
                                       mido.Message("program_change", channel=ch, program=PROGRAMS.get(name, 0),
                                                    time=0)]))
    return midi_bytes(midi_file(out, ticks_per_beat=tpq))


def save_phrase_png(path: Path, x: np.ndarray, *, track_names: tuple[str, ...], lowest_pitch: int = 24,
                    title: str = "") -> None:
    """One bool phrase ``(bars, steps, pitches, tracks)`` -> a PNG with one piano-roll per track."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars, steps, pitches, tracks = x.shape
    fig, axes = plt.subplots(tracks, 1, figsize=(8, 1.3 * tracks + 0.6), sharex=True, squeeze=False)
    for k, ax in enumerate(axes[:, 0]):
        roll = x[:, :, :, k].reshape(bars * steps, pitches)
        ax.imshow(roll.T, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest", vmin=0, vmax=1,
                  extent=(0, bars * steps, lowest_pitch, lowest_pitch + pitches))
        for b in range(1, bars):
            ax.axvline(b * steps, color="tab:blue", lw=0.6, alpha=0.6)
        ax.set_ylabel(track_names[k], fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel(f"step ({steps} per bar)", fontsize=8)
    if title:
        axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    figures.save(fig, Path(path), dpi=80)


#: the panels of ``loss.png`` (``solver.plot_curves``), one per quantity
LOSS_PANELS = (
    Panel("critic loss", (("d_loss", "critic: -W + gradient penalty"),)),
    Panel("generator loss", (("g_loss", "generator: -E[D(G(z))]"),)),
    Panel("Wasserstein estimate", (("wasserstein", "E[D(real)] - E[D(fake)]"),)),
    Panel("gradient penalty", (("gp", "gradient penalty (weighted)"),)),
)
