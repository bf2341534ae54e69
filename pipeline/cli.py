"""The `pipeline` command: one thin command per stage over plain functions.

Heavy modules are imported inside the commands so that `pipeline --help` stays fast. The options
that several commands share are defined once (``WorkersOpt``, ``OutOpt``...), and every option with
a fixed set of values takes it from :mod:`pipeline.names` (``--help`` lists the values; another
value is a usage error). One exit path (``fail``, ``main``): an expected failure (``PipelineError``)
is one line and exit 1, a usage error one line and exit 2, a bug (an unexpected exception, or
files whose manifest rows say ``internal.bug``) exit 3 (an exception keeps its traceback, then one
line), Ctrl-C exit 130.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from pipeline.errors import PipelineError, ParamsError
from pipeline.names import JukeboxMode, JukeboxPart, LmdVariant, LstmVariant, MuseganVariant, VocabKind

#: exit codes: an expected failure (bad input or param), a usage error (bad option or value), a bug
EXIT_ERROR, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 1, 2, 3, 130

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Lakh MIDI to training-ready shards, and the models that use them.",
)

# ---------------------------------------------------------------------------------------------
# the options several commands share

WorkersOpt = Annotated[int, typer.Option("--workers", envvar="PIPELINE_WORKERS",
                                         help="Local worker processes (0: one per core, 1: in this process).")]
SchedulerOpt = Annotated[Optional[str], typer.Option("--scheduler", envvar="DASK_SCHEDULER_ADDRESS",
                                                     help="Address of a running dask.distributed scheduler.")]
ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read the stage's section from.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output folder.")]
#: a model family's folder (datasets/models/<family>): training writes there, sample and evaluate read it
FamilyOutOpt = Annotated[Path, typer.Option(
    "--out", help="The family's folder: training writes its checkpoints there; sample and evaluate read them "
                  "and write beside them.")]
#: one variant's folder of a family with variants (lstm, musegan)
VariantOutOpt = Annotated[Optional[Path], typer.Option(
    "--out", help="The variant's folder (default datasets/models/<family>/<variant>): training writes its "
                  "checkpoints there; sample and evaluate read them and write beside them.")]
DeviceOpt = Annotated[str, typer.Option("--device", envvar="PIPELINE_DEVICE",
                                        help="torch device: cpu, cuda or cuda:N (not a param: it changes no result on CPU).")]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="Ignore checkpoints and start again.")]
NprocOpt = Annotated[int, typer.Option("--nproc", min=1, help="Train data-parallel with N processes on this machine "
                                       "(re-runs the command under torchrun; gloo on cpu, NCCL on cuda). Under torchrun "
                                       "itself, leave it at 1.")]


def _rank0() -> bool:
    """Not a torchrun worker of rank > 0 (only rank 0 prints the summary line)."""
    import os

    return os.environ.get("RANK", "0") == "0"


def _launch_if_asked(nproc: int) -> bool:
    """``--nproc N`` (N > 1) outside torchrun: run this same command under ``torch.distributed.run``
    with N workers (``training.distributed.launch``) and return True; False where there is nothing
    to launch."""
    import os

    if nproc <= 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return False
    from pipeline.training import distributed

    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            argv.append(a)
    distributed.launch(nproc, argv)
    return True
AudioDirOpt = Annotated[Path, typer.Option("--audio-dir", help="Audio shards (render-audio / ingest-audio output).")]
VqvaeDirOpt = Annotated[Path, typer.Option("--vqvae-dir", help="The trained VQ-VAE (`pipeline train vqvae`'s --out).")]
NativeNumericsOpt = Annotated[bool, typer.Option(
    "--native-numerics", envvar="PIPELINE_NATIVE_NUMERICS",
    help="Let torch, MKL and numpy pick this CPU's fastest kernels (the numbers may then differ on another "
         "CPU); by default the kernels are pinned to AVX2 level, the same on every x86-64 CPU.")]

PARAMS = Path("params.yaml")
MODELS = Path("datasets/models")


# ---------------------------------------------------------------------------------------------
# the one exit path


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """End the command: ``error: <message>`` as one line on stderr, then exit ``code``."""
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def _data_summary(summary: dict, result: str) -> None:
    """A data stage's one-line result (counts per status, then ``result``); exit 3 when files hit a
    bug (their manifest rows say internal.bug): the run finished, but not cleanly."""
    s = summary["status"]
    typer.echo(f"{summary['files']} files: {s['ok']} ok, {s['recovered']} recovered, {s['skipped']} skipped, "
               f"{s['error']} errors -> {result}")
    n = summary["codes"].get("internal.bug")
    if n:
        fail(f"{n} file(s) hit a bug (code internal.bug in the manifest)", EXIT_BUG)


def _num(x, digits: int = 4) -> str:
    """A number for the console: rounded (the JSON outputs keep every digit); '-' for None."""
    if x is None:
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


# ---------------------------------------------------------------------------------------------
# data stages


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to write params.yaml and dvc.yaml into.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite params.yaml and dvc.yaml where they exist.")] = False,
) -> None:
    """Write the default params.yaml and dvc.yaml (copies of the repository's) into DIRECTORY."""
    from pipeline.config import init_project

    for path in init_project(directory, force=force):
        typer.echo(f"wrote {path}")


@app.command()
def corpus(out: OutOpt = Path("datasets/corpus"), params: ParamsOpt = PARAMS) -> None:
    """Make the built-in corpus: music21 works exported to MIDI and seeded band arrangements."""
    from pipeline.config import load_section
    from pipeline.stages import corpus as stage

    summary = stage.run(out=out, params=load_section(stage.Params, "corpus", params))
    typer.echo(summary)


@app.command("build-lpd")
def build_lpd(
    source: Annotated[Path, typer.Argument(help="A Lakh folder (lmd_full, lmd_matched, clean_midi...), any folder of .mid/.midi/.rmi files, or a .tar.gz of them.")],
    out: OutOpt = Path("datasets/lpd"),
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = None,
    match_scores: Annotated[Optional[Path], typer.Option(help="LMD's match_scores.json: marks LPD's matched and cleansed subsets.")] = None,
    params: ParamsOpt = PARAMS,
) -> None:
    """Convert Lakh MIDI into LPD-style piano-rolls and 5-D tensors."""
    from pipeline.config import load_section
    from pipeline.stages import build_lpd as stage

    summary = stage.run(source=source, out=out, params=load_section(stage.Params, "build_lpd", params),
                        workers=workers, scheduler=scheduler, match_scores=match_scores)
    _data_summary(summary, f"{summary['songs']} songs, {summary['bars']} bars in {out}")


def _audio_summary(summary: dict, out: Path) -> None:
    _data_summary(summary, f"{summary['songs']} songs, {summary['clips']} clips, {summary['hours']} h of audio in {out}")


@app.command("render-audio")
def render_audio(
    source: Annotated[Path, typer.Argument(help="A Lakh folder, any folder of .mid/.midi/.rmi files, or a .tar.gz of them.")],
    out: OutOpt = Path("datasets/audio"),
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = None,
    params: ParamsOpt = PARAMS,
) -> None:
    """Render MIDI to 44.1 kHz audio clips with FluidSynth (Parquet in the HF Audio layout + NPZ)."""
    from pipeline.config import load_section
    from pipeline.stages import render_audio as stage

    summary = stage.run(source=source, out=out, params=load_section(stage.Params, "render_audio", params),
                        workers=workers, scheduler=scheduler)
    _audio_summary(summary, out)


@app.command("ingest-audio")
def ingest_audio(
    folder: Annotated[Path, typer.Argument(help="A folder of WAV/FLAC/MP3 files (any sample rate).")],
    out: OutOpt = Path("datasets/audio_ingest"),
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = None,
    params: ParamsOpt = PARAMS,
) -> None:
    """Resample existing recordings to 44.1 kHz, downmix and write them as render-audio's shards."""
    from pipeline.config import load_section
    from pipeline.stages import ingest_audio as stage

    summary = stage.run(source=folder, out=out, params=load_section(stage.Params, "ingest_audio", params),
                        workers=workers, scheduler=scheduler)
    _audio_summary(summary, out)


@app.command("build-vocab")
def build_vocab(
    source: Annotated[Path, typer.Argument(help="A folder of .mid/.midi/.rmi files (any Lakh layout).")],
    kind: Annotated[VocabKind, typer.Option("--kind", help="Vocabulary: notes (the music21 recipe), remi or midilike.")] = "remi",
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default datasets/vocab/<kind>).")] = None,
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = None,
    vocab: Annotated[Optional[Path], typer.Option(help="Apply this existing vocab.json instead of building one (unknown tokens -> UNK).")] = None,
    params: ParamsOpt = PARAMS,
) -> None:
    """Build a token vocabulary (vocab.json) and token shards (Parquet) for one vocabulary kind."""
    from pipeline.config import load_section
    from pipeline.stages import build_vocab as stage

    out = out if out is not None else Path("datasets/vocab") / kind
    summary = stage.run(source=source, out=out, kind=kind, params=load_section(stage.Params, "build_vocab", params),
                        workers=workers, scheduler=scheduler, vocab_path=vocab)
    _data_summary(summary, f"{summary['songs']} songs, {summary['tokens']} tokens, {summary['vocab_size']} ids "
                           f"({kind}) in {out}")


