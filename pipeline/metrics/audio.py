"""Audio-codec metrics, as pure functions on numpy arrays (Jukebox's VQ-VAE evaluation).

- ``stft_magnitude``: ``|STFT|`` with a periodic Hann window of ``window`` samples centred in
  frames of ``n_fft``, every ``hop`` samples, the signal zero-padded by ``n_fft // 2`` on both sides
  (``1 + T // hop`` frames): the same frames as ``torch.stft(center=True, pad_mode="constant")``.
- ``spectral_convergence`` / ``spectral_convergence_db``: ``||S(x) - S(y)||_F / ||S(x)||_F`` of
  the reference ``x`` and estimate ``y``, pooled over a batch (sums of squares over every clip,
  so a silent clip cannot blow the ratio up), and ``20 log10`` of it. ``y = x`` gives 0 (``-inf``
  dB), ``y = 0`` gives 1 (0 dB). Jukebox reports it at ``n_fft=2048, hop=256, window=1536``
  (``JUKEBOX_STFT``).
- ``reconstruction_mse`` and ``normalised_l2`` (MSE / data variance, the VQ-VAE's training loss).
- ``code_histogram``, ``codebook_usage`` (fraction of the K codes used at least once) and
  ``code_perplexity`` (``exp`` of the entropy, in nats, of the code histogram: k codes used
  equally often give k; one code gives 1).
"""

from __future__ import annotations

import math

import numpy as np

#: (n_fft, hop, window) of Jukebox's spectral convergence
JUKEBOX_STFT = (2048, 256, 1536)


def _as_batch(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"audio must have shape (samples,) or (clips, samples), got {x.shape}")
    return x


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window (as ``torch.hann_window(n)`` and ``scipy.signal.get_window('hann', n)``)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def stft_magnitude(x, *, n_fft: int, hop: int, window: int) -> np.ndarray:
    """``|STFT|`` of ``x`` ((T,) or (B, T)) -> ``(B, n_fft // 2 + 1, 1 + T // hop)`` float64."""
    if not (0 < window <= n_fft) or hop < 1:
        raise ValueError(f"stft n_fft={n_fft}, hop={hop}, window={window}: need 0 < window <= n_fft and hop >= 1")
    x = _as_batch(x)
    pad = n_fft // 2
    xp = np.pad(x, ((0, 0), (pad, pad)))
    w = np.zeros(n_fft)
    left = (n_fft - window) // 2
    w[left:left + window] = hann_window(window)
    n_frames = 1 + x.shape[1] // hop
    idx = np.arange(n_frames)[:, None] * hop + np.arange(n_fft)[None, :]
    frames = xp[:, idx] * w  # (B, frames, n_fft)
    return np.abs(np.fft.rfft(frames, axis=-1)).transpose(0, 2, 1)


def spectral_convergence(reference, estimate, *, n_fft: int = JUKEBOX_STFT[0], hop: int = JUKEBOX_STFT[1],
                         window: int = JUKEBOX_STFT[2]) -> float:
    """``||S(x) - S(y)||_F / ||S(x)||_F`` over the whole batch; ``nan`` for a silent reference."""
    x, y = _as_batch(reference), _as_batch(estimate)
    if x.shape != y.shape:
        raise ValueError(f"reference {x.shape} and estimate {y.shape} differ in shape")
    ref = res = 0.0
    for xi, yi in zip(x, y):  # clip by clip: the frames of a long batch need not fit in memory at once
        sx = stft_magnitude(xi, n_fft=n_fft, hop=hop, window=window)
        sy = stft_magnitude(yi, n_fft=n_fft, hop=hop, window=window)
        ref += float(np.sum(sx * sx))
        res += float(np.sum((sx - sy) ** 2))
    if ref == 0.0:
        return math.nan
    return math.sqrt(res / ref)


def spectral_convergence_db(reference, estimate, **stft) -> float:
    """``20 log10`` of :func:`spectral_convergence` (``-inf`` for a perfect estimate, 0 dB for silence)."""
    sc = spectral_convergence(reference, estimate, **stft)
    if math.isnan(sc):
        return math.nan
    return -math.inf if sc == 0.0 else 20.0 * math.log10(sc)


def reconstruction_mse(reference, estimate) -> float:
    x, y = _as_batch(reference), _as_batch(estimate)
    if x.shape != y.shape:
        raise ValueError(f"reference {x.shape} and estimate {y.shape} differ in shape")
    return float(np.mean((x - y) ** 2))


def normalised_l2(reference, estimate, *, data_var: float) -> float:
    """MSE divided by the variance of the data (1.0: as bad as predicting the mean)."""
    if not data_var > 0:
        raise ValueError(f"data_var={data_var} must be positive")
    return reconstruction_mse(reference, estimate) / float(data_var)


def code_histogram(codes, codebook_size: int) -> np.ndarray:
    """Counts of each code 0..K-1 (int64, length K)."""
    c = np.asarray(codes).ravel()
    if c.size and (c.min() < 0 or c.max() >= codebook_size):
        raise ValueError(f"codes must lie in 0..{codebook_size - 1}, got {c.min()}..{c.max()}")
    return np.bincount(c.astype(np.int64), minlength=codebook_size)


def codebook_usage(codes, codebook_size: int) -> float:
    """Fraction of the ``codebook_size`` codes that occur at least once."""
    return float(np.count_nonzero(code_histogram(codes, codebook_size))) / codebook_size


def code_perplexity(codes, codebook_size: int) -> float:
    """``exp(-sum p log p)`` of the code histogram (1.0 for no codes)."""
    h = code_histogram(codes, codebook_size).astype(np.float64)
    total = h.sum()
    if total == 0:
        return 1.0
    p = h[h > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))
