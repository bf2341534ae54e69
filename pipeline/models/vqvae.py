"""Jukebox-style hierarchical VQ-VAE (Dhariwal et al., 2020) on raw mono audio.

Structure after openai/jukebox (``jukebox/vqvae``): ``levels`` independent auto-encoders, one per
hop length (bottom level first, e.g. hops 8, 32, 128 samples). Level ``l`` encodes the waveform
with the strided blocks of levels ``0..l`` (``EncoderConvBlock``: ``downs`` strided convolutions
(kernel ``2 * stride``), each followed by a ``Resnet1D`` of ``depth`` dilated residual blocks,
dilation ``growth ** d``; then a 3-tap convolution to ``code_width``), quantises the result with its
own codebook (``EMABottleneck``) and decodes it with the mirror image (``DecoderConvBlock``:
transposed convolutions, the decoder's dilations reversed) and a last 3-tap convolution to one
channel. Levels share nothing: the bottom level reconstructs best, the top compresses most.

Codebooks are updated by exponential moving averages (``mu``), not by gradients: per code the
running count ``k_elem`` and running sum ``k_sum`` of the encoder outputs assigned to it; a code
whose running count falls below ``restart_threshold`` is replaced by an encoder output of the
batch drawn with a seeded ``torch.Generator`` (Jukebox's random restarts). The first training
batch initialises every codebook from its encoder outputs the same way.

Loss (per level, summed over levels): ``mean((x - x̂)^2) / data_var`` (L2 normalised by the
data variance) + ``spectral_weight`` x multi-resolution STFT magnitude distance (per resolution
``||S(x) - S(x̂)||_F / (sqrt(n) * spec_rms_r)``, ``spec_rms_r`` the data's RMS magnitude at that
resolution, averaged over resolutions) + ``commit`` x ``mean((z_e - sg(z_q))^2)`` (commitment).
``data_var`` and ``spec_rms`` are buffers set from the training data (:meth:`set_data_stats`), so a
loaded checkpoint carries them. No IO here.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def level_downs(hop_lengths: tuple[int, ...], stride: int) -> tuple[int, ...]:
    """Strided convolutions per level: hop ``h_l = h_{l-1} * stride ** downs_l`` (``h_{-1} = 1``).

    >>> level_downs((8, 32, 128), 2)
    (3, 2, 2)
    """
    if stride < 2:
        raise ValueError(f"stride={stride} must be at least 2")
    if not hop_lengths:
        raise ValueError("hop_lengths is empty: at least one level is needed")
    downs, prev = [], 1
    for h in hop_lengths:
        if h <= prev or h % prev:
            raise ValueError(f"hop_lengths={tuple(hop_lengths)}: each hop must be a multiple (> 1) of the previous one")
        ratio, d = h // prev, 0
        while ratio % stride == 0:
            ratio //= stride
            d += 1
        if ratio != 1:
            raise ValueError(f"hop_lengths={tuple(hop_lengths)}: {h} / {prev} is not a power of stride={stride}")
        downs.append(d)
        prev = h
    return tuple(downs)


# ---------------------------------------------------------------------------------------------
# blocks


class ResConv1DBlock(nn.Module):
    """``x + conv1x1(relu(conv3_dilated(relu(x))))``."""

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.ReLU(), nn.Conv1d(width, width, 3, 1, dilation, dilation),
                                   nn.ReLU(), nn.Conv1d(width, width, 1, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.model(x)


class Resnet1D(nn.Module):
    """``depth`` residual blocks with dilations ``growth ** 0, growth ** 1, ...`` (reversed on demand)."""

    def __init__(self, width: int, depth: int, growth: int, *, reverse: bool = False) -> None:
        super().__init__()
        blocks = [ResConv1DBlock(width, growth ** d) for d in range(depth)]
        self.model = nn.Sequential(*(blocks[::-1] if reverse else blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class EncoderConvBlock(nn.Module):
    """``downs`` x (strided conv, Resnet1D), then a 3-tap conv to ``out_ch``: time / stride ** downs."""

    def __init__(self, in_ch: int, out_ch: int, *, downs: int, stride: int, width: int, depth: int,
                 growth: int) -> None:
        super().__init__()
        k, pad = 2 * stride, stride // 2
        blocks: list[nn.Module] = []
        for i in range(downs):
            blocks.append(nn.Sequential(nn.Conv1d(in_ch if i == 0 else width, width, k, stride, pad),
                                        Resnet1D(width, depth, growth)))
        blocks.append(nn.Conv1d(width, out_ch, 3, 1, 1))
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DecoderConvBlock(nn.Module):
    """The mirror image: a 3-tap conv to ``width``, then ``downs`` x (Resnet1D, transposed conv)."""

    def __init__(self, in_ch: int, out_ch: int, *, downs: int, stride: int, width: int, depth: int,
                 growth: int) -> None:
        super().__init__()
        k, pad = 2 * stride, stride // 2
        blocks: list[nn.Module] = [nn.Conv1d(in_ch, width, 3, 1, 1)]
        for i in range(downs):
            blocks.append(nn.Sequential(Resnet1D(width, depth, growth, reverse=True),
                                        nn.ConvTranspose1d(width, out_ch if i == downs - 1 else width, k, stride, pad)))
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LevelEncoder(nn.Module):
    """Waveform ``(B, 1, T)`` -> ``(B, code_width, T / hop)`` through the blocks of levels 0..l."""

    def __init__(self, downs: tuple[int, ...], *, stride: int, width: int, depth: int, growth: int,
                 code_width: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[
            EncoderConvBlock(1 if j == 0 else code_width, code_width, downs=d, stride=stride, width=width,
                             depth=depth, growth=growth) for j, d in enumerate(downs)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class LevelDecoder(nn.Module):
    """``(B, code_width, T / hop)`` -> waveform ``(B, 1, T)``."""

    def __init__(self, downs: tuple[int, ...], *, stride: int, width: int, depth: int, growth: int,
                 code_width: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[
            DecoderConvBlock(code_width, code_width, downs=d, stride=stride, width=width, depth=depth, growth=growth)
            for d in reversed(downs)])
        self.out = nn.Conv1d(code_width, 1, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(z))


# ---------------------------------------------------------------------------------------------
# bottleneck


class EMABottleneck(nn.Module):
    """A codebook of ``codebook_size`` vectors of ``code_width``, updated by EMA with random restarts.

    Buffers (all in the state dict, so training resumes exactly): ``k`` (K, D) the codes,
    ``k_sum`` (K, D) and ``k_elem`` (K,) the running sums and counts, ``initialised``.

    Update on a batch of encoder outputs ``x`` (N, D) with nearest codes ``c`` (N,)::

        k_sum  <- mu * k_sum  + (1 - mu) * onehot(c).T @ x
        k_elem <- mu * k_elem + (1 - mu) * counts(c)
        k      <- k_sum / k_elem         where k_elem >= restart_threshold
                  x[perm[:K]] (+ noise)  elsewhere (a restart)

    where ``perm`` is a permutation of the batch's vectors drawn from ``generator`` (the batch is
    tiled, with noise of std ``0.01 / sqrt(D)``, when it holds fewer than K vectors). As in
    Jukebox, a restart replaces ``k`` but keeps the running sums, so a code that stays unused is
    redrawn every step until it is used.
    """

    def __init__(self, codebook_size: int, code_width: int, *, mu: float = 0.99, restart_threshold: float = 1.0) -> None:
        super().__init__()
        self.codebook_size, self.code_width = int(codebook_size), int(code_width)
        self.mu, self.restart_threshold = float(mu), float(restart_threshold)
        self.register_buffer("k", torch.zeros(codebook_size, code_width))
        self.register_buffer("k_sum", torch.zeros(codebook_size, code_width))
        self.register_buffer("k_elem", torch.zeros(codebook_size))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    # -- helpers ----------------------------------------------------------------------------

    def _random_vectors(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """K rows drawn without replacement from ``x`` (tiled with small noise when N < K)."""
        n, d = x.shape
        k = self.codebook_size
        if n < k:
            reps = (k + n - 1) // n
            noise = torch.randn((n * reps, d), generator=generator).to(x.device, x.dtype)
            x = x.repeat(reps, 1) + noise * (0.01 / math.sqrt(d))
        perm = torch.randperm(x.shape[0], generator=generator)[:k].to(x.device)
        return x[perm]

    def quantise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest codes of ``x`` (N, D): ``(codes (N,), squared distances (N,))``; ties -> lowest index."""
        k = self.k
        dist = (x * x).sum(1, keepdim=True) - 2 * x @ k.t() + (k * k).sum(1)[None, :]
        d, c = torch.min(dist, dim=1)
        return c, d

    def dequantise(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.k)

    @torch.no_grad()
    def init_codebook(self, x: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Codes from random encoder outputs; running counts of 1 each (Jukebox's ``init_k``)."""
        self.k.copy_(self._random_vectors(x.detach(), generator))
        self.k_sum.copy_(self.k)
        self.k_elem.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """One EMA step with restarts (see the class docstring); returns usage statistics."""
        x = x.detach()
        mu, kb = self.mu, self.codebook_size
        onehot = F.one_hot(codes, kb).to(x.dtype)  # (N, K): a matmul, deterministic on every device
        batch_sum = onehot.t() @ x
        batch_elem = onehot.sum(0)
        rand = self._random_vectors(x, generator)
        self.k_sum.mul_(mu).add_(batch_sum, alpha=1.0 - mu)
        self.k_elem.mul_(mu).add_(batch_elem, alpha=1.0 - mu)
        used = (self.k_elem >= self.restart_threshold)
        self.k.copy_(torch.where(used[:, None], self.k_sum / self.k_elem.clamp_min(1e-12)[:, None], rand))
        prob = batch_elem / batch_elem.sum()
        entropy = -(prob * torch.log(prob.clamp_min(1e-30))).sum()
        return {"batch_codes_used": int((batch_elem > 0).sum()), "restarted": int((~used).sum()),
                "batch_perplexity": float(torch.exp(entropy))}

    def forward(self, z: torch.Tensor, *, update: bool, generator: torch.Generator | None = None):
        """``z`` (B, D, T) -> codes (B, T), straight-through quantised (B, D, T), commit loss, stats."""
        b, d, t = z.shape
        x = z.permute(0, 2, 1).reshape(-1, d)
        if update and not bool(self.initialised):
            self.init_codebook(x, generator)
        codes, _ = self.quantise(x)
        xq = self.dequantise(codes)
        stats = self.update(x, codes, generator) if update else {}
        commit = torch.mean((xq.detach() - x) ** 2)
        xq = x + (xq - x).detach()
        return codes.view(b, t), xq.view(b, t, d).permute(0, 2, 1), commit, stats


# ---------------------------------------------------------------------------------------------
# spectral loss


def stft_magnitude(x: torch.Tensor, n_fft: int, hop: int, window: int) -> torch.Tensor:
    """|STFT| of ``x`` (B, T): Hann window of ``window`` samples centred in ``n_fft``, frames every
    ``hop`` samples, the signal zero-padded by ``n_fft // 2`` on both sides -> (B, n_fft // 2 + 1, frames)."""
    win = torch.hann_window(window, periodic=True, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=window, window=win, center=True, pad_mode="constant",
                      return_complex=True)
    return spec.abs()


# ---------------------------------------------------------------------------------------------
# the model


class VQVAE(nn.Module):
    """The multi-level VQ-VAE.

    Parameters
    ----------
    hop_lengths : tuple of int
        Samples per code, bottom level first; each a multiple of the previous by a power of ``stride``.
    stride : int
        Stride of every strided convolution (2 as in Jukebox; 4 halves the blocks).
    width, depth, dilation_growth : int
        Channels of the conv stacks; residual blocks per Resnet1D; dilation base (Jukebox: 32, 4, 3).
    codebook_size, code_width : int
        Codes per level and their dimension (Jukebox: 2048, 64).
    mu, commit, restart_threshold : float
        EMA decay of the codebooks, weight of the commitment loss, running count under which a
        code is restarted (Jukebox: 0.99, 0.02, 1.0).
    spectral_weight : float
        Weight of the multi-resolution STFT loss.
    stft : tuple of (n_fft, hop, window)
        Resolutions of the spectral loss (Jukebox: (2048, 240, 1200), (1024, 120, 600), (512, 50, 240)).
    """

    def __init__(self, *, hop_lengths=(8, 32, 128), stride: int = 2, width: int = 32, depth: int = 4,
                 dilation_growth: int = 3, codebook_size: int = 2048, code_width: int = 64, mu: float = 0.99,
                 commit: float = 0.02, restart_threshold: float = 1.0, spectral_weight: float = 1.0,
                 stft=((2048, 240, 1200), (1024, 120, 600), (512, 50, 240))) -> None:
        super().__init__()
        self.hop_lengths: tuple[int, ...] = tuple(int(h) for h in hop_lengths)
        self.downs = level_downs(self.hop_lengths, stride)
        self.levels: int = len(self.hop_lengths)
        self.stride = int(stride)
        self.codebook_size: int = int(codebook_size)
        self.code_width = int(code_width)
        self.commit = float(commit)
        self.spectral_weight = float(spectral_weight)
        self.stft = tuple((int(a), int(b), int(c)) for a, b, c in stft)
        for n_fft, hop, win in self.stft:
            if not (0 < win <= n_fft and hop > 0):
                raise ValueError(f"stft resolution (n_fft={n_fft}, hop={hop}, window={win}): need 0 < window <= n_fft, hop > 0")
        kw = dict(stride=stride, width=width, depth=depth, growth=dilation_growth, code_width=code_width)
        self.encoders = nn.ModuleList([LevelEncoder(self.downs[: l + 1], **kw) for l in range(self.levels)])
        self.decoders = nn.ModuleList([LevelDecoder(self.downs[: l + 1], **kw) for l in range(self.levels)])
        self.bottlenecks = nn.ModuleList([EMABottleneck(codebook_size, code_width, mu=mu,
                                                        restart_threshold=restart_threshold)
                                          for _ in range(self.levels)])
        self.register_buffer("data_var", torch.ones(()))
        self.register_buffer("spec_rms", torch.ones(len(self.stft)))

    # -- data statistics --------------------------------------------------------------------

    @torch.no_grad()
    def set_data_stats(self, data_var: float, spec_rms) -> None:
        """The loss normalisers: the variance of the training audio and its RMS STFT magnitude per resolution."""
        spec_rms = torch.as_tensor(spec_rms, dtype=torch.float32)
        if spec_rms.shape != self.spec_rms.shape:
            raise ValueError(f"spec_rms has shape {tuple(spec_rms.shape)}, need ({len(self.stft)},)")
        self.data_var.fill_(float(data_var))
        self.spec_rms.copy_(spec_rms.to(self.spec_rms.device))

    # -- interface --------------------------------------------------------------------------

    def _check_audio(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"audio must have shape (batch, samples), got {tuple(x.shape)}")
        top = max(self.hop_lengths)
        if x.shape[1] == 0 or x.shape[1] % top:
            raise ValueError(f"samples={x.shape[1]} must be a positive multiple of the largest hop length {top}")
        return x.to(self.data_var.dtype)[:, None, :]

    def _device(self) -> torch.device:
        return self.data_var.device

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Mono audio ``(B, T)`` -> codes per level, bottom first: ``[(B, T // hop_l) int64, ...]``."""
        xin = self._check_audio(x.to(self._device()))
        out = []
        for enc, bn in zip(self.encoders, self.bottlenecks):
            z = enc(xin)
            b, d, t = z.shape
            codes, _ = bn.quantise(z.permute(0, 2, 1).reshape(-1, d))
            out.append(codes.view(b, t))
        return out

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, level: int) -> torch.Tensor:
        """Codes ``(B, T_l)`` of ``level`` -> audio ``(B, T_l * hop_lengths[level])``."""
        if not 0 <= level < self.levels:
            raise ValueError(f"level={level} must be in 0..{self.levels - 1}")
        codes = torch.as_tensor(codes).to(self._device()).long()
        if codes.dim() != 2:
            raise ValueError(f"codes must have shape (batch, time), got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in 0..{self.codebook_size - 1}, got {int(codes.min())}..{int(codes.max())}")
        zq = self.bottlenecks[level].dequantise(codes).permute(0, 2, 1)
        return self.decoders[level](zq)[:, 0, :]

    def spectral_distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over resolutions of ``||S(x) - S(y)||_F / (sqrt(n) * spec_rms_r)``, averaged over the batch."""
        total = x.new_zeros(())
        for r, (n_fft, hop, win) in enumerate(self.stft):
            sx, sy = stft_magnitude(x, n_fft, hop, win), stft_magnitude(y, n_fft, hop, win)
            n = sx.shape[1] * sx.shape[2]
            per_item = torch.sqrt(((sx - sy) ** 2).sum(dim=(1, 2)) + 1e-12) / (math.sqrt(n) * self.spec_rms[r])
            total = total + per_item.mean()
        return total / len(self.stft)

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None):
        """Training pass on ``x`` (B, T).

        Returns ``(recons, losses, metrics)``: ``recons`` the reconstruction of every level
        (B, T), bottom first; ``losses`` scalar tensors ``loss`` (the total to minimise), ``recons``,
        ``spectral``, ``commit`` and per level ``recons_l{l}``, ``spectral_l{l}``, ``commit_l{l}``;
        ``metrics`` plain numbers per level (``codes_used_l{l}``, ``perplexity_l{l}``,
        ``restarted_l{l}``; in training mode only). In training mode the codebooks are updated
        (EMA + restarts drawn from ``generator``); in eval mode they are left alone.
        """
        xin = self._check_audio(x)
        target = xin[:, 0, :]
        update = self.training
        recons, losses, metrics = [], {}, {}
        rec_total = spec_total = com_total = target.new_zeros(())
        for l in range(self.levels):
            z = self.encoders[l](xin)
            # under mixed precision (an autocast region around the call) only the encoders and
            # decoders run in the low dtype: the codebook (distances, EMA, restarts) and the losses
            # (STFT included) stay in fp32; without autocast these blocks change nothing
            with torch.autocast(z.device.type, enabled=False):
                _codes, zq, commit, stats = self.bottlenecks[l](z.float(), update=update, generator=generator)
            y = self.decoders[l](zq)[:, 0, :]
            with torch.autocast(y.device.type, enabled=False):
                y = y.float()
                rec = torch.mean((y - target) ** 2) / self.data_var
                spec = self.spectral_distance(target, y) if self.spectral_weight > 0 else target.new_zeros(())
            recons.append(y)
            losses[f"recons_l{l}"], losses[f"spectral_l{l}"], losses[f"commit_l{l}"] = rec, spec, commit
            rec_total, spec_total, com_total = rec_total + rec, spec_total + spec, com_total + commit
            for key, val in stats.items():
                metrics[f"{key}_l{l}"] = val
        losses["recons"], losses["spectral"], losses["commit"] = rec_total, spec_total, com_total
        losses["loss"] = rec_total + self.spectral_weight * spec_total + self.commit * com_total
        return recons, losses, metrics
