#!/usr/bin/env python
"""Benchmark: the training loaders' samples/s with 0, 2 and 4 DataLoader workers next to what the
models consume, and the peak memory of a MuseGAN training run as its data grow tenfold.

    .venv/bin/python benchmarks/bench_loaders.py [--data datasets] [--batches 30] [--steps 6]
        [--work DIR] [--out JSON]

Loaders (on the built outputs under ``--data``; one warm-up batch, then ``--batches`` batches timed):

- phrases: ``pipeline.formats.phrase_shards.PhraseRows`` over ``phrases/npz/train.npz``, the batches
  MuseGAN's loop draws (``batch_indices``), one ``rows[idx]`` per batch (``musegan.train.batch_size``);
- token windows: ``pipeline.training.lstm.SongWindows`` of ``vocab/<lstm.vocab>/shards`` (``lstm.train``
  window, stride, batch size), the LSTM's shuffled batches, one ``windows[idx]`` per batch;
- audio crops: ``pipeline.training.vqvae.read_clips`` of ``audio`` (train split), the VQ-VAE's
  ``step_batch`` batches (``vqvae.train`` batch size and crop length: one clip decoded per crop);
- song bars: ``pipeline.data.PianorollBars`` of ``lpd`` (4 bars), batches of 8 windows, shuffled.

Models (CPU, params.yaml's small configs, ``threads`` from params): MuseGAN jamming (generator steps/s
of ``run_train``, timed between ``--steps`` and ``2 * --steps`` steps so start-up is left out; each step
draws ``n_critic`` batches), the VQ-VAE (its training step on ``step_batch`` batches, in process) and the LSTM (one teacher-forced step of a ``batch_size`` batch of
windows, forward + backward + Adam). The model's demand is steps/s x batches per step x batch size.

Memory: a short training run in a fresh subprocess (MuseGAN jamming, ``--steps`` generator steps; the
LSTM, one epoch of ``--steps`` batches; the VQ-VAE, ``--steps`` steps) on the data (N) and on a copy repeated ten times under new song
ids (10N: the phrase NPZ, every token shard or every audio shard, written once under ``--work``); peak resident memory is
the process's ``VmHWM``. The Jukebox prior's run (``--steps`` steps) encodes ``--jukebox-clips``
crops (N) and ten times as many (10N) with the trained VQ-VAE of ``<data>/models/vqvae``. The same runs
with the former dense path (the whole split as one array; for the prior, every crop and every level's
codes in memory) are printed for comparison. ``--memory-only musegan,jukebox`` runs only those memory rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipeline.stages  # noqa: E402
from pipeline import numerics  # noqa: E402  (pins the numerics before torch loads)

STAGES = str(ROOT / "stages")
pipeline.stages.__path__[:] = [STAGES]  # this checkout's stages, wherever an editable install points
numerics.pin()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

WORKERS = (0, 2, 4)
warnings.filterwarnings("ignore", message="This DataLoader will create")


def rate(make_loader, batches: int) -> float:
    """Samples/s of ``batches`` batches after a warm-up one (workers started)."""
    it = iter(make_loader())
    next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            break
        n += len(b)
    return n / (time.perf_counter() - t0)


class Batches(torch.utils.data.Sampler):
    """MuseGAN's batches (``batch_indices``), one index array per item."""

    def __init__(self, n: int, batch_size: int, count: int, seed: int = 2026) -> None:
        self.n, self.batch_size, self.count, self.seed = n, batch_size, count, seed

    def __iter__(self):
        from pipeline.training.musegan import batch_indices

        return (batch_indices(self.seed, k, self.n, self.batch_size) for k in range(self.count))

    def __len__(self) -> int:
        return self.count


class Shuffled(torch.utils.data.Sampler):
    """The LSTM's batches (``solver.batches``: a seeded permutation cut in batches), one index array per item."""

    def __init__(self, n: int, batch_size: int, count: int, seed: int = 2026) -> None:
        self.order = np.random.default_rng(seed).permutation(n)[:batch_size * count]
        self.batch_size = batch_size

    def __iter__(self):
        return (self.order[i:i + self.batch_size] for i in range(0, len(self.order), self.batch_size))

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)


