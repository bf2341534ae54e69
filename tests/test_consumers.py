"""Consumers: every shard kind read without our code (pyarrow, pandas, dask, numpy, Hugging Face
`datasets`) gives what `pipeline.data` gives; the torch datasets are worker-safe and stream every
item once; schemas are checked (kind, version, keys, columns) and nothing is ever unpickled.

The outputs are built once per module by the real stages (build_lpd, build_phrases, build_vocab
remi, render_audio) from eight small songs, laid out as under the repository's ``datasets/``, so
that the snippets of docs/schemas.md run on them as written."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dask.dataframe as dd
import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from pipeline import schema as shard_schema
from pipeline.formats.audio_shards import AUDIO
from pipeline.formats.phrase_shards import PHRASES, read_phrase_npz
from pipeline.formats.song_npz import SONGS
from pipeline.formats.tensor_shards import TENSORS
from pipeline.formats.token_shards import TOKENS
from pipeline.data import AudioClips, PhraseTensors, PianorollBars, TokenStream, TokenWindows
from pipeline.data.aligned import bar_bounds
from pipeline.errors import PipelineError, SchemaError, UnsafeFileError
from pipeline.inspection import describe
from pipeline.formats.npz import load_npz
from pipeline.formats.token_shards import windows
from pipeline.training.solver import load_checkpoint, save_checkpoint
from pipeline.stages import build_lpd, build_phrases, build_vocab, render_audio
from tests.conftest import make_song

ROOT = Path(__file__).resolve().parents[1]
HAS_FLUIDSYNTH = shutil.which("fluidsynth") is not None
needs_audio = pytest.mark.skipif(not HAS_FLUIDSYNTH, reason="the fluidsynth program is absent")
TRACKS = ["Drums", "Piano", "Guitar", "Bass", "Strings"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """``<tmp>/datasets/{lpd, phrases, vocab/remi, audio}`` built by the stages; HF's cache in tmp."""
    base = tmp_path_factory.mktemp("consumers")
    src = base / "midi"
    src.mkdir()
    for i in range(8):
        ts = [(4, 4), (3, 4), (6, 8)][i % 3]
        (src / f"song{i}.mid").write_bytes(make_song(40 + i, n_bars=8, ts=ts, tempo_bpm=100 + 10 * i))
    (src / "page.mid").write_bytes(b"<!DOCTYPE html><html><body>404</body></html>")
    data = base / "datasets"
    build_lpd.run(source=src, out=data / "lpd", params=build_lpd.Params(shard_size=3), workers=1)
    build_phrases.run(lpd=data / "lpd", out=data / "phrases",
                      params=build_phrases.Params())
    build_vocab.run(source=src, out=data / "vocab" / "remi", kind="remi", params=build_vocab.Params(shard_size=2),
                    workers=1)
    if HAS_FLUIDSYNTH:
        render_audio.run(source=src, out=data / "audio", workers=1,
                         params=render_audio.Params(render_seconds=4.0, clip_samples=65536, shard_size=3,
                                                    row_group_mb=0.05, clip_offset="bar", clips_per_song=0))
    return base


@pytest.fixture(scope="module", autouse=True)
def hf_cache(tmp_path_factory):
    """Hugging Face `datasets` writes its Arrow cache under a temporary folder, never ~/.cache."""
    old = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = tmp_path_factory.mktemp("hf_cache")
    yield datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = old


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in Path(folder).glob("*.parquet"))


def _hf(files: list[str]) -> datasets.Dataset:
    return datasets.Dataset.from_parquet(files)


def _rows_all_ways(files: list[str], pattern: str) -> dict[str, list[dict]]:
    """The rows of some Parquet shards as read by pyarrow, pandas, dask and Hugging Face datasets
    (whose ``Audio`` column, typed from the files' metadata, gives its FLAC bytes undecoded here)."""
    hf = _hf(files)
    if isinstance(hf.features.get("audio"), datasets.Audio):
        hf = hf.cast_column("audio", datasets.Audio(decode=False))
    return {
        "pyarrow": pq.read_table(files).to_pylist(),
        "pandas": pd.read_parquet(files).to_dict("records"),
        "dask": dd.read_parquet(pattern).compute().to_dict("records"),
        "hf": list(hf.with_format("numpy")),
    }