@app.command("build-phrases")
def build_phrases(
    lpd: Annotated[Path, typer.Option(help="build-lpd's output folder (reads its tensors/).")] = Path("datasets/lpd"),
    out: OutOpt = Path("datasets/phrases"),
    params: ParamsOpt = PARAMS,
) -> None:
    """Cut LPD-5 tensors into binarised 4-bar phrases (MuseGAN's NPZ format + Parquet shards)."""
    from pipeline.config import load_section
    from pipeline.stages import build_phrases as stage

    summary = stage.run(lpd=lpd, out=out, params=load_section(stage.Params, "build_phrases", params))
    n = summary["phrases"]
    typer.echo(f"{summary['songs']} songs, {summary['candidates']} candidates -> {n['train']} train, "
               f"{n['valid']} valid, {n['test']} test phrases in {out}")


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="Any file the pipeline writes (shard, manifest, song NPZ, vocab.json, tokenizer.json, schema.json, summary.json), a MIDI file, or an output folder.")],
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw a piano-roll (song NPZ, tensor or phrase shard) or spectrogram (audio shard) here (.png, .svg or .pdf).")] = None,
    song: Annotated[Optional[str], typer.Option("--song", help="With --plot: a song id, or a row index in the shard (a phrase in phrase shards, a clip in audio shards); default: the first.")] = None,
    bars: Annotated[Optional[str], typer.Option("--bars", help="With --plot: the bars A:B to draw (0-based, B excluded; also A:, :B or A); default: the first 8.")] = None,
    tracks: Annotated[Optional[str], typer.Option("--tracks", help="With --plot: comma-separated track names, e.g. Piano,Bass; default: every track.")] = None,
) -> None:
    """Print what an output file, a MIDI file or a folder holds (counts, shapes, statuses, sizes); draw it with --plot.

    A damaged file, or one the pipeline does not write, is refused in one line (exit 1)."""
    from pipeline import inspection, inspection_plot

    if plot is None and (song, bars, tracks) != (None, None, None):
        raise ParamsError("--song, --bars and --tracks choose what --plot draws: add --plot OUT.png")
    if plot is not None:  # a malformed value is refused before anything is read
        inspection_plot.check_options(plot, bars=bars, tracks=tracks)
    for line in inspection.describe(path):
        typer.echo(line)
    if plot is not None:
        typer.echo(f"wrote {inspection_plot.plot(path, plot, song=song, bars=bars, tracks=tracks)}")