class StepCrops(torch.utils.data.Dataset):
    """The VQ-VAE's training batches: item k is ``step_batch`` of step k + 1."""

    def __init__(self, bank, batch_size: int, samples: int, count: int, seed: int = 2026) -> None:
        self.bank, self.batch_size, self.samples, self.count, self.seed = bank, batch_size, samples, count, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, k: int) -> torch.Tensor:
        from pipeline.training.vqvae import step_batch

        return step_batch(self.bank, step=k + 1, batch_size=self.batch_size, samples=self.samples, seed=self.seed)


def loaders(data: Path, params: dict, batches: int) -> dict:
    from pipeline.data import PianorollBars
    from pipeline.formats.phrase_shards import PhraseRows

    mg, lt = params["musegan"]["train"], params["lstm"]["train"]
    pin = torch.cuda.is_available()
    out = {}
    rows = PhraseRows(data / "phrases" / "npz" / "train.npz")
    kinds = {
        "phrases": lambda w: DataLoader(rows, sampler=Batches(len(rows), mg["batch_size"], batches + 1),
                                        batch_size=None, num_workers=w, pin_memory=pin),
    }
    vocab_dir = data / "vocab" / params["lstm"]["vocab"]
    if vocab_dir.is_dir():
        from pipeline.formats.vocab import load_vocabulary
        from pipeline.training.lstm import SongWindows

        wins = SongWindows(vocab_dir / "shards", load_vocabulary(vocab_dir / "vocab.json"), "train", lt["window"],
                           lt["stride"])
        kinds["token windows"] = lambda w: DataLoader(
            wins, sampler=Shuffled(len(wins), lt["batch_size"], batches + 1), batch_size=None, num_workers=w,
            pin_memory=pin)
    if (data / "audio" / "parquet").is_dir():
        from pipeline.training.vqvae import read_clips

        vq = params["vqvae"]
        bank = read_clips(data / "audio", split="train", heldout_fraction=vq["heldout_fraction"])
        crops = StepCrops(bank, vq["train"]["batch_size"], vq["train"]["crop_samples"], batches + 1)
        kinds["audio crops"] = lambda w: DataLoader(crops, batch_size=None, num_workers=w, pin_memory=pin)
    if (data / "lpd").is_dir():
        bars = PianorollBars(data / "lpd", bars=4)
        kinds["song bars"] = lambda w: DataLoader(bars, batch_size=8, shuffle=True, num_workers=w, pin_memory=pin)
    for name, make in kinds.items():
        out[name] = {w: rate(lambda: make(w), batches) for w in WORKERS}
        print(f"  {name:14s} " + "  ".join(f"{w} workers: {out[name][w]:9.1f}/s" for w in WORKERS), flush=True)
    return out


def musegan_rate(data: Path, params_path: Path, steps: int, work: Path) -> float:
    """Generator steps/s of jamming: (3 * steps - steps) / the time between the two runs, after a
    one-step warm-up run (imports, first allocations)."""
    from pipeline.stages import musegan as stage
    from pipeline.config import section_doc

    times = {}
    for k in (1, steps, 3 * steps):
        p = stage.params_from_dict(_with_steps(section_doc("musegan", params_path), k))
        out = work / f"musegan-rate-{k}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        stage.run_train(phrases=data / "phrases", out=out, variant="jamming", params=p, resume=False)
        times[k] = time.perf_counter() - t0
    return 2 * steps / max(times[3 * steps] - times[steps], 1e-9)


def vqvae_rate(data: Path, params_path: Path, steps: int) -> float:
    """Steps/s of the VQ-VAE's training step (``step_batch`` + forward + backward + Adam), timed over
    ``steps`` steps after one warm-up step, in this process (its start-up, data statistics and
    evaluation left out: they do not grow with the steps)."""
    from pipeline.config import section_doc
    from pipeline.stages import vqvae as stage
    from pipeline.training import vqvae as fam
    from pipeline.training.solver import seed_everything

    p = stage.params_from_dict(section_doc("vqvae", params_path))
    t = p.train
    bank = fam.read_clips(data / "audio", split="train", heldout_fraction=p.heldout_fraction)
    seed_everything(t.seed, threads=t.threads)
    model = fam.build_model(stage.model_kwargs(p))
    model.set_data_stats(1.0, [1.0] * len(t.stft_n_fft))
    opt = torch.optim.Adam(model.parameters(), lr=t.lr)
    gen = torch.Generator().manual_seed(t.seed)
    for k in range(steps + 1):
        if k == 1:
            t0 = time.perf_counter()
        x = fam.step_batch(bank, step=k + 1, batch_size=t.batch_size, samples=t.crop_samples, seed=t.seed)
        opt.zero_grad()
        _, losses, _ = model(x, generator=gen)
        losses["loss"].backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def _with_steps(doc: dict, steps: int) -> dict:
    doc = json.loads(json.dumps(doc))
    doc["train"]["steps"] = steps
    doc["train"]["checkpoint_every"] = max(steps, 1)
    return doc