def test_hugging_face_datasets_is_the_package_not_our_data_folder():
    assert Path(datasets.__file__).resolve().parent.parent.name == "site-packages"
    assert (ROOT / "datasets").is_dir() and not (ROOT / "datasets" / "__init__.py").exists()
    assert hasattr(datasets, "Dataset") and hasattr(datasets, "Audio")


# -- schema.json files --------------------------------------------------------------------------

def _schema_folders(root: Path) -> dict[str, Path]:
    d = root / "datasets"
    out = {TENSORS: d / "lpd" / "tensors", SONGS: d / "lpd" / "songs",
           PHRASES: d / "phrases", TOKENS: d / "vocab" / "remi" / "shards"}
    if HAS_FLUIDSYNTH:
        out[AUDIO] = d / "audio"
    return out


def test_every_shard_folder_has_a_complete_truthful_schema(root):
    vocab = json.loads((root / "datasets" / "vocab" / "remi" / "vocab.json").read_text())
    for kind, folder in _schema_folders(root).items():
        doc = shard_schema.read_schema(folder, kind)
        assert (folder / "schema.json").is_file()
        assert set(shard_schema.UNIFORM_KEYS) <= set(doc), kind
        assert doc["kind"] == kind and doc["schema_version"] == shard_schema.KINDS[kind].version
        assert doc["fields"] and doc["dtypes"] and doc["shapes"]["item"] and doc["resolution_unit"]
        parquet = {TENSORS: _files(folder), TOKENS: _files(folder),
                   PHRASES: _files(folder / "shards"),
                   AUDIO: _files(folder / "parquet")}.get(kind, [])
        for f in parquet:  # the documented Arrow types are the files' types
            assert shard_schema.arrow_dtypes(pq.read_schema(f)) == doc["dtypes"]["parquet"], f
            assert set(doc["fields"]) == set(doc["dtypes"]["parquet"])
        npz = {TENSORS: sorted(folder.glob("*.npz")), SONGS: sorted(folder.rglob("*.npz")),
               PHRASES: sorted((folder / "npz").glob("*.npz")),
               AUDIO: sorted((folder / "npz").glob("*.npz"))}.get(kind, [])
        for f in npz:  # and the documented NPZ dtypes and ranks those of the arrays
            with np.load(f, allow_pickle=False) as z:
                arrays = [n for n in z.files if not n.endswith(".json")]
                assert set(arrays) == set(doc["dtypes"]["npz"]) == set(doc["shapes"]["npz"]), f
                for name in arrays:
                    want, got = np.dtype(doc["dtypes"]["npz"][name].split(" ")[0]), z[name].dtype
                    assert want == got or (got.kind == want.kind == "U" and z[name].size == 0), (f, name)
                    assert len(doc["shapes"]["npz"][name]) == z[name].ndim, (f, name)
    lpd = shard_schema.read_schema(root / "datasets" / "lpd", TENSORS)
    assert lpd["track_order"] == TRACKS and lpd["resolution"] == 24 and lpd["shapes"]["item"] == ["bars", 96, 128, 5]
    assert set(lpd["manifest"]["dtypes"]) == set(pq.read_schema(root / "datasets" / "lpd" / "manifest.parquet").names)
    songs = shard_schema.read_schema(root / "datasets" / "lpd", SONGS)
    assert songs["track_order"] == TRACKS and songs["resolution"] == 24
    ph = shard_schema.read_schema(root / "datasets" / "phrases", PHRASES)
    assert ph["track_order"] == TRACKS and ph["resolution"] == 12 and ph["shapes"]["item"] == [4, 48, 84, 5]
    tok = shard_schema.read_schema(root / "datasets" / "vocab" / "remi", TOKENS)
    assert tok["vocabulary"]["id"] == vocab["hash"] == tok["vocab_hash"] and tok["token_kind"] == "remi"
    assert tok["vocabulary"]["sha256"] == hashlib.sha256(
        (root / "datasets" / "vocab" / "remi" / "vocab.json").read_bytes()).hexdigest()
    assert tok["track_order"] is None and tok["resolution"] == vocab["config"]["resolution"]
    if HAS_FLUIDSYNTH:
        au = shard_schema.read_schema(root / "datasets" / "audio" / "parquet", AUDIO)
        assert au["resolution"] == 44100 and au["vocabulary"] is None and au["shapes"]["item"] == ["samples"]


