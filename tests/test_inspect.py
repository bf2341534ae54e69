"""`pipeline inspect`: every file the pipeline writes is recognised and summarised; a damaged or
foreign file is refused in one line (exit 1, no traceback); `--plot` draws the chosen song, bars and
tracks of a piano-roll, or an audio clip's spectrogram.

The outputs are made by the real stages on a few small songs (once for the module)."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from pipeline import cli, figures, inspection_plot
from pipeline.errors import MidiError, PipelineError, UnsafeFileError
from pipeline.inspection import describe, kind_of
from pipeline.stages import build_lpd, build_phrases, build_vocab, corpus, ingest_audio
from tests.conftest import make_song

ROOT = Path(__file__).resolve().parents[1]
TRACKS = ["Drums", "Piano", "Guitar", "Bass", "Strings"]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """Outputs of corpus, build_lpd, build_phrases, build_vocab (REMI + BPE) and ingest_audio."""
    root = tmp_path_factory.mktemp("inspect")
    src = root / "midi"
    src.mkdir()
    for i in range(4):  # 12 bars each: 4/4 (song0, song3), 3/4, 6/8
        ts = [(4, 4), (3, 4), (6, 8)][i % 3]
        (src / f"song{i}.mid").write_bytes(make_song(i, n_bars=12, ts=ts, tempo_bpm=90 + 10 * i))
    (src / "page.mid").write_bytes(b"<!DOCTYPE html><html><body>404</body></html>")
    (src / "empty.midi").write_bytes(b"")
    corpus.run(out=root / "corpus", params=corpus.Params(music21_works=0, band_songs=1))
    build_lpd.run(source=src, out=root / "lpd", params=build_lpd.Params(), workers=1)
    build_phrases.run(lpd=root / "lpd", out=root / "phrases",
                      params=build_phrases.Params(require_families=("Piano",), min_families=1))
    build_vocab.run(source=src, out=root / "remi", kind="remi", workers=1,
                    params=build_vocab.Params(remi=build_vocab.EventParams(bpe_vocab_size=120)))
    rec = root / "rec"
    rec.mkdir()
    t = np.arange(2 * 44100) / 44100
    sf.write(rec / "tone.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44100)
    ingest_audio.run(source=rec, out=root / "audio", params=ingest_audio.Params(clip_samples=32768), workers=1)
    return root


def song_id(out: Path, name: str) -> str:
    """The id (MD5) of one of the fixture's songs, from the build_lpd manifest."""
    m = pd.read_parquet(out / "lpd" / "manifest.parquet").set_index("source")
    return m.loc[name, "id"]


