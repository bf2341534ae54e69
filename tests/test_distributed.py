"""Data-parallel training under torchrun (``pipeline.training.distributed``), on the CPU with gloo
on loopback: 2 processes (``--nproc 2``), and 2 "nodes" of 1 process (two torchrun launchers
meeting at a c10d rendezvous), train the same model as 1 process with the same global batch
(LSTM, whose last batch of 3 windows splits 2/1; MuseGAN with the WGAN-GP gradient penalty's
double backward and the generator's BatchNorm over the global batch; the VQ-VAE, whose codebooks'
EMA updates and restarts run on the gathered global batch; the Jukebox prior and an upsampler at
dropout 0); a killed rank stops the job with one line, and a rerun (on another world size)
resumes from the last checkpoint.

Tolerances: the ranks' gradients are averaged by an all-reduce, and BatchNorm statistics are
summed across ranks, so sums run in another order than in one process: float32 rounding, a few
ulps per step. Measured (2026-12-06, torch 2.13 CPU, pinned numerics): LSTM final weights 1.2e-6
max abs (2 processes and 2 nodes alike; 2 nodes vs 2 processes: 0). MuseGAN (musegan, jamming):
Adam's first moments (the gradients' running mean) within 2.1e-6 of the network's largest, and
the weights within 2.1e-6 wherever the gradient is more than rounding noise; where it is not (the
critic's last bias, whose true gradient is 0 under E[D(real)] - E[D(fake)], and biases before
BatchNorm), Adam, which divides each gradient by its own size, moves the weight by up to lr per
step in a direction rounding picks, in one process as in two (up to 7e-4 here), so those are left
out (``adam_compare``). The tolerances, 2e-5 on weights and 1e-4 on moments, sit well above that
and far below what a wrong split gives: one process on half the LSTM batch is 0.11 off (checked
below); MuseGAN with per-rank BatchNorm statistics instead of the global batch's was 6e-3 off in
weights and 2.5 in moments. (track_conditional, not tested here, differs more, 1e-3 in moments:
its condition encoder's BatchNorm sees channels of constant input (silent bars), where the
rounding of the batch mean is multiplied by 1/sqrt(eps) = 316, in one process as in two.)

VQ-VAE (3 steps, restarts included): weights within 3.7e-7, codebooks within 1.2e-7, and the EMA
counts equal to the last bit (sums of whole assignments times 1 - mu: the same code for every
encoder output, over the global batch); one process on half the batch is 2.4 off in codebooks.
The audio is noisy tones without silence: silence gives identical encoder outputs, restarts then
make identical codes, and which of two tied codes an output goes to is decided by rounding (on
gated tones the runs parted at step 2 by one assignment, 1 - mu = 0.01 in two counts). Jukebox
(dropout 0): upsampler weights within 9.5e-7, prior weights within 7.5e-6, all in the attention's
key bias, whose true gradient is 0 (a constant added to every logit of a query) so that Adam moves
it by rounding noise as above; bits per token within 5e-7; one process on half the batch: 5e-3.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config import section_doc
from pipeline.errors import ParamsError
from pipeline.training.solver import load_checkpoint
from tests.conftest import make_song

ROOT = Path(__file__).resolve().parents[1]
TOL = 2e-5

LSTM = {
    "vocab": "notes",
    "model": {"embedding": 16, "hidden": 32, "layers": 2, "dropout": 0.0, "attention_dim": 16},
    "train": {"window": 16, "stride": 8, "batch_size": 16, "epochs": 2, "lr": 0.01, "patience": 5,
              "max_windows": 35, "max_eval_windows": 29, "seed": 7, "threads": 1},
}
MUSEGAN = {
    "model": {"z_dim": 8, "width": 0.03125, "condition_track": "Piano"},
    "train": {"steps": 3, "batch_size": 4, "lr": 0.001, "n_critic": 2, "seed": 5, "threads": 1,
              "checkpoint_every": 1},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                          "MASTER_PORT")}
    e.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PIPELINE_PROGRESS="0", PIPELINE_DIST_TIMEOUT="60")
    return e


def cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    from pipeline.stages import build_vocab
    from tests.test_musegan import make_phrases

    root = tmp_path_factory.mktemp("dist")
    corpus = root / "small"
    for i in range(8):
        d = corpus / ("a" if i < 4 else "b")
        d.mkdir(parents=True, exist_ok=True)
        (d / f"song{i}.mid").write_bytes(make_song(i, ts=[(4, 4), (3, 4), (6, 8)][i % 3], tempo_bpm=90 + 10 * i))
    build_vocab.run(source=corpus, out=root / "vocab", kind="notes", workers=1,
                    params=build_vocab.Params(valid_fraction=0.15, test_fraction=0.1, shard_size=16))
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"lstm": section_doc("lstm", **LSTM), "musegan": section_doc("musegan", **MUSEGAN)}))
    return {"root": root, "vocab": root / "vocab", "phrases": make_phrases(root / "phrases"), "params": params}



def run_two_nodes(args: list[str], *, rdzv_id: str) -> None:
    """``python -m pipeline ARGS`` as two "nodes" of one process each, meeting at a c10d rendezvous
    on loopback; both must exit 0."""
    port = free_port()
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
              "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", rdzv_id,
              "-m", "pipeline", *args]
    procs = [subprocess.Popen(launch, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-3000:]

def lstm_args(data, out: Path) -> list[str]:
    return ["train", "lstm", "--vocab-dir", str(data["vocab"]), "--out", str(out), "--params", str(data["params"])]


def musegan_args(data, out: Path, variant: str = "musegan") -> list[str]:
    return ["train", "musegan", "--variant", variant, "--phrases", str(data["phrases"]), "--out", str(out),
            "--params", str(data["params"])]


def weights(path: Path, *keys: str) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)
    out = {}
    for key in keys or ("model",):
        out.update({f"{key}.{k}": v for k, v in state[key].items() if v.is_floating_point()})
    return out


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res


#: what the comparisons measured (printed with -s; the docstring's tolerance argument)
MEASURED: dict[str, float] = {}


@pytest.mark.slow
def test_lstm_two_processes_and_two_nodes_match_one_process(data):
    root = data["root"]
    ok(cli(*lstm_args(data, root / "l1")))
    two = ok(cli(*lstm_args(data, root / "l2"), "--nproc", "2"))
    assert two.stdout.count("lstm: 2 epochs") == 1  # rank 0 alone reports
    one, par = weights(root / "l1" / "checkpoints" / "last.pt"), weights(root / "l2" / "checkpoints" / "last.pt")
    MEASURED["lstm 2 processes"] = d = max_diff(one, par)
    assert d <= TOL, d
    h1 = json.loads((root / "l1" / "metrics.json").read_text())
    h2 = json.loads((root / "l2" / "metrics.json").read_text())
    for r1, r2 in zip(h1, h2, strict=True):
        assert abs(r1["train_loss"] - r2["train_loss"]) < 1e-4 and abs(r1["valid_loss"] - r2["valid_loss"]) < 1e-4

    # two "nodes" of one process each, meeting at a c10d rendezvous on loopback
    run_two_nodes(lstm_args(data, root / "n2"), rdzv_id="t")
    nodes = weights(root / "n2" / "checkpoints" / "last.pt")
    MEASURED["lstm 2 nodes vs 1 process"] = d = max_diff(one, nodes)
    assert d <= TOL, d
    MEASURED["lstm 2 nodes vs 2 processes"] = max_diff(par, nodes)

    # the tolerance discriminates: one process on half the batch is far off
    half = root / "params_half.yaml"
    doc = yaml.safe_load(data["params"].read_text())
    doc["lstm"]["train"]["batch_size"] = 8
    half.write_text(yaml.safe_dump(doc))
    ok(cli(*lstm_args(data, root / "l_half")[:-1], str(half)))
    wrong = max_diff(one, weights(root / "l_half" / "checkpoints" / "last.pt"))
    MEASURED["lstm, half batch (wrong)"] = wrong
    assert wrong > 100 * TOL
    print(MEASURED)


def adam_compare(a: dict, b: dict, net: str, opt: str) -> tuple[float, float]:
    """(max |difference| of Adam's first moments (the gradients' running mean) over the largest
    first moment of the network, max |weight difference| where the gradient is more than rounding
    noise (Adam's sqrt(v) above 1e-4 of the network's largest)). Adam divides every gradient by its
    own size, so a parameter whose true gradient is zero (a bias before BatchNorm, the critic's last
    bias under E[D(real)] - E[D(fake)]) moves by up to lr per step in a direction set by rounding:
    those are left out of the weight comparison; their moments are in the first number."""
    sa, sb = a[opt]["state"], b[opt]["state"]
    scale = max(float(s["exp_avg"].abs().max()) for s in sa.values())
    dm = max(float((sa[i]["exp_avg"] - sb[i]["exp_avg"]).abs().max()) for i in sa)
    rms = max(float(s["exp_avg_sq"].sqrt().max()) for s in sa.values())
    names = [n for n, v in a[net].items() if v.is_floating_point() and "running" not in n]  # parameters, in order
    dw = 0.0
    for i, name in enumerate(names):
        keep = sa[i]["exp_avg_sq"].sqrt() > 1e-4 * rms
        if keep.any():
            dw = max(dw, float((a[net][name] - b[net][name]).abs()[keep].max()))
    return dm / scale, dw


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["musegan", "jamming"])
def test_musegan_with_gradient_penalty_two_processes_match_one(data, variant):
    root = data["root"]
    ok(cli(*musegan_args(data, root / f"g1_{variant}", variant)))
    two = ok(cli(*musegan_args(data, root / f"g2_{variant}", variant), "--nproc", "2"))
    assert two.stdout.count("generator steps run") == 1
    a = load_checkpoint(root / f"g1_{variant}" / "checkpoints" / "last.pt")
    b = load_checkpoint(root / f"g2_{variant}" / "checkpoints" / "last.pt")
    for net, opt in (("generator", "opt_g"), ("critic", "opt_d")):
        dm, dw = adam_compare(a, b, net, opt)
        MEASURED[f"{variant} {net}: gradient moments (relative)"] = dm
        MEASURED[f"{variant} {net}: weights"] = dw
        assert dm <= 1e-4 and dw <= TOL, (net, dm, dw)
    # BatchNorm running statistics are the global batch's too
    run = [k for k in a["generator"] if "running" in k]
    assert run and max(float((a["generator"][k] - b["generator"][k]).abs().max()) for k in run) <= TOL
    for r1, r2 in zip(a["history"], b["history"], strict=True):
        for k in ("d_loss", "g_loss", "gp", "wasserstein"):
            assert abs(r1[k] - r2[k]) < 1e-4 * max(1.0, abs(r1[k])), (k, r1, r2)
    if variant == "musegan":
        bad = cli(*musegan_args(data, root / "g3"), "--nproc", "3")
        assert bad.returncode != 0 and "does not split over 3 processes" in bad.stderr
        assert "failed (exit code 1); rerun" in bad.stderr.splitlines()[-1], bad.stderr[-2000:]
    print(MEASURED)


def _worker(launcher: subprocess.Popen, rank: str):
    """The worker process of ``rank`` under a launcher (torchrun sets RANK in its environment)."""
    import psutil

    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == rank:
                return child
        except psutil.Error:
            continue
    return None


@pytest.mark.slow
def test_a_killed_rank_stops_the_job_with_one_line_and_a_rerun_resumes(data):
    root = data["root"]
    out = root / "killed"
    # long enough that the run is still going when the first checkpoint is seen and a worker is
    # killed, whatever the machine's speed (a step of this tiny model takes milliseconds)
    steps = 300
    doc = yaml.safe_load(data["params"].read_text())
    doc["musegan"]["train"]["steps"] = steps
    params = root / "params_long.yaml"
    params.write_text(yaml.safe_dump(doc))
    args = musegan_args(data, out, "composer")[:-1] + [str(params)]
    launcher = subprocess.Popen([sys.executable, "-m", "pipeline", *args, "--nproc", "2"], cwd=ROOT, env=env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = out / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim = _worker(launcher, "1")
    assert victim is not None and launcher.poll() is None, "the run ended before a worker could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err[-3000:]
    # the launcher's verdict is the last line; a surviving rank that saw its peer go first says so in one line
    assert lines[-1] == ("error: distributed training stopped: rank 1 of 2 failed (killed by SIGKILL); "
                         "rerun the same command to resume from the last checkpoint"), lines[-5:]
    assert all(ln.startswith("error: distributed training stopped: rank ") for ln in lines), lines
    done = int(load_checkpoint(ckpt)["step"])
    assert 0 < done < steps

    # a rerun on one process resumes from that checkpoint and finishes
    res = ok(cli(*args))
    assert f"resumed from step {done} of {steps}" in res.stdout + res.stderr
    assert int(load_checkpoint(ckpt)["step"]) == steps
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["step"] for r in rows] == list(range(1, steps + 1))


def test_one_process_without_torchrun(monkeypatch):
    from pipeline.training import distributed

    ctx = distributed.setup("cpu")
    assert not ctx.active and ctx.is_main and ctx.shard([1, 2, 3]) == [1, 2, 3] and ctx.all_sum([2.5]) == [2.5]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ParamsError, match="start distributed runs with torchrun"):
        distributed.setup("cpu")


# ---------------------------------------------------------------------------------------------
# the VQ-VAE, the Jukebox prior and an upsampler

VQVAE = {"heldout_fraction": 0.3, "model": {"width": 8, "depth": 1, "codebook_size": 32, "code_width": 8},
         "train": {"crop_samples": 4096, "batch_size": 4, "steps": 3, "log_every": 1, "valid_every": 1,
                   "valid_crops": 3, "stft_n_fft": [256], "stft_hop": [64], "stft_window": [256], "threads": 1,
                   "lr": 3e-4}}
JUKEBOX = {"prior": {"width": 16, "layers": 2, "heads": 2, "context": 32, "blocksize": 8, "dropout": 0.0},
           "upsampler": {"width": 16, "layers": 2, "heads": 2, "context": 32, "blocksize": 8, "cond_depth": 1,
                         "dropout": 0.0},
           "train": {"prior_steps": 4, "upsampler_steps": 3, "batch_size": 4, "clips": 6, "clip_samples": 4096,
                     "threads": 1, "warmup": 2, "checkpoint_every": 2}}


def _with_steps(path: Path, name: str, section: str, **train) -> Path:
    doc = yaml.safe_load(path.read_text())
    doc[section]["train"].update(train)
    out = path.parent / name
    out.write_text(yaml.safe_dump(doc))
    return out


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict:
    """Noisy tones (no silence: silent stretches give identical encoder outputs, hence codebook
    restarts to identical codes whose ties any rounding breaks), and a VQ-VAE trained on them in
    one process (the reference of the VQ-VAE test, the codec of the prior's)."""
    import numpy as np
    import soundfile as sf

    from pipeline.stages import ingest_audio

    root = tmp_path_factory.mktemp("dist_audio")
    (root / "rec").mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(22050) / 44100
    for i in range(8):
        x = sum(0.2 * np.sin(2 * np.pi * f * t) for f in rng.uniform(110, 880, 3)) + 0.05 * rng.standard_normal(len(t))
        sf.write(root / "rec" / f"s{i:02d}.wav", x.astype(np.float32), 44100)
    ingest_audio.run(source=root / "rec", out=root / "audio", workers=1,
                     params=ingest_audio.Params(clip_samples=8192, downmix="mean"))
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"vqvae": section_doc("vqvae", **VQVAE), "jukebox": section_doc("jukebox", **JUKEBOX)}))
    d = {"root": root, "audio": root / "audio", "params": params}
    ok(cli(*vqvae_args(d, root / "v1")))
    return {**d, "vq": root / "v1"}


