"""MuseGAN (Dong et al., AAAI 2018): six generators of multi-track 4-bar piano-rolls and their critics.

``MuseGANConfig`` -> ``MuseGANGenerator`` (latents -> phrases) and ``MuseGANCritic`` (phrases ->
scores). Phrases are ``(batch, bars, steps, pitches, tracks)`` floats over {-1, 1} (the data
layout of ``datasets/phrases``); generators end in tanh. No file IO here.

Building blocks, after the paper and the official (v1, TensorFlow) code, ``width`` = 1:

- ``BarGenerator`` G_bar: a ``z_dim`` (128) vector -> dense 2 x 512 (time 2, pitch 1) -> transposed
  convolutions that multiply the time axis by the factors of ``steps_per_bar / 2`` (2, 2, 2, 3 for
  48 steps: 512, 256, 256, 128 channels; 2, 2, 2, 2, 3 for 96: 512, 256, 256, 128, 128, the
  official layout) -> (1, 7) to 7 pitch groups (64 channels) -> (1, 12) to 84 pitches. BatchNorm
  and ReLU after every layer but the last; tanh output. With an encoder (track-conditional), the
  encoder's feature map of the same (time, pitch) size is concatenated to the input of every layer.
- ``TemporalGenerator`` G_temp: a vector -> one latent per bar (transposed convolutions 2 -> bars,
  1024 channels, BatchNorm + ReLU, as the official ``PhraseGenerator``).
- ``BarEncoder`` E: a bar of the conditioning track -> the feature pyramid G_bar joins (16 channels
  per level, BatchNorm + leaky ReLU, the official ``BarEncoder``).
- ``Critic`` D: per bar, convolutions (1, 12) and (1, 7) over pitch (128, 128 channels), then
  strided convolutions over time mirroring G_bar (128, 256, 256, 512 for 48 steps) down to 2
  steps; the bars' features then go through convolutions across bars (kernel 2: 512, kernel
  bars - 1: 128), a dense 1024 and a dense 1 (the official ``BarDiscriminator`` +
  ``PhraseDiscriminator``). Leaky ReLU (0.2), no normalisation (WGAN-GP).

Variants (inputs of each G_bar; ``d = z_dim``; every bar gets its own G_bar call):

========================  ==========================================================================
``jamming``               one G_bar,i and one critic D_i per track, each with its own z_i (d) per bar
``composer``              one G_bar with one output channel per track; one shared z (d) per bar
``hybrid``                per-track G_bar,i; input [z (d/2) shared, z_i (d/2) own], per bar; one critic
``temporal``              one G_bar (all tracks); input [G_temp(z_t)^(t) (d/2), z (d/2)] (the official
                          TemporalComposer: a time-dependent and a time-independent half)
``track_conditional``     the full MuseGAN inputs for the other tracks plus E(y^(t)) of the given track's
                          bar t at every G_bar layer; the given track is copied to the output
                          (the official NowBarTemporalHybrid)
``musegan``               per-track G_bar,i; input [G_temp(z_t)^(t), z, z_i, G_temp,i(z_i,t)^(t)],
                          d/4 each: inter/intra-track x time-dependent/independent
========================  ==========================================================================

Every variant but ``jamming`` has one critic over all tracks. The paper's G_temp,i is one module
per track (the official code shares one across tracks).

What follows what: the layer sizes and the 96-step time layout follow the official v1 code; the
per-track G_temp,i and the per-track jamming critics follow the paper (where the official code
differs); ours: the 48-step time layout (2, 2, 2, 3: the official code knows only 96 steps per
bar), the ``width`` knob (1.0: the official sizes; params.yaml trains far narrower on the CPU) and
standard-normal latents (``sample_latents``; the official v1 loop draws N(0, 0.1)). Nothing here
makes the bass monophonic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.config import PositiveFloat, PositiveInt, check_bounds
from pipeline.names import MUSEGAN_VARIANTS

#: channels of G_bar's time layers (first to last), the official v1 BarGenerator's
G_TIME_CHANNELS = (512, 256, 256, 128, 128, 128, 128)
G_DENSE_CHANNELS = 512  # the dense layer's output is (G_DENSE_CHANNELS, 2 steps, 1 pitch)
G_PITCH_CHANNELS = 64
G_TEMP_CHANNELS = 1024
E_CHANNELS = 16
D_PITCH_CHANNELS = (128, 128)
D_BARS_CHANNELS = (512, 128)
D_DENSE = 1024
LEAK = 0.2


def time_factors(steps_per_bar: int) -> tuple[int, ...]:
    """Upsampling factors of G_bar's time axis from 2 steps: ``steps_per_bar / 2`` as 2s then 3s.

    >>> time_factors(48), time_factors(96)
    ((2, 2, 2, 3), (2, 2, 2, 2, 3))
    """
    if steps_per_bar < 2 or steps_per_bar % 2:
        raise ValueError(f"steps_per_bar={steps_per_bar} must be an even number >= 2")
    rest, out = steps_per_bar // 2, []
    for f in (2, 3):
        while rest % f == 0:
            out.append(f)
            rest //= f
    if rest != 1:
        raise ValueError(f"steps_per_bar={steps_per_bar} must be 2 * 2^a * 3^b (e.g. 48 or 96)")
    if len(out) > len(G_TIME_CHANNELS):
        raise ValueError(f"steps_per_bar={steps_per_bar} needs more than {len(G_TIME_CHANNELS)} time layers")
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class MuseGANConfig:
    variant: str
    n_tracks: PositiveInt = 5
    n_bars: PositiveInt = 4
    steps_per_bar: int = 48
    n_pitches: int = 84
    z_dim: PositiveInt = 128  # input size of every G_bar (paper: 128)
    width: PositiveFloat = 1.0  # multiplies every channel count (1: the paper's sizes)
    condition_track: int = 1  # index of the given track (track_conditional only)

    def __post_init__(self) -> None:
        if self.variant not in MUSEGAN_VARIANTS:
            raise ValueError(f"variant={self.variant!r} must be one of {', '.join(MUSEGAN_VARIANTS)}")
        check_bounds(self, ValueError)
        if self.n_tracks < 2 and self.variant == "track_conditional":
            raise ValueError("track_conditional needs at least two tracks")
        time_factors(self.steps_per_bar)
        if self.n_pitches < 12 or self.n_pitches % 12:
            raise ValueError(f"n_pitches={self.n_pitches} must be a positive multiple of 12 (84: 7 octaves)")
        split = {"hybrid": 2, "temporal": 2, "musegan": 4, "track_conditional": 4}.get(self.variant, 1)
        if self.z_dim % split:
            raise ValueError(f"z_dim={self.z_dim} must be a multiple of {split} for {self.variant}")
        if not 0 <= self.condition_track < self.n_tracks:
            raise ValueError(f"condition_track={self.condition_track} must be in 0..{self.n_tracks - 1}")

    def ch(self, c: int) -> int:
        return max(1, int(round(c * self.width)))

    @property
    def octaves(self) -> int:
        return self.n_pitches // 12

    @property
    def generated_tracks(self) -> tuple[int, ...]:
        if self.variant == "track_conditional":
            return tuple(i for i in range(self.n_tracks) if i != self.condition_track)
        return tuple(range(self.n_tracks))


# ---------------------------------------------------------------------------------------------
# layers: every convolution of G_bar, E and the per-bar critic has stride == kernel along one axis
# (non-overlapping patches), so it is a matrix product on a channels-last tensor: the same maps as
# Conv2d / ConvTranspose2d (weights laid out as Linear's), several times faster on CPU than
# PyTorch's strided convolutions and free of layout copies.


class Up(nn.Module):
    """Transposed convolution, kernel = stride = ``f`` along axis -2: ``(..., L, c_in) -> (..., L * f, c_out)``."""

    def __init__(self, c_in: int, c_out: int, f: int) -> None:
        super().__init__()
        self.f, self.c_out = f, c_out
        self.linear = nn.Linear(c_in, f * c_out, bias=False)
        self.bias = nn.Parameter(torch.zeros(c_out))  # one per output channel, as ConvTranspose's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, L, _ = x.shape
        return self.linear(x).reshape(*lead, L * self.f, self.c_out) + self.bias


class Down(nn.Module):
    """Convolution, kernel = stride = ``f`` along axis -2: ``(..., L, c_in) -> (..., L / f, c_out)``."""

    def __init__(self, c_in: int, c_out: int, f: int) -> None:
        super().__init__()
        self.f = f
        self.linear = nn.Linear(f * c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, L, c = x.shape
        return self.linear(x.reshape(*lead, L // self.f, self.f * c))


class Norm(nn.BatchNorm1d):
    """BatchNorm over the last (channel) axis of a channels-last tensor (= BatchNorm2d/3d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


# ---------------------------------------------------------------------------------------------
# generator blocks (channels last: a bar is (N, steps, pitches, channels))


class BarEncoder(nn.Module):
    """One bar (N, steps, pitches, 1) -> features [(N, steps, octaves, E), (N, steps, 1, E), then
    time steps / f_k, ..., 2] (the input sizes of G_bar's layers, last layer first)."""

    def __init__(self, cfg: MuseGANConfig) -> None:
        super().__init__()
        c = cfg.ch(E_CHANNELS)
        self.pitch = nn.ModuleList([Down(1, c, 12), Down(c, c, cfg.octaves)])
        self.time = nn.ModuleList(Down(c, c, f) for f in reversed(time_factors(cfg.steps_per_bar)))
        self.norms = nn.ModuleList(Norm(c) for _ in range(2 + len(self.time)))
        self.channels = c

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, norms = [], iter(self.norms)
        h = x
        for layer in self.pitch:
            h = F.leaky_relu(next(norms)(layer(h)), LEAK)
            feats.append(h)
        h = h[:, :, 0]  # (N, steps, E)
        for layer in self.time:
            h = F.leaky_relu(next(norms)(layer(h)), LEAK)
            feats.append(h[:, :, None])
        return feats


class BarGenerator(nn.Module):
    """G_bar: (N, in_dim) -> (N, steps, pitches, out_channels) in (-1, 1)."""

    def __init__(self, cfg: MuseGANConfig, in_dim: int, out_channels: int, cond_channels: int = 0) -> None:
        super().__init__()
        factors = time_factors(cfg.steps_per_bar)
        self.c0 = cfg.ch(G_DENSE_CHANNELS)
        self.dense = nn.Linear(in_dim, 2 * self.c0)
        self.dense_norm = nn.BatchNorm1d(2 * self.c0)
        e = cond_channels
        time, norms, c_in = [], [], self.c0
        for f, c in zip(factors, G_TIME_CHANNELS):
            c = cfg.ch(c)
            time.append(Up(c_in + e, c, f))
            norms.append(Norm(c))
            c_in = c
        cp = cfg.ch(G_PITCH_CHANNELS)
        self.time = nn.ModuleList(time)
        self.pitch = Up(c_in + e, cp, cfg.octaves)
        norms.append(Norm(cp))
        self.norms = nn.ModuleList(norms)
        self.out = Up(cp + e, out_channels, 12)

    def forward(self, z: torch.Tensor, cond: list[torch.Tensor] | None = None) -> torch.Tensor:
        N = len(z)
        h = F.relu(self.dense_norm(self.dense(z))).view(N, 2, 1, self.c0)  # (N, time 2, pitch 1, c0)
        # encoder features, coarsest first: time 2 ... steps, then (steps, 1), then (steps, octaves)
        feats = list(reversed(cond)) if cond is not None else None
        layers = [*self.time, self.pitch]
        for k, (layer, norm) in enumerate(zip(layers, self.norms)):
            if feats is not None:
                h = torch.cat([h, feats[k]], -1)
            if layer is self.pitch:
                h = F.relu(norm(layer(h)))  # (N, steps, 1, c) -> (N, steps, octaves, cp)
            else:
                h = F.relu(norm(layer(h[:, :, 0])))[:, :, None]  # time axis x f
        if feats is not None:
            h = torch.cat([h, feats[-1]], -1)
        return torch.tanh(self.out(h))  # (N, steps, octaves * 12, out)


class TemporalGenerator(nn.Module):
    """G_temp: (B, in_dim) -> (B, bars, out_dim), one latent per bar."""

    def __init__(self, cfg: MuseGANConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bars = cfg.n_bars
        if bars == 1:
            self.layers = nn.ModuleList([nn.ConvTranspose1d(in_dim, out_dim, 1)])
            self.norms = nn.ModuleList([nn.BatchNorm1d(out_dim)])
        else:
            c = cfg.ch(G_TEMP_CHANNELS)
            self.layers = nn.ModuleList([nn.ConvTranspose1d(in_dim, c, 2, 2), nn.ConvTranspose1d(c, out_dim, bars - 1)])
            self.norms = nn.ModuleList([nn.BatchNorm1d(c), nn.BatchNorm1d(out_dim)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z[:, :, None]
        for layer, norm in zip(self.layers, self.norms):
            h = F.relu(norm(layer(h)))
        return h.transpose(1, 2)  # (B, bars, out_dim)


# ---------------------------------------------------------------------------------------------
# generators


class MuseGANGenerator(nn.Module):
    """Latents (a dict, see ``latent_shapes``) [+ the given track] -> phrases
    ``(B, bars, steps, pitches, tracks)`` in (-1, 1)."""

    def __init__(self, cfg: MuseGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        v, d, T = cfg.variant, cfg.z_dim, cfg.n_tracks
        gen = cfg.generated_tracks
        self.temporal = self.temporal_i = self.encoder = None
        if v in ("composer", "temporal"):
            self.bars = nn.ModuleList([BarGenerator(cfg, d, T)])
        else:
            e = 0
            if v == "track_conditional":
                self.encoder = BarEncoder(cfg)
                e = self.encoder.channels
            self.bars = nn.ModuleList(BarGenerator(cfg, d, 1, e) for _ in gen)
        if v == "temporal":
            self.temporal = TemporalGenerator(cfg, d // 2, d // 2)
        if v in ("musegan", "track_conditional"):
            self.temporal = TemporalGenerator(cfg, d // 4, d // 4)
            self.temporal_i = nn.ModuleList(TemporalGenerator(cfg, d // 4, d // 4) for _ in gen)

    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape (without the batch axis) of the standard-normal inputs of the variant."""
        c = self.cfg
        v, d, bars, nt = c.variant, c.z_dim, c.n_bars, len(c.generated_tracks)
        return {
            "jamming": {"z_i": (bars, nt, d)},
            "composer": {"z": (bars, d)},
            "hybrid": {"z": (bars, d // 2), "z_i": (bars, nt, d // 2)},
            "temporal": {"z": (d // 2,), "z_t": (d // 2,)},
            "musegan": {"z": (d // 4,), "z_t": (d // 4,), "z_i": (nt, d // 4), "z_it": (nt, d // 4)},
            "track_conditional": {"z": (d // 4,), "z_t": (d // 4,), "z_i": (nt, d // 4), "z_it": (nt, d // 4)},
        }[v]

    def sample_latents(self, batch: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Standard-normal latents on the CPU, drawn in name order from ``generator``."""
        return {k: torch.randn((batch, *s), generator=generator) for k, s in sorted(self.latent_shapes().items())}

    def _track_inputs(self, z: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per G_bar module, its input (B, bars, z_dim)."""
        c = self.cfg
        v, bars = c.variant, c.n_bars
        if v == "jamming":
            return [z["z_i"][:, :, k] for k in range(len(self.bars))]
        if v == "composer":
            return [z["z"]]
        if v == "hybrid":
            return [torch.cat([z["z"], z["z_i"][:, :, k]], -1) for k in range(len(self.bars))]
        if v == "temporal":
            return [torch.cat([self.temporal(z["z_t"]), z["z"][:, None].expand(-1, bars, -1)], -1)]
        shared = torch.cat([self.temporal(z["z_t"]), z["z"][:, None].expand(-1, bars, -1)], -1)
        return [torch.cat([shared, z["z_i"][:, None, k].expand(-1, bars, -1), g(z["z_it"][:, k])], -1)
                for k, g in enumerate(self.temporal_i)]

    def forward(self, z: dict[str, torch.Tensor], condition: torch.Tensor | None = None) -> torch.Tensor:
        """``condition``: the given track ``(B, bars, steps, pitches)`` over {-1, 1}
        (track_conditional only; copied unchanged into the output)."""
        c = self.cfg
        first = next(iter(z.values()))
        B, bars = len(first), c.n_bars
        feats = None
        if c.variant == "track_conditional":
            if condition is None:
                raise ValueError("track_conditional needs the given track (condition=...)")
            if tuple(condition.shape) != (B, bars, c.steps_per_bar, c.n_pitches):
                raise ValueError(f"condition has shape {tuple(condition.shape)}, not "
                                 f"{(B, bars, c.steps_per_bar, c.n_pitches)}")
            feats = self.encoder(condition.reshape(B * bars, c.steps_per_bar, c.n_pitches, 1))
        outs = [g(inp.reshape(B * bars, -1), feats) for g, inp in zip(self.bars, self._track_inputs(z))]
        if c.variant == "track_conditional":
            outs.insert(c.condition_track, condition.reshape(B * bars, c.steps_per_bar, c.n_pitches, 1).to(outs[0].dtype))
        y = outs[0] if len(outs) == 1 else torch.cat(outs, -1)  # (B * bars, steps, pitches, tracks)
        return y.view(B, bars, c.steps_per_bar, c.n_pitches, c.n_tracks)


# ---------------------------------------------------------------------------------------------
# critics


class GroupLinear(nn.Module):
    """``n`` independent linear maps, one per group: ``(n, M, c_in) -> (n, M, c_out)`` (one batched
    matrix product); initialised as ``nn.Linear`` (uniform within 1 / sqrt(c_in))."""

    def __init__(self, n: int, c_in: int, c_out: int) -> None:
        super().__init__()
        bound = 1.0 / c_in ** 0.5
        self.weight = nn.Parameter(torch.empty(n, c_in, c_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, 1, c_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, *lead, c = x.shape
        return torch.baddbmm(self.bias, x.reshape(n, -1, c), self.weight).view(n, *lead, -1)


class Critics(nn.Module):
    """``n`` critics of one architecture with weights of their own: phrases
    ``(n, B, bars, steps, pitches, channels)`` -> ``(n, B)`` scores (no normalisation).

    Per bar: convolutions over pitch (kernel = stride 12, then octaves), then over time (mirroring
    G_bar's factors) down to 2 steps; then across bars (kernel 2 and bars - 1, stride 1), a dense
    layer and the score. All as batched matrix products over the critic axis."""

    def __init__(self, cfg: MuseGANConfig, n: int, channels: int) -> None:
        super().__init__()
        c1, c2 = (cfg.ch(c) for c in D_PITCH_CHANNELS)
        factors = time_factors(cfg.steps_per_bar)
        self.factors = (12, cfg.octaves) + tuple(reversed(factors))
        chans = [channels, c1, c2] + [cfg.ch(c) for c in reversed(G_TIME_CHANNELS[:len(factors)])]
        self.bar = nn.ModuleList(GroupLinear(n, f * a, b) for f, a, b in zip(self.factors, chans, chans[1:]))
        feat = chans[-1] * 2  # the time axis ends at 2 steps, pitch at 1
        self.kernels: tuple[int, ...] = ()
        across = []
        if cfg.n_bars > 1:
            b1, b2 = (cfg.ch(c) for c in D_BARS_CHANNELS)
            self.kernels = (2, cfg.n_bars - 1)
            across = [GroupLinear(n, 2 * feat, b1), GroupLinear(n, (cfg.n_bars - 1) * b1, b2)]
            feat = b2
        self.across = nn.ModuleList(across)
        self.dense = GroupLinear(n, feat, cfg.ch(D_DENSE))
        self.score = GroupLinear(n, cfg.ch(D_DENSE), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, B, bars, steps, pitches, C = x.shape
        h = x.reshape(n, B * bars, steps, pitches, C)
        for k, (layer, f) in enumerate(zip(self.bar, self.factors)):
            if k == 2:
                h = h[..., 0, :]  # pitch axis done: (n, B * bars, steps, c2)
            *lead, L, c = h.shape
            h = F.leaky_relu(layer(h.reshape(*lead, L // f, f * c)), LEAK)
        h = h.reshape(n, B, bars, -1)  # (n, B, bars, features)
        for layer, k in zip(self.across, self.kernels):
            L = h.shape[2] - k + 1
            h = F.leaky_relu(layer(torch.cat([h[:, :, j:j + L] for j in range(k)], -1)), LEAK)
        h = F.leaky_relu(self.dense(h.reshape(n, B, -1)), LEAK)
        return self.score(h)[..., 0]


class MuseGANCritic(nn.Module):
    """Phrases (B, bars, steps, pitches, tracks) -> scores (B, critics): one critic per track for
    ``jamming`` (D_i sees track i only, weights of its own), else one critic over all tracks."""

    def __init__(self, cfg: MuseGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.variant == "jamming":
            self.groups = tuple((i,) for i in range(cfg.n_tracks))
            self.critics = Critics(cfg, cfg.n_tracks, 1)
        else:
            self.groups = (tuple(range(cfg.n_tracks)),)
            self.critics = Critics(cfg, 1, cfg.n_tracks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.groups) == 1:
            return self.critics(x[None])[0][:, None]
        return self.critics(x.permute(4, 0, 1, 2, 3)[..., None]).t()


def build(cfg: MuseGANConfig) -> tuple[MuseGANGenerator, MuseGANCritic]:
    return MuseGANGenerator(cfg), MuseGANCritic(cfg)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