def lstm_rate(params: dict, vocab_size: int = 200, steps: int = 10) -> float:
    from pipeline.training import lstm as fam

    m, t = params["lstm"]["model"], params["lstm"]["train"]
    torch.set_num_threads(int(t["threads"]) or torch.get_num_threads())
    model = fam.build_model(vocab_size, embedding=m["embedding"], hidden=m["hidden"], layers=m["layers"],
                            dropout=m["dropout"], attention=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = torch.randint(4, vocab_size, (t["batch_size"], t["window"] + 1))
    for k in range(steps + 1):
        if k == 1:
            t0 = time.perf_counter()
        loss = fam.step(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def tenfold_phrases(phrases: Path, work: Path) -> Path:
    """``phrases`` with its train split repeated ten times under new song ids (cached)."""
    from pipeline.formats.phrase_shards import read_phrase_npz, write_phrase_npz

    src = phrases / "npz" / "train.npz"
    dest = work / f"phrases10-{hashlib.sha256(src.read_bytes()).hexdigest()[:8]}"
    if (dest / ".complete").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "npz").mkdir(parents=True)
    shutil.copy(phrases / "schema.json", dest / "schema.json")
    z = read_phrase_npz(src)  # sparse, once: ~10 bytes per non-zero cell
    n = int(z.shape[0])
    nz = np.concatenate([z.nonzero.astype(np.int64) + np.array([[k * n], [0], [0], [0], [0]]) for k in range(10)], 1)
    ids = [hashlib.md5(f"{i}/{k}".encode()).hexdigest() for k in range(10) for i in z.ids]
    shape = z.shape.copy()
    shape[0] = 10 * n
    write_phrase_npz(dest / "npz" / "train.npz", shape, nz, ids=ids, first_bar=np.tile(z.first_bar, 10))
    (dest / ".complete").write_text("10\n")
    return dest


def tenfold_vocab(vocab_dir: Path, work: Path) -> Path:
    """``vocab_dir`` with every token shard copied ten times, the copies' song ids renamed (cached)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dest = work / f"vocab10-{vocab_dir.name}"
    if (dest / ".complete").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "shards").mkdir(parents=True)
    shutil.copy(vocab_dir / "vocab.json", dest / "vocab.json")
    shutil.copy(vocab_dir / "shards" / "schema.json", dest / "shards" / "schema.json")
    for path in sorted((vocab_dir / "shards").glob("*.parquet")):
        table = pq.read_table(path)
        for k in range(10):
            ids = pa.array([hashlib.md5(f"{i}/{k}".encode()).hexdigest() if k else i
                            for i in table.column("id").to_pylist()], pa.string())
            copy = table.set_column(table.schema.get_field_index("id"), table.schema.field("id"), ids)
            pq.write_table(copy, dest / "shards" / f"{path.stem}-{k:02d}.parquet", compression="zstd")
    (dest / ".complete").write_text("10\n")
    return dest


def tenfold_audio(audio: Path, work: Path) -> Path:
    """``audio`` with every Parquet shard copied ten times, the copies' song ids renamed (cached)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dest = work / "audio10"
    if (dest / ".complete").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "parquet").mkdir(parents=True)
    shutil.copy(audio / "schema.json", dest / "schema.json")
    for path in sorted((audio / "parquet").glob("*.parquet")):
        table = pq.read_table(path)
        for k in range(10):
            ids = pa.array([hashlib.md5(f"{i}/{k}".encode()).hexdigest() if k else i
                            for i in table.column("id").to_pylist()], pa.string())
            copy = table.set_column(table.schema.get_field_index("id"), table.schema.field("id"), ids)
            pq.write_table(copy, dest / "parquet" / f"{path.stem}-{k:02d}.parquet")
    (dest / ".complete").write_text("10\n")
    return dest