def vqvae_args(d: dict, out: Path, params: Path | None = None) -> list[str]:
    return ["train", "vqvae", "--audio-dir", str(d["audio"]), "--out", str(out), "--params", str(params or d["params"])]


def jukebox_args(d: dict, out: Path, *part: str, params: Path | None = None) -> list[str]:
    return ["train", "jukebox", *(part or ("--part", "prior")), "--vqvae-dir", str(d["vq"]), "--audio-dir",
            str(d["audio"]), "--out", str(out), "--params", str(params or d["params"])]


def vq_compare(a: Path, b: Path) -> tuple[float, float, float]:
    """(max |weight difference|, max |codebook difference| (codes and EMA sums), max |EMA count
    difference|) between two VQ-VAE checkpoints."""
    sa, sb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert sa.keys() == sb.keys()
    diff = {k: float((sa[k].double() - sb[k].double()).abs().max()) for k in sa if sa[k].is_floating_point()}
    return (max(v for k, v in diff.items() if "bottlenecks" not in k),
            max(v for k, v in diff.items() if "bottlenecks" in k and not k.endswith("k_elem")),
            max(v for k, v in diff.items() if k.endswith("k_elem")))


@pytest.mark.slow
def test_vqvae_two_processes_match_one_and_resume_on_another_world_size(audio):
    root = audio["root"]
    one = audio["vq"] / "checkpoints" / "last.pt"
    two = ok(cli(*vqvae_args(audio, root / "v2"), "--nproc", "2"))
    assert two.stdout.count("vqvae: 3 steps") == 1  # rank 0 alone reports
    dw, dk, dn = vq_compare(one, root / "v2" / "checkpoints" / "last.pt")
    MEASURED["vqvae 2 processes: weights"], MEASURED["vqvae 2 processes: codebooks"] = dw, dk
    # the EMA counts are sums of whole code assignments: the same codes were chosen, over the global batch
    assert dn == 0 and dw <= TOL and dk <= TOL, (dw, dk, dn)
    state = load_checkpoint(root / "v2" / "checkpoints" / "last.pt")
    assert sum(r["restarted_l2"] for r in state["history"]) > 0  # restarts happened, drawn alike
    h1 = json.loads((audio["vq"] / "metrics.json").read_text())
    h2 = json.loads((root / "v2" / "metrics.json").read_text())
    for r1, r2 in zip(h1, h2, strict=True):
        for k in r1:
            assert abs(r1[k] - r2[k]) < 1e-4 * max(1.0, abs(r1[k])), (k, r1, r2)

    # two "nodes" of one process each
    run_two_nodes(vqvae_args(audio, root / "vn"), rdzv_id="v")
    dw, dk, dn = vq_compare(one, root / "vn" / "checkpoints" / "last.pt")
    MEASURED["vqvae 2 nodes: weights"], MEASURED["vqvae 2 nodes: codebooks"] = dw, dk
    assert dn == 0 and dw <= TOL and dk <= TOL, (dw, dk, dn)

    # 2 steps in one process, the third on two: the run of 3 steps
    ok(cli(*vqvae_args(audio, root / "vr", _with_steps(audio["params"], "vq2.yaml", "vqvae", steps=2))))
    res = ok(cli(*vqvae_args(audio, root / "vr"), "--nproc", "2"))
    assert "vqvae: 3 steps" in res.stdout
    dw, dk, dn = vq_compare(one, root / "vr" / "checkpoints" / "last.pt")
    MEASURED["vqvae resumed on 2 processes: weights"] = dw
    assert dn == 0 and dw <= TOL and dk <= TOL, (dw, dk, dn)
    assert [r["step"] for r in json.loads((root / "vr" / "metrics.json").read_text())] == [1, 2, 3]

    # the tolerance discriminates: one process on half the batch is far off
    ok(cli(*vqvae_args(audio, root / "vh", _with_steps(audio["params"], "vq_half.yaml", "vqvae", batch_size=2))))
    dw, dk, dn = vq_compare(one, root / "vh" / "checkpoints" / "last.pt")
    MEASURED["vqvae half batch (wrong): weights, codebooks, counts"] = (dw, dk, dn)
    assert dw > 20 * TOL and dk > 100 * TOL and dn > 0
    print(MEASURED)


