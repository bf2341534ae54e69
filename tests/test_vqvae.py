"""Jukebox-style VQ-VAE (issue items 1, 4-6): tiny models on audio shards made here from synthetic
tones through ingest_audio. Shapes per hop, the EMA codebook update and its restarts against
numbers worked out by hand, the audio metrics on hand-checked signals, reruns and resumes that
repeat to the last digit, the interface the prior stages use, and the CLI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from pipeline.config import from_dict, load_params, section_doc
from pipeline.errors import ParamsError, StageError
from pipeline.metrics import audio as am
from pipeline.models.vqvae import VQVAE, EMABottleneck, level_downs
from pipeline.splits import heldout_split
from pipeline.training import vqvae as fam
from pipeline.stages import ingest_audio
from pipeline.stages import vqvae as stage

SR = 44100

TINY = {
    "heldout_fraction": 0.3,
    "model": {"hop_lengths": [4, 16, 64], "width": 8, "depth": 2, "dilation_growth": 3, "codebook_size": 16,
              "code_width": 4},
    "train": {"crop_samples": 1024, "batch_size": 2, "steps": 6, "lr": 0.002, "stft_n_fft": [256, 128],
              "stft_hop": [64, 32], "stft_window": [256, 96], "log_every": 2, "valid_every": 2, "valid_crops": 3,
              "seed": 5, "threads": 1},
}


def tiny(**over) -> stage.Params:
    doc = json.loads(json.dumps(TINY))
    for k, v in over.items():
        doc[k].update(v) if isinstance(v, dict) else doc.__setitem__(k, v)
    return load_params(stage.Params, **doc)


def _song(i: int, seconds: float, channels: int) -> np.ndarray:
    """A decaying harmonic tone plus a little noise, different for every i."""
    rng = np.random.default_rng(i)
    t = np.arange(int(SR * seconds)) / SR
    f = 110.0 * 2 ** (i / 5)
    x = sum(0.3 / h * np.sin(2 * np.pi * f * h * t + rng.uniform(0, 6)) for h in (1, 2, 3)) * np.exp(-t)
    x = x + 0.01 * rng.standard_normal(len(t))
    if channels == 2:
        x = np.stack([x, 0.5 * np.roll(x, 100)], axis=1)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    """Ten mono recordings -> ingest_audio shards of 4096-sample clips (split 0.3: 7 train songs, 3 held out)."""
    root = tmp_path_factory.mktemp("vqvae")
    src = root / "rec"
    src.mkdir()
    for i in range(10):
        sf.write(src / f"tone{i}.wav", _song(i, 0.25, 1), SR, subtype="PCM_16")
    ingest_audio.run(source=src, out=root / "audio", workers=1,
                     params=ingest_audio.Params(clip_samples=4096, clips_per_song=1, row_group_mb=0.05))
    return root / "audio"


@pytest.fixture(scope="module")
def stereo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vqvae_stereo")
    src = root / "rec"
    src.mkdir()
    for i in range(4):
        sf.write(src / f"st{i}.wav", _song(i, 0.2, 2), SR, subtype="PCM_16")
    ingest_audio.run(source=src, out=root / "audio", workers=1,
                     params=ingest_audio.Params(clip_samples=4096, clips_per_song=1, downmix="none"))
    return root / "audio"


# -- model shapes -------------------------------------------------------------------------------


def test_level_downs_follow_the_hops():
    assert level_downs((8, 32, 128), 2) == (3, 2, 2)
    assert level_downs((4, 64), 4) == (1, 2)
    for bad in ((8, 24), (8, 8), (6,), ()):
        with pytest.raises(ValueError):
            level_downs(bad, 2)


@pytest.mark.parametrize("hops,stride", [((8, 32, 128), 2), ((4, 16), 4)])
def test_encode_decode_shapes_per_hop(hops, stride):
    torch.manual_seed(0)
    model = VQVAE(hop_lengths=hops, stride=stride, width=8, depth=2, codebook_size=16, code_width=4,
                  stft=((128, 32, 128),))
    assert model.hop_lengths == hops and model.levels == len(hops) and model.codebook_size == 16
    x = torch.randn(3, 1024) * 0.1
    recons, losses, metrics = model(x, generator=torch.Generator().manual_seed(0))  # training mode: codebooks set
    assert [tuple(r.shape) for r in recons] == [(3, 1024)] * len(hops)
    assert {"loss", "recons", "spectral", "commit", "recons_l0", f"commit_l{len(hops) - 1}"} <= set(losses)
    assert {f"batch_perplexity_l{len(hops) - 1}", "restarted_l0"} <= set(metrics)
    assert all(bool(bn.initialised) for bn in model.bottlenecks)
    model.eval()
    k_before = [bn.k.clone() for bn in model.bottlenecks]
    assert model(x)[2] == {}  # eval mode: no codebook update, no statistics
    assert all(torch.equal(a, bn.k) for a, bn in zip(k_before, model.bottlenecks))
    codes = model.encode(x)
    assert [tuple(c.shape) for c in codes] == [(3, 1024 // h) for h in hops]
    assert all(c.dtype == torch.int64 and 0 <= int(c.min()) and int(c.max()) < 16 for c in codes)
    for level, c in enumerate(codes):
        y = model.decode(c, level)
        assert tuple(y.shape) == (3, 1024) and y.dtype == torch.float32
        # decode(encode) is the eval-mode forward's reconstruction of that level
        assert torch.allclose(y, model(x)[0][level], atol=1e-6)
    with pytest.raises(ValueError, match="multiple of the largest hop"):
        model.encode(torch.zeros(1, 1000))
    with pytest.raises(ValueError, match="codes must lie in 0..15"):
        model.decode(torch.full((1, 4), 16), 0)


# -- EMA codebook -------------------------------------------------------------------------------


def _bottleneck(k, mu=0.5, threshold=1.0):
    bn = EMABottleneck(len(k), len(k[0]), mu=mu, restart_threshold=threshold)
    with torch.no_grad():
        bn.k.copy_(torch.tensor(k, dtype=torch.float32))
        bn.k_sum.copy_(bn.k)
        bn.k_elem.fill_(1.0)
        bn.initialised.fill_(True)
    return bn


def test_ema_update_moves_the_codebook_as_mu_says():
    # codes (0, 0) and (10, 10); the batch: two points near code 0, one near code 1
    bn = _bottleneck([[0.0, 0.0], [10.0, 10.0]], mu=0.5, threshold=0.5)
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0], [12.0, 10.0]])
    codes, _ = bn.quantise(x)
    assert codes.tolist() == [0, 0, 1]
    bn.update(x, codes)
    # k_sum = 0.5 * k_sum + 0.5 * (sum of assigned points); k_elem = 0.5 * 1 + 0.5 * count
    assert bn.k_sum.tolist() == [[0.5, 1.5], [11.0, 10.0]]
    assert bn.k_elem.tolist() == [1.5, 1.0]
    # k = k_sum / k_elem: code 0 = (0.5, 1.5) / 1.5, code 1 = (11, 10) / 1
    assert torch.allclose(bn.k, torch.tensor([[1 / 3, 1.0], [11.0, 10.0]]))
    # a second step with the same batch: k_elem = 0.5 * 1.5 + 0.5 * 2 = 1.75; k_sum = 0.5 * (0.5, 1.5) + 0.5 * (1, 3)
    bn.update(x, codes)
    assert torch.allclose(bn.k_elem, torch.tensor([1.75, 1.0]))
    assert torch.allclose(bn.k[0], torch.tensor([0.75, 2.25]) / 1.75)


def test_a_dead_code_restarts_from_an_encoder_output():
    bn = _bottleneck([[0.0, 0.0], [100.0, 100.0], [-100.0, 50.0]], mu=0.9, threshold=1.0)
    x = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 2.0], [99.0, 101.0]])
    codes, _ = bn.quantise(x)
    assert codes.tolist() == [0, 0, 0, 1]
    g = torch.Generator().manual_seed(3)
    stats = bn.update(x, codes, generator=g)
    # code 2 had no point: k_elem = 0.9 < 1 -> restarted; codes 0 and 1 keep their EMA means
    assert bn.k_elem.tolist() == pytest.approx([0.9 + 0.3, 0.9 + 0.1, 0.9])
    assert stats["restarted"] == 1 and stats["batch_codes_used"] == 2
    assert torch.allclose(bn.k[0], (0.9 * torch.zeros(2) + 0.1 * torch.tensor([3.0, 3.0])) / 1.2)
    assert torch.allclose(bn.k[1], (0.9 * torch.tensor([100.0, 100.0]) + 0.1 * torch.tensor([99.0, 101.0])) / 1.0)
    # the restarted code is one of the batch's encoder outputs, the one the seeded permutation picks
    assert any(torch.equal(bn.k[2], row) for row in x)
    perm = torch.randperm(4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(bn.k[2], x[perm[2]])
    again = _bottleneck([[0.0, 0.0], [100.0, 100.0], [-100.0, 50.0]], mu=0.9, threshold=1.0)
    again.update(x, codes, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again.k, bn.k)


def test_first_training_batch_initialises_the_codebook_from_encoder_outputs():
    z = torch.arange(24, dtype=torch.float32).reshape(2, 2, 6)  # (B, D, T): 12 vectors of width 2
    vectors = z.permute(0, 2, 1).reshape(-1, 2)
    bn = EMABottleneck(4, 2, mu=0.99)
    bn.init_codebook(vectors, torch.Generator().manual_seed(0))
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))[:4]
    assert torch.equal(bn.k, vectors[perm]) and bn.k_elem.tolist() == [1.0] * 4 and bool(bn.initialised)
    # fewer vectors than codes: the batch is tiled with noise of std 0.01 / sqrt(D)
    few = EMABottleneck(5, 2)
    few.init_codebook(vectors[:2], torch.Generator().manual_seed(0))
    near = torch.cdist(few.k, vectors[:2]).min(1).values
    assert (near < 0.1).all() and (near > 0).all()
    # the training forward initialises on its first batch, then leaves the flag set
    fresh = EMABottleneck(4, 2, mu=0.99)
    assert not bool(fresh.initialised)
    fresh(z, update=True, generator=torch.Generator().manual_seed(0))
    assert bool(fresh.initialised)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(fresh.k, torch.zeros(4, 2))


# -- audio metrics (hand-checked) ---------------------------------------------------------------


def test_spectral_convergence_by_hand():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4096))
    assert am.spectral_convergence_db(x, x) == -math.inf
    assert am.spectral_convergence_db(x, np.zeros_like(x)) == 0.0  # ||S|| / ||S|| = 1
    # a linear STFT: y = x / 2 -> |S(x) - S(y)| = |S(x)| / 2 -> 20 log10(1/2) = -6.02 dB
    assert am.spectral_convergence_db(x, x / 2) == pytest.approx(20 * math.log10(0.5), abs=1e-9)
    assert am.spectral_convergence(x, -x) == pytest.approx(0.0)  # magnitudes only
    assert math.isnan(am.spectral_convergence(np.zeros(512), x[0, :512]))
    # numpy frames == torch.stft(center=True, pad_mode="constant") frames
    from pipeline.models.vqvae import stft_magnitude

    a = am.stft_magnitude(x, n_fft=512, hop=50, window=240)
    b = stft_magnitude(torch.from_numpy(x), 512, 50, 240).numpy()
    assert a.shape == b.shape == (2, 257, 1 + 4096 // 50) and np.allclose(a, b, atol=1e-9)
    # a sine at bin 32 of a 512-point frame peaks there
    s = am.stft_magnitude(np.sin(2 * np.pi * 32 * np.arange(4096) / 512), n_fft=512, hop=256, window=512)
    assert int(np.argmax(s[0, :, 8])) == 32


def test_reconstruction_errors_by_hand():
    x = np.array([[1.0, -1.0, 2.0, 0.0]])
    y = np.array([[0.0, -1.0, 0.0, 0.0]])
    assert am.reconstruction_mse(x, y) == (1 + 0 + 4 + 0) / 4
    assert am.normalised_l2(x, y, data_var=0.5) == 2.5
    with pytest.raises(ValueError):
        am.normalised_l2(x, y, data_var=0.0)


def test_codebook_usage_and_perplexity_by_hand():
    assert am.code_perplexity(np.repeat(np.arange(5), 7), 16) == pytest.approx(5.0)  # uniform over k=5 -> 5
    assert am.code_perplexity([3, 3, 3], 16) == pytest.approx(1.0)
    # p = (1/2, 1/4, 1/4): H = 1.5 ln 2 -> perplexity 2 ** 1.5
    assert am.code_perplexity([0, 0, 1, 2], 4) == pytest.approx(2 ** 1.5)
    assert am.codebook_usage([0, 0, 1, 2], 8) == 3 / 8
    assert am.code_histogram([[1, 1], [0, 3]], 4).tolist() == [1, 2, 0, 1]
    with pytest.raises(ValueError, match="0..3"):
        am.codebook_usage([4], 4)


# -- data: split, crops, downmix ----------------------------------------------------------------


def test_split_by_sha256_of_the_song_id():
    import hashlib

    ids = [hashlib.md5(str(i).encode()).hexdigest() for i in range(400)]
    held = [i for i in ids if heldout_split(i, 0.25) == "heldout"]
    assert 70 < len(held) < 130  # about a quarter
    u = int.from_bytes(hashlib.sha256(held[0].encode()).digest()[:8], "big") / 2.0**64
    assert u < 0.25
    assert all(heldout_split(i, 0.0) == "train" for i in ids)
    assert set(held) <= {i for i in ids if heldout_split(i, 0.5) == "heldout"}  # nested as the fraction grows


def test_load_clips_is_seeded_and_splits_by_song(audio_dir):
    train = fam.read_clips(audio_dir, split="train", heldout_fraction=0.3)
    held = fam.read_clips(audio_dir, split="heldout", heldout_fraction=0.3)
    assert len(train) + len(held) == 10 and len(train) and len(held)
    assert not set(train.ids) & set(held.ids)
    assert all(heldout_split(i, 0.3) == "heldout" for i in held.ids)
    a = fam.load_clips(audio_dir, split="heldout", samples=1024, n=5, seed=1, heldout_fraction=0.3)
    b = fam.load_clips(audio_dir, split="heldout", samples=1024, n=5, seed=1, heldout_fraction=0.3)
    c = fam.load_clips(audio_dir, split="heldout", samples=1024, n=5, seed=2, heldout_fraction=0.3)
    assert a.shape == (5, 1024) and a.dtype == torch.float32 and torch.equal(a, b) and not torch.equal(a, c)
    every = fam.load_clips(audio_dir, split="train", samples=4096, n=None, seed=0, heldout_fraction=0.3)
    assert every.shape == (len(train), 4096)
    # a whole clip is the stored FLAC, as soundfile reads it (pcm / 32768)
    from pipeline.data.audio import AudioClips

    ds = AudioClips(audio_dir)
    first = next(i for i, m in enumerate(ds.meta) if m["id"] == train.ids[0])
    assert torch.equal(every[0], ds[first])
    # crops lie inside the clips: each crop equals a slice of its clip
    for row in a:
        assert any((x.unfold(0, 1024, 1) == row).all(1).any() for x in fam.load_clips(
            audio_dir, split="heldout", samples=4096, n=None, seed=0, heldout_fraction=0.3))


def test_stereo_clips_are_mixed_with_the_seeded_random_weight(stereo_dir):
    from pipeline.audio.downmix import song_rng
    from pipeline.data.audio import AudioClips

    bank = fam.read_clips(stereo_dir, split="train", heldout_fraction=0.0)
    assert len(bank) == 4 and all(p.shape[0] == 2 for p in bank.pcm)
    x = fam.load_clips(stereo_dir, split="train", samples=4096, n=None, seed=7, heldout_fraction=0.0)
    st = AudioClips(stereo_dir, mono=False)
    for j in range(4):
        i = next(k for k, m in enumerate(st.meta) if m["id"] == bank.ids[j])
        m = np.float32(song_rng(7, bank.ids[j], bank.clips[j], 0).uniform())
        lr = st[i]
        assert torch.equal(x[j], m * lr[0] + (np.float32(1) - m) * lr[1])
        assert torch.equal(x[j], AudioClips(stereo_dir, seed=7)[i])  # the loader's own downmix
    # training batches draw their own weight per crop: two steps mix the same clip differently
    b1 = fam.step_batch(bank, step=1, batch_size=8, samples=1024, seed=0)
    assert torch.equal(b1, fam.step_batch(bank, step=1, batch_size=8, samples=1024, seed=0))
    assert not torch.equal(b1, fam.step_batch(bank, step=2, batch_size=8, samples=1024, seed=0))


def test_missing_or_bad_audio_is_a_stage_error(tmp_path):
    with pytest.raises(StageError, match="no audio folder"):
        fam.load_clips(tmp_path / "nothing", split="train", samples=1024, n=2, seed=0, heldout_fraction=0.1)
    (tmp_path / "empty" / "parquet").mkdir(parents=True)
    with pytest.raises(StageError, match="no audio shards"):
        fam.load_clips(tmp_path / "empty", split="train", samples=1024, n=2, seed=0, heldout_fraction=0.1)
    (tmp_path / "bad" / "parquet").mkdir(parents=True)
    (tmp_path / "bad" / "parquet" / "part-0.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(StageError, match="not an audio shard"):
        fam.load_clips(tmp_path / "bad", split="train", samples=1024, n=2, seed=0, heldout_fraction=0.1)
    with pytest.raises(ParamsError, match="'valid'"):
        fam.load_clips(tmp_path, split="valid", samples=1024, n=2, seed=0, heldout_fraction=0.1)


def test_bad_params_echo_the_value():
    for over, text in [({"model": {"hop_lengths": [8, 24]}}, "24 / 8"),
                       ({"train": {"crop_samples": 1000}}, "crop_samples=1000"),
                       ({"heldout_fraction": 1.0}, "heldout_fraction=1.0"),
                       ({"train": {"stft_hop": [64]}}, "stft_hop=[64]"),
                       ({"train": {"valid_every": 3}}, "valid_every=3"),
                       ({"model": {"mu": 1.0}}, "mu=1.0")]:
        with pytest.raises(ParamsError, match=text.replace("[", r"\[").replace("]", r"\]")):
            tiny(**over)
    with pytest.raises(ParamsError, match="unknown key"):
        from_dict(stage.Params, {"model": {"widht": 3}}, section="vqvae")


# -- training, reruns, resume, the interface ----------------------------------------------------


def _weights(path: Path) -> dict:
    return torch.load(path / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_training_reruns_repeat_to_the_last_digit(audio_dir, tmp_path):
    p = tiny()
    a = stage.run_train(audio_dir=audio_dir, out=tmp_path / "a", params=p)
    b = stage.run_train(audio_dir=audio_dir, out=tmp_path / "b", params=p)
    for name in ("metrics.json", "train.json", "config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    hist = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert [h["step"] for h in hist] == [2, 4, 6] and all("valid_loss" in h for h in hist)
    assert hist[-1]["loss"] < hist[0]["loss"]  # it learns
    assert a["steps_run"] == 6 and a["valid_source"] == "heldout" and not a["resumed"]
    assert a["best_valid_loss"] == b["best_valid_loss"] and a["evaluation"] == b["evaluation"]
    assert set(a["evaluation"]) == {"level_0", "level_1", "level_2"}
    assert [a["evaluation"][f"level_{l}"]["hop"] for l in range(3)] == [4, 16, 64]
    assert (tmp_path / "a" / "loss.png").stat().st_size > 1000
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["data_stats"]["data_var"] > 0 and len(cfg["data_stats"]["spec_rms"]) == 2
    other = stage.run_train(audio_dir=audio_dir, out=tmp_path / "c", params=tiny(train={"seed": 6}))
    assert other["final"]["loss"] != a["final"]["loss"]


def test_resume_gives_the_weights_of_an_uninterrupted_run(audio_dir, tmp_path):
    stage.run_train(audio_dir=audio_dir, out=tmp_path / "full", params=tiny())
    stage.run_train(audio_dir=audio_dir, out=tmp_path / "part", params=tiny(train={"steps": 4}))
    resumed = stage.run_train(audio_dir=audio_dir, out=tmp_path / "part", params=tiny())
    assert resumed["resumed"] and resumed["steps_run"] == 6
    wf, wp = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert all(torch.equal(wf[k], wp[k]) for k in wf)  # codebooks (buffers) included
    for name in ("metrics.json", "train.json"):
        assert (tmp_path / "part" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    # a run stopped between two checkpoints (steps=5: last.pt at 4 and 5) resumes as well
    stage.run_train(audio_dir=audio_dir, out=tmp_path / "odd", params=tiny(train={"steps": 5}))
    stage.run_train(audio_dir=audio_dir, out=tmp_path / "odd", params=tiny())
    wo = _weights(tmp_path / "odd")
    assert all(torch.equal(wf[k], wo[k]) for k in wf)
    # another model size does not resume from those checkpoints
    fresh = stage.run_train(audio_dir=audio_dir, out=tmp_path / "part", params=tiny(model={"width": 6}))
    assert not fresh["resumed"]


def test_load_vqvae_and_evaluate(audio_dir, tmp_path):
    with pytest.raises(StageError, match="no trained VQ-VAE"):
        fam.load_vqvae(tmp_path / "none")
    p = tiny()
    stage.run_train(audio_dir=audio_dir, out=tmp_path / "m", params=p)
    model = fam.load_vqvae(tmp_path / "m")
    assert not model.training and model.hop_lengths == (4, 16, 64) and model.codebook_size == 16 and model.levels == 3
    best = torch.load(tmp_path / "m" / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    clips = fam.load_clips(audio_dir, split="heldout", samples=1024, n=4, seed=0, heldout_fraction=0.3)
    r1 = fam.evaluate_vqvae(model, clips)
    assert r1 == fam.evaluate_vqvae(fam.load_vqvae(tmp_path / "m"), clips)  # deterministic
    for l, hop in enumerate((4, 16, 64)):
        e = r1[f"level_{l}"]
        assert e["hop"] == hop and e["clips"] == 4 and e["samples"] == 1024
        codes = model.encode(clips)[l]
        y = model.decode(codes, l).double().numpy()
        x = clips.double().numpy()
        assert e["recon_mse"] == pytest.approx(float(np.mean((x - y) ** 2)))
        assert e["recon_l2_normalised"] == pytest.approx(e["recon_mse"] / float(model.data_var))
        assert e["codes_used"] == len(set(codes.flatten().tolist()))
        assert e["codebook_usage"] == e["codes_used"] / 16 and 1.0 <= e["perplexity"] <= e["codes_used"]
        assert e["spectral_convergence_db"] == pytest.approx(am.spectral_convergence_db(x, y))
    # a damaged checkpoint is a clear error
    (tmp_path / "m" / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    from pipeline.errors import UnsafeFileError

    with pytest.raises(UnsafeFileError, match="not a readable torch checkpoint"):
        fam.load_vqvae(tmp_path / "m")


def test_cli_train_vqvae(audio_dir, tmp_path, monkeypatch, capsys):
    from pipeline.cli import app

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"vqvae": section_doc("vqvae", **TINY)}))
    runner = CliRunner()
    res = runner.invoke(app, ["train", "vqvae", "--audio-dir", str(audio_dir), "--out", str(tmp_path / "models" / "vqvae"),
                              "--params", str(params), "--fresh", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "vqvae: 6 steps" in res.output and "hop 64" in res.output
    out = tmp_path / "models" / "vqvae"
    assert {p.name for p in out.iterdir()} >= {"checkpoints", "config.json", "loss.png", "train.json", "metrics.json"}
    # mistakes: one `error:` line on stderr, exit 1, the bad value echoed, no traceback
    from pipeline.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"vqvae": section_doc("vqvae", train={"crop_samples": 1000})}))
    for args, text in [(["--params", str(bad)], "crop_samples=1000"),
                       (["--params", str(params), "--audio-dir", str(tmp_path / "nope")], "no audio folder"),
                       (["--params", str(params), "--audio-dir", str(audio_dir), "--device", "tpu"], "device='tpu'")]:
        monkeypatch.setattr(sys, "argv", ["pipeline", "train", "vqvae", "--out", str(tmp_path / "m2"), *args])
        with pytest.raises(SystemExit) as exc:
            main()
        err = capsys.readouterr().err
        assert exc.value.code == 1 and err.startswith("error:") and text in err and err.count("\n") == 1, err