#: what every memory-run subprocess starts with (this checkout's pipeline and stages, pinned numerics)
HEAD = r"""
import sys, json, shutil
sys.path.insert(0, {root!r})
from pathlib import Path
import pipeline.stages
pipeline.stages.__path__[:] = [{stages!r}]
from pipeline import numerics
numerics.pin()
"""
CHILD = {
    "musegan": HEAD + r"""
from pipeline.stages import musegan as stage
from pipeline.config import section_doc
doc = section_doc("musegan", Path({params!r}))
doc["train"]["steps"] = doc["train"]["checkpoint_every"] = {steps}
p = stage.params_from_dict(doc)
if {dense!r}:  # the former path: the whole split as one dense bool array
    x, _, _ = stage.load_split(Path({data!r}), "train")
    stage.open_split = lambda phrases, split: x
shutil.rmtree({out!r}, ignore_errors=True)
stage.run_train(phrases=Path({data!r}), out=Path({out!r}), variant="jamming", params=p, resume=False)
""",
    "lstm": HEAD + r"""
from pipeline.stages import lstm as stage
from pipeline.training import lstm as fam
from pipeline.config import section_doc
from pipeline.config import from_dict
doc = section_doc("lstm", Path({params!r}))
doc["train"]["epochs"] = 1
doc["train"]["max_windows"] = {steps} * doc["train"]["batch_size"]
doc["train"]["max_eval_windows"] = doc["train"]["batch_size"]
p = from_dict(stage.Params, doc, section="lstm")
if {dense!r}:  # the former path: every window of the split in one int64 array
    fam.SongWindows = lambda shards, vocab, split, window, stride: fam.make_windows(
        fam.song_sequences(shards, vocab, split), window, stride)
shutil.rmtree({out!r}, ignore_errors=True)
stage.run_train(vocab_dir=Path({data!r}), out=Path({out!r}), variant="lstm", params=p, resume=False)
""",
    "vqvae": HEAD + r"""
from pipeline.stages import vqvae as stage
from pipeline.training import vqvae as fam
from pipeline.config import section_doc
doc = section_doc("vqvae", Path({params!r}))
doc["train"]["steps"] = {steps}
p = stage.params_from_dict(doc)
if {dense!r}:  # the former path: every clip of the split decoded in memory
    lazy = fam.read_clips
    def read_clips(*a, **k):
        bank = lazy(*a, **k)
        bank.pcm = [bank.pcm[i] for i in range(len(bank))]
        return bank
    fam.read_clips = read_clips
shutil.rmtree({out!r}, ignore_errors=True)
stage.run_train(audio_dir=Path({data!r}), out=Path({out!r}), params=p, resume=False)
""",
    "jukebox": HEAD + r"""
from pipeline.stages import jukebox as stage
from pipeline.config import section_doc
data = Path({data!r})  # "<audio folder>|<clips>"
audio, clips = str(data).rsplit("|", 1)
doc = section_doc("jukebox", Path({params!r}))
doc["train"]["prior_steps"] = doc["train"]["checkpoint_every"] = {steps}
doc["train"]["clips"] = int(clips)
p = stage.Params_from_dict(doc)
if {dense!r}:  # the former path: every crop in one array, every level's codes in memory
    stage.encode_to_disk = lambda vq, audio_dir, *, split, samples, n, seed, meta, folder: stage.encode(
        vq, stage._clips(audio_dir, split=split, samples=samples, n=n, seed=seed, meta=meta))
shutil.rmtree({out!r}, ignore_errors=True)
stage.run_train_prior(vqvae_dir=Path(audio).parent / "models" / "vqvae", audio_dir=Path(audio), out=Path({out!r}),
                      params=p, resume=False)
""",
}
PEAK = """
for line in open("/proc/self/status"):
    if line.startswith("VmHWM"):
        print(json.dumps({"vmhwm_kb": int(line.split()[1])}))
"""


