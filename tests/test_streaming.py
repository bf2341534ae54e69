"""Training loaders that read the shards batch by batch: the same batches as the dense path, and a
memory that holds per-phrase offsets only (no timing or RSS asserts here: benchmarks/bench_loaders.py)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import SchemaError
from pipeline.formats.phrase_shards import PhraseRows, read_phrase_npz, write_phrase_npz
from pipeline.training.musegan import batch_indices
from pipeline.stages import build_lpd, build_phrases
from tests.conftest import make_song


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """``lpd`` and ``phrases`` built by the stages from eight generated songs."""
    base = tmp_path_factory.mktemp("streaming")
    src = base / "midi"
    src.mkdir()
    for i in range(8):
        (src / f"song{i}.mid").write_bytes(make_song(60 + i, n_bars=16, tempo_bpm=100 + 7 * i))
    build_lpd.run(source=src, out=base / "lpd", params=build_lpd.Params(shard_size=3), workers=1)
    build_phrases.run(lpd=base / "lpd", out=base / "phrases", params=build_phrases.Params())
    return base


def test_phrase_rows_give_the_dense_batches(built):
    path = built / "phrases" / "npz" / "train.npz"
    dense = read_phrase_npz(path).dense()
    assert len(dense) >= 4
    with PhraseRows(path) as rows:
        assert rows.shape == dense.shape and len(rows) == len(dense)
        assert np.array_equal(rows[np.arange(len(dense))], dense)
        for counter in range(6):  # the batches MuseGAN's loop draws
            idx = batch_indices(2026, counter, len(dense), 2)
            assert np.array_equal(rows[idx], dense[idx])
        assert np.array_equal(rows[len(dense) - 1], dense[-1]) and np.array_equal(rows[-1], dense[-1])
        copy = pickle.loads(pickle.dumps(rows))  # what a DataLoader worker gets: reopens the file itself
        assert np.array_equal(copy[np.arange(len(dense))], dense)
        with pytest.raises(IndexError):
            rows[len(dense)]


def test_phrase_rows_hold_offsets_not_phrases(tmp_path):
    """The loader's arrays grow by a few ints per phrase, never by a phrase's cells."""
    rng = np.random.default_rng(0)
    held = {}
    for n in (50, 500):
        x = rng.random((n, 4, 48, 84, 5)) < 0.01  # ~800 cells per phrase
        path = tmp_path / f"p{n}.npz"
        write_phrase_npz(path, x.shape, np.stack(np.nonzero(x)), ids=[f"{i:032x}" for i in range(n)],
                         first_bar=np.zeros(n, np.int32))
        with PhraseRows(path) as rows:
            arrays = [v for v in vars(rows).values() if isinstance(v, np.ndarray)]
            held[n] = sum(a.nbytes for a in arrays)
            assert held[n] <= n * (8 + 4 + 4 * 32 + 8) + 64  # offsets, first_bar, ids (<U32), slack
            assert held[n] < n * x[0].size // 100  # far below the phrases themselves (bool: 80640 B each)
            scratch = rows._scratch
            assert os.path.exists(scratch)
            assert np.array_equal(rows[np.array([0, n // 2, n - 1])], x[[0, n // 2, n - 1]])
        assert not os.path.exists(scratch)  # the uncompressed coordinates go with the loader
    assert held[500] <= 10 * held[50] + 64


def test_phrase_rows_unordered_and_bad_files(tmp_path):
    x = np.random.default_rng(1).random((6, 2, 4, 3, 2)) < 0.3
    nz = np.stack(np.nonzero(x))
    path = tmp_path / "shuffled.npz"
    write_phrase_npz(path, x.shape, nz[:, ::-1])  # not ordered by phrase (as MuseGAN's own files may be)
    with PhraseRows(path) as rows:
        assert np.array_equal(rows[np.arange(6)], x)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SchemaError, match="bad.npz"):
        PhraseRows(bad)
    with pytest.raises(SchemaError, match="differs from schema.json"):
        PhraseRows(path, item_shape=(4, 48, 84, 5))


def test_one_phrase_from_the_song_tensor_shards(built):
    """README: a phrase is bars first_bar.. of its song in the 5-D tensor shards, every other step,
    pitches lowest_pitch.. (PianorollBars reads the one row group that holds the song)."""
    from pipeline.data import PianorollBars

    songs = PianorollBars(built / "lpd", bars=4)
    with PhraseRows(built / "phrases" / "npz" / "train.npz") as rows:
        for i in range(len(rows)):
            song, first = str(rows.ids[i]), int(rows.first_bar[i])
            x = songs.bars_of(song, first, first + 4).numpy()[:, ::2, 24:24 + 84] > 0
            assert np.array_equal(x, rows[i])


def test_song_windows_give_make_windows(built, tmp_path):
    """The LSTM's windows read from the token shards equal the dense ``make_windows`` rows, and the
    loader's arrays are a few ints per window."""
    from pipeline.formats.vocab import load_vocabulary
    from pipeline.stages import build_vocab
    from pipeline.training import lstm as fam

    src = built / "midi"
    build_vocab.run(source=src, out=tmp_path / "notes", kind="notes", params=build_vocab.Params(shard_size=3),
                    workers=1)
    shards = tmp_path / "notes" / "shards"
    vocab = load_vocabulary(tmp_path / "notes" / "vocab.json")
    for split in ("train", "valid", "test"):
        for window, stride in ((16, 8), (64, 32), (4000, 5)):  # the last: every sequence shorter (padded)
            dense = fam.make_windows(fam.song_sequences(shards, vocab, split), window, stride)
            rows = fam.SongWindows(shards, vocab, split, window, stride, cache_groups=1)
            assert len(rows) == len(dense)
            assert np.array_equal(rows[np.arange(len(rows))], dense)
            order = np.random.default_rng(0).permutation(len(rows))
            assert np.array_equal(rows[order], dense[order])
            copy = pickle.loads(pickle.dumps(rows))
            assert np.array_equal(copy[order[:5]], dense[order[:5]])
            held = sum(v.nbytes for v in vars(rows).values() if isinstance(v, np.ndarray))
            assert held <= 16 * len(rows) + 32 * len(rows._seqs) + 64