def main(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """The console entry point (`pipeline ...`) in this process: exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["pipeline", *map(str, args)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    res = capsys.readouterr()
    return exit_.value.code, res.out, res.err


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 1, err
    assert "Traceback" not in err
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    for f in fragments:
        assert f in err, (f, err)


# -- every output is recognised -------------------------------------------------------------------

def test_build_lpd_outputs(out):
    lpd = out / "lpd"
    assert kind_of(lpd / "manifest.parquet") == "manifest"
    # notes: one per beat and track: 5 x (48 + 36 + 36 + 48) (4/4, 3/4, 6/8 as three quarters, 4/4)
    assert describe(lpd / "manifest.parquet")[1:] == [
        "  build_lpd manifest: 6 input files", "  error: 2", "  ok: 4", "    midi.empty_file: 1",
        "    midi.not_midi: 1", "  840 notes, 48 bars"]
    shard = describe(lpd / "tensors" / "lpd5-00000.parquet")
    assert shard[0].startswith(f"{lpd / 'tensors' / 'lpd5-00000.parquet'} (tensor-parquet, ")
    assert shard[1].startswith("  4 songs, 48 bars (min 12, max 12), ")
    assert shard[2] == "  tracks Drums, Piano, Guitar, Bass, Strings; 96 steps per bar; 24 per beat"
    assert shard[3].startswith("  songs: [0] ") and shard[3].endswith(", ... [3]")
    assert shard[-1] == "  schema schema.json: lakh-pipeline/pianoroll-tensors v1 (ok)"
    npz = describe(lpd / "tensors" / "lpd5-00000.npz")
    assert kind_of(lpd / "tensors" / "lpd5-00000.npz") == "tensor-npz"
    assert npz[1].startswith("  shape (4, 12, 96, 128, 5) (songs, bars, steps, pitches, tracks), ")
    assert npz[1].endswith("% dense)") and npz[2] == "  4 songs"
    # song0: 4/4 at 90 qpm, 12 bars of 96 steps; each track one note per beat
    sid = song_id(out, "song0.mid")
    song = lpd / "songs" / sid[0] / f"{sid}.npz"
    lines = describe(song)
    assert kind_of(song) == "song-npz"
    assert lines[1] == f"  song {sid}: 5 tracks, 1152 steps at 24 per beat (48 beats), 12 bars"
    assert lines[2] == "  tempo 90 qpm"
    assert [line.split(" (")[0].strip() for line in lines[3:]] == TRACKS
    assert lines[3].startswith("  Drums (program 0, drum): ") and lines[6].startswith("  Bass (program 32): ")
    summary = describe(lpd / "summary.json")
    assert kind_of(lpd / "summary.json") == "summary"
    assert "  build_lpd summary" in summary and "  status: error 2, ok 4, recovered 0, skipped 0" in summary
    schema = describe(lpd / "tensors" / "schema.json")
    assert schema[1] == "  lakh-pipeline/pianoroll-tensors v1 (ok), written by build_lpd"
    assert "  tracks: Drums, Piano, Guitar, Bass, Strings" in schema
    assert describe(lpd)[1:] == [
        describe(lpd)[1], "  card: 1", "  manifest: 1", "  schema: 2", "  song-npz: 4", "  summary: 1", "  tensor-npz: 1",
        "  tensor-parquet: 1", "  schema songs/schema.json: lakh-pipeline/song-pianorolls v1 (ok)",
        "  schema tensors/schema.json: lakh-pipeline/pianoroll-tensors v1 (ok)"]
    assert describe(lpd)[1].startswith("  11 files, ")  # .state/ and .lock are not counted
    card = describe(lpd / "README.md")
    assert kind_of(lpd / "README.md") == "card"
    assert card[1] == "  dataset card: Lakh MIDI as LPD-style piano-rolls (lpd5)"
    assert card[-2:] == ["  config default (default): train: tensors/*.parquet", "  config manifest: train: manifest.parquet"]


def test_build_phrases_outputs(out):
    ph = out / "phrases"
    summary = json.loads((ph / "summary.json").read_text())
    n_train = summary["phrases"]["train"]
    lines = describe(ph / "shards" / "train-00000.parquet")
    assert kind_of(ph / "shards" / "train-00000.parquet") == "phrase-parquet"
    assert lines[1].startswith(f"  {n_train} phrases of {summary['songs_with_phrases']['train']} songs, ")
    assert lines[2] == "  each 4 bars x 48 steps x 84 pitches (from MIDI pitch 24) x 5 tracks"
    assert lines[-1] == "  schema schema.json: lakh-pipeline/phrase-tensors v1 (ok)"
    npz = describe(ph / "npz" / "train.npz")
    assert kind_of(ph / "npz" / "train.npz") == "phrase-npz"
    assert npz[1].startswith(f"  shape ({n_train}, 4, 48, 84, 5) (phrases, bars, steps, pitches, tracks), ")
    assert npz[-1] == "  schema schema.json: lakh-pipeline/phrase-tensors v1 (ok)"  # the schema of npz/..
    man = describe(ph / "manifest.parquet")
    assert man[1] == (f"  build_phrases manifest: {summary['candidates']} candidate phrases of 4 songs, "
                      f"{sum(summary['phrases'].values())} selected")
    assert describe(ph / "summary.json")[1] == "  build_phrases summary"
    assert describe(ph / "schema.json")[1] == "  lakh-pipeline/phrase-tensors v1 (ok), written by build_phrases"


def test_build_vocab_outputs(out):
    remi = out / "remi"
    vocab = json.loads((remi / "vocab.json").read_text())
    lines = describe(remi / "vocab.json")
    assert kind_of(remi / "vocab.json") == "vocab"
    assert lines[1] == f"  remi vocabulary: {vocab['size']} ids (4 specials), hash {vocab['hash'][:12]}"
    assert lines[2].startswith("  config: streams=merged, resolution=24, ")
    assert lines[3].startswith(f"  {sum(vocab['counts'].values())} tokens counted; most frequent: ")
    shard = describe(remi / "shards" / "remi-00000.parquet")
    assert kind_of(remi / "shards" / "remi-00000.parquet") == "token-parquet"
    assert shard[1].startswith("  4 songs, 4 streams, ")
    assert f"  vocabulary {vocab['hash'][:12]}: remi, {vocab['size']} ids" in shard
    bpe = describe(remi / "shards" / "bpe" / "remi-00000.parquet")
    assert any(line.startswith("  vocabulary ") and "(BPE ids of tokenizer.json): remi, 120 ids" in line
               for line in bpe)
    tok = describe(remi / "shards" / "bpe" / "tokenizer.json")
    assert kind_of(remi / "shards" / "bpe" / "tokenizer.json") == "bpe-tokenizer"
    assert tok[1].startswith("  BPE tokenizer: 120 ids, ") and tok[1].endswith(" merges, 4 special tokens")
    assert tok[2] == f"  over base vocabulary {vocab['hash'][:12]} (remi); merges never cross a bar line"
    schema = describe(remi / "shards" / "schema.json")
    assert schema[1] == "  lakh-pipeline/token-shards v1 (ok), written by build_vocab"
    assert schema[2].startswith("  resolution: 24 ") and schema[3] == (
        f"  vocabulary: remi, {vocab['size']} ids, hash {vocab['hash'][:12]}")
    assert describe(remi / "manifest.parquet")[1] == "  build_vocab manifest: 6 input files"
    assert "  build_vocab summary" in describe(remi / "summary.json")
    assert describe(remi)[2:] == ["  bpe-tokenizer: 1", "  card: 1", "  manifest: 1", "  schema: 2", "  summary: 1",
                                  "  token-parquet: 2", "  vocab: 1",
                                  "  schema shards/bpe/schema.json: lakh-pipeline/token-shards v1 (ok)",
                                  "  schema shards/schema.json: lakh-pipeline/token-shards v1 (ok)"]


def test_audio_outputs(out):
    audio = out / "audio"
    part = next((audio / "parquet").glob("*.parquet"))
    lines = describe(part)
    assert kind_of(part) == "audio-parquet"
    assert lines[1] == "  1 clips of 1 songs, 0.000 h, [44100] Hz, channels [1], 1 row groups"
    assert lines[2].startswith("  clips: [0] ") and lines[2].endswith(" (clip 0)")
    assert lines[-1] == "  schema schema.json: lakh-pipeline/audio-clips v1 (ok)"  # audio/schema.json
    npz = describe(audio / "npz" / part.with_suffix(".npz").name)
    assert npz[1] == "  1 clips of 1 songs, 32768 samples each (0.74 s), 44100 Hz, channels 1, 0.000 h"
    assert describe(audio / "manifest.parquet")[1:3] == ["  render_audio / ingest_audio manifest: 1 input files",
                                                         "  ok: 1"]
    schema = describe(audio / "schema.json")
    assert schema[1] == "  lakh-pipeline/audio-clips v1 (ok), written by ingest_audio"
    assert "  1 channel(s), 32768 samples per clip, downmix random, from ingest_audio" in schema
    assert "  clips: 1" in describe(audio / "summary.json")


def test_corpus_listing(out):
    lines = describe(out / "corpus" / "corpus.json")
    assert kind_of(out / "corpus" / "corpus.json") == "corpus"
    assert lines[1].startswith("  corpus: 1 MIDI files, ")
    assert "  band: 1" in lines and "  music21: 0" in lines


def test_model_sample_npz(tmp_path, drawn):
    """MuseGAN samples (shape + nonzero, binarised) and Jukebox VQ-VAE codes, as the stages write them."""
    from pipeline.formats.npz import write_npz

    x = np.zeros((2, 4, 48, 84, 5), bool)
    x[1, 0, ::12, 36, 1] = True  # a piano C4 (24 + 36) on every beat of bar 0 of the second sample
    write_npz(tmp_path / "samples.npz", {"shape": np.array(x.shape), "nonzero": np.array(np.nonzero(x), np.uint16)})
    assert kind_of(tmp_path / "samples.npz") == "musegan-npz"
    assert describe(tmp_path / "samples.npz")[1] == (  # 4 of 161,280 cells
        "  shape (2, 4, 48, 84, 5) (items, bars, steps, pitches, tracks), 4 non-zero (0.002% dense)")
    inspection_plot.plot(tmp_path / "samples.npz", tmp_path / "s.png", song="1", tracks="Piano")
    (panel,) = _panels(drawn[0])
    assert drawn[0]._suptitle.get_text() == "samples.npz · item 1 of 2 · bars 0-3 of 4"
    img = np.asarray(panel.images[0].get_array())
    lo = int(round(panel.get_ylim()[0] + 0.5))
    assert np.flatnonzero(img.any(axis=1)).tolist() == [60 - lo] and img.sum() == 4  # C4, once a beat
    write_npz(tmp_path / "codes.npz",
              {"level_0": np.array([[3, 5, 5]], np.int32), "level_1": np.array([[7]], np.int32)})
    assert describe(tmp_path / "codes.npz")[1:] == ["  2 levels of VQ-VAE codes",
                                                    "  level_0: int32 (1, 3), codes 3..5, 2 distinct",
                                                    "  level_1: int32 (1, 1), codes 7..7, 1 distinct"]


def test_midi_file_through_the_pipelines_reader(out, tmp_path):
    lines = describe(out / "midi" / "song0.mid")
    assert kind_of(out / "midi" / "song0.mid") == "midi"
    # make_song: a tempo/meta track and 5 instrument tracks; 48 beats, one note per beat and track
    assert lines[1].startswith("  6 tracks, 5 instruments, 240 notes, 480 ticks per quarter, ")
    assert lines[2] == "  tempo 90.0 qpm; time signatures: 4/4 at 0.0 s"
    assert lines[3] == "  track 1 channel 10: drums, 48 notes"
    assert lines[4] == "  track 2 channel 1: program 0, 48 notes"
    # a cut file is read as the pipeline reads it: what was repaired is said
    cut = tmp_path / "cut.mid"
    cut.write_bytes(make_song(0, n_bars=12)[:300])
    assert any(line.startswith("  repaired: ") and "truncated" in line for line in describe(cut))


def test_real_midi_is_described_or_refused_in_one_line(shared_midi):
    described = refused = 0
    for p in sorted(shared_midi.iterdir()):
        if p.suffix.lower() not in (".mid", ".midi"):
            continue
        try:
            lines = describe(p)
        except MidiError as exc:
            assert "\n" not in str(exc) and str(p) in str(exc)
            refused += 1
        else:
            assert lines[0].startswith(f"{p} (midi, ") and " ticks per quarter, " in lines[1]
            described += 1
    assert described >= 12


# -- damaged and foreign files --------------------------------------------------------------------

class _Opens:
    """Unpickling this would create a file: proof that inspect unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _damaged(out: Path, d: Path, case: str) -> Path:
    """Make the damaged or foreign file of ``case`` under ``d``; return its path."""
    tensors = out / "lpd" / "tensors"
    if case == "truncated-parquet":
        p = d / "lpd5-00000.parquet"
        p.write_bytes((tensors / "lpd5-00000.parquet").read_bytes()[:3000])
    elif case == "corrupt-parquet-page":
        blob = bytearray((tensors / "lpd5-00000.parquet").read_bytes())
        for i in range(200, 1200):
            blob[i] ^= 0x5A
        p = d / "lpd5-00000.parquet"
        p.write_bytes(bytes(blob))
    elif case == "truncated-npz":
        p = d / "lpd5-00000.npz"
        p.write_bytes((tensors / "lpd5-00000.npz").read_bytes()[:2000])
    elif case == "crc-npz":
        blob = bytearray((tensors / "lpd5-00000.npz").read_bytes())
        blob[len(blob) // 3] ^= 0xFF  # inside a member's data: the zip directory is intact
        p = d / "lpd5-00000.npz"
        p.write_bytes(bytes(blob))
    elif case == "text-npz":
        p = d / "song.npz"
        p.write_text("this is a text file, not an archive\n")
    elif case == "pickled-npz":
        p = d / "train.npz"
        np.savez(p, shape=np.array([1, 4, 48, 84, 5]), nonzero=np.array([_Opens(str(d / "unpickled"))], dtype=object))
    elif case == "pickle-npz":
        p = d / "song.npz"
        p.write_bytes(pickle.dumps(_Opens(str(d / "unpickled"))))
    elif case == "foreign-npz":
        p = d / "data.npz"
        np.savez(p, x=np.zeros((3, 4)), y=np.arange(3))
    elif case == "foreign-parquet":
        p = d / "table.parquet"
        pd.DataFrame({"name": ["a", "b"], "score": [1.0, 2.0]}).to_parquet(p)
    elif case == "lookalike-parquet":  # tensor columns, other types
        p = d / "t.parquet"
        pd.DataFrame({c: [[1.5]] for c in ("bar", "step", "pitch", "track", "velocity")}
                     | {"id": ["a"], "n_bars": [1]}).to_parquet(p)
    elif case == "empty-file":
        p = d / "manifest.parquet"
        p.write_bytes(b"")
    elif case == "empty-folder":
        p = d / "nothing"
        p.mkdir()
    elif case == "folder-of-junk":
        p = d / "junk"
        p.mkdir()
        (p / "notes.txt").write_text("hello")
        (p / "broken.npz").write_bytes(b"PK\x03\x04 not really")
    elif case == "truncated-json":
        p = d / "vocab.json"
        p.write_text((out / "remi" / "vocab.json").read_text()[:400])
    elif case == "edited-vocab":
        doc = json.loads((out / "remi" / "vocab.json").read_text())
        doc["config"]["velocity_bins"] = 16  # by hand: the stored hash no longer matches
        p = d / "vocab.json"
        p.write_text(json.dumps(doc))
    elif case == "foreign-json":
        p = d / "config.json"
        p.write_text(json.dumps({"learning_rate": 0.1}))
    elif case == "html-midi":
        p = d / "page.mid"
        p.write_bytes(b"<!DOCTYPE html><html><body>404</body></html>")
    elif case == "unknown-file":
        p = d / "notes.txt"
        p.write_text("hello")
    else:
        raise AssertionError(case)
    return p


DAMAGED = {
    "truncated-parquet": "truncated or damaged Parquet file",
    "corrupt-parquet-page": "cannot read it (",
    "truncated-npz": "truncated or damaged NPZ archive",
    "crc-npz": "damaged",
    "text-npz": "not an NPZ archive",
    "pickled-npz": "member nonzero.npy is an object array (pickled Python objects)",
    "pickle-npz": "a Python pickle, not an NPZ archive; it is never unpickled",
    "foreign-npz": "an NPZ with members [x.npy, y.npy], not one lakh-pipeline writes",
    "foreign-parquet": "a Parquet file with columns [name, score], not one lakh-pipeline writes",
    "lookalike-parquet": "has another type",
    "empty-file": "empty file (0 bytes)",
    "empty-folder": "nothing lakh-pipeline writes in this folder (no files)",
    "folder-of-junk": "nothing lakh-pipeline writes in this folder (2 files; 1 refused",
    "truncated-json": "not valid JSON",
    "edited-vocab": "hash mismatch",
    "foreign-json": "JSON with keys [learning_rate], not one lakh-pipeline writes",
    "html-midi": "midi.not_midi",
    "unknown-file": "not a file lakh-pipeline writes",
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_or_foreign_is_one_line_and_exit_1(case, out, tmp_path, monkeypatch, capsys):
    p = _damaged(out, tmp_path, case)
    with pytest.raises(PipelineError):
        describe(p)
    code, stdout, err = main(["inspect", p], monkeypatch, capsys)
    one_line_error(code, err, f"error: {p}: ", DAMAGED[case])
    assert stdout == ""
    assert not (tmp_path / "unpickled").exists()


def test_pickled_npz_is_refused_as_unsafe(out, tmp_path):
    for case in ("pickled-npz", "pickle-npz"):
        with pytest.raises(UnsafeFileError):
            describe(_damaged(out, tmp_path, case))
    assert not (tmp_path / "unpickled").exists()


def test_console_script_says_one_line_without_traceback(out, tmp_path):
    p = _damaged(out, tmp_path, "truncated-parquet")
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "inspect", str(p)], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert res.returncode == 1 and res.stdout == "" and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(f"error: {p}: truncated or damaged Parquet")


def test_missing_path_is_one_line(tmp_path, monkeypatch, capsys):
    res = CliRunner().invoke(cli.app, ["inspect", str(tmp_path / "nope")], standalone_mode=False,
                             catch_exceptions=True)
    assert isinstance(res.exception, PipelineError) and "no such file or folder" in str(res.exception)
    one_line_error(*main(["inspect", tmp_path / "nope"], monkeypatch, capsys)[::2], "no such file or folder")


def test_a_damaged_file_in_a_folder_is_counted_not_fatal(out, tmp_path, monkeypatch, capsys):
    lpd = tmp_path / "lpd"
    shutil.copytree(out / "lpd", lpd)
    song = next((lpd / "songs").rglob("*.npz"))
    song.write_bytes(song.read_bytes()[:100])
    code, stdout, err = main(["inspect", lpd], monkeypatch, capsys)
    assert code == 0 and err == ""
    assert "  song-npz: 3\n" in stdout
    assert f"  refused: 1 (first: {song}: truncated or damaged NPZ archive" in stdout


def test_a_too_new_schema_is_shown_as_refused(out, tmp_path):
    remi = tmp_path / "remi"
    shutil.copytree(out / "remi", remi)
    doc = json.loads((remi / "shards" / "schema.json").read_text())
    (remi / "shards" / "schema.json").write_text(json.dumps({**doc, "schema_version": 999}))
    assert describe(remi)[-1] == ("  schema shards/schema.json: lakh-pipeline/token-shards v999 (refused: "
                                  "unsupported lakh-pipeline/token-shards schema_version: expected 1, found 999)")
    assert describe(remi / "shards" / "schema.json")[1].startswith(
        "  lakh-pipeline/token-shards v999 (refused: unsupported lakh-pipeline/token-shards schema_version")


# -- plots ----------------------------------------------------------------------------------------

@pytest.fixture
def drawn(monkeypatch):
    """The figures plot() draws, kept open for the test to look at (and still written)."""
    import matplotlib.pyplot as plt

    close, save, figs = plt.close, figures.save, []

    def keep(fig, path):
        figs.append(fig)
        monkeypatch.setattr(plt, "close", lambda *a: None)  # save() closes the figure: keep it
        try:
            return save(fig, path)
        finally:
            monkeypatch.setattr(plt, "close", close)

    monkeypatch.setattr(figures, "save", keep)
    yield figs
    for fig in figs:
        close(fig)


def _panels(fig) -> list:
    return [ax for ax in fig.axes if ax.images]


def test_song_plot_defaults_to_eight_bars_with_names_title_and_bar_lines(out, tmp_path, drawn):
    sid = song_id(out, "song0.mid")
    song = out / "lpd" / "songs" / sid[0] / f"{sid}.npz"
    png = inspection_plot.plot(song, tmp_path / "song.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = drawn[0]
    assert fig._suptitle.get_text() == f"{sid}.npz · bars 0-7 of 12"
    panels = _panels(fig)
    assert [ax.get_ylabel() for ax in panels] == TRACKS
    assert panels[-1].get_xlim() == (0.0, 32.0)  # 8 bars of 4 beats, in beats
    assert [t.get_text() for t in panels[-1].get_xticklabels()] == [str(b) for b in range(9)]
    names = [t.get_text() for t in panels[1].get_yticklabels()]  # piano: pitches 60..71
    assert "C4" in names and all(n[:-1] in ("C", "F#") for n in names)
    assert sum(len(ax.lines) for ax in panels) == 5 * 9  # a bar line at each bar start and the end


def test_one_song_the_same_from_song_npz_tensor_parquet_and_npz(out, tmp_path, drawn):
    sid = song_id(out, "song3.mid")  # 4/4: the tensor's bars are the song's
    song = out / "lpd" / "songs" / sid[0] / f"{sid}.npz"
    tensors = out / "lpd" / "tensors"
    opts = dict(bars="2:6", tracks="piano,Bass")
    inspection_plot.plot(song, tmp_path / "a.png", **opts)
    inspection_plot.plot(tensors / "lpd5-00000.parquet", tmp_path / "b.png", song=sid, **opts)
    index = pd.read_parquet(tensors / "lpd5-00000.parquet", columns=["id"])["id"].tolist().index(sid)
    inspection_plot.plot(tensors / "lpd5-00000.npz", tmp_path / "c.png", song=str(index), **opts)
    for fig in drawn:
        panels = _panels(fig)
        assert [ax.get_ylabel() for ax in panels] == ["Piano", "Bass"]
        assert panels[-1].get_xlim() == (8.0, 24.0)
        assert "bars 2-5 of 12" in fig._suptitle.get_text()
    assert f"song {sid} (#{index} of 4)" in drawn[1]._suptitle.get_text()
    images = [[np.asarray(ax.images[0].get_array()) for ax in _panels(fig)] for fig in drawn]
    for other in images[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(images[0], other))
    assert images[0][0].max() > 0


def test_phrase_plots_from_parquet_and_npz_agree(out, tmp_path, drawn):
    ph = out / "phrases"
    inspection_plot.plot(ph / "shards" / "train-00000.parquet", tmp_path / "a.png", song="1")
    inspection_plot.plot(ph / "npz" / "train.npz", tmp_path / "b.png", song="1")
    a, b = drawn
    table = pd.read_parquet(ph / "shards" / "train-00000.parquet")
    row = table.iloc[1]
    assert a._suptitle.get_text() == (f"train-00000.parquet · phrase 1 of {len(table)} (song {row['id']}, its bars "
                                      f"{row['first_bar']}-{row['first_bar'] + 3}) · bars 0-3 of 4")
    for x, y in zip(_panels(a), _panels(b)):
        assert np.array_equal(np.asarray(x.images[0].get_array()), np.asarray(y.images[0].get_array()))
        assert x.get_ylim() == y.get_ylim()
    # a phrase of a song by its id: the first phrase of that song
    inspection_plot.plot(ph / "shards" / "train-00000.parquet", tmp_path / "c.png", song=row["id"], bars="1:3",
                         tracks="Bass")
    assert [ax.get_ylabel() for ax in _panels(drawn[2])] == ["Bass"]


def test_audio_plot_is_a_spectrogram_with_a_db_colour_bar(out, tmp_path, drawn, monkeypatch, capsys):
    part = next((out / "audio" / "parquet").glob("*.parquet"))
    code, stdout, err = main(["inspect", part, "--plot", tmp_path / "clip.png"], monkeypatch, capsys)
    assert code == 0 and err == "" and stdout.endswith(f"wrote {tmp_path / 'clip.png'}\n")
    assert (tmp_path / "clip.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = drawn[0]
    spec, bar = fig.axes
    assert "clip 0" in fig._suptitle.get_text() and part.name in fig._suptitle.get_text()
    assert spec.get_yscale() in ("log", "symlog") and spec.get_xlabel() == "time (s)"
    assert "dB" in bar.get_ylabel() and bar.get_yticklabels()[-1].get_text().endswith("dB")
    # the loudest row is the 440 Hz tone
    mesh = spec.collections[0]
    db = np.asarray(mesh.get_array()).reshape(len(mesh.get_coordinates()) - 1, -1)
    freqs = np.asarray(mesh.get_coordinates())[:-1, 0, 1]
    assert abs(freqs[db.mean(axis=1).argmax()] - 440) < 30
    npz = out / "audio" / "npz" / part.with_suffix(".npz").name
    assert inspection_plot.plot(npz, tmp_path / "clip2.png").is_file()


def test_cli_plot_with_options_writes_the_file(out, tmp_path, monkeypatch, capsys):
    tensors = out / "lpd" / "tensors" / "lpd5-00000.parquet"
    code, stdout, err = main(["inspect", tensors, "--plot", tmp_path / "sub" / "x.png", "--song", "1",
                              "--bars", "10:", "--tracks", "Drums,Strings"], monkeypatch, capsys)
    assert code == 0 and err == ""
    assert stdout.splitlines()[0].startswith(f"{tensors} (tensor-parquet, ")
    assert stdout.splitlines()[-1] == f"wrote {tmp_path / 'sub' / 'x.png'}"
    assert (tmp_path / "sub" / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


BAD_OPTIONS = {
    "bars-reversed": (["--bars", "3:2"], "--bars '3:2': the end (2) must be after the start (3)"),
    "bars-text": (["--bars", "x"], "--bars 'x': expected A:B"),
    "bars-negative": (["--bars", "-1:2"], "--bars '-1:2': expected A:B"),
    "bars-after-the-song": (["--bars", "20:30"], "--bars '20:30': starts at bar 20, but song "),
    "bars-past-the-end": (["--bars", "5:40"], "--bars '5:40': ends after the last bar"),
    "song-index": (["--song", "99"], "--song 99: out of range: lpd5-00000.parquet holds 4 songs (indices 0..3)"),
    "song-id": (["--song", "nope"], "--song 'nope': no song of that id in lpd5-00000.parquet"),
    "tracks-unknown": (["--tracks", "Piano,Flute"], "--tracks 'Piano,Flute': no track 'Flute'; this file has "
                                                    "Drums, Piano, Guitar, Bass, Strings"),
    "tracks-empty": (["--tracks", ","], "--tracks ',': expected comma-separated track names"),
    "format": (["--plot-as", "x.jpg"], "the file name must end in .png, .svg, .pdf"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_plot_options_are_one_line_errors(case, out, tmp_path, monkeypatch, capsys):
    extra, message = BAD_OPTIONS[case]
    target = tmp_path / "x.png"
    if extra[0] == "--plot-as":
        target, extra = tmp_path / extra[1], []
    code, _, err = main(["inspect", out / "lpd" / "tensors" / "lpd5-00000.parquet", "--plot", target, *extra],
                        monkeypatch, capsys)
    one_line_error(code, err, message)
    assert not target.exists()


def test_options_that_do_not_fit_the_file(out, tmp_path, monkeypatch, capsys):
    sid = song_id(out, "song0.mid")
    song = out / "lpd" / "songs" / sid[0] / f"{sid}.npz"
    audio = next((out / "audio" / "parquet").glob("*.parquet"))
    cases = [
        ([song, "--plot", tmp_path / "x.png", "--song", "3"], f"--song '3': {sid}.npz holds one song"),
        ([audio, "--plot", tmp_path / "x.png", "--bars", "0:2"], "--bars and --tracks choose what a piano-roll shows"),
        ([out / "lpd" / "manifest.parquet", "--plot", tmp_path / "x.png"], "--plot draws piano-rolls"),
        ([song, "--bars", "0:2"], "--song, --bars and --tracks choose what --plot draws: add --plot OUT.png"),
    ]
    for args, message in cases:
        code, _, err = main(["inspect", *args], monkeypatch, capsys)
        one_line_error(code, err, message)
    assert not (tmp_path / "x.png").exists()


def test_note_names():
    assert [figures.note_name(p) for p in (0, 36, 48, 60, 61, 69, 127)] == ["C-1", "C2", "C3", "C4", "C#4", "A4", "G9"]
    with pytest.raises(ValueError, match="pitch=128 is not a MIDI pitch"):
        figures.note_name(128)


def test_a_damaged_card_header_names_line_and_column(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("---\nlicense: cc-by-4.0\nconfigs: x: y\n---\n# a card\n")
    with pytest.raises(PipelineError) as err:
        describe(card)
    assert str(err.value) == (f"{card}: the dataset card's YAML header does not parse: line 3, column 11: "
                              "mapping values are not allowed here")