def peak_rss(family: str, data: Path, params_path: Path, steps: int, work: Path, dense: bool) -> float:
    """Peak resident memory (MiB, ``VmHWM``) of one short training run in a fresh process."""
    code = CHILD[family].format(root=str(ROOT), stages=STAGES, params=str(params_path), steps=steps, dense=dense, data=str(data),
                                out=str(work / f"{family}-rss")) + PEAK
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"error: the {family} training subprocess failed: "
                         f"{(res.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(res.stdout.strip().splitlines()[-1])["vmhwm_kb"] / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "datasets")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "loaders.json")
    ap.add_argument("--jukebox-clips", type=int, default=32,
                    help="the Jukebox prior's memory run encodes this many crops (N) and ten times as many (10N)")
    ap.add_argument("--memory-only", default=None,
                    help="comma-separated families (musegan,lstm,vqvae,jukebox): only their memory runs")
    args = ap.parse_args()
    if not (args.data / "phrases" / "npz" / "train.npz").exists():
        raise SystemExit(f"error: {args.data}/phrases/npz/train.npz: missing (dvc repro build_phrases first)")
    params = yaml.safe_load(args.params.read_text())
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-loaders-"))
    work.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}")
    result: dict = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu}}
    if not args.memory_only:
        print(f"loaders (samples/s, {args.batches} batches after a warm-up one):", flush=True)
        result["loaders"] = loaders(args.data, params, args.batches)
        mg = params["musegan"]["train"]
        steps = musegan_rate(args.data, args.params, args.steps, work)
        need = steps * mg["n_critic"] * mg["batch_size"]
        lt = params["lstm"]["train"]
        lsteps = lstm_rate(params)
        result["models"] = {"musegan jamming": {"steps_per_s": steps, "samples_per_s": need},
                            "lstm": {"steps_per_s": lsteps, "samples_per_s": lsteps * lt["batch_size"]}}
        if "audio crops" in result["loaders"]:
            vq = params["vqvae"]["train"]
            vsteps = vqvae_rate(args.data, args.params, args.steps)
            result["models"]["vqvae"] = {"steps_per_s": vsteps, "samples_per_s": vsteps * vq["batch_size"]}
        print("models (CPU):")
        print(f"  musegan jamming: {steps:.2f} generator steps/s x {mg['n_critic']} batches x {mg['batch_size']} "
              f"= {need:.1f} phrases/s (phrases loader, 0 workers: {result['loaders']['phrases'][0]:.1f}/s)")
        if "token windows" in result["loaders"]:
            print(f"  lstm: {lsteps:.2f} steps/s x {lt['batch_size']} = {lsteps * lt['batch_size']:.1f} windows/s "
                  f"(token windows loader, 0 workers: {result['loaders']['token windows'][0]:.1f}/s)")
        if "vqvae" in result["models"]:
            v = result["models"]["vqvae"]
            print(f"  vqvae: {v['steps_per_s']:.2f} steps/s x {vq['batch_size']} = {v['samples_per_s']:.1f} crops/s "
                  f"(audio crops loader, 0 workers: {result['loaders']['audio crops'][0]:.1f}/s)")
    want = set(args.memory_only.split(",")) if args.memory_only else {"musegan", "lstm", "vqvae", "jukebox"}
    vocab_dir = args.data / "vocab" / params["lstm"]["vocab"]
    sets = {}
    if "musegan" in want:
        sets["musegan"] = (args.data / "phrases", tenfold_phrases(args.data / "phrases", work))
    if "lstm" in want and vocab_dir.is_dir():
        sets["lstm"] = (vocab_dir, tenfold_vocab(vocab_dir, work))
    if "vqvae" in want and (args.data / "audio" / "parquet").is_dir():
        sets["vqvae"] = (args.data / "audio", tenfold_audio(args.data / "audio", work))
    if "jukebox" in want and (args.data / "models" / "vqvae" / "checkpoints").is_dir():
        # the prior's data is the crops it encodes: N and 10N of them (the "data" argument carries the count)
        sets["jukebox"] = (Path(f"{args.data / 'audio'}|{args.jukebox_clips}"),
                           Path(f"{args.data / 'audio'}|{10 * args.jukebox_clips}"))
    print(f"peak RSS of a training process ({args.steps} steps; N: the data, 10N: repeated ten times):", flush=True)
    rss = {}
    for family, (small, big) in sets.items():
        for label, dense in (("streamed", False), ("dense (former)", True)):
            a = peak_rss(family, small, args.params, args.steps, work, dense)
            b = peak_rss(family, big, args.params, args.steps, work, dense)
            rss[f"{family} {label}"] = {"N": a, "10N": b, "ratio": b / a}
            print(f"  {family:8s} {label:15s} N {a:7.0f} MiB  10N {b:7.0f} MiB  ratio {b / a:.2f}", flush=True)
    result["peak_rss_mib"] = rss
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
