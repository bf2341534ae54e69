"""Mixed precision, compile and pinned copies (``pipeline.training.precision``) in every family's
training loop, and ``scripts/gpu_check.sh``: bf16 trains on the CPU; fp32 is the unchanged path;
the CUDA paths (fp16 with its GradScaler, pinned copies) are tested where CUDA is, skipped here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import load_params
from pipeline.errors import ParamsError
from pipeline.models.jukebox import JukeboxPrior, PriorConfig
from pipeline.models.musegan import MuseGANConfig, build
from pipeline.stages import jukebox as jukebox_stage
from pipeline.stages import lstm as lstm_stage
from pipeline.stages import musegan as musegan_stage
from pipeline.stages import vqvae as vqvae_stage
from pipeline.training import jukebox as J
from pipeline.training import lstm as L
from pipeline.training import musegan as G
from pipeline.training import vqvae as V
from pipeline.training.precision import Precision, digest_fields, to_device
from pipeline.training.solver import FitConfig, fit, load_checkpoint, seed_everything

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA: no CUDA device on this machine")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


# ---------------------------------------------------------------------------------------------
# the module


def test_fp32_is_the_plain_path():
    amp = Precision.of("fp32", "cpu")
    assert not amp.enabled and amp.scaler is None and amp.grad_scale() is None and amp.state() == {}
    with amp.autocast():
        assert not torch.is_autocast_enabled("cpu")
    x = torch.ones(3)
    assert to_device(x, "cpu") is x  # no pinned copy off CUDA


def test_bf16_autocasts_on_cpu():
    amp = Precision.of("bf16", "cpu")
    with amp.autocast():
        y = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert y.dtype == torch.bfloat16 and amp.state() == {}


def test_bad_precisions_are_one_line_errors():
    with pytest.raises(ParamsError, match=r"precision='fp8' must be one of fp32, bf16, fp16"):
        Precision.of("fp8", "cpu")
    with pytest.raises(ParamsError, match=r"precision=fp16 needs a CUDA device .* use bf16 or fp32") as err:
        Precision.of("fp16", "cpu")
    assert "\n" not in str(err.value)
    with pytest.raises(ParamsError, match=r"lstm.train.precision"):
        load_params(lstm_stage.Params, train={"precision": "fp64"})


def test_digest_keeps_default_runs_and_separates_precisions():
    """fp32 / compile false leave the resume digest as it was before the params existed; any
    other precision (or compile) is a new run, never a resume of the fp32 one."""
    assert digest_fields({"lr": 1, "precision": "fp32", "compile": False}) == {"lr": 1}
    assert digest_fields({"lr": 1, "precision": "bf16", "compile": True}) == {"lr": 1, "precision": "bf16",
                                                                              "compile": True}
    base = load_params(lstm_stage.Params)
    bf16 = load_params(lstm_stage.Params, train={"precision": "bf16"})
    assert lstm_stage._digest(base, "lstm", "v") != lstm_stage._digest(bf16, "lstm", "v")
    m = load_params(musegan_stage.Params)
    assert musegan_stage._digest(m, "jamming", "d") != musegan_stage._digest(
        load_params(musegan_stage.Params, train={"precision": "bf16"}), "jamming", "d")
    v = load_params(vqvae_stage.Params)
    for over in ({"precision": "bf16"}, {"compile": True}):
        assert vqvae_stage._digest(v, "c") != vqvae_stage._digest(load_params(vqvae_stage.Params, train=over), "c")
    j = load_params(jukebox_stage.Params)
    cfg = PriorConfig(bins=16)
    for over in ({"precision": "bf16"}, {"compile": True}):
        assert jukebox_stage._digest(j, cfg, 2, "q") != jukebox_stage._digest(
            load_params(jukebox_stage.Params, train=over), cfg, 2, "q")


def test_scaled_penalty_is_the_penalty():
    """fp16's recipe (scores scaled before the gradient, the gradient unscaled after) gives the
    penalty of the unscaled gradient, in fp32."""
    torch.manual_seed(0)
    _, critic = build(MuseGANConfig(variant="jamming", n_tracks=2, n_bars=2, steps_per_bar=12, n_pitches=12,
                                    z_dim=8, width=0.25))
    real, fake = torch.rand(4, 2, 12, 12, 2) * 2 - 1, torch.rand(4, 2, 12, 12, 2) * 2 - 1
    x_hat = G.interpolate(real, fake, torch.rand(4))
    plain = G.penalty(critic(x_hat), x_hat, 10.0, critic.groups)
    scaled = G.penalty(critic(x_hat), x_hat, 10.0, critic.groups, scale=65536.0)
    assert plain.dtype == scaled.dtype == torch.float32
    torch.testing.assert_close(plain, scaled)


# ---------------------------------------------------------------------------------------------
# bf16 training on the CPU


def _windows(n: int, rng) -> np.ndarray:
    """Learnable windows: a repeating ramp of ids 4..11 from a random phase."""
    starts = rng.integers(0, 8, n)
    return np.stack([4 + (s + np.arange(17)) % 8 for s in starts]).astype(np.int64)


def test_lstm_trains_in_bf16(tmp_path):
    rng = np.random.default_rng(0)
    seed_everything(1, threads=1)
    model = L.build_model(16, embedding=8, hidden=32, layers=1, dropout=0.0, attention=True, attention_dim=8)
    res = fit(model, train=_windows(64, rng), valid=_windows(8, rng), out=tmp_path, train_step=L.step,
              loss_fn=L.loss_sums, count=L.target_tokens,
              cfg=FitConfig(epochs=4, batch_size=16, lr=1e-2, patience=4, seed=1, precision="bf16"))
    losses = [h["train_loss"] for h in res["history"]]
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]
    assert np.isfinite(res["history"][-1]["valid_loss"])
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert "scaler" not in state and all(v.dtype == torch.float32 for v in state["model"].values()
                                          if v.is_floating_point())


def test_musegan_trains_in_bf16(tmp_path):
    seed_everything(1, threads=1)
    cfg = MuseGANConfig(variant="musegan", n_tracks=2, n_bars=2, steps_per_bar=12, n_pitches=12, z_dim=8, width=0.25)
    gen, critic = build(cfg)
    data = np.zeros((32, 2, 12, 12, 2), bool)
    data[:, :, ::3, 5, 0] = True  # an easy pattern: the critic soon tells it from noise
    res = G.train(gen, critic, data, out=tmp_path,
                  cfg=G.GanConfig(steps=6, batch_size=8, n_critic=2, lr=1e-3, checkpoint_every=3, precision="bf16"))
    h = res["history"]
    for key in ("d_loss", "g_loss", "gp", "wasserstein"):
        assert all(np.isfinite([row[key] for row in h])), key
    assert h[-1]["d_loss"] < h[0]["d_loss"]  # the critic learns
    amp = Precision.of("bf16", "cpu")
    with amp.autocast():
        assert critic(G.to_model(data[:2])).dtype == torch.bfloat16  # the critic's forward did run in bf16


def test_vqvae_keeps_codebook_and_losses_fp32_under_bf16(tmp_path):
    seed_everything(1, threads=1)
    vq = V.build_model({"hop_lengths": [8, 32], "stride": 2, "width": 8, "depth": 1, "dilation_growth": 3,
                        "codebook_size": 16, "code_width": 8, "mu": 0.99, "commit": 0.02, "restart_threshold": 1.0,
                        "spectral_weight": 1.0, "stft": [[256, 64, 256]]})
    vq.set_data_stats(0.01, [1.0])
    with Precision.of("bf16", "cpu").autocast():
        recons, losses, _ = vq(torch.randn(2, 1024) * 0.1)
    assert all(v.dtype == torch.float32 for v in losses.values()) and recons[0].dtype == torch.float32
    pcm = [(np.random.default_rng(i).standard_normal((1, 8192)) * 3000).astype(np.int16) for i in range(3)]
    bank = V.ClipBank(ids=[f"{i:032x}" for i in range(3)], clips=[0] * 3, valid=[8192] * 3, pcm=pcm, sample_rate=44100)
    res = V.train(vq, bank, valid=V.fixed_crops(bank, samples=1024, n=2, seed=1), out=tmp_path,
                  cfg=V.TrainConfig(steps=4, batch_size=2, crop_samples=1024, log_every=2, valid_every=2,
                                    precision="bf16"))
    assert all(np.isfinite(row["loss"]) for row in res["history"])
    assert all(b.dtype == torch.float32 for b in vq.buffers() if b.is_floating_point())


def test_jukebox_trains_in_bf16(tmp_path):
    torch.manual_seed(1)
    model = JukeboxPrior(PriorConfig(bins=16, width=16, layers=2, heads=2, context=32, blocksize=8))
    codes = np.tile(np.arange(16), (4, 4))  # a ramp: learnable
    res = J.train(model, codes, None, out=tmp_path,
                  cfg=J.TrainConfig(steps=12, batch_size=4, lr=1e-2, checkpoint_every=6, precision="bf16"))
    bits = [row["train_bits"] for row in res["history"]]
    assert all(np.isfinite(bits)) and bits[-1] < bits[0]


def test_compile_is_wired(tmp_path, monkeypatch):
    """``compile: true`` compiles the jukebox transformer and the VQ-VAE's encoders and decoders in
    place (recorded here, not compiled: the inductor toolchain is too slow for a CPU test)."""
    seen = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: seen.append(type(self).__name__))
    torch.manual_seed(1)
    model = JukeboxPrior(PriorConfig(bins=16, width=16, layers=1, heads=2, context=32, blocksize=8))
    J.train(model, np.zeros((2, 32), np.int64), None, out=tmp_path / "j",
            cfg=J.TrainConfig(steps=1, batch_size=2, checkpoint_every=1, compile=True))
    assert seen == ["JukeboxPrior"]
    seen.clear()
    vq = V.build_model({"hop_lengths": [8, 32], "stride": 2, "width": 8, "depth": 1, "dilation_growth": 3,
                        "codebook_size": 16, "code_width": 8, "mu": 0.99, "commit": 0.02, "restart_threshold": 1.0,
                        "spectral_weight": 0.0, "stft": [[256, 64, 256]]})
    vq.set_data_stats(0.01, [1.0])
    bank = V.ClipBank(ids=["0" * 32], clips=[0], valid=[2048], pcm=[np.ones((1, 2048), np.int16)], sample_rate=44100)
    V.train(vq, bank, valid=V.fixed_crops(bank, samples=1024, n=1, seed=1), out=tmp_path / "v",
            cfg=V.TrainConfig(steps=1, batch_size=1, crop_samples=1024, log_every=1, valid_every=1, compile=True))
    assert sorted(seen) == ["LevelDecoder"] * 2 + ["LevelEncoder"] * 2


# ---------------------------------------------------------------------------------------------
# CUDA only


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_training_and_fp16_resume(tmp_path, precision):
    """On CUDA: a jukebox run in bf16/fp16 is finite; under fp16 the GradScaler's state is in
    last.pt and a resumed run continues from it."""
    torch.manual_seed(1)
    cfg = PriorConfig(bins=16, width=16, layers=2, heads=2, context=32, blocksize=8)
    codes = np.tile(np.arange(16), (4, 4))
    res = J.train(JukeboxPrior(cfg).cuda(), codes, None, out=tmp_path,
                  cfg=J.TrainConfig(steps=4, batch_size=4, checkpoint_every=2, precision=precision))
    assert all(np.isfinite(row["train_bits"]) for row in res["history"])
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ("scaler" in state) == (precision == "fp16")
    res = J.train(JukeboxPrior(cfg).cuda(), codes, None, out=tmp_path,
                  cfg=J.TrainConfig(steps=6, batch_size=4, checkpoint_every=2, precision=precision))
    assert res["resumed_at"] == 4 and len(res["history"]) == 6


@needs_cuda
@pytest.mark.gpu
def test_pinned_copy_on_cuda():
    x = torch.arange(6)
    y = to_device(x, "cuda")
    assert y.device.type == "cuda" and torch.equal(y.cpu(), x)


# ---------------------------------------------------------------------------------------------
# scripts/gpu_check.sh


def _gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "PIPELINE_PROGRESS": "0"}
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_gpu_check_smoke_on_cpu():
    """The driver's CPU mode: every family's loop, 2 steps, bf16 (fp32 is the default path the
    other tests run), so the script cannot rot unnoticed."""
    proc = _gpu_check("--device", "cpu", "--steps", "2", "--precisions", "bf16", "--threads", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split()[0] for line in proc.stdout.splitlines()[2:-1]]
    assert rows == ["lstm", "lstm_attention", "musegan", "jamming", "vqvae", "jukebox_prior", "jukebox_upsampler"]
    assert "FAILED" not in proc.stdout and "0 failed" in proc.stdout


def test_gpu_check_without_cuda_says_so():
    if CUDA:
        pytest.skip("this machine has CUDA: the no-CUDA message does not apply")
    proc = _gpu_check("--steps", "1")
    assert proc.returncode == 2
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip()] and "needs CUDA" in proc.stdout


@pytest.mark.slow
def test_gpu_check_ddp_rows_run_on_cpu():
    """``--ddp`` on the CPU: the 2-process rows (torchrun, gloo) of the families that joined DDP
    last, through the same driver a 2-GPU machine runs."""
    proc = _gpu_check("--device", "cpu", "--ddp", "--steps", "2", "--warmup", "0", "--precisions", "fp32",
                      "--families", "vqvae,jukebox_prior", "--threads", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[2:-1]]
    assert [(r[0], r[3]) for r in rows] == [("vqvae", "1"), ("jukebox_prior", "1"), ("vqvae", "2"),
                                           ("jukebox_prior", "2")]
    assert "FAILED" not in proc.stdout and "0 failed" in proc.stdout