def test_current_versions_are_documented():
    text = (ROOT / "docs" / "schemas.md").read_text()
    for kind, spec in shard_schema.KINDS.items():
        row = f"| `{kind}` | {spec.version} |"
        assert row in text, f"docs/schemas.md: no version-history row for {kind} v{spec.version}"


def test_docs_snippets_run_as_written(root, monkeypatch):
    text = (ROOT / "docs" / "schemas.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 7
    monkeypatch.chdir(root)
    ran = 0
    for code in blocks:
        if "datasets/audio" in code and not HAS_FLUIDSYNTH:
            continue
        exec(compile(code, "docs/schemas.md", "exec"), {"__name__": "docs_snippet"})
        ran += 1
    assert ran >= 6


# -- piano-roll tensors ---------------------------------------------------------------------------

def _dense(row: dict, n_tracks: int = 5) -> np.ndarray:
    x = np.zeros((int(row["n_bars"]), 96, 128, n_tracks), np.float32)
    x[np.asarray(row["bar"], np.int64), np.asarray(row["step"], np.int64), np.asarray(row["pitch"], np.int64),
      np.asarray(row["track"], np.int64)] = np.asarray(row["velocity"], np.float32)
    return x


def test_tensor_shards_read_by_every_library_equal_our_reader(root):
    lpd = root / "datasets" / "lpd"
    ours = PianorollBars(lpd, bars=1, binarize=False)
    assert len(ours.paths) >= 3 and ours.track_order == TRACKS
    expect = {sid: ours.bars_of(sid, 0, n).numpy() for sid, (_, _, n) in ours.songs.items()}
    assert len(expect) == 8
    for lib, rows in _rows_all_ways(_files(lpd / "tensors"), str(lpd / "tensors" / "*.parquet")).items():
        got = {str(r["id"]): _dense(r) for r in rows}
        assert got.keys() == expect.keys(), lib
        assert all(np.array_equal(got[k], expect[k]) for k in expect), lib
    n = 0
    for f in sorted((lpd / "tensors").glob("*.npz")):  # MuseGAN's shape + nonzero, with velocities
        with np.load(f, allow_pickle=False) as z:
            x = np.zeros(tuple(z["shape"]), np.float32)
            x[tuple(z["nonzero"])] = z["velocity"]
            for i, (sid, nb) in enumerate(zip(z["ids"], z["n_bars"])):
                assert np.array_equal(x[i, :nb], expect[str(sid)]) and not x[i, nb:].any()
                n += 1
    assert n == 8


def test_song_npz_read_with_numpy_matches_the_tensor_bars(root):
    import scipy.sparse

    lpd = root / "datasets" / "lpd"
    ours = PianorollBars(lpd, bars=1, binarize=False)
    songs = sorted((lpd / "songs").rglob("*.npz"))
    assert len(songs) == 8
    for path in songs:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(z["info.json"].decode())
            roll = np.stack([scipy.sparse.csc_matrix(
                (z[f"pianoroll_{k}_csc_data"], z[f"pianoroll_{k}_csc_indices"], z[f"pianoroll_{k}_csc_indptr"]),
                shape=tuple(z[f"pianoroll_{k}_csc_shape"])).toarray() for k in range(5)], axis=-1)
            starts = np.flatnonzero(z["downbeat"])
        assert [info[str(k)]["name"] for k in range(5)] == TRACKS and info["resolution"] == 24
        sid = path.stem
        bars = ours.bars_of(sid, 0, ours.songs[sid][2]).numpy()
        ends = np.append(starts[1:], len(roll))
        assert len(starts) == len(bars)
        for b, (s, e) in enumerate(zip(starts, ends)):  # each bar at steps 0.. of its tensor bar (pad)
            length = min(e - s, 96)
            assert np.array_equal(bars[b, :length], roll[s : s + length].astype(np.float32))
            assert not bars[b, length:].any()
    assert len(bar_bounds(lpd, songs[0].stem)) == ours.songs[songs[0].stem][2] + 1


# -- phrases --------------------------------------------------------------------------------------

def test_phrases_npz_and_parquet_read_by_every_library_equal_our_reader(root):
    ph = root / "datasets" / "phrases"
    seen = 0
    for split in ("train", "valid", "test"):
        ours = PhraseTensors(ph, split=split)
        with np.load(ph / "npz" / f"{split}.npz", allow_pickle=False) as z:
            x = np.zeros(tuple(z["shape"]), np.float32)
            x[tuple(z["nonzero"])] = 1
            ids = [str(i) for i in z["ids"]]
        assert len(ours) == len(x) and ours.ids == ids
        assert all(torch.equal(ours[i], torch.from_numpy(x[i])) for i in range(len(ours)))
        assert np.array_equal(read_phrase_npz(ph / "npz" / f"{split}.npz").dense(), x > 0)
        files = sorted(str(p) for p in (ph / "shards").glob(f"{split}-*.parquet"))
        if not files:
            assert len(ours) == 0
            continue
        for lib, rows in _rows_all_ways(files, str(ph / "shards" / f"{split}-*.parquet")).items():
            assert sorted(int(r["index"]) for r in rows) == list(range(len(ours))), lib
            for r in rows:
                y = torch.zeros(4, 48, 84, 5)
                y[np.asarray(r["bar"], np.int64), np.asarray(r["step"], np.int64), np.asarray(r["pitch"], np.int64),
                  np.asarray(r["track"], np.int64)] = 1
                i = int(r["index"])
                assert torch.equal(y, ours[i]) and str(r["id"]) == ours.ids[i], lib
                assert int(r["first_bar"]) == ours.first_bar[i] and r["split"] == split
        seen += len(ours)
    assert seen >= 8
    man = pd.read_parquet(ph / "manifest.parquet")
    assert int(man.selected.sum()) == seen
    assert len(dd.read_parquet(str(ph / "manifest.parquet")).compute()) == len(man) == _hf(
        [str(ph / "manifest.parquet")]).num_rows


# -- tokens ---------------------------------------------------------------------------------------

def test_token_shards_read_by_every_library_equal_our_reader(root):
    vocab_dir = root / "datasets" / "vocab" / "remi"
    files = _files(vocab_dir / "shards")
    assert len(files) >= 4
    vocab = json.loads((vocab_dir / "vocab.json").read_text())
    ours = TokenWindows(vocab_dir, length=16, stride=8, split=None)
    assert ours.schema["vocab_hash"] == vocab["hash"]
    expect = [ours[i].numpy() for i in range(len(ours))]
    for lib, rows in _rows_all_ways(files, str(vocab_dir / "shards" / "*.parquet")).items():
        got = [w for r in rows for w in windows(np.asarray(r["tokens"], np.int64), 16, 8)]
        assert len(got) == len(expect) > 0 and all(np.array_equal(a, b) for a, b in zip(got, expect)), lib
        assert all(int(np.max(r["tokens"])) < vocab["size"] for r in rows)
        bars = [np.asarray(r["bar_starts"]) for r in rows]
        assert all(len(b) and b[0] == 0 and np.all(np.diff(b) >= 0) for b in bars), lib
    hf = datasets.load_dataset("parquet", data_files=files, split="train")
    assert hf.features["tokens"] == datasets.List(datasets.Value("uint16"))
    assert all(pq.read_schema(f).metadata[b"vocab_hash"].decode() == vocab["hash"] for f in files)
    man = pd.read_parquet(vocab_dir / "manifest.parquet")
    ok = man[man.status.isin(["ok", "recovered"])]
    assert set(ok.id) == {r["id"] for r in pq.read_table(files).to_pylist()}


# -- audio ----------------------------------------------------------------------------------------

@needs_audio
def test_audio_shards_read_by_every_library_equal_our_reader(root):
    audio = root / "datasets" / "audio"
    ours = AudioClips(audio)
    files = _files(audio / "parquet")
    assert len(files) >= 3 and len(ours) > 0
    raw = [ours.raw(i) for i in range(len(ours))]  # (samples, channels) float32
    for lib, rows in _rows_all_ways(files, str(audio / "parquet" / "*.parquet")).items():
        assert len(rows) == len(ours), lib
        for r, m, x in zip(rows, ours.meta, raw):
            assert (str(r["id"]), int(r["clip"]), int(r["samples"])) == (m["id"], m["clip"], m["samples"]), lib
            y, sr = sf.read(io.BytesIO(r["audio"]["bytes"]), dtype="float32", always_2d=True)
            assert sr == 44100 and np.array_equal(y, x), lib
    hf = _hf(files)
    assert hf.features["audio"] == datasets.Audio(sampling_rate=44100)
    blobs = hf.cast_column("audio", datasets.Audio(decode=False))
    for i in range(len(ours)):
        y, _ = sf.read(io.BytesIO(blobs[i]["audio"]["bytes"]), dtype="float32", always_2d=True)
        assert np.array_equal(y, raw[i])
    k = 0
    for f in files:  # NPZ twins: same clips, same order; float32 before the 16-bit FLAC quantisation
        with np.load(audio / "npz" / Path(f).with_suffix(".npz").name, allow_pickle=False) as z:
            assert list(z["ids"]) == pq.read_table(f, columns=["id"]).column("id").to_pylist()
            for a in z["audio"]:
                assert np.abs(a - raw[k][:, 0]).max() <= 1 / 32767 + 1e-7
                assert torch.equal(ours[k], torch.from_numpy(raw[k][:, 0]))
                k += 1
    assert k == len(ours)
    man = pd.read_parquet(audio / "manifest.parquet")
    assert int(man.n_clips.fillna(0).sum()) == len(ours)
    doc = shard_schema.read_schema(audio, AUDIO)
    assert doc["manifest"]["dtypes"] == shard_schema.arrow_dtypes(pq.read_schema(audio / "manifest.parquet"))


def _torchcodec_works() -> bool:
    try:
        from torchcodec.decoders import AudioDecoder  # its native libraries load here
    except Exception:  # absent, or its native libraries (FFmpeg, CUDA build) do not load
        return False
    return AudioDecoder is not None


@needs_audio
@pytest.mark.skipif(not _torchcodec_works(), reason="datasets decodes Audio through torchcodec, which is not "
                    "installed here (PyPI has only CUDA builds of it for torch 2.13); the FLAC bytes are checked above")
def test_audio_decoded_by_hugging_face_equals_our_reader(root):
    audio = root / "datasets" / "audio"
    ours = AudioClips(audio, mono=False)
    hf = _hf(_files(audio / "parquet")).cast_column("audio", datasets.Audio(sampling_rate=44100))
    for i in range(len(ours)):
        got = hf[i]["audio"].get_all_samples()
        assert got.sample_rate == 44100 and torch.equal(got.data.float(), ours[i])


# -- DataLoader workers and streaming ---------------------------------------------------------------

DATASETS = {
    "pianoroll": lambda d: PianorollBars(d / "lpd", bars=2, hop=1),
    "phrases": lambda d: PhraseTensors(d / "phrases", split="train"),
    "token_windows": lambda d: TokenWindows(d / "vocab" / "remi", length=16, stride=8, split=None),
    "token_stream": lambda d: TokenStream(d / "vocab" / "remi", length=16, stride=8, split=None, seed=5),
    "audio": lambda d: AudioClips(d / "audio"),
}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataloader_with_two_workers_gives_the_same_items(root, name):
    if name == "audio" and not HAS_FLUIDSYNTH:
        pytest.skip("the fluidsynth program is absent")
    ds = DATASETS[name](root / "datasets")
    one = [x.clone() for x in DataLoader(ds, batch_size=None, num_workers=0)]
    two = [x.clone() for x in DataLoader(ds, batch_size=None, num_workers=2)]
    assert len(one) == len(two) > 0
    if name == "token_stream":  # shards are dealt to workers: the same windows, in another order
        assert Counter(tuple(x.tolist()) for x in one) == Counter(tuple(x.tolist()) for x in two)
    else:
        assert len(one) == len(ds) and all(torch.equal(a, b) for a, b in zip(one, two))
        assert all(torch.equal(ds[i], one[i]) for i in np.random.default_rng(0).permutation(len(ds))[:20])


def test_streaming_over_many_shards_yields_every_window_once(root):
    vocab_dir = root / "datasets" / "vocab" / "remi"
    files = _files(vocab_dir / "shards")
    expect = Counter(tuple(w.tolist()) for r in pq.read_table(files).to_pylist()
                     for w in windows(np.asarray(r["tokens"], np.int64), 16, 8))
    ds = TokenStream(vocab_dir, length=16, stride=8, split=None, seed=1)
    assert len(ds.paths) == len(files) >= 4
    for n in (1, 2, 3, 5):  # each shard goes to exactly one of n workers
        parts = [ds.shards_for(w, n) for w in range(n)]
        assert sorted(p for part in parts for _, p in part) == sorted(ds.paths)
    for workers in (0, 2):
        got = Counter(tuple(x.tolist()) for x in DataLoader(ds, batch_size=None, num_workers=workers))
        assert got == expect, workers


# -- schema checks ------------------------------------------------------------------------------

READERS = {  # dataset, where its schema.json goes in a folder handed to it, the kind's folder in `root`
    "pianoroll": (lambda d: PianorollBars(d), "tensors/schema.json", "lpd/tensors"),
    "phrases": (lambda d: PhraseTensors(d), "schema.json", "phrases"),
    "token_windows": (lambda d: TokenWindows(d), "shards/schema.json", "vocab/remi/shards"),
    "token_stream": (lambda d: TokenStream(d), "shards/schema.json", "vocab/remi/shards"),
    "audio": (lambda d: AudioClips(d), "schema.json", "audio"),
}


def _doc(root: Path, rel: str) -> dict:
    return json.loads((root / "datasets" / rel / "schema.json").read_text())


def _with_schema(tmp_path: Path, where: str, doc) -> Path:
    folder = tmp_path / "shards"
    (folder / where).parent.mkdir(parents=True, exist_ok=True)
    (folder / where).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return folder


@pytest.mark.parametrize("name", sorted(READERS))
def test_schema_version_999_is_refused_with_a_clear_error(root, tmp_path, name):
    make, where, rel = READERS[name]
    if rel == "audio" and not HAS_FLUIDSYNTH:
        pytest.skip("the fluidsynth program is absent")
    folder = _with_schema(tmp_path, where, {**_doc(root, rel), "schema_version": 999})
    with pytest.raises(SchemaError) as err:
        make(folder)
    msg = str(err.value)
    assert str(folder / where) in msg and "expected 1, found 999" in msg and "upgrade lakh-pipeline" in msg
    assert "\n" not in msg and err.value.expected == "1" and err.value.found == 999
    folder = _with_schema(tmp_path, where, {**_doc(root, rel), "schema_version": 0})
    with pytest.raises(SchemaError, match=r"expected 1, found 0 \(written by an older .*rebuild them with `dvc repro"):
        make(folder)


def test_schema_file_missing_other_kind_unknown_kind_bad_json_missing_keys(root, tmp_path):
    with pytest.raises(SchemaError, match=r"tensors/schema.json: no schema.json beside the shards"):
        PianorollBars(tmp_path)
    phrases = _doc(root, "phrases")
    with pytest.raises(SchemaError, match="wrong shard kind: expected 'lakh-pipeline/pianoroll-tensors', "
                                          "found 'lakh-pipeline/phrase-tensors'"):
        PianorollBars(_with_schema(tmp_path / "a", "tensors/schema.json", phrases))
    with pytest.raises(SchemaError, match="unknown shard kind: expected 'lakh-pipeline/phrase-tensors', "
                                          "found 'acme/x'"):
        PhraseTensors(_with_schema(tmp_path / "b", "schema.json", {**phrases, "kind": "acme/x"}))
    with pytest.raises(SchemaError, match="not valid JSON"):
        PhraseTensors(_with_schema(tmp_path / "c", "schema.json", "{not json"))
    lpd = {k: v for k, v in _doc(root, "lpd/tensors").items() if k != "bar_steps"}
    with pytest.raises(SchemaError, match=r"schema lacks keys that readers need: expected \['track_order', "
                                          r"'resolution', 'bar_steps', 'tensor_shape'\]"):
        PianorollBars(_with_schema(tmp_path / "d", "tensors/schema.json", lpd))
    with pytest.raises(SchemaError, match="no 'schema_version'"):
        PianorollBars(_with_schema(tmp_path / "e", "tensors/schema.json",
                                   {k: v for k, v in _doc(root, "lpd/tensors").items() if k != "schema_version"}))
    err = SchemaError("a/schema.json", "x", expected=1, found=2, hint="h")  # crosses DataLoader workers intact
    assert str(pickle.loads(pickle.dumps(err))) == str(err) == "a/schema.json: x: expected 1, found 2 (h)"


def test_first_spelling_of_version_1_documents_is_read(root, tmp_path):
    vocab = tmp_path / "remi"
    shutil.copytree(root / "datasets" / "vocab" / "remi", vocab)
    doc = json.loads((vocab / "shards" / "schema.json").read_text())
    old = {"version": 1, "kind": "remi", **{k: doc[k] for k in ("vocab_hash", "vocab_size", "config", "splits",
                                                               "fields", "windows")}}
    (vocab / "shards" / "schema.json").write_text(json.dumps(old))  # as build_vocab wrote it before
    ds = TokenWindows(vocab, length=16, stride=8, split=None)
    assert ds.schema["kind"] == TOKENS and ds.schema["token_kind"] == "remi" and len(ds) > 0
    audio_v1 = {"version": 1, "producer": "render_audio", "sample_rate": 44100, "channels": 1, "clip_samples": 65536}
    assert shard_schema.check_document(audio_v1, AUDIO)["kind"] == AUDIO


def test_shards_whose_columns_or_vocabulary_differ_are_refused(root, tmp_path):
    vocab = tmp_path / "remi"
    shutil.copytree(root / "datasets" / "vocab" / "remi", vocab)
    shard = sorted((vocab / "shards").glob("*.parquet"))[1]
    t = pq.read_table(shard)
    wide = t.set_column(t.schema.get_field_index("tokens"), "tokens", t.column("tokens").cast(pa.list_(pa.int64())))
    pq.write_table(wide, shard)
    with pytest.raises(SchemaError, match=re.escape(f"{shard}: column 'tokens' has another type: expected "
                                                    "list<uint16>, found list<int64>")):
        TokenStream(vocab)
    pq.write_table(t.replace_schema_metadata({**t.schema.metadata, b"vocab_hash": b"0" * 64}), shard)
    with pytest.raises(SchemaError, match="shard made with another vocabulary than its folder's schema.json says: "
                                          "expected [0-9a-f]{12}, found 000000000000"):
        TokenWindows(vocab)
    lpd = tmp_path / "lpd"
    shutil.copytree(root / "datasets" / "lpd" / "tensors", lpd / "tensors")
    p = sorted((lpd / "tensors").glob("*.parquet"))[0]
    pq.write_table(pq.read_table(p).drop_columns(["velocity"]), p)
    with pytest.raises(SchemaError, match=r"pianoroll-tensors shard lacks columns \['velocity'\]"):
        PianorollBars(lpd)


# -- nothing is unpickled -------------------------------------------------------------------------

class _Opens:
    """Unpickling this would create a file: proof that a loader unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class _Config:
    def __init__(self) -> None:
        self.lr = 0.1


def _object_npz(path: Path, marker: Path, **plain) -> None:
    arrays = {**plain, "nonzero": np.array([_Opens(str(marker))], dtype=object)}
    np.savez(path, **arrays)  # np.savez pickles object arrays: what a hostile file would hold


def test_object_arrays_in_npz_are_refused_by_every_reader(root, tmp_path):
    marker = tmp_path / "unpickled"
    ph = tmp_path / "phrases"
    shutil.copytree(root / "datasets" / "phrases", ph)
    bad = ph / "npz" / "train.npz"
    _object_npz(bad, marker, shape=np.array([1, 4, 48, 84, 5]), ids=np.array(["a" * 32]),
                first_bar=np.zeros(1, np.int32))
    for read in (lambda: PhraseTensors(ph, split="train"), lambda: read_phrase_npz(bad), lambda: describe(bad),
                 lambda: load_npz(bad)):
        with pytest.raises(UnsafeFileError) as err:
            read()
        assert str(bad) in str(err.value) and "member nonzero.npy is an object array" in str(err.value)
        assert not isinstance(err.value, pickle.UnpicklingError) and isinstance(err.value, PipelineError)
    # a song NPZ of the lpd output, read by aligned's bar_bounds
    lpd = tmp_path / "lpd"
    shutil.copytree(root / "datasets" / "lpd", lpd)
    song = sorted((lpd / "songs").rglob("*.npz"))[0]
    np.savez(song, tempo=np.array([_Opens(str(marker))], dtype=object), downbeat=np.ones(4, bool))
    with pytest.raises(UnsafeFileError, match="member tempo.npy is an object array"):
        bar_bounds(lpd, song.stem)
    # a bare pickle under an .npz name
    fake = tmp_path / "fake.npz"
    fake.write_bytes(pickle.dumps(_Opens(str(marker))))
    with pytest.raises(UnsafeFileError, match="not an NPZ archive of plain arrays"):
        load_npz(fake)
    assert not marker.exists()
    # the CLI says it in one line, without a traceback
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "inspect", str(bad)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0
    assert res.stderr.startswith(f"error: {bad}: member nonzero.npy is an object array")
    assert "Traceback" not in res.stderr
    assert not marker.exists()


def test_checkpoints_with_pickled_objects_are_refused(tmp_path):
    marker = tmp_path / "unpickled"
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"model": {"w": torch.arange(3.0)}, "epoch": 2, "history": [{"loss": 1.5}]})
    state = load_checkpoint(good)
    assert torch.equal(state["model"]["w"], torch.arange(3.0)) and state["epoch"] == 2
    hostile = tmp_path / "hostile.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Opens(str(marker))}, hostile)
    with pytest.raises(UnsafeFileError) as err:
        load_checkpoint(hostile)
    msg = str(err.value)
    head = re.escape(f"{hostile}: refused: the checkpoint pickles the Python object ")
    assert re.match(head + r"(io|builtins)\.open;", msg)
    assert "weights_only=True" in msg and "\n" not in msg and not marker.exists()
    custom = tmp_path / "custom.pt"
    torch.save({"model": {}, "config": _Config()}, custom)
    with pytest.raises(UnsafeFileError, match=r"pickles the Python object (tests\.)?test_consumers\._Config;"):
        load_checkpoint(custom)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:100])
    with pytest.raises(UnsafeFileError, match="not a readable torch checkpoint"):
        load_checkpoint(cut)