@app.command()
def report(
    datasets: Annotated[Path, typer.Option(help="The data workspace the stages wrote.")] = Path("datasets"),
    out: Annotated[Path, typer.Option(help="Output folder (index.html + assets/, report.md + curve PNGs).")] = Path("datasets/report"),
    images: Annotated[int, typer.Option(help="Sample images shown per variant in report.md.")] = 2,
    links: Annotated[int, typer.Option(help="Sample files linked per variant in report.md.")] = 8,
    params: ParamsOpt = Path("params.yaml"),
    native_numerics: NativeNumericsOpt = False,
) -> None:
    """The report: a web page (index.html) and a Markdown page over the data and every model family."""
    from pipeline import numerics
    from pipeline.config import read_params
    from pipeline.errors import ParamsError

    numerics.pin(native_numerics)
    from pipeline.stages import report as stage

    doc = read_params(params)
    if not isinstance(doc.get("render_audio"), dict):
        raise ParamsError(f"{params}: no render_audio section (the report renders the MIDI samples with its settings)")
    s = stage.run(datasets=datasets, out=out, images_per_part=images, links_per_part=links,
                  render=doc.get("render_audio"), params=doc)
    fams = ", ".join(f"{k} ({len(v['parts'])})" for k, v in s["families"].items()) or "no model families yet"
    typer.echo(f"{fams}; {s['players']} audio players, {s['figures']} data figures -> {s['page']}")


