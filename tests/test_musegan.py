"""MuseGAN family: the six variants' shapes and structure, the gradient penalty by hand, WGAN-GP
runs that repeat and resume to the last bit, sampling to NPZ/MIDI/PNG (accompaniment for the
track-conditional model), the evaluation table, and the CLI end to end. Tiny models on small
synthetic phrase sets made here (no ../shared, no datasets/ needed)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import torch
import yaml
from torch.nn import functional as F
from typer.testing import CliRunner

from pipeline.config import from_dict, load_params, section_doc
from pipeline.errors import ParamsError, PipelineError, StageError
from pipeline.formats.phrase_shards import decode_phrases, encode_phrases, write_phrase_npz
from pipeline.models import musegan as M
from pipeline.names import MUSEGAN_VARIANTS
from pipeline.training import musegan as fam
from pipeline.stages import musegan as stage

TRACKS = ("Drums", "Piano", "Guitar", "Bass", "Strings")

TINY = {
    "model": {"z_dim": 8, "width": 0.03125, "condition_track": "Piano"},
    "train": {"steps": 4, "batch_size": 4, "lr": 0.001, "n_critic": 2, "seed": 5, "threads": 1,
              "checkpoint_every": 2},
    "sample": {"n": 6, "files": 2, "tempo": 120.0, "seed": 3},
    "evaluate": {"data_phrases": 0},
}


def tiny(**over) -> stage.Params:
    doc = json.loads(json.dumps(TINY))
    for k, v in over.items():
        doc[k].update(v)
    return load_params(stage.Params, **doc)


def tiny_cfg(variant: str, steps: int = 48, **kw) -> M.MuseGANConfig:
    return M.MuseGANConfig(variant=variant, steps_per_bar=steps, z_dim=8, width=0.03125, **kw)


def make_phrases(root: Path, *, steps: int = 48, counts=(12, 3, 3), seed: int = 0) -> Path:
    """A phrase folder as build_phrases writes it: sparse held notes on every track; two songs
    per split (ids a0.../a1... in train, c0.../c1... in valid, d0.../d1... in test), phrases at bars 0, 4, 8..."""
    rng = np.random.default_rng(seed)
    (root / "npz").mkdir(parents=True)
    for split, n, letter in zip(("train", "valid", "test"), counts, "acd"):
        x = np.zeros((n, 4, steps, 84, 5), bool)
        for i in range(n):
            for t in range(5):
                for b in range(4):
                    for _ in range(2):
                        p = int(rng.integers(20, 60))
                        s0 = int(rng.integers(0, steps - 6))
                        x[i, b, s0:s0 + int(rng.integers(1, 7)), p, t] = True
        ids = np.array([f"{letter}{i % 2:031x}" for i in range(n)])
        first = np.array([4 * (i // 2) for i in range(n)], np.int32)
        write_phrase_npz(root / "npz" / f"{split}.npz", *encode_phrases(x), ids=ids, first_bar=first)
    (root / "schema.json").write_text(json.dumps({"track_order": list(TRACKS), "lowest_pitch": 24}))
    return root


@pytest.fixture
def phrases(tmp_path) -> Path:
    return make_phrases(tmp_path / "phrases")


# ---------------------------------------------------------------------------------------------
# models


@pytest.mark.parametrize("steps", [48, 96])
@pytest.mark.parametrize("variant", MUSEGAN_VARIANTS)
def test_every_variant_makes_phrases_in_the_tanh_range(variant, steps):
    torch.manual_seed(0)
    cfg = tiny_cfg(variant, steps)
    gen, critic = M.build(cfg)
    z = gen.sample_latents(3, torch.Generator().manual_seed(1))
    cond = (torch.rand(3, 4, steps, 84) < 0.05).float() * 2 - 1 if variant == "track_conditional" else None
    y = gen(z, cond).detach()
    assert y.shape == (3, 4, steps, 84, 5)  # (batch, bars, steps, pitches, tracks)
    free = [k for k in range(5) if not (variant == "track_conditional" and k == cfg.condition_track)]
    g = y[..., free]
    assert float(g.min()) >= -1.0 and float(g.max()) <= 1.0  # tanh
    inside = (g.abs() < 0.99).float().mean()
    assert 0.1 < float(inside) and float(g.min()) < 0 < float(g.max())  # real-valued, both signs
    assert critic(y).shape == (3, 5 if variant == "jamming" else 1)


def test_latents_follow_the_paper():
    shapes = {v: M.MuseGANGenerator(tiny_cfg(v)).latent_shapes() for v in MUSEGAN_VARIANTS}
    assert shapes["jamming"] == {"z_i": (4, 5, 8)}  # own z per track (and bar)
    assert shapes["composer"] == {"z": (4, 8)}  # one shared z
    assert shapes["hybrid"] == {"z": (4, 4), "z_i": (4, 5, 4)}  # shared + per track
    assert shapes["temporal"] == {"z": (4,), "z_t": (4,)}  # G_temp(z_t) per bar + time-independent z
    assert shapes["musegan"] == {"z": (2,), "z_t": (2,), "z_i": (5, 2), "z_it": (5, 2)}
    assert shapes["track_conditional"] == {"z": (2,), "z_t": (2,), "z_i": (4, 2), "z_it": (4, 2)}


def test_paper_sizes_at_width_one():
    gen = M.MuseGANGenerator(M.MuseGANConfig(variant="musegan"))
    g = gen.bars[0]
    assert g.dense.in_features == 128 and g.dense.out_features == 2 * 512
    assert [layer.c_out for layer in g.time] == [512, 256, 256, 128] and [layer.f for layer in g.time] == [2, 2, 2, 3]
    assert (g.pitch.c_out, g.pitch.f, g.out.c_out, g.out.f) == (64, 7, 1, 12)
    assert len(gen.bars) == 5 and len(gen.temporal_i) == 5
    assert gen.temporal.layers[0].out_channels == 1024 and gen.temporal.layers[1].out_channels == 32
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in M.MuseGANCritic(gen.cfg).modules())
    g96 = M.MuseGANGenerator(M.MuseGANConfig(variant="composer", steps_per_bar=96)).bars[0]
    assert [layer.c_out for layer in g96.time] == [512, 256, 256, 128, 128]  # the official 96-step layout
    assert M.time_factors(96) == (2, 2, 2, 2, 3)
    with pytest.raises(ValueError, match="steps_per_bar=40"):
        M.time_factors(40)
    small = M.MuseGANGenerator(M.MuseGANConfig(variant="composer", width=0.125)).bars[0]
    assert [layer.c_out for layer in small.time] == [64, 32, 32, 16]


def test_patch_layers_are_the_strided_convolutions():
    torch.manual_seed(0)
    x = torch.randn(2, 12, 3)  # (N, L, C)
    down = M.Down(3, 4, 3)
    w = down.linear.weight.view(4, 3, 3).permute(0, 2, 1)[..., None]  # (out, in, f, 1)
    ref = F.conv2d(x.transpose(1, 2)[..., None], w, down.linear.bias, stride=(3, 1))[..., 0].transpose(1, 2)
    torch.testing.assert_close(down(x), ref)
    up = M.Up(3, 4, 2)
    torch.nn.init.normal_(up.bias)
    w = up.linear.weight.view(2, 4, 3).permute(2, 1, 0)[..., None]  # (in, out, f, 1)
    ref = F.conv_transpose2d(x.transpose(1, 2)[..., None], w, up.bias, stride=(2, 1))[..., 0].transpose(1, 2)
    torch.testing.assert_close(up(x), ref)


def test_jamming_has_a_generator_a_critic_and_a_z_per_track():
    torch.manual_seed(0)
    gen, critic = M.build(tiny_cfg("jamming"))
    assert len(gen.bars) == 5 and critic.groups == ((0,), (1,), (2,), (3,), (4,))
    assert critic.critics.dense.weight.shape[0] == 5  # five weight sets, one per critic
    gen.eval()
    z = gen.sample_latents(2, torch.Generator().manual_seed(0))
    y = gen(z)
    z2 = {"z_i": z["z_i"].clone()}
    z2["z_i"][:, :, 2] += 1.0  # only track 2's random vector
    y2 = gen(z2)
    changed = (y2 - y).abs().amax(dim=(0, 1, 2, 3))
    assert changed[2] > 0 and torch.all(changed[[0, 1, 3, 4]] == 0)
    s, x = critic(y), y.clone()
    x[..., 3] = -x[..., 3]  # only track 3
    ds = (critic(x) - s).abs().amax(0)
    assert ds[3] > 0 and torch.all(ds[[0, 1, 2, 4]] == 0)
    hybrid = M.MuseGANGenerator(tiny_cfg("hybrid")).eval()
    zh = hybrid.sample_latents(2, torch.Generator().manual_seed(0))
    zh2 = {"z": zh["z"] + 1.0, "z_i": zh["z_i"]}  # the shared vector moves every track
    assert torch.all((hybrid(zh2) - hybrid(zh)).abs().amax(dim=(0, 1, 2, 3)) > 0)


def test_track_conditional_keeps_the_given_track():
    torch.manual_seed(0)
    cfg = tiny_cfg("track_conditional", condition_track=3)
    gen = M.MuseGANGenerator(cfg).eval()
    z = gen.sample_latents(2, torch.Generator().manual_seed(0))
    cond = (torch.rand(2, 4, 48, 84) < 0.05).float() * 2 - 1
    y = gen(z, cond)
    assert torch.equal(y[..., 3], cond)
    other = cond.clone()
    other[:, :, :24] = 1.0
    y2 = gen(z, other)
    assert torch.equal(y2[..., 3], other) and (y2[..., [0, 1, 2, 4]] - y[..., [0, 1, 2, 4]]).abs().max() > 0
    with pytest.raises(ValueError, match="needs the given track"):
        gen(z)


# ---------------------------------------------------------------------------------------------
# WGAN-GP


class LinearCritic(torch.nn.Module):
    """score_k(x) = <w_k, x[..., group k]> + 1: its gradient is w_k everywhere."""

    def __init__(self, w: torch.Tensor, groups) -> None:
        super().__init__()
        self.w, self.groups = w, groups

    def forward(self, x):
        return torch.stack([(x[..., list(g)] * self.w[..., list(g)]).flatten(1).sum(1) + 1 for g in self.groups], 1)


def test_gradient_penalty_by_hand():
    real, fake = torch.zeros(3, 1, 2, 2, 2), torch.ones(3, 1, 2, 2, 2)
    alpha = torch.tensor([0.0, 0.5, 1.0])
    w = torch.zeros(1, 2, 2, 2)
    w[0, 0, 0, 0], w[0, 1, 1, 0] = 3.0, 4.0  # track 0: |w| = 5
    w[0, 0, 1, 1] = 0.5  # track 1: |w| = 0.5
    one = ((0, 1),)
    # one critic: 10 * (sqrt(9 + 16 + 0.25) - 1)^2, the same for every alpha
    expected = 10 * (np.sqrt(25.25 + 1e-8) - 1) ** 2
    gp = fam.gradient_penalty(LinearCritic(w, one), real, fake, alpha, 10.0, one)
    assert float(gp) == pytest.approx(expected, rel=1e-6)
    assert float(fam.gradient_penalty(LinearCritic(w, one), real, fake, alpha, 10.0, None)) == pytest.approx(expected, rel=1e-6)
    # one critic per track (jamming): 10 * ((5 - 1)^2 + (0.5 - 1)^2) = 162.5
    per = ((0,), (1,))
    gp = fam.gradient_penalty(LinearCritic(w, per), real, fake, alpha, 10.0, per)
    assert float(gp) == pytest.approx(162.5, rel=1e-6)
    unit = torch.zeros(1, 2, 2, 2)
    unit[0, 0, 0, 0] = 1.0
    assert float(fam.gradient_penalty(LinearCritic(unit, one), real, fake, alpha, 10.0, one)) < 1e-12


def test_batches_are_epochs_without_replacement():
    seen = np.concatenate([fam.batch_indices(9, c, 10, 3) for c in range(3)])
    assert sorted(seen.tolist()) == sorted(set(seen.tolist())) and len(seen) == 9  # one epoch: 3 batches of 3
    assert not np.array_equal(fam.batch_indices(9, 3, 10, 3), fam.batch_indices(9, 0, 10, 3))  # next epoch reshuffled
    assert np.array_equal(fam.batch_indices(9, 5, 10, 3), fam.batch_indices(9, 5, 10, 3))


def test_critic_schedules_count_the_official_v1_updates():
    # fixed: n_critic at every step
    assert [fam.critic_updates(s, 5) for s in (1, 2, 25, 26, 501)] == [5] * 5
    assert fam.critic_updates_before(7, 3) == 18
    # v1 (musegan/core.py at be3e348): 100 while the 0-based counter is < 25 or a multiple of 500, else 5
    v1 = [fam.critic_updates(s, 5, "v1") for s in range(1, 1003)]
    assert v1[:25] == [100] * 25 and v1[25] == 5  # steps 1-25, then 26
    assert [s for s, k in enumerate(v1, 1) if k == 100 and s > 25] == [501, 1001]
    assert sum(v1[:1000]) == 25 * 100 + 100 + (1000 - 26) * 5  # 25 warm-up steps, step 501, the rest 5
    assert fam.critic_updates_before(1003, 5, "v1") == sum(v1)
    assert fam.critic_updates(30, 2, "v1") == 2  # "else n_critic" (v1 hard-codes 5, the default)
    with pytest.raises(ValueError, match="'v2'"):
        fam.critic_updates(1, 5, "v2")


def test_v1_schedule_runs_its_critic_updates_and_the_default_keeps_its_digest(phrases, tmp_path, monkeypatch):
    seen = []
    real = fam.batch_indices
    monkeypatch.setattr(fam, "batch_indices", lambda seed, counter, n, b: seen.append(counter) or real(seed, counter, n, b))
    s = stage.run_train(phrases=phrases, out=tmp_path / "v1", variant="composer",
                        params=tiny(train={"steps": 2, "critic_schedule": "v1"}))
    assert s["steps_run"] == 2 and seen == list(range(200))  # 100 + 100 critic updates, one batch each
    cfg = json.loads((tmp_path / "v1" / "checkpoints" / "config.json").read_text())
    assert cfg["params"]["train"]["critic_schedule"] == "v1"
    # the default leaves config.json and the digest as they were before the option existed
    assert "critic_schedule" not in stage._train_doc(tiny().train)
    assert stage._digest(tiny(), "composer", "x") != stage._digest(tiny(train={"critic_schedule": "v1"}), "composer", "x")
    with pytest.raises(ParamsError, match="critic_schedule"):
        tiny(train={"critic_schedule": "v2"})


def test_same_seed_same_losses_and_samples(phrases, tmp_path):
    p = tiny()
    a = stage.run_train(phrases=phrases, out=tmp_path / "a", variant="hybrid", params=p)
    b = stage.run_train(phrases=phrases, out=tmp_path / "b", variant="hybrid", params=p)
    ha = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert [h["step"] for h in ha] == [1, 2, 3, 4] and set(ha[0]) == {"step", "d_loss", "g_loss", "gp", "wasserstein"}
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()
    assert a["final_wasserstein"] == b["final_wasserstein"] and a["steps_run"] == 4
    for d in ("a", "b"):
        stage.run_sample(phrases=phrases, out=tmp_path / d, variant="hybrid", params=p)
    assert (tmp_path / "a/samples/samples.npz").read_bytes() == (tmp_path / "b/samples/samples.npz").read_bytes()
    assert (tmp_path / "a/samples/sample_00.mid").read_bytes() == (tmp_path / "b/samples/sample_00.mid").read_bytes()
    c = stage.run_train(phrases=phrases, out=tmp_path / "c", variant="hybrid", params=tiny(train={"seed": 6}))
    assert c["final_wasserstein"] != a["final_wasserstein"]
    state = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 4 and {"generator", "critic", "opt_g", "opt_d", "history"} <= set(state)
    assert (tmp_path / "a" / "loss.png").stat().st_size > 1000
    doc = json.loads((tmp_path / "a" / "train.json").read_text())
    assert doc["phrases"] == 12 and doc["shape"] == [4, 48, 84, 5] and "seconds" not in doc


class Interrupt(Exception):
    pass


def test_resume_after_an_interruption_gives_the_same_weights(phrases, tmp_path, monkeypatch):
    p = tiny(train={"steps": 5})  # checkpoints after steps 2, 4 and 5; two critic updates per step
    stage.run_train(phrases=phrases, out=tmp_path / "full", variant="musegan", params=p)
    real = fam.batch_indices

    def crash_in_step_3(seed, counter, n, batch_size):
        if counter == 5:  # step 3's second critic update: the first one has changed the weights
            raise Interrupt
        return real(seed, counter, n, batch_size)

    monkeypatch.setattr(fam, "batch_indices", crash_in_step_3)
    with pytest.raises(Interrupt):
        stage.run_train(phrases=phrases, out=tmp_path / "cut", variant="musegan", params=p)
    monkeypatch.setattr(fam, "batch_indices", real)
    state = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 2
    r = stage.run_train(phrases=phrases, out=tmp_path / "cut", variant="musegan", params=p)
    assert r["resumed"] and r["steps_run"] == 5
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    for part in ("generator", "critic"):
        assert full[part].keys() == cut[part].keys()
        for k in full[part]:
            assert torch.equal(full[part][k], cut[part][k]), (part, k)
    assert (tmp_path / "full/metrics.json").read_bytes() == (tmp_path / "cut/metrics.json").read_bytes()
    # other params do not resume from that checkpoint
    other = stage.run_train(phrases=phrases, out=tmp_path / "cut", variant="musegan", params=tiny(train={"lr": 0.002}))
    assert not other["resumed"] and other["steps_run"] == 4


# ---------------------------------------------------------------------------------------------
# sampling, MIDI, evaluation


def test_phrase_to_midi_by_hand():
    x = np.zeros((2, 48, 84, 5), bool)
    x[0, 0:12, 36, 1] = True  # Piano: MIDI 60 for one beat (12 steps at 48 per bar)
    x[1, 0:3, 14, 0] = True  # Drums: MIDI 38 at bar 2, a 16th
    raw = fam.phrase_to_midi(x, track_names=TRACKS, steps_per_bar=48, tempo=120.0)
    mid = mido.MidiFile(file=io.BytesIO(raw))
    assert mid.ticks_per_beat == 480 and len(mid.tracks) == 6
    tempo = [m for m in mid.tracks[0] if m.type == "set_tempo"]
    assert tempo[0].tempo == 500000

    def notes(track):
        now, out = 0, []
        for m in track:
            now += m.time
            if m.type in ("note_on", "note_off"):
                out.append((now, m.type == "note_on" and m.velocity > 0, m.note, m.channel))
            if m.type == "program_change":
                out.append(("program", m.program, m.channel))
        return out

    assert notes(mid.tracks[2]) == [("program", 0, 0), (0, True, 60, 0), (480, False, 60, 0)]
    assert notes(mid.tracks[1]) == [("program", 0, 9), (1920, True, 38, 9), (2040, False, 38, 9)]
    assert notes(mid.tracks[4]) == [("program", 33, 2)]  # Bass, silent
    assert mid.length == pytest.approx(4.0)  # two bars of 4/4 at 120 bpm


def test_sample_writes_npz_midi_png_and_accompaniment(phrases, tmp_path):
    p = tiny()
    out = tmp_path / "m"
    stage.run_train(phrases=phrases, out=out / "composer", variant="composer", params=p)
    s = stage.run_sample(phrases=phrases, out=out / "composer", variant="composer", params=p)
    assert s["phrases"] == 6 and s["files"] == 2
    samples = out / "composer" / "samples"
    with np.load(samples / "samples.npz", allow_pickle=False) as z:
        assert z["shape"].tolist() == [6, 4, 48, 84, 5] and z["nonzero"].dtype == np.uint16
    assert sorted(p.name for p in samples.glob("sample_*")) == ["sample_00.mid", "sample_00.png",
                                                              "sample_01.mid", "sample_01.png"]
    mid = mido.MidiFile(samples / "sample_00.mid")
    assert [t.name for t in mid.tracks[1:]] == list(TRACKS)
    assert any(m.type == "set_tempo" and m.tempo == 500000 for m in mid.tracks[0])

    stage.run_train(phrases=phrases, out=out / "track_conditional", variant="track_conditional", params=p)
    s = stage.run_sample(phrases=phrases, out=out / "track_conditional", variant="track_conditional", params=p)
    test_x, test_ids, _ = stage.load_split(phrases, "test")
    with np.load(out / "track_conditional/samples/samples.npz", allow_pickle=False) as z:
        y = decode_phrases(z["shape"], z["nonzero"])
        assert z["ids"].tolist() == [test_ids[i % 3] for i in range(6)]
    assert np.array_equal(y[..., 1], test_x[np.arange(6) % 3][..., 1])  # the given Piano, unchanged
    song = str(test_ids[0])
    s = stage.run_sample(phrases=phrases, out=out / "track_conditional", variant="track_conditional",
                         params=p, song=song, track="Piano")
    assert s["out"].endswith(f"accompaniment/{song}") and s["phrases"] == 2 and s["files"] == 2
    with np.load(Path(s["out"]) / "samples.npz", allow_pickle=False) as z:
        y = decode_phrases(z["shape"], z["nonzero"])
        assert z["first_bar"].tolist() == [0, 4] and set(z["ids"].tolist()) == {song}
    assert np.array_equal(y[..., 1], test_x[test_ids == song][..., 1])
    with pytest.raises(ParamsError, match="'Bass'"):
        stage.run_sample(phrases=phrases, out=out / "track_conditional", variant="track_conditional",
                         params=p, song=song, track="Bass")
    with pytest.raises(StageError, match="'f00'"):
        stage.run_sample(phrases=phrases, out=out / "track_conditional", variant="track_conditional",
                         params=p, song="f00")
    with pytest.raises(ParamsError, match="only the track_conditional"):
        stage.run_sample(phrases=phrases, out=out / "composer", variant="composer", params=p, song=song)
    with pytest.raises(PipelineError, match="no trained model"):
        stage.run_sample(phrases=phrases, out=out / "hybrid", variant="hybrid", params=p)


def test_evaluate_reports_data_and_variants_under_both_definitions(phrases, tmp_path):
    from pipeline.metrics.musegan import compute_metrics

    p = tiny()
    models = tmp_path / "models"
    for v in ("jamming", "temporal"):
        stage.run_train(phrases=phrases, out=models / "musegan" / v, variant=v, params=p)
        stage.run_sample(phrases=phrases, out=models / "musegan" / v, variant=v, params=p)
    r = stage.run_evaluate(phrases=phrases, out=models / "musegan", params=p)
    doc = json.loads((models / "musegan" / "evaluation.json").read_text())
    assert doc == json.loads(json.dumps(r))
    assert doc["samples"] == {"jamming": 6, "temporal": 6} and doc["data"] == {"split": "train", "phrases": 12}
    x, _, _ = stage.load_split(phrases, "train")
    # corrected at the phrases' 48 steps; official at 96, each step held twice (the same music)
    assert doc["resolution"] == {"corrected": 48, "official": 96} and doc["official_held_from"] == 48
    for definition in ("corrected", "official"):
        assert set(doc[definition]) == {"data", "jamming", "temporal"}
        arr = np.repeat(x, 2, axis=2) if definition == "official" else x
        want = compute_metrics(arr, track_names=TRACKS, drum_track="Drums", steps_per_bar=doc["resolution"][definition],
                               definition=definition)
        assert doc[definition]["data"] == json.loads(json.dumps(want))
    assert doc["corrected"]["data"]["UPC"] != doc["official"]["data"]["UPC"]  # the definitions differ
    ref = doc["reference"]
    assert ref["url"] == "https://arxiv.org/abs/1709.06298" and ref["comparable"] is False
    assert ref["training_data"] is None and "not found" in ref["missing"]  # no source text: no numbers
    why = " ".join(ref["not_comparable"])
    assert "LPD-cleansed" in why and "48 steps per bar" in why and "monophonic" in why
    assert "jamming: width 0.03125, 4 generator steps, critic schedule fixed" in why
    md = (models / "musegan" / "evaluation.md").read_text()
    assert "## corrected definitions (48 steps per bar)" in md and "## official definitions (96 steps per bar)" in md
    assert "## The paper's reference" in md and "Not comparable with these rows:" in md
    assert "| source | Drums | Piano | Guitar | Bass | Strings |" in md and "| jamming |" in md
    # the same again: the same bytes
    stage.run_evaluate(phrases=phrases, out=models / "musegan", params=p)
    assert json.loads((models / "musegan" / "evaluation.json").read_text()) == doc


def test_device_is_checked(phrases, tmp_path):
    with pytest.raises(ParamsError, match="not a torch device"):
        stage.run_train(phrases=phrases, out=tmp_path / "m", variant="composer", params=tiny(), device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ParamsError, match="no CUDA device"):
            stage.run_train(phrases=phrases, out=tmp_path / "m", variant="composer", params=tiny(), device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
def test_trains_and_samples_on_cuda(phrases, tmp_path):
    for v in ("jamming", "track_conditional"):
        s = stage.run_train(phrases=phrases, out=tmp_path / v, variant=v, params=tiny(), device="cuda")
        assert s["steps_run"] == 4 and np.isfinite(s["final_d_loss"])
        r = stage.run_sample(phrases=phrases, out=tmp_path / v, variant=v, params=tiny(), device="cuda")
        assert r["phrases"] == 6


# ---------------------------------------------------------------------------------------------
# params and the CLI


def test_bad_params_echo_the_value():
    with pytest.raises(ParamsError, match=r"musegan.train.lr=-1.0"):
        tiny(train={"lr": -1.0})
    with pytest.raises(ParamsError, match=r"z_dim=6"):
        tiny(model={"z_dim": 6})
    with pytest.raises(ParamsError, match=r"unknown key\(s\) gp"):
        from_dict(stage.Params, {"train": {"gp": 1}}, section="musegan")
    with pytest.raises(ParamsError, match=r"dp_tolerance=2"):
        tiny(evaluate={"dp_tolerance": 2})
    with pytest.raises(ParamsError, match=r"'Ukulele'"):
        stage.model_config(tiny(model={"condition_track": "Ukulele"}), "track_conditional", (1, 4, 48, 84, 5), TRACKS)
    with pytest.raises(ParamsError, match=r"variant='gan'"):
        stage.check_variant("gan")


def test_bad_data_is_a_stage_error(tmp_path, phrases):
    with pytest.raises(StageError, match="missing"):
        stage.run_train(phrases=tmp_path / "nowhere", out=tmp_path / "m", variant="composer", params=tiny())
    with pytest.raises(StageError, match="fewer than musegan.train.batch_size=64"):
        stage.run_train(phrases=phrases, out=tmp_path / "m", variant="composer", params=tiny(train={"batch_size": 64}))
    stage.run_train(phrases=phrases, out=tmp_path / "m", variant="composer", params=tiny())
    (tmp_path / "m" / "checkpoints" / "config.json").write_text("{broken")  # starts afresh
    assert not stage.run_train(phrases=phrases, out=tmp_path / "m", variant="composer", params=tiny())["resumed"]
    (tmp_path / "m" / "checkpoints" / "config.json").write_text("[]")
    with pytest.raises(StageError, match="not a MuseGAN config"):
        stage.run_sample(phrases=phrases, out=tmp_path / "m", variant="composer", params=tiny())
    (phrases / "npz" / "train.npz").write_bytes(b"not a zip")
    with pytest.raises(PipelineError, match="not an NPZ archive"):
        stage.run_train(phrases=phrases, out=tmp_path / "m", variant="composer", params=tiny())
    odd = make_phrases(tmp_path / "odd", steps=40)
    with pytest.raises(StageError, match="steps_per_bar=40"):
        stage.run_train(phrases=odd, out=tmp_path / "m", variant="composer", params=tiny())


def test_cli_end_to_end_and_a_bad_variant(phrases, tmp_path):
    from pipeline.cli import app

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"musegan": section_doc("musegan", **TINY)}))
    runner = CliRunner()
    common = ["--phrases", str(phrases), "--params", str(params)]
    variant = ["--variant", "track_conditional", "--out", str(tmp_path / "models" / "musegan" / "track_conditional")]
    for cmd in ("train", "sample"):
        res = runner.invoke(app, [cmd, "musegan", *variant, *common])
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["sample", "musegan", *variant, "--song", "a" + "0" * 31, "--track", "Piano", *common])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", "musegan", "--out", str(tmp_path / "models" / "musegan"), *common])
    assert res.exit_code == 0 and "track_conditional" in res.output, res.output
    assert (tmp_path / "models/musegan/evaluation.json").exists()
    assert (tmp_path / "models/musegan/track_conditional/accompaniment" / ("a" + "0" * 31) / "sample_01.mid").exists()
    bad = subprocess.run([sys.executable, "-c", "from pipeline.cli import main; main()", "train", "musegan",
                          "--variant", "gru", *common], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: Invalid value for '--variant': 'gru' is not one of 'jamming', 'composer', 'hybrid', 'temporal', "
        "'track_conditional', 'musegan'."]
