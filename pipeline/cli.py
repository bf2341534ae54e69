"""The `pipeline` command: one thin command per stage over plain functions.

Heavy modules are imported inside the commands so that `pipeline --help` stays fast.
Expected failures (PipelineError) print one line and exit 1; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from pipeline.errors import PipelineError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Lakh MIDI to training-ready shards, and the models that use them.",
)

WorkersOpt = Annotated[int, typer.Option(envvar="PIPELINE_WORKERS",
                                         help="Local worker processes (0: one per core, 1: in this process).")]
SchedulerOpt = Annotated[Optional[str], typer.Option(envvar="DASK_SCHEDULER_ADDRESS",
                                                     help="Address of a running dask.distributed scheduler.")]


def _exit_on_bugs(summary: dict) -> None:
    """Exit 3 when files hit a bug (their rows say internal.bug): the run finished, but not cleanly."""
    n = summary["codes"].get("internal.bug")
    if n:
        typer.echo(f"error: {n} file(s) hit a bug (code internal.bug in the manifest)", err=True)
        raise typer.Exit(3)


#: the fixed choices of the options (tests/test_cli.py checks them against the stages' constants)
VocabKind = Literal["notes", "remi", "midilike"]

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read the stage's section from.")]


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
def corpus(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("datasets/corpus"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Make the built-in corpus: music21 works exported to MIDI and seeded band arrangements."""
    from pipeline.config import load_section
    from stages import corpus as stage

    summary = stage.run(out=out, params=load_section(stage.Params, "corpus", params))
    typer.echo(summary)