def check_paper_params(doc: dict) -> None:
    """Load every section of a params document that has a stage through that stage's typed params
    (a wrong key or value in a paper-scale config is one ``ParamsError`` line)."""
    import importlib

    from pipeline.config import from_dict

    for section in doc:
        try:
            module = importlib.import_module(f"pipeline.stages.{section}")
        except ModuleNotFoundError:
            continue
        cls = getattr(module, "Params", None)
        if cls is not None and isinstance(doc[section], dict):
            from_dict(cls, doc[section], section=section)


@app.command("paper-config")
def paper_config(
    family: Annotated[str, typer.Argument(help="lstm, musegan or jukebox (with the VQ-VAE).")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the whole params file (the paper's sizes laid over --params) to this file.")] = None,
    dvc_args: Annotated[bool, typer.Option("--dvc-args", help="Print the overrides as `-S key=value` arguments of `dvc exp run`.")] = False,
    params: ParamsOpt = PARAMS,
) -> None:
    """The papers' model sizes for a family (pipeline/defaults/paper/FAMILY.yaml), for `dvc exp run -S` or a params file (--out)."""
    import shlex

    import yaml

    from pipeline import paper_configs
    from pipeline.files import atomic_write_bytes

    doc = paper_configs.merged_params(family, params)
    check_paper_params({k: doc[k] for k in paper_configs.overrides(family)})
    if out is not None:
        atomic_write_bytes(out, yaml.safe_dump(doc, sort_keys=False).encode())
        typer.echo(f"wrote {out} ({params} with {paper_configs.config_path(family).name} on top)")
    if dvc_args or out is None:
        typer.echo(" ".join(shlex.quote(a) for a in paper_configs.set_args(family)))


@app.command("fetch-lmd")
def fetch_lmd(
    variant: Annotated[LmdVariant, typer.Option("--variant", help="full (LMD-full), matched, aligned or clean (clean_midi).")] = "full",
    out: OutOpt = Path("datasets/lmd"),
    url_base: Annotated[Optional[str], typer.Option(envvar="PIPELINE_LMD_URL", help="Server folder of the archives (default: LMD's own, http://hog.ee.columbia.edu/craffel/lmd/).")] = None,
    retries: Annotated[int, typer.Option(help="Resumptions after a dropped connection before giving up.")] = 3,
) -> None:
    """Download a Lakh MIDI Dataset archive (resumable, checksum-verified) for build-lpd to read as is."""
    from pipeline import fetch

    fetch.fetch_lmd(variant, out, url_base=url_base, retries=retries, log=typer.echo)
    typer.echo(f"next: {fetch.next_command(variant, out)}")


# ---------------------------------------------------------------------------------------------
# model families: `pipeline train|sample|evaluate <family>`, the family named as its params
# section, its stages module, its DVC stages (train_<family>...) and its folder datasets/models/<family>


def _pin_numerics(native_numerics: NativeNumericsOpt = False) -> None:
    """Pinned CPU numerics before torch or numpy loads (pipeline.numerics), then torch's settings."""
    from pipeline import numerics

    numerics.pin(native_numerics)
    numerics.configure_torch()


train_app = typer.Typer(no_args_is_help=True, callback=_pin_numerics, help="Train a model family on the prepared shards.")
sample_app = typer.Typer(no_args_is_help=True, callback=_pin_numerics, help="Sample from a trained model family.")
evaluate_app = typer.Typer(no_args_is_help=True, callback=_pin_numerics,
                           help="Evaluate a trained model family and its samples.")
app.add_typer(train_app, name="train")
app.add_typer(sample_app, name="sample")
app.add_typer(evaluate_app, name="evaluate")


# lstm

LstmVariantOpt = Annotated[LstmVariant, typer.Option("--variant", help="lstm (stacked LSTM) or lstm_attention (+ attention over the window).")]
LstmVocabDirOpt = Annotated[Optional[Path], typer.Option("--vocab-dir", help="Token shards folder (default datasets/vocab/<lstm.vocab>).")]


def _lstm_setup(params: Path, vocab_dir: Optional[Path], out: Optional[Path], variant: str):
    from pipeline.config import load_section
    from pipeline.stages import lstm as stage

    p = load_section(stage.Params, "lstm", params)
    return (stage, p, vocab_dir if vocab_dir is not None else Path("datasets/vocab") / p.vocab,
            out if out is not None else MODELS / "lstm" / variant)


@train_app.command("lstm")
def train_lstm(variant: LstmVariantOpt = "lstm", vocab_dir: LstmVocabDirOpt = None, out: VariantOutOpt = None,
               fresh: FreshOpt = False, device: DeviceOpt = "cpu", params: ParamsOpt = PARAMS,
               nproc: NprocOpt = 1) -> None:
    """Train an LSTM next-token model (resumes from its last checkpoint)."""
    stage, p, vd, out = _lstm_setup(params, vocab_dir, out, variant)
    if _launch_if_asked(nproc):
        return
    s = stage.run_train(vocab_dir=vd, out=out, variant=variant, params=p, resume=not fresh, log=typer.echo,
                        device=device)
    if not _rank0():
        return
    typer.echo(f"{variant}: {s['epochs_run']} epochs ({s['train_windows']} train / {s['valid_windows']} valid windows), "
               f"best {s['valid_source']} loss {_num(s['best_loss'])} at epoch {s['best_epoch']}, {_num(s['seconds'], 2)} s -> {out}")


@sample_app.command("lstm")
def sample_lstm(variant: LstmVariantOpt = "lstm", vocab_dir: LstmVocabDirOpt = None, out: VariantOutOpt = None,
                device: DeviceOpt = "cpu", params: ParamsOpt = PARAMS) -> None:
    """Sample MIDI files (and piano-roll PNGs) from a trained LSTM model."""
    stage, p, vd, out = _lstm_setup(params, vocab_dir, out, variant)
    s = stage.run_sample(vocab_dir=vd, out=out, variant=variant, params=p, device=device)
    typer.echo(f"{variant}: {s['samples']} samples, {s['generated_tokens']} tokens -> {s['out']}")


@evaluate_app.command("lstm")
def evaluate_lstm(variant: LstmVariantOpt = "lstm", vocab_dir: LstmVocabDirOpt = None, out: VariantOutOpt = None,
                  device: DeviceOpt = "cpu", params: ParamsOpt = PARAMS) -> None:
    """Cross-entropy, perplexity, accuracy and UPC/QN/EB of an LSTM model (JSON + Markdown report)."""
    stage, p, vd, out = _lstm_setup(params, vocab_dir, out, variant)
    r = stage.run_evaluate(vocab_dir=vd, out=out, variant=variant, params=p, device=device)
    typer.echo(f"{variant}: valid ce {_num(r['valid']['cross_entropy'])}, test ce {_num(r['test']['cross_entropy'])} -> "
               f"{out / 'evaluation.json'}")


# vqvae: the Jukebox family's codec, a family of its own (params vqvae, datasets/models/vqvae)


@train_app.command("vqvae")
def train_vqvae(audio_dir: AudioDirOpt = Path("datasets/audio"), out: FamilyOutOpt = MODELS / "vqvae",
                fresh: FreshOpt = False, device: DeviceOpt = "cpu", params: ParamsOpt = PARAMS,
                nproc: NprocOpt = 1) -> None:
    """Train the Jukebox-style multi-level VQ-VAE on raw audio (resumes from its last checkpoint)."""
    from pipeline.config import load_section
    from pipeline.stages import vqvae as stage

    p = load_section(stage.Params, "vqvae", params)
    if _launch_if_asked(nproc):
        return
    s = stage.run_train(audio_dir=audio_dir, out=out, params=p, resume=not fresh, log=typer.echo, device=device)
    if not _rank0():
        return
    levels = ", ".join(f"hop {e['hop']}: SC {e['spectral_convergence_db']:.2f} dB, usage {e['codebook_usage']:.2f}"
                       for e in s["evaluation"].values())
    typer.echo(f"vqvae: {s['steps_run']} steps ({s['train_clips']} train / {s['heldout_clips']} held-out clips), "
               f"best {s['valid_source']} loss {_num(s['best_valid_loss'])} at step {s['best_step']}; {levels}; "
               f"{_num(s['seconds'], 2)} s -> {out}")


# jukebox: the prior and upsamplers over the VQ-VAE's codes (params jukebox, datasets/models/jukebox)


def _jukebox_params(params: Path):
    from pipeline.config import load_section
    from pipeline.stages import jukebox as stage

    return stage, load_section(stage.Params, "jukebox", params)


@train_app.command("jukebox")
def train_jukebox(part: Annotated[JukeboxPart, typer.Option("--part", help="prior (the top level) or upsampler (one lower level: --level).")] = "prior",
                  level: Annotated[Optional[int], typer.Option("--level", help="upsampler: a level below the top (0: the bottom).")] = None,
                  vqvae_dir: VqvaeDirOpt = MODELS / "vqvae", audio_dir: AudioDirOpt = Path("datasets/audio"),
                  out: FamilyOutOpt = MODELS / "jukebox", fresh: FreshOpt = False, device: DeviceOpt = "cpu",
                  params: ParamsOpt = PARAMS, nproc: NprocOpt = 1) -> None:
    """Train the Jukebox top-level prior or one level's upsampler on the VQ-VAE's codes (resumes).

    Factorized-attention transformers; an upsampler is conditioned on the codes of the level above.
    Writes <out>/prior or <out>/upsampler_<level>."""
    if (part == "upsampler") != (level is not None):
        raise ParamsError("--level goes with --part upsampler (and only with it)")
    stage, p = _jukebox_params(params)
    if _launch_if_asked(nproc):
        return
    kw = dict(vqvae_dir=vqvae_dir, audio_dir=audio_dir, out=out, params=p, resume=not fresh, log=typer.echo,
              device=device)
    s = stage.run_train_prior(**kw) if part == "prior" else stage.run_train_upsampler(level=level, **kw)
    if not _rank0():
        return
    bits = "-" if s["last10_train_bits"] is None else f"{s['last10_train_bits']:.4f}"
    typer.echo(f"{s['name']} (level {s['level']}, hop {s['hop_length']}): {s['steps_run']} steps run, {s['steps']} in all; "
               f"{bits} bits/token over the last 10 (uniform {s['uniform_bits']:.2f}); encoding {_num(s['encode_seconds'], 2)} s, "
               f"training {_num(s['train_seconds'], 2)} s -> {s['out']}")


@sample_app.command("jukebox")
def sample_jukebox(mode: Annotated[JukeboxMode, typer.Option("--mode", help="ancestral, windowed or primed.")] = "ancestral",
                   prompt: Annotated[Optional[Path], typer.Option("--prompt", help="primed: an audio file to continue (default: jukebox.sample.prompt, else held-out clips).")] = None,
                   vqvae_dir: VqvaeDirOpt = MODELS / "vqvae", audio_dir: AudioDirOpt = Path("datasets/audio"),
                   out: FamilyOutOpt = MODELS / "jukebox", device: DeviceOpt = "cpu", params: ParamsOpt = PARAMS) -> None:
    """Sample audio from the Jukebox prior and upsamplers (WAV + spectrogram PNG per level)."""
    stage, p = _jukebox_params(params)
    s = stage.run_sample(mode=mode, vqvae_dir=vqvae_dir, audio_dir=audio_dir, out=out, params=p,
                         prompt=prompt, device=device, log=typer.echo)
    typer.echo(f"{mode}: {s['samples']} samples of {s['seconds']:.3f} s, windows per level (bottom first) {s['windows']}, "
               f"{s['sample_seconds']} s -> {s['out']}")


@evaluate_app.command("jukebox")
def evaluate_jukebox(vqvae_dir: VqvaeDirOpt = MODELS / "vqvae", audio_dir: AudioDirOpt = Path("datasets/audio"),
                     out: FamilyOutOpt = MODELS / "jukebox", device: DeviceOpt = "cpu", params: ParamsOpt = PARAMS) -> None:
    """VQ-VAE numbers per level, held-out bits per token of the prior and upsamplers (JSON + Markdown)."""
    stage, p = _jukebox_params(params)
    r = stage.run_evaluate(vqvae_dir=vqvae_dir, audio_dir=audio_dir, out=out, params=p, device=device)
    bits = ", ".join(f"{m['name']} {m['heldout_bits_per_token']:.4f}" if m["heldout_bits_per_token"] is not None
                     else f"{m['name']} -" for m in r["priors"])
    typer.echo(f"held-out bits/token: {bits} -> {out / 'evaluation.json'}")


# musegan

MuseganVariantOpt = Annotated[MuseganVariant, typer.Option("--variant", help="jamming, composer, hybrid, temporal, track_conditional or musegan.")]
PhrasesOpt = Annotated[Path, typer.Option("--phrases", help="build-phrases' output folder (npz/<split>.npz, schema.json).")]


def _musegan_setup(params: Path, out: Optional[Path], variant: str):
    from pipeline.config import load_section
    from pipeline.stages import musegan as stage

    p = load_section(stage.Params, "musegan", params)
    return stage, p, out if out is not None else MODELS / "musegan" / variant


@train_app.command("musegan")
def train_musegan(variant: MuseganVariantOpt = "musegan", phrases: PhrasesOpt = Path("datasets/phrases"),
                  out: VariantOutOpt = None, fresh: FreshOpt = False, device: DeviceOpt = "cpu",
                  params: ParamsOpt = PARAMS, nproc: NprocOpt = 1) -> None:
    """Train a MuseGAN variant with WGAN-GP on the 4-bar phrases (resumes from its last checkpoint)."""
    stage, p, out = _musegan_setup(params, out, variant)
    if _launch_if_asked(nproc):
        return
    s = stage.run_train(phrases=phrases, out=out, variant=variant, params=p, resume=not fresh, log=typer.echo,
                        device=device)
    if not _rank0():
        return
    w = "-" if s["final_wasserstein"] is None else f"{s['final_wasserstein']:.4f}"
    typer.echo(f"{variant}: {s['steps_run']} generator steps run{' (resumed)' if s['resumed'] else ''} on "
               f"{s['phrases']} phrases, G {s['parameters']['generator']} / D {s['parameters']['critic']} parameters, "
               f"final E[D(real)] - E[D(fake)] {w}, {_num(s['seconds'], 2)} s -> {out}")


@sample_app.command("musegan")
def sample_musegan(variant: MuseganVariantOpt = "musegan", phrases: PhrasesOpt = Path("datasets/phrases"),
                   out: VariantOutOpt = None,
                   song: Annotated[Optional[str], typer.Option(help="track_conditional: accompany every phrase of this song id (writes <out>/accompaniment/<id>/).")] = None,
                   track: Annotated[Optional[str], typer.Option(help="track_conditional: the given track (must be the one the model was trained on, musegan.model.condition_track).")] = None,
                   device: DeviceOpt = "cpu", params: ParamsOpt = PARAMS) -> None:
    """Generate phrases: samples.npz, multitrack MIDI and piano-roll PNGs (accompaniment for track_conditional)."""
    stage, p, out = _musegan_setup(params, out, variant)
    s = stage.run_sample(phrases=phrases, out=out, variant=variant, params=p, device=device, song=song, track=track)
    typer.echo(f"{variant}: {s['phrases']} phrases ({s['files']} as MIDI + PNG), note density {s['density']:.4f} -> "
               f"{s['out']}")


@evaluate_app.command("musegan")
def evaluate_musegan(phrases: PhrasesOpt = Path("datasets/phrases"), out: FamilyOutOpt = MODELS / "musegan",
                     params: ParamsOpt = PARAMS) -> None:
    """EB, UPC, QN, DP and TD of the data and of every trained variant's samples (<out>/<variant>/samples),
    both definitions (JSON + Markdown in <out>)."""
    from pipeline.config import load_section
    from pipeline.stages import musegan as stage

    r = stage.run_evaluate(phrases=phrases, out=out, params=load_section(stage.Params, "musegan", params))
    found = ", ".join(r["samples"]) or "no variant samples found"
    typer.echo(f"data ({r['data']['phrases']} {r['data']['split']} phrases), {found} -> {out / 'evaluation.json'}")


# ---------------------------------------------------------------------------------------------
# the entry point


def main() -> None:
    """The console entry point and the one exit path: a user mistake is one line on stderr (exit 1
    for a bad input or param, 2 for a bad option or value), never a traceback; a bug keeps its
    traceback and ends with one line (exit 3); Ctrl-C says where the run stopped (exit 130)."""
    usage_error = typer.BadParameter.__mro__[1]  # click's UsageError, as typer ships it
    try:
        rc = app(standalone_mode=False)
    except PipelineError as exc:
        fail(str(exc), EXIT_ERROR)
    except usage_error as exc:
        message = " ".join(exc.format_message().split())
        if not message:  # (no arguments at all: the help was shown, and there is nothing more to say)
            sys.exit(EXIT_USAGE)
        fail(message, EXIT_USAGE)
    except (typer.Abort, KeyboardInterrupt):
        rc = EXIT_INTERRUPTED
    except Exception as exc:  # a bug: its traceback is for the bug report
        from pipeline.errors import missing_extra

        if isinstance(exc, ModuleNotFoundError) and (line := missing_extra(exc)) is not None:
            fail(line, EXIT_ERROR)  # a module of an extra the install left out (torch...): one line
        import traceback

        traceback.print_exc()
        fail(f"internal.bug: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
             "(a bug in the pipeline; the traceback above is for the report)", EXIT_BUG)
    if rc == EXIT_INTERRUPTED:  # Ctrl-C (typer turns it into this exit code)
        _interrupted()
    sys.exit(rc if isinstance(rc, int) else 0)


def _interrupted() -> NoReturn:
    from pipeline.progress import close_all

    where = "; ".join(f"{b.description.split(' (')[0]} stopped at {b.done} of {b.total}" for b in close_all())
    typer.echo(f"interrupted{': ' + where if where else ''}. Run the same command again: training resumes "
               "from its last checkpoint, and the data stages from their finished shards.", err=True)
    sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
