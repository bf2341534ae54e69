"""LSTM family (issue 5): tiny models on tiny token shards made here from the small corpus:
the loss falls, reruns repeat to the last digit, a run resumes to the same numbers, sampling
writes MIDI + PNG, evaluation writes its report; the symbolic metrics on hand-made rolls."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mido
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from pipeline.config import load_params, section_doc
from pipeline.metrics import symbolic
from pipeline.names import LSTM_VARIANTS
from pipeline.training import lstm as fam
from pipeline.stages import build_vocab
from pipeline.stages import lstm as stage

TINY = {
    "vocab": "notes",
    "model": {"embedding": 16, "hidden": 32, "layers": 2, "dropout": 0.1, "attention_dim": 16},
    "train": {"window": 16, "stride": 8, "batch_size": 16, "epochs": 3, "lr": 0.01, "patience": 5,
              "max_windows": 96, "max_eval_windows": 64, "seed": 7, "threads": 1},
    "sample": {"n": 2, "length": 24, "prime": "test", "prime_length": 8, "top_k": 20, "top_p": 0.9, "seed": 3},
    "evaluate": {"data_songs": 3},
}


def tiny(**over) -> stage.Params:
    doc = json.loads(json.dumps(TINY))
    for k, v in over.items():
        doc[k].update(v) if isinstance(v, dict) else doc.__setitem__(k, v)
    return load_params(stage.Params, **doc)


def make_shards(corpus: Path, out: Path, kind: str) -> Path:
    build_vocab.run(source=corpus, out=out, kind=kind, workers=1,
                    params=build_vocab.Params(valid_fraction=0.15, test_fraction=0.1, shard_size=16))  # 6 train, 1 valid, 1 test
    return out


@pytest.fixture
def notes_dir(small_corpus, tmp_path) -> Path:
    return make_shards(small_corpus, tmp_path / "vocab_notes", "notes")


@pytest.mark.parametrize("variant", LSTM_VARIANTS)
def test_loss_falls_and_reruns_repeat(notes_dir, tmp_path, variant):
    p = tiny()
    a = stage.run_train(vocab_dir=notes_dir, out=tmp_path / "a", variant=variant, params=p)
    b = stage.run_train(vocab_dir=notes_dir, out=tmp_path / "b", variant=variant, params=p)
    ha = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()
    assert [h["epoch"] for h in ha] == [1, 2, 3] and a["valid_windows"] > 0 and a["train_windows"] > 0
    assert ha[-1]["train_loss"] < ha[0]["train_loss"] and ha[-1]["valid_loss"] < ha[0]["valid_loss"]
    assert a["best_loss"] == b["best_loss"]
    assert (tmp_path / "a" / "loss.png").stat().st_size > 1000
    state = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and {"model", "optimizer", "rng", "history"} <= set(state)


def test_resume_gives_the_same_numbers(notes_dir, tmp_path):
    full = stage.run_train(vocab_dir=notes_dir, out=tmp_path / "full", variant="lstm", params=tiny())
    stage.run_train(vocab_dir=notes_dir, out=tmp_path / "part", variant="lstm", params=tiny(train={"epochs": 1}))
    resumed = stage.run_train(vocab_dir=notes_dir, out=tmp_path / "part", variant="lstm", params=tiny())
    assert resumed["resumed"] and resumed["epochs_run"] == 3 and resumed["best_loss"] == full["best_loss"]
    assert (tmp_path / "part" / "metrics.json").read_bytes() == (tmp_path / "full" / "metrics.json").read_bytes()
    # another model size does not resume from that checkpoint
    other = stage.run_train(vocab_dir=notes_dir, out=tmp_path / "part", variant="lstm",
                            params=tiny(model={"hidden": 24}, train={"epochs": 1}))
    assert not other["resumed"] and other["epochs_run"] == 1


def test_early_stopping(notes_dir, tmp_path):
    s = stage.run_train(vocab_dir=notes_dir, out=tmp_path / "m", variant="lstm",
                        params=tiny(train={"epochs": 8, "lr": 0.5, "patience": 1}))
    h = json.loads((tmp_path / "m" / "metrics.json").read_text())
    if s["stopped_early"]:
        assert len(h) < 8 and h[-1]["valid_loss"] >= s["best_loss"]
    else:  # the valid loss fell every epoch
        assert all(x["valid_loss"] > y["valid_loss"] for x, y in zip(h, h[1:]))


@pytest.mark.parametrize("kind,variant", [("notes", "lstm_attention"), ("remi", "lstm")])
def test_sample_and_evaluate(small_corpus, tmp_path, kind, variant):
    vd = make_shards(small_corpus, tmp_path / f"vocab_{kind}", kind)
    p = tiny(vocab=kind, train={"epochs": 1})
    model_dir = tmp_path / "models" / variant
    stage.run_train(vocab_dir=vd, out=model_dir, variant=variant, params=p)
    s = stage.run_sample(vocab_dir=vd, out=model_dir, variant=variant, params=p)
    assert s["samples"] == 2
    doc = json.loads((model_dir / "samples" / "samples.json").read_text())
    for r in doc["samples"]:
        mid = mido.MidiFile(model_dir / "samples" / r["file"])
        assert r["prime"].startswith("test:") and r["prime_tokens"] == 8
        assert sum(1 for t in mid.tracks for m in t if m.type == "note_on") > 0
    assert list((model_dir / "samples").glob("*.png"))
    again = tmp_path / "again"
    stage.run_train(vocab_dir=vd, out=again, variant=variant, params=p)
    stage.run_sample(vocab_dir=vd, out=again, variant=variant, params=p)
    assert json.loads((again / "samples" / "samples.json").read_text())["samples"] == doc["samples"]
    r = stage.run_evaluate(vocab_dir=vd, out=model_dir, variant=variant, params=p)
    for split in ("valid", "test"):
        d = r[split]
        assert d["tokens"] > 0 and math.isclose(d["perplexity"], math.exp(d["cross_entropy"]))
        assert 0.0 <= d["accuracy"] <= 1.0
    assert r["symbolic"]["data"]["pieces"] > 0 and r["symbolic"]["data"]["UPC"] is not None
    assert json.loads((model_dir / "evaluation.json").read_text()) == r
    assert "| valid |" in (model_dir / "evaluation.md").read_text()


def test_sample_from_bos_and_greedy(notes_dir, tmp_path):
    p = tiny(train={"epochs": 1}, sample={"prime": "bos", "temperature": 0.0})
    stage.run_train(vocab_dir=notes_dir, out=tmp_path / "m", variant="lstm", params=p)
    stage.run_sample(vocab_dir=notes_dir, out=tmp_path / "m", variant="lstm", params=p)
    rows = json.loads((tmp_path / "m" / "samples" / "samples.json").read_text())["samples"]
    assert rows[0]["prime"] == "bos" and rows[0]["tokens"][0] == fam.BOS
    assert rows[0]["tokens"] == rows[1]["tokens"]  # greedy: the same piece twice


def test_cli_train_sample_evaluate(notes_dir, tmp_path):
    from pipeline.cli import app

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"lstm": section_doc("lstm", **tiny_doc(epochs=1))}))
    runner = CliRunner()
    common = ["--variant", "lstm", "--vocab-dir", str(notes_dir), "--out", str(tmp_path / "models" / "lstm" / "lstm"),
              "--params", str(params)]
    for cmd in ("train", "sample", "evaluate"):
        res = runner.invoke(app, [cmd, "lstm", *common])
        assert res.exit_code == 0, res.output
    assert (tmp_path / "models" / "lstm" / "lstm" / "evaluation.json").exists()
    bad = runner.invoke(app, ["train", "lstm", "--variant", "gru", "--vocab-dir", str(notes_dir),
                              "--params", str(params)])
    assert bad.exit_code != 0


def tiny_doc(epochs: int) -> dict:
    doc = json.loads(json.dumps(TINY))
    doc["train"]["epochs"] = epochs
    return doc


# ---------------------------------------------------------------------------------------------
# pieces


def test_models_shapes_and_causality():
    torch.manual_seed(0)
    for attention in (False, True):
        for emb in (0, 8):
            m = fam.build_model(20, embedding=emb, hidden=12, layers=2, dropout=0.0, attention=attention,
                                attention_dim=6).eval()
            x = torch.randint(4, 20, (3, 10))
            y = m(x)
            assert y.shape == (3, 10, 20)
            x2 = x.clone()
            x2[:, 6:] = 5  # the future does not change the past
            assert torch.allclose(m(x2)[:, :6], y[:, :6])
            # incremental decoding gives the logits of a full forward pass
            logits, state, mem = m.step_logits(x[:, :7])
            logits2, _, _ = m.step_logits(x[:, 7:8], state, mem)
            assert torch.allclose(logits, y[:, 6], atol=1e-5) and torch.allclose(logits2, y[:, 7], atol=1e-5)


def test_filter_logits():
    logits = torch.tensor([0.0, 1.0, 2.0, 3.0]).double()
    k = fam.filter_logits(logits, top_k=2)
    assert torch.isinf(k[:2]).all() and torch.isfinite(k[2:]).all()
    p = fam.filter_logits(logits, top_p=0.5)  # the best token holds 64% of the mass
    assert torch.isfinite(p).sum() == 1 and torch.isfinite(p[3])
    assert torch.isfinite(fam.filter_logits(logits, top_p=1.0)).all()


def test_notes_to_midi():
    assert [fam.note_pitch(n) for n in ("C4", "C#4", "E-4", "B-3", "A0", "C-4")] == [60, 61, 63, 58, 21, 59]
    raw = fam.notes_to_midi(["BOS", "C4", "0.4.7", "rest", "E4_1/2", "bogus!"])
    mid = mido.MidiFile(file=__import__("io").BytesIO(raw))
    ons, t = [], 0
    for m in mid.tracks[0]:
        t += m.time
        if m.type == "note_on" and m.velocity > 0:
            ons.append((t // mid.ticks_per_beat, m.note))
    assert ons == [(0, 60), (1, 60), (1, 64), (1, 67), (3, 64)]


def test_symbolic_metrics():
    roll = np.zeros((4 * 96, 128), bool)
    bars = [0, 96, 192, 288]
    roll[0:24, 60] = True  # C, a beat
    roll[0:2, 64] = True  # E, 2 steps: not qualified
    roll[96:99, 67] = True  # G, 3 steps: qualified
    roll[100:148, 72] = True  # C again (pitch class counted once per bar)
    roll[100:148, 60] = True
    # bars 3 and 4 empty
    assert symbolic.empty_bars(roll, bars) == 0.5
    assert symbolic.used_pitch_classes(roll, bars) == 2.0  # {C, E} and {G, C}
    assert symbolic.qualified_notes(roll) == 4 / 5
    assert symbolic.qualified_notes(roll, resolution=48) == 3 / 5  # threshold 6 steps: G (3) fails too
    assert list(symbolic.note_lengths(roll[:30, 60:61])) == [24]
    empty = np.zeros((10, 128))
    assert symbolic.used_pitch_classes(empty, [0]) is None and symbolic.qualified_notes(empty) is None
    assert symbolic.empty_bars(empty, []) is None
    assert symbolic.all_metrics(roll, bars) == {"UPC": 2.0, "QN": 0.8, "EB": 0.5}


def test_windows_pad_short_songs_and_the_loss_ignores_pad():
    w = fam.make_windows([("a", np.arange(4, 8)), ("b", np.arange(10, 20))], 5, 3)
    assert w.tolist() == [[4, 5, 6, 7, 0, 0], [10, 11, 12, 13, 14, 15], [13, 14, 15, 16, 17, 18]]
    m = fam.build_model(20, embedding=4, hidden=8, layers=1, dropout=0.0, attention=False).eval()
    _, _, n = fam.loss_sums(m, torch.from_numpy(w[:1]))
    assert n == 3  # targets 5, 6, 7; the PADs are not counted


def test_device_is_checked_and_cpu_is_explicit(notes_dir, tmp_path):
    from pipeline.errors import ParamsError
    from pipeline.training.solver import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ParamsError, match="not a torch device"):
        resolve_device("gpu0")
    with pytest.raises(ParamsError, match="not supported"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ParamsError, match="no CUDA device"):
            stage.run_train(vocab_dir=notes_dir, out=tmp_path / "m", variant="lstm", params=tiny(), device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
def test_trains_samples_and_evaluates_on_cuda(notes_dir, tmp_path):
    out = tmp_path / "models" / "lstm"
    s = stage.run_train(vocab_dir=notes_dir, out=out, variant="lstm_attention", params=tiny(), device="cuda")
    assert s["epochs_run"] >= 1
    stage.run_sample(vocab_dir=notes_dir, out=out, variant="lstm_attention", params=tiny(), device="cuda")
    r = stage.run_evaluate(vocab_dir=notes_dir, out=out, variant="lstm_attention", params=tiny(), device="cuda")
    assert math.isfinite(r["valid"]["cross_entropy"] or 0.0)