@app.command("build-lpd")
def build_lpd(
    source: Annotated[Path, typer.Argument(help="A Lakh folder (lmd_full, lmd_matched, clean_midi...), any folder of .mid/.midi/.rmi files, or a .tar.gz of them.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("datasets/lpd"),
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = None,
    match_scores: Annotated[Optional[Path], typer.Option(help="LMD's match_scores.json: marks LPD's matched and cleansed subsets.")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Convert Lakh MIDI into LPD-style piano-rolls and 5-D tensors."""
    from pipeline.config import load_section
    from stages import build_lpd as stage

    summary = stage.run(source=source, out=out, params=load_section(stage.Params, "build_lpd", params),
                        workers=workers, scheduler=scheduler, match_scores=match_scores)
    s = summary["status"]
    typer.echo(f"{summary['files']} files: {s['ok']} ok, {s['recovered']} recovered, {s['skipped']} skipped, "
               f"{s['error']} errors -> {summary['songs']} songs, {summary['bars']} bars in {out}")
    _exit_on_bugs(summary)


def _num(x, digits: int = 4) -> str:
    """A number for the console: rounded (the JSON outputs keep every digit); '-' for None."""
    if x is None:
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _audio_summary(summary: dict, out: Path) -> None:
    s = summary["status"]
    typer.echo(f"{summary['files']} files: {s['ok']} ok, {s['recovered']} recovered, {s['skipped']} skipped, "
               f"{s['error']} errors -> {summary['songs']} songs, {summary['clips']} clips, "
               f"{summary['hours']} h of audio in {out}")
    _exit_on_bugs(summary)


@app.command("render-audio")
def render_audio(
    source: Annotated[Path, typer.Argument(help="A Lakh folder, any folder of .mid/.midi/.rmi files, or a .tar.gz of them.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("datasets/audio"),
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Render MIDI to 44.1 kHz audio clips with FluidSynth (Parquet in the HF Audio layout + NPZ)."""
    from pipeline.config import load_section
    from stages import render_audio as stage

    summary = stage.run(source=source, out=out, params=load_section(stage.Params, "render_audio", params),
                        workers=workers, scheduler=scheduler)
    _audio_summary(summary, out)


@app.command("ingest-audio")
def ingest_audio(
    folder: Annotated[Path, typer.Argument(help="A folder of WAV/FLAC/MP3 files (any sample rate).")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("datasets/audio_ingest"),
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Resample existing recordings to 44.1 kHz, downmix and write them as render-audio's shards."""
    from pipeline.config import load_section
    from stages import ingest_audio as stage

    summary = stage.run(source=folder, out=out, params=load_section(stage.Params, "ingest_audio", params),
                        workers=workers, scheduler=scheduler)
    _audio_summary(summary, out)


@app.command("build-vocab")
def build_vocab(
    source: Annotated[Path, typer.Argument(help="A folder of .mid/.midi/.rmi files (any Lakh layout).")],
    kind: Annotated[VocabKind, typer.Option(help="Vocabulary: notes (the music21 recipe), remi or midilike.")] = "remi",
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default datasets/vocab/<kind>).")] = None,
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = None,
    vocab: Annotated[Optional[Path], typer.Option(help="Apply this existing vocab.json instead of building one (unknown tokens -> UNK).")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Build a token vocabulary (vocab.json) and token shards (Parquet) for one vocabulary kind."""
    from pipeline.config import load_section
    from pipeline.errors import ParamsError
    from stages import build_vocab as stage

    if kind not in stage.KINDS:
        raise ParamsError(f"--kind={kind!r} must be one of {', '.join(stage.KINDS)}")
    out = out if out is not None else Path("datasets/vocab") / kind
    summary = stage.run(source=source, out=out, kind=kind, params=load_section(stage.Params, "build_vocab", params),
                        workers=workers, scheduler=scheduler, vocab_path=vocab)
    s = summary["status"]
    typer.echo(f"{summary['files']} files: {s['ok']} ok, {s['recovered']} recovered, {s['skipped']} skipped, "
               f"{s['error']} errors -> {summary['songs']} songs, {summary['tokens']} tokens, "
               f"{summary['vocab_size']} ids ({kind}) in {out}")
    _exit_on_bugs(summary)


NativeNumericsOpt = Annotated[bool, typer.Option(
    "--native-numerics", envvar="PIPELINE_NATIVE_NUMERICS",
    help="Let torch, MKL and numpy pick this CPU's fastest kernels (the numbers may then differ on another "
         "CPU); by default the kernels are pinned to AVX2 level, the same on every x86-64 CPU.")]


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

LstmVariant = Annotated[Literal["lstm", "lstm_attention"],
                        typer.Option(help="lstm (stacked LSTM) or lstm_attention (+ attention over the window).")]
LstmVocabDir = Annotated[Optional[Path], typer.Option("--vocab-dir", help="Token shards folder (default datasets/vocab/<lstm.vocab>).")]
LstmModels = Annotated[Path, typer.Option("--models", help="Models folder; this family writes <models>/lstm/<variant>.")]


def _lstm_setup(params: Path, vocab_dir: Optional[Path], models: Path, variant: str):
    from pipeline.config import load_section
    from stages import lstm as stage

    p = load_section(stage.Params, "lstm", params)
    return stage, p, (vocab_dir if vocab_dir is not None else Path("datasets/vocab") / p.vocab), models / "lstm" / variant


DeviceOpt = Annotated[str, typer.Option(envvar="PIPELINE_DEVICE", help="torch device: cpu, cuda or cuda:N (not a param: it changes no result on CPU).")]


@train_app.command("lstm")
def train_lstm(variant: LstmVariant = "lstm", vocab_dir: LstmVocabDir = None, models: LstmModels = Path("datasets/models"),
               fresh: Annotated[bool, typer.Option("--fresh", help="Ignore checkpoints and start again.")] = False,
               device: DeviceOpt = "cpu", params: ParamsOpt = Path("params.yaml")) -> None:
    """Train an LSTM next-token model (resumes from its last checkpoint)."""
    stage, p, vd, out = _lstm_setup(params, vocab_dir, models, variant)
    s = stage.run_train(vocab_dir=vd, out=out, variant=variant, params=p, resume=not fresh, log=typer.echo,
                        device=device)
    typer.echo(f"{variant}: {s['epochs_run']} epochs ({s['train_windows']} train / {s['valid_windows']} valid windows), "
               f"best {s['valid_source']} loss {_num(s['best_loss'])} at epoch {s['best_epoch']}, {_num(s['seconds'], 2)} s -> {out}")


@sample_app.command("lstm")
def sample_lstm(variant: LstmVariant = "lstm", vocab_dir: LstmVocabDir = None, models: LstmModels = Path("datasets/models"),
                device: DeviceOpt = "cpu", params: ParamsOpt = Path("params.yaml")) -> None:
    """Sample MIDI files (and piano-roll PNGs) from a trained LSTM model."""
    stage, p, vd, out = _lstm_setup(params, vocab_dir, models, variant)
    s = stage.run_sample(vocab_dir=vd, model_dir=out, variant=variant, params=p, device=device)
    typer.echo(f"{variant}: {s['samples']} samples, {s['generated_tokens']} tokens -> {s['out']}")


@evaluate_app.command("lstm")
def evaluate_lstm(variant: LstmVariant = "lstm", vocab_dir: LstmVocabDir = None, models: LstmModels = Path("datasets/models"),
                  device: DeviceOpt = "cpu", params: ParamsOpt = Path("params.yaml")) -> None:
    """Cross-entropy, perplexity, accuracy and UPC/QN/EB of an LSTM model (JSON + Markdown report)."""
    stage, p, vd, out = _lstm_setup(params, vocab_dir, models, variant)
    r = stage.run_evaluate(vocab_dir=vd, model_dir=out, variant=variant, params=p, device=device)
    typer.echo(f"{variant}: valid ce {_num(r['valid']['cross_entropy'])}, test ce {_num(r['test']['cross_entropy'])} -> "
               f"{out / 'evaluation.json'}")


@app.command("build-phrases")
def build_phrases(
    lpd: Annotated[Path, typer.Option(help="build-lpd's output folder (reads its tensors/).")] = Path("datasets/lpd"),
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("datasets/phrases"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Cut LPD-5 tensors into binarised 4-bar phrases (MuseGAN's NPZ format + Parquet shards)."""
    from pipeline.config import load_section
    from stages import build_phrases as stage

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
    from pipeline.errors import ParamsError

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
    out: Annotated[Path, typer.Option(help="Output folder (report.md + curve PNGs).")] = Path("datasets/report"),
    images: Annotated[int, typer.Option(help="Sample images shown per variant.")] = 2,
    links: Annotated[int, typer.Option(help="Sample files linked per variant.")] = 8,
    native_numerics: NativeNumericsOpt = False,
) -> None:
    """One Markdown page: data summaries, and per model family the metrics, loss curves and samples."""
    from pipeline import numerics

    numerics.pin(native_numerics)
    from stages import report as stage

    s = stage.run(datasets=datasets, out=out, images_per_part=images, links_per_part=links)
    fams = ", ".join(f"{k} ({len(v['parts'])})" for k, v in s["families"].items()) or "no model families yet"
    typer.echo(f"{fams} -> {s['report']}")


@app.command("fetch-lmd")
def fetch_lmd(
    variant: Annotated[Literal["full", "matched", "aligned", "clean"],
                       typer.Option(help="full (LMD-full), matched, aligned or clean (clean_midi).")] = "full",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("datasets/lmd"),
    url_base: Annotated[Optional[str], typer.Option(envvar="PIPELINE_LMD_URL", help="Server folder of the archives (default: LMD's own, http://hog.ee.columbia.edu/craffel/lmd/).")] = None,
    retries: Annotated[int, typer.Option(help="Resumptions after a dropped connection before giving up.")] = 3,
) -> None:
    """Download a Lakh MIDI Dataset archive (resumable, checksum-verified) for build-lpd to read as is."""
    from pipeline import fetch

    fetch.fetch_lmd(variant, out, url_base=url_base, retries=retries, log=typer.echo)
    typer.echo(f"next: {fetch.next_command(variant, out)}")


@train_app.command("vqvae")
def train_vqvae(
    audio_dir: Annotated[Path, typer.Option("--audio-dir", help="Audio shards (render-audio / ingest-audio output).")] = Path("datasets/audio"),
    models: Annotated[Path, typer.Option("--models", help="Models folder; the VQ-VAE writes <models>/vqvae.")] = Path("datasets/models"),
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore checkpoints and start again.")] = False,
    device: DeviceOpt = "cpu", params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Train the Jukebox-style multi-level VQ-VAE on raw audio (resumes from its last checkpoint)."""
    from pipeline.config import load_section
    from stages import vqvae as stage

    p = load_section(stage.Params, "vqvae", params)
    out = models / "vqvae"
    s = stage.run_train(audio_dir=audio_dir, out=out, params=p, resume=not fresh, log=typer.echo, device=device)
    levels = ", ".join(f"hop {e['hop']}: SC {e['spectral_convergence_db']:.2f} dB, usage {e['codebook_usage']:.2f}"
                       for e in s["evaluation"].values())
    typer.echo(f"vqvae: {s['steps_run']} steps ({s['train_clips']} train / {s['heldout_clips']} held-out clips), "
               f"best {s['valid_source']} loss {_num(s['best_valid_loss'])} at step {s['best_step']}; {levels}; "
               f"{_num(s['seconds'], 2)} s -> {out}")


JukeboxVqvae = Annotated[Path, typer.Option("--vqvae-dir", help="The trained VQ-VAE (`pipeline train vqvae`).")]
JukeboxAudio = Annotated[Path, typer.Option("--audio-dir", help="Audio shards (render-audio / ingest-audio output).")]
JukeboxModels = Annotated[Path, typer.Option("--models", help="Models folder; the Jukebox priors write <models>/jukebox.")]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="Ignore checkpoints and start again.")]


def _jukebox_params(params: Path):
    from pipeline.config import load_section
    from stages import jukebox as stage

    return stage, load_section(stage.Params, "jukebox", params)


def _jukebox_trained(s: dict) -> None:
    bits = "-" if s["last10_train_bits"] is None else f"{s['last10_train_bits']:.4f}"
    typer.echo(f"{s['name']} (level {s['level']}, hop {s['hop_length']}): {s['steps_run']} steps run, {s['steps']} in all; "
               f"{bits} bits/token over the last 10 (uniform {s['uniform_bits']:.2f}); encoding {_num(s['encode_seconds'], 2)} s, "
               f"training {_num(s['train_seconds'], 2)} s -> {s['out']}")


@train_app.command("prior")
def train_prior(vqvae_dir: JukeboxVqvae = Path("datasets/models/vqvae"), audio_dir: JukeboxAudio = Path("datasets/audio"),
                models: JukeboxModels = Path("datasets/models"), fresh: FreshOpt = False,
                device: DeviceOpt = "cpu", params: ParamsOpt = Path("params.yaml")) -> None:
    """Train the Jukebox top-level prior (factorized-attention transformer) on the VQ-VAE's top codes."""
    stage, p = _jukebox_params(params)
    _jukebox_trained(stage.run_train_prior(vqvae_dir=vqvae_dir, audio_dir=audio_dir, out=models / "jukebox", params=p,
                                           resume=not fresh, log=typer.echo, device=device))


@train_app.command("upsampler")
def train_upsampler(level: Annotated[int, typer.Option("--level", help="A level below the top (0: the bottom).")],
                    vqvae_dir: JukeboxVqvae = Path("datasets/models/vqvae"),
                    audio_dir: JukeboxAudio = Path("datasets/audio"), models: JukeboxModels = Path("datasets/models"),
                    fresh: FreshOpt = False, device: DeviceOpt = "cpu", params: ParamsOpt = Path("params.yaml")) -> None:
    """Train the Jukebox upsampler of one level, conditioned on the codes of the level above."""
    stage, p = _jukebox_params(params)
    _jukebox_trained(stage.run_train_upsampler(level=level, vqvae_dir=vqvae_dir, audio_dir=audio_dir,
                                               out=models / "jukebox", params=p, resume=not fresh, log=typer.echo,
                                               device=device))


@sample_app.command("jukebox")
def sample_jukebox(mode: Annotated[Literal["ancestral", "windowed", "primed"],
                                   typer.Option("--mode", help="ancestral, windowed or primed.")] = "ancestral",
                   prompt: Annotated[Optional[Path], typer.Option("--prompt", help="primed: an audio file to continue (default: jukebox.sample.prompt, else held-out clips).")] = None,
                   vqvae_dir: JukeboxVqvae = Path("datasets/models/vqvae"), audio_dir: JukeboxAudio = Path("datasets/audio"),
                   models: JukeboxModels = Path("datasets/models"), device: DeviceOpt = "cpu",
                   params: ParamsOpt = Path("params.yaml")) -> None:
    """Sample audio from the Jukebox prior and upsamplers (WAV + spectrogram PNG per level)."""
    stage, p = _jukebox_params(params)
    s = stage.run_sample(mode=mode, vqvae_dir=vqvae_dir, audio_dir=audio_dir, models_dir=models / "jukebox", params=p,
                         prompt=prompt, device=device, log=typer.echo)
    typer.echo(f"{mode}: {s['samples']} samples of {s['seconds']:.3f} s, windows per level (bottom first) {s['windows']}, "
               f"{s['sample_seconds']} s -> {s['out']}")


@evaluate_app.command("jukebox")
def evaluate_jukebox(vqvae_dir: JukeboxVqvae = Path("datasets/models/vqvae"), audio_dir: JukeboxAudio = Path("datasets/audio"),
                     models: JukeboxModels = Path("datasets/models"), device: DeviceOpt = "cpu",
                     params: ParamsOpt = Path("params.yaml")) -> None:
    """VQ-VAE numbers per level, held-out bits per token of the prior and upsamplers (JSON + Markdown)."""
    stage, p = _jukebox_params(params)
    r = stage.run_evaluate(vqvae_dir=vqvae_dir, audio_dir=audio_dir, models_dir=models / "jukebox", params=p,
                           device=device)
    bits = ", ".join(f"{m['name']} {m['heldout_bits_per_token']:.4f}" if m["heldout_bits_per_token"] is not None
                     else f"{m['name']} -" for m in r["priors"])
    typer.echo(f"held-out bits/token: {bits} -> {models / 'jukebox' / 'evaluation.json'}")


MuseganVariant = Annotated[Literal["jamming", "composer", "hybrid", "temporal", "track_conditional", "musegan"],
                           typer.Option(help="jamming, composer, hybrid, temporal, track_conditional or musegan.")]
MuseganPhrases = Annotated[Path, typer.Option("--phrases", help="build-phrases' output folder (npz/<split>.npz, schema.json).")]
MuseganModels = Annotated[Path, typer.Option("--models", help="Models folder; this family writes <models>/musegan/<variant>.")]


def _musegan_params(params: Path):
    from pipeline.config import load_section
    from stages import musegan as stage

    return stage, load_section(stage.Params, "musegan", params)


@train_app.command("musegan")
def train_musegan(variant: MuseganVariant = "musegan", phrases: MuseganPhrases = Path("datasets/phrases"),
                  models: MuseganModels = Path("datasets/models"),
                  fresh: Annotated[bool, typer.Option("--fresh", help="Ignore checkpoints and start again.")] = False,
                  device: DeviceOpt = "cpu", params: ParamsOpt = Path("params.yaml")) -> None:
    """Train a MuseGAN variant with WGAN-GP on the 4-bar phrases (resumes from its last checkpoint)."""
    stage, p = _musegan_params(params)
    out = models / "musegan" / stage.check_variant(variant)
    s = stage.run_train(phrases=phrases, out=out, variant=variant, params=p, resume=not fresh, log=typer.echo,
                        device=device)
    w = "-" if s["final_wasserstein"] is None else f"{s['final_wasserstein']:.4f}"
    typer.echo(f"{variant}: {s['steps_run']} generator steps run{' (resumed)' if s['resumed'] else ''} on "
               f"{s['phrases']} phrases, G {s['parameters']['generator']} / D {s['parameters']['critic']} parameters, "
               f"final E[D(real)] - E[D(fake)] {w}, {_num(s['seconds'], 2)} s -> {out}")


@sample_app.command("musegan")
def sample_musegan(variant: MuseganVariant = "musegan", phrases: MuseganPhrases = Path("datasets/phrases"),
                   models: MuseganModels = Path("datasets/models"),
                   song: Annotated[Optional[str], typer.Option(help="track_conditional: accompany every phrase of this song id (writes <variant>/accompaniment/<id>/).")] = None,
                   track: Annotated[Optional[str], typer.Option(help="track_conditional: the given track (must be the one the model was trained on, musegan.model.condition_track).")] = None,
                   device: DeviceOpt = "cpu", params: ParamsOpt = Path("params.yaml")) -> None:
    """Generate phrases: samples.npz, multitrack MIDI and piano-roll PNGs (accompaniment for track_conditional)."""
    stage, p = _musegan_params(params)
    model_dir = models / "musegan" / stage.check_variant(variant)
    s = stage.run_sample(phrases=phrases, model_dir=model_dir, variant=variant, params=p, device=device,
                         song=song, track=track)
    typer.echo(f"{variant}: {s['phrases']} phrases ({s['files']} as MIDI + PNG), note density {s['density']:.4f} -> "
               f"{s['out']}")


@evaluate_app.command("musegan")
def evaluate_musegan(phrases: MuseganPhrases = Path("datasets/phrases"), models: MuseganModels = Path("datasets/models"),
                     params: ParamsOpt = Path("params.yaml")) -> None:
    """EB, UPC, QN, DP and TD of the data and every trained variant's samples, both definitions (JSON + Markdown)."""
    stage, p = _musegan_params(params)
    r = stage.run_evaluate(phrases=phrases, models=models, params=p)
    found = ", ".join(r["samples"]) or "no variant samples found"
    typer.echo(f"data ({r['data']['phrases']} {r['data']['split']} phrases), {found} -> "
               f"{models / 'musegan' / 'evaluation.json'}")


def main() -> None:
    """The console entry point: a user mistake is one line on stderr (exit 1 for a bad input or
    param, 2 for a bad option or value), never a traceback; a bug keeps its traceback."""
    usage_error = typer.BadParameter.__mro__[1]  # click's UsageError, as typer ships it
    try:
        rc = app(standalone_mode=False)
    except PipelineError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ModuleNotFoundError as exc:  # a module of an extra the install left out (torch...): one line
        from pipeline.errors import missing_extra

        if (line := missing_extra(exc)) is None:
            raise
        typer.echo(f"error: {line}", err=True)
        sys.exit(1)
    except usage_error as exc:
        message = " ".join(exc.format_message().split())
        if message:  # (no arguments at all: the help was shown, and there is nothing more to say)
            typer.echo(f"error: {message}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        rc = 130
    if rc == 130:  # Ctrl-C (typer turns it into this exit code)
        _interrupted()
    sys.exit(rc if isinstance(rc, int) else 0)


def _interrupted() -> None:
    from pipeline.progress import close_all

    where = "; ".join(f"{b.description.split(' (')[0]} stopped at {b.done} of {b.total}" for b in close_all())
    typer.echo(f"interrupted{': ' + where if where else ''}. Run the same command again: training resumes "
               "from its last checkpoint, and the data stages from their finished shards.", err=True)
    sys.exit(130)


if __name__ == "__main__":
    main()
