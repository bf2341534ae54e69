"""Jukebox prior, upsamplers, sampling and evaluation (issue items 2-6) on a tiny VQ-VAE trained here
from synthetic recordings: bits per token by hand, window starts by hand, the windowed sampler
re-reads the previous window's tail (checked against the plain forward pass), primed sampling keeps
the prompt, seeds repeat, training learns and resumes exactly, and the CLI runs end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from pipeline.config import from_dict, load_params, section_doc
from pipeline.errors import ParamsError, PipelineError, StageError
from pipeline.models.jukebox import JukeboxPrior, PriorConfig
from pipeline.names import JUKEBOX_MODES
from pipeline.training import jukebox as fam
from pipeline.stages import ingest_audio, vqvae
from pipeline.stages import jukebox as stage

SR = 44100

TINY = {
    "prior": {"width": 16, "layers": 3, "heads": 2, "context": 32, "blocksize": 8},
    "upsampler": {"width": 16, "layers": 2, "heads": 2, "context": 32, "blocksize": 8, "cond_depth": 1},
    "train": {"prior_steps": 6, "upsampler_steps": 4, "batch_size": 4, "clips": 6, "clip_samples": 4096,
              "threads": 1, "warmup": 2, "checkpoint_every": 3},
    "sample": {"n": 2, "seconds": 0.15, "prompt_seconds": 0.05},
    "evaluate": {"clips": 3, "clip_samples": 4096},
}
TINY_VQVAE = {"heldout_fraction": 0.3, "model": {"width": 8, "depth": 1, "codebook_size": 32, "code_width": 8},
              "train": {"crop_samples": 4096, "batch_size": 2, "steps": 4, "log_every": 2, "valid_every": 2,
                        "valid_crops": 2, "stft_n_fft": [256], "stft_hop": [64], "stft_window": [256], "threads": 1,
                        "lr": 3e-4}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def tiny(**over) -> stage.Params:
    doc = json.loads(json.dumps(TINY))
    for k, v in over.items():
        doc[k].update(v)
    return load_params(stage.Params, **doc)


def _recording(rng: np.random.Generator, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    x = sum(0.2 * np.sin(2 * np.pi * f * t) for f in rng.uniform(110, 880, 3))
    gate = (1 + np.sign(np.sin(2 * np.pi * rng.uniform(1, 4) * t))) / 2
    return (x * gate).astype(np.float32)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("jukebox_audio")
    src = root / "rec"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        sf.write(src / f"s{i:02d}.wav", _recording(rng), SR)
    ingest_audio.run(source=src, out=root / "audio", workers=1,
                     params=ingest_audio.Params(clip_samples=16384, downmix="mean"))
    return root / "audio"


@pytest.fixture(scope="module")
def vqvae_dir(audio_dir) -> Path:
    out = audio_dir.parent / "vqvae"
    vqvae.run_train(audio_dir=audio_dir, out=out, params=load_params(vqvae.Params, **TINY_VQVAE))
    return out


@pytest.fixture(scope="module")
def trained(audio_dir, vqvae_dir) -> Path:
    """Prior and both upsamplers trained with TINY (a few steps each)."""
    out = audio_dir.parent / "jukebox"
    p = tiny()
    stage.run_train_prior(vqvae_dir=vqvae_dir, audio_dir=audio_dir, out=out, params=p)
    for level in (0, 1):
        stage.run_train_upsampler(level=level, vqvae_dir=vqvae_dir, audio_dir=audio_dir, out=out, params=p)
    return out


def _model(seed: int = 0, **over) -> JukeboxPrior:
    torch.manual_seed(seed)
    cfg = dict(bins=9, width=16, layers=3, heads=2, context=16, blocksize=4)
    cfg.update(over)
    return JukeboxPrior(PriorConfig(**cfg)).eval()


# ---------------------------------------------------------------------------------------------
# bits per token


def test_bits_per_token_by_hand():
    assert float(fam.bits_per_token(torch.zeros(3, 5, 32), torch.randint(0, 32, (3, 5)))) == pytest.approx(5.0, abs=1e-6)
    # p = (2/4, 1/4, 1/4): target 0 costs 1 bit, target 1 costs 2 bits -> mean 1.5
    logits = torch.log(torch.tensor([[2.0, 1.0, 1.0], [2.0, 1.0, 1.0]]))
    assert float(fam.bits_per_token(logits, torch.tensor([0, 1]))) == pytest.approx(1.5, abs=1e-6)


def test_a_uniform_model_costs_log2_k_bits():
    model = _model(bins=13)
    with torch.no_grad():
        model.x_emb.weight.zero_()  # the output layer shares it: every logit is 0
    codes = np.random.default_rng(0).integers(0, 13, (3, 40))
    ev = fam.evaluate_bits(model, codes)
    assert ev["windows"] == 6 and ev["tokens"] == 96  # two whole windows of 16 per row, the tails left out
    assert ev["bits_per_token"] == pytest.approx(math.log2(13), abs=1e-5)


# ---------------------------------------------------------------------------------------------
# sampling


def test_window_starts_and_hops_by_hand():
    assert fam.get_starts(10, 4, 2) == [0, 2, 4, 6]
    assert fam.get_starts(9, 4, 2) == [0, 2, 4, 5]  # the last window moves back to end at 9
    assert fam.get_starts(3, 4, 2) == [0]
    assert fam.hop_length(512, 0.5) == 256
    assert fam.hop_length(30, 0.5, 4) == 12  # rounded down to a multiple of the hop ratio
    assert fam.hop_length(8, 0.1, 4) == 4
    with pytest.raises(ValueError, match="hop_fraction=1.5"):
        fam.hop_length(8, 1.5)


def _greedy_next(model: JukeboxPrior, seq: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    """The argmax code after ``seq`` by the plain forward pass (no cache)."""
    x = torch.cat([seq, torch.zeros(seq.shape[0], 1, dtype=torch.int64)], dim=1)
    return model(x, cond)[:, -1].argmax(-1)


@pytest.mark.parametrize("upsampler", [False, True])
def test_windowed_sampler_goes_past_the_context_and_reuses_the_previous_tail(upsampler):
    r = 2 if upsampler else 1
    model = _model(seed=1, cond_ratio=r, cond_depth=1) if upsampler else _model(seed=1)
    total, hop = 40, 8
    cond = torch.randint(0, 9, (2, total // r), generator=torch.Generator().manual_seed(5)) if upsampler else None
    codes, windows = fam.sample_level(model, torch.zeros(2, 0, dtype=torch.int64), total, hop=hop, cond_codes=cond,
                                      temperature=0.0)
    assert codes.shape == (2, total) and total > model.cfg.context
    assert [(w["start"], w["end"], w["kept"], w["new"]) for w in windows] == \
        [(0, 16, 0, 16), (8, 24, 8, 8), (16, 32, 8, 8), (24, 40, 8, 8)]  # kept = context - hop
    # every new code is the greedy choice given the window's codes so far, starting from the
    # previous window's tail (window-relative positions, the window's upper codes)
    for w in windows[1:]:
        s = w["start"]
        for t in range(s + w["kept"], w["end"]):
            c = cond[:, s // r: w["end"] // r] if upsampler else None  # the whole window's upper codes
            assert torch.equal(_greedy_next(model, codes[:, s:t], c), codes[:, t])
    # the same window from the beginning of the piece (not from the tail) would differ
    assert not torch.equal(codes[:, 16:24], codes[:, 0:8])


def test_primed_sampling_keeps_the_prompt_and_seeds_repeat():
    prior = _model(seed=2)
    ups = _model(seed=3, cond_ratio=2, cond_depth=1)
    g = torch.Generator().manual_seed(9)
    prompt = [torch.randint(0, 9, (2, 12), generator=g), torch.randint(0, 9, (2, 6), generator=g)]

    def run(seed, prompt=None):
        return fam.sample_hierarchy([ups, prior], n=2, top_tokens=20, hop_fractions=[0.5, 0.5], temperature=1.0,
                                    generator=torch.Generator().manual_seed(seed), prompt=prompt)

    codes, windows = run(4, prompt)
    assert [c.shape for c in codes] == [(2, 40), (2, 20)]
    assert torch.equal(codes[0][:, :12], prompt[0]) and torch.equal(codes[1][:, :6], prompt[1])
    assert windows[1][0]["kept"] == 6 and windows[0][0]["kept"] == 12  # windows start from the prompt
    again, _ = run(4, prompt)
    assert all(torch.equal(a, b) for a, b in zip(codes, again))
    other, _ = run(5, prompt)
    assert not torch.equal(codes[0], other[0])
    ancestral, aw = run(4)
    assert [c.shape for c in ancestral] == [(2, 40), (2, 20)] and aw[1][0]["kept"] == 0


def test_temperature_zero_is_argmax_and_draws_use_the_generator():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]])
    assert fam.draw(logits, 0.0, None).tolist() == [1, 0]
    a = [fam.draw(logits, 1.0, torch.Generator().manual_seed(1)).tolist() for _ in range(2)]
    assert a[0] == a[1]
    cold = fam.draw(logits.repeat(200, 1), 0.05, torch.Generator().manual_seed(1))
    assert (cold.view(200, 2) == torch.tensor([1, 0])).all()  # near-zero temperature: the argmax


# ---------------------------------------------------------------------------------------------
# training


def test_training_learns_a_periodic_sequence_and_resumes_exactly(tmp_path):
    base = np.arange(64) % 6  # a cycle of 6 codes, every clip a shift of it
    codes = np.stack([np.roll(base, k) for k in range(8)])
    cfg = fam.TrainConfig(steps=30, batch_size=8, lr=3e-3, warmup=5, seed=3, checkpoint_every=10)

    def model():
        torch.manual_seed(0)
        return JukeboxPrior(PriorConfig(bins=8, width=32, layers=2, heads=2, context=16, blocksize=4,
                                        pattern=("row", "column")))

    a = fam.train(model(), codes, None, cfg=cfg, out=tmp_path / "a")
    hist = a["history"]
    assert hist[0]["train_bits"] > 2.5 and np.mean([h["train_bits"] for h in hist[-5:]]) < 1.0
    ev = fam.evaluate_bits(JukeboxPrior(model().cfg), codes)
    assert ev["bits_per_token"] > 2.5  # an untrained model does not know the cycle
    # 20 steps, then 10 more from the checkpoint == 30 in one go
    fam.train(model(), codes, None, cfg=fam.TrainConfig(**{**cfg.__dict__, "steps": 20}), out=tmp_path / "b")
    b = fam.train(model(), codes, None, cfg=cfg, out=tmp_path / "b")
    assert b["resumed_at"] == 20 and b["steps_run"] == 10
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()
    sa = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["model"]
    sb = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_crops_align_the_upper_codes():
    rng = np.random.default_rng(0)
    lower = np.arange(2 * 64).reshape(2, 64)
    upper = lower[:, ::4] // 4 + 1000  # upper code j covers lower codes 4j..4j+3
    x, c = fam.crop_batch(lower, upper, context=16, ratio=4, batch=5, rng=rng)
    assert x.shape == (5, 16) and c.shape == (5, 4)
    assert torch.equal(c, x[:, ::4] // 4 + 1000)  # starts on multiples of the ratio


# ---------------------------------------------------------------------------------------------
# stages


def test_train_stage_outputs_and_rerun_repeat(audio_dir, vqvae_dir, trained, tmp_path):
    doc = json.loads((trained / "prior" / "train.json").read_text())
    assert doc["level"] == 2 and doc["hop_length"] == 128 and doc["codes_per_clip"] == 32 and doc["steps"] == 6
    assert doc["attention"] == ["row", "column", "prev_row"] and doc["uniform_bits"] == 5.0
    rows = json.loads((trained / "prior" / "metrics.json").read_text())
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    up = json.loads((trained / "upsampler_0" / "train.json").read_text())
    assert up["cond_ratio"] == 4 and up["codes_per_clip"] == 512
    assert (trained / "prior" / "loss.png").stat().st_size > 0
    stage.run_train_prior(vqvae_dir=vqvae_dir, audio_dir=audio_dir, out=tmp_path, params=tiny())
    assert (tmp_path / "prior" / "metrics.json").read_bytes() == (trained / "prior" / "metrics.json").read_bytes()


def test_sample_stage_writes_audio_and_repeats(audio_dir, vqvae_dir, trained, tmp_path):
    import shutil

    p = tiny()
    kw = dict(vqvae_dir=vqvae_dir, audio_dir=audio_dir, params=p)
    s = stage.run_sample(mode="windowed", out=trained, **kw)
    out = trained / "samples" / "windowed"
    doc = json.loads((out / "samples.json").read_text())
    top = doc["levels"][2]
    assert top["codes"] == round(0.15 * SR / 128) == 52 and len(top["windows"]) == 3 and top["codes"] > 32
    assert s["windows"] == [len(lv["windows"]) for lv in doc["levels"]]
    for lvl in range(3):
        x, sr = sf.read(out / f"level_{lvl}" / "sample_01.wav")
        assert sr == SR and len(x) == 52 * 128
        assert (out / f"level_{lvl}" / "sample_01.png").stat().st_size > 0
    # same seed, params and models -> the same bytes
    copy = tmp_path / "models"
    shutil.copytree(trained, copy, ignore=shutil.ignore_patterns("samples"))
    stage.run_sample(mode="windowed", out=copy, **kw)
    for name in ("codes.npz", "samples.json", "level_0/sample_00.wav", "level_2/sample_01.png"):
        assert (copy / "samples" / "windowed" / name).read_bytes() == (out / name).read_bytes()
    # ancestral: one top-level window
    stage.run_sample(mode="ancestral", out=copy, **kw)
    anc = json.loads((copy / "samples" / "ancestral" / "samples.json").read_text())
    assert anc["levels"][2]["codes"] == 32 and anc["levels"][0]["codes"] == 512


def test_primed_from_a_prompt_file_keeps_its_codes(audio_dir, vqvae_dir, trained, tmp_path):
    from pipeline.training.vqvae import load_vqvae

    wav = tmp_path / "prompt.wav"
    sf.write(wav, _recording(np.random.default_rng(7), 0.2)[::2], SR // 2)  # 22.05 kHz: resampled
    p = tiny()
    stage.run_sample(mode="primed", vqvae_dir=vqvae_dir, audio_dir=audio_dir, out=trained, params=p, prompt=wav)
    out = trained / "samples" / "primed"
    doc = json.loads((out / "samples.json").read_text())
    p_samples = int(0.05 * SR) // 128 * 128
    assert doc["prompt"] == {"source": "file", "file": "prompt.wav", "samples": p_samples}
    prompt = stage.read_prompt(wav, samples=p_samples, sr=SR)
    vq = load_vqvae(vqvae_dir)
    want = vq.encode(torch.from_numpy(prompt)[None])
    codes = np.load(out / "codes.npz")
    for lvl in range(3):
        n = p_samples // vq.hop_lengths[lvl]
        assert doc["levels"][lvl]["prompt_codes"] == n
        assert (codes[f"level_{lvl}"][:, :n] == want[lvl].numpy()).all()
        assert codes[f"level_{lvl}"].shape[1] == 52 * 128 // vq.hop_lengths[lvl]
    # default: held-out clips as prompts
    stage.run_sample(mode="primed", vqvae_dir=vqvae_dir, audio_dir=audio_dir, out=trained, params=p)
    assert json.loads((out / "samples.json").read_text())["prompt"]["source"] == "heldout"
    assert (out / "prompt_01.wav").exists()


def test_evaluate_stage_report(audio_dir, vqvae_dir, trained):
    r = stage.run_evaluate(vqvae_dir=vqvae_dir, audio_dir=audio_dir, out=trained, params=tiny())
    assert [m["name"] for m in r["priors"]] == ["prior", "upsampler_1", "upsampler_0"]
    for m in r["priors"]:
        assert m["uniform_bits"] == 5.0 and 0 < m["heldout_bits_per_token"] < 8
        assert m["heldout_tokens"] == 3 * 32 * (4 if m["level"] == 1 else 16 if m["level"] == 0 else 1)
    assert set(r["vqvae"]["levels"]) == {"level_0", "level_1", "level_2"}
    saved = json.loads((trained / "evaluation.json").read_text())
    assert saved == r
    first = (trained / "evaluation.json").read_bytes()
    stage.run_evaluate(vqvae_dir=vqvae_dir, audio_dir=audio_dir, out=trained, params=tiny())
    assert (trained / "evaluation.json").read_bytes() == first  # same seed -> the same numbers
    md = (trained / "evaluation.md").read_text()
    assert "spectral_convergence_db" in md and "| prior | 2 | 128 | 32 | row,column,prev_row |" in md


def test_bad_inputs_are_pipeline_errors(audio_dir, vqvae_dir, trained, tmp_path):
    kw = dict(vqvae_dir=vqvae_dir, audio_dir=audio_dir)
    with pytest.raises(ParamsError, match="level=2 must be one of 0, 1"):
        stage.run_train_upsampler(level=2, out=tmp_path, params=tiny(), **kw)
    with pytest.raises(ParamsError, match="mode='beam'"):
        stage.run_sample(mode="beam", out=trained, params=tiny(), **kw)
    with pytest.raises(StageError, match="no trained prior"):
        stage.run_sample(mode="ancestral", out=tmp_path / "none", params=tiny(), **kw)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....not a wave")
    with pytest.raises(StageError, match="junk.wav.*not a readable audio file"):
        stage.run_sample(mode="primed", out=trained, params=tiny(), prompt=junk, **kw)
    with pytest.raises(StageError, match="missing.wav'.*no such file"):
        stage.run_sample(mode="primed", out=trained, params=tiny(), prompt=tmp_path / "missing.wav", **kw)
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained, broken, ignore=shutil.ignore_patterns("samples"))
    (broken / "prior" / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(PipelineError, match="last.pt"):
        stage.run_sample(mode="ancestral", out=broken, params=tiny(), **kw)
    shutil.copy(trained / "upsampler_0" / "checkpoints" / "last.pt", broken / "prior" / "checkpoints" / "last.pt")
    with pytest.raises(StageError, match="weights do not fit"):
        stage.run_sample(mode="ancestral", out=broken, params=tiny(), **kw)
    with pytest.raises(ParamsError, match=r"clip_samples=4096 gives 32 codes at level 2 .hop 128., fewer than jukebox.prior.context=64"):
        stage.run_train_prior(out=tmp_path, params=tiny(prior={"context": 64}), **kw)
    with pytest.raises(ParamsError, match=r"pattern=\['row', 'diag'\]"):
        tiny(prior={"pattern": ["row", "diag"]})
    with pytest.raises(ParamsError, match="jukebox.sample.hop_fraction=0.0"):
        tiny(sample={"hop_fraction": 0.0})
    with pytest.raises(ParamsError, match="unknown key"):
        from_dict(stage.Params, {"prior": {"depth": 3}}, section="jukebox")


@pytest.mark.slow
def test_cli_end_to_end(audio_dir, vqvae_dir, tmp_path, monkeypatch):
    from pipeline.cli import app

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"jukebox": section_doc("jukebox", **TINY)}))
    common = ["--vqvae-dir", str(vqvae_dir), "--audio-dir", str(audio_dir), "--out", str(tmp_path / "models" / "jukebox"),
              "--params", str(params)]
    runner = CliRunner()
    for cmd in (["train", "jukebox"], ["train", "jukebox", "--part", "upsampler", "--level", "0"],
                ["train", "jukebox", "--part", "upsampler", "--level", "1"],
                ["sample", "jukebox", "--mode", "ancestral"], ["sample", "jukebox", "--mode", "windowed"],
                ["sample", "jukebox", "--mode", "primed"], ["evaluate", "jukebox"]):
        res = runner.invoke(app, cmd + common)
        assert res.exit_code == 0, (cmd, res.output)
    root = tmp_path / "models" / "jukebox"
    for mode in JUKEBOX_MODES:
        assert (root / "samples" / mode / "level_0" / "sample_00.wav").exists()
    assert json.loads((root / "evaluation.json").read_text())["priors"][0]["name"] == "prior"
    # a bad value: one line, exit 1 (through main(), as the console script)
    import subprocess
    import sys

    params.write_text(yaml.safe_dump({"jukebox": section_doc("jukebox", **{**TINY, "sample": {"temperature": -1}})}))
    proc = subprocess.run([sys.executable, "-c", "from pipeline.cli import main; main()", "sample", "jukebox", *common],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: jukebox.sample.temperature=-1.0 must be >= 0 (0: greedy)"]


@pytest.mark.parametrize("n", [5, 19])  # one partial chunk; several chunks of 8 and a tail
def test_training_codes_on_disk_equal_the_in_memory_encoding(audio_dir, vqvae_dir, tmp_path, n):
    """The prior/upsampler stages encode their training crops a chunk at a time into memory-mapped
    files (memory flat in train.clips): the same codes as encoding every crop in memory."""
    vq = stage._vqvae(vqvae_dir, "cpu")
    meta = stage.vqvae_meta(vqvae_dir)
    want = stage.encode(vq, stage._clips(audio_dir, split="train", samples=4096, n=n, seed=3, meta=meta))
    got = stage.encode_to_disk(vq, audio_dir, split="train", samples=4096, n=n, seed=3, meta=meta, folder=tmp_path)
    assert [type(g) for g in got] == [np.memmap] * vq.levels
    assert [g.dtype for g in got] == [np.int16] * vq.levels  # the codebook fits: 2 bytes per code
    for w, g in zip(want, got):
        assert w.shape == g.shape and np.array_equal(w, g)