def test_flac_clips_crop_the_decoded_frames(tmp_path):
    """The VQ-VAE's clips wait as FLAC bytes in a scratch file; a crop decodes only its frames and
    equals the crop of the whole decoded clip."""
    import io

    import soundfile as sf

    from pipeline.training.vqvae import ClipBank, FlacClips

    rng = np.random.default_rng(3)
    pcm = [(rng.standard_normal((ch, n)) * 3000).astype(np.int16) for ch, n in ((1, 50_000), (2, 30_001), (1, 700))]
    clips = FlacClips(tmp_path)
    for p in pcm:
        buf = io.BytesIO()
        sf.write(buf, p.T, 22050, format="FLAC", subtype="PCM_16")
        clips.append(buf.getvalue(), p.shape[0], p.shape[1])
    clips.freeze([2, 0, 1])
    lazy = ClipBank(ids=["c", "a", "b"], clips=[0, 0, 0], valid=[700, 50_000, 30_001], pcm=clips, sample_rate=22050)
    dense = ClipBank(ids=["c", "a", "b"], clips=[0, 0, 0], valid=[700, 50_000, 30_001], pcm=[pcm[2], pcm[0], pcm[1]],
                     sample_rate=22050)
    assert lazy.keys_digest() == dense.keys_digest()
    for i in range(3):
        assert np.array_equal(clips[i], dense.pcm[i])
        for start in (0, 1, 4095, 4097, dense.max_start(i, 4096), dense.pcm[i].shape[1] - 3):
            assert lazy.max_start(i, 4096) == dense.max_start(i, 4096)
            assert np.array_equal(lazy.crop(i, start, 4096, 0.3), dense.crop(i, start, 4096, 0.3))
    copy = pickle.loads(pickle.dumps(clips))
    assert np.array_equal(copy.frames(1, 123, 1000), pcm[0][:, 123:1123])
    held = clips.where.nbytes + clips.shapes.nbytes
    assert held == 3 * 4 * 8  # (start, length) and (channels, frames) per clip