def _bits_compare(a: Path, b: Path) -> tuple[float, float]:
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    dw = max_diff({k: v for k, v in sa["model"].items() if v.is_floating_point()},
                  {k: v for k, v in sb["model"].items() if v.is_floating_point()})
    dh = max(abs(r1["train_bits"] - r2["train_bits"]) for r1, r2 in zip(sa["history"], sb["history"], strict=True))
    return dw, dh


@pytest.mark.slow
@pytest.mark.parametrize("name", ["prior", "upsampler_1"])
def test_jukebox_prior_and_upsampler_two_processes_match_one(audio, name):
    root = audio["root"]
    part = ("--part", "prior") if name == "prior" else ("--part", "upsampler", "--level", "1")
    ok(cli(*jukebox_args(audio, root / "j1", *part)))
    two = ok(cli(*jukebox_args(audio, root / "j2", *part), "--nproc", "2"))
    assert two.stdout.count(f"{name} (level") == 1  # rank 0 alone reports
    one = root / "j1" / name / "checkpoints" / "last.pt"
    dw, dh = _bits_compare(one, root / "j2" / name / "checkpoints" / "last.pt")
    MEASURED[f"jukebox {name} 2 processes: weights"], MEASURED[f"jukebox {name} 2 processes: bits"] = dw, dh
    assert dw <= TOL and dh < 1e-5, (name, dw, dh)
    if name == "prior":  # 2 steps on two processes, then the other 2 in one: the run of 4 steps
        ok(cli(*jukebox_args(audio, root / "jr", params=_with_steps(audio["params"], "jb2.yaml", "jukebox",
                                                                     prior_steps=2)), "--nproc", "2"))
        res = ok(cli(*jukebox_args(audio, root / "jr")))
        assert "2 steps run, 4 in all" in res.stdout
        dw, dh = _bits_compare(one, root / "jr" / name / "checkpoints" / "last.pt")
        MEASURED["jukebox prior resumed on 1 process: weights"] = dw
        assert dw <= TOL and dh < 1e-5, (dw, dh)
        # the tolerance discriminates: one process on half the batch is far off
        ok(cli(*jukebox_args(audio, root / "jh", params=_with_steps(audio["params"], "jb_half.yaml", "jukebox",
                                                                     batch_size=2))))
        wrong, _ = _bits_compare(one, root / "jh" / name / "checkpoints" / "last.pt")
        MEASURED["jukebox prior, half batch (wrong): weights"] = wrong
        assert wrong > 20 * TOL
    print(MEASURED)
