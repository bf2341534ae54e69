"""The same bars of one song across the three shard kinds: piano-roll, tokens and audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from pipeline.data.audio import AudioClips
from pipeline.data.pianoroll import PianorollBars
from pipeline.data.tokens import checked_token_shards
from pipeline.formats.npz import load_npz
from pipeline.formats.tensor_shards import TENSORS
from pipeline.schema import read_schema


def bar_bounds(lpd: str | Path, song_id: str) -> np.ndarray | None:
    """Start time (s) of every bar of a song and the end of its beat grid: ``(n_bars + 1,)``.

    Derived from the build_lpd outputs alone: the song NPZ (``songs/<id[0]>/<id>.npz``: per-step
    ``tempo``, each beat's tempo repeated over its steps, and ``downbeat``), the manifest's
    ``first_beat_time`` and the ``resolution`` in ``tensors/schema.json``. These are the bars of
    ``pipeline.symbolic.lpd.bar_grid`` (the grid render_audio placed its clips on), up to float
    rounding (``60 / (60 / d)``). None when one of these files or the song is missing.
    """
    lpd = Path(lpd)
    song = lpd / "songs" / song_id[0] / f"{song_id}.npz"
    schema = lpd / "tensors" / "schema.json"
    manifest = lpd / "manifest.parquet"
    if not (song.is_file() and schema.is_file() and manifest.is_file()):
        return None
    res = int(read_schema(lpd, TENSORS)["resolution"])
    m = pq.read_table(manifest, columns=["id", "first_beat_time"], filters=[("id", "=", song_id)]).to_pylist()
    first = next((r["first_beat_time"] for r in m if r["first_beat_time"] is not None), None)
    if first is None:
        return None
    z = load_npz(song, ["tempo", "downbeat"])  # never unpickles
    tempo, downbeat = z["tempo"], z["downbeat"]
    beat_times = float(first) + np.concatenate([[0.0], np.cumsum(60.0 / tempo[::res])])
    bar_beats = np.flatnonzero(downbeat) // res
    return np.append(beat_times[bar_beats], beat_times[-1])


def _token_row(vocab: Path, song_id: str, stream: str) -> dict | None:
    _, paths = checked_token_shards(vocab)
    for p in paths:
        t = pq.read_table(p, filters=[("id", "=", song_id), ("stream", "=", stream)])
        if t.num_rows:
            return {"tokens": np.asarray(t.column("tokens")[0].values.to_numpy(zero_copy_only=False), np.int64),
                    "bar_starts": np.asarray(t.column("bar_starts")[0].values.to_numpy(zero_copy_only=False), np.int64),
                    "split": t.column("split")[0].as_py()}
    return None


def aligned(song_id: str, first_bar: int, last_bar: int, *, lpd: str | Path | PianorollBars | None = None,
            lpd_root: str | Path | None = None, vocab: str | Path | None = None, audio: str | Path | AudioClips | None = None,
            stream: str = "all", binarize: bool = True) -> dict:
    """Bars ``first_bar .. last_bar - 1`` (``last_bar`` exclusive, like a clip's ``end_bar``) of one
    song in every modality given.

    Parameters
    ----------
    song_id : str
        The song's id (MD5 of the MIDI file).
    lpd : path or PianorollBars
        The build_lpd output folder (``datasets/lpd``), or a dataset over its tensors (then pass
        ``lpd_root`` for the audio cut, see below).
    vocab : path
        A build_vocab output (``datasets/vocab/remi``) or its shard folder; ``stream`` picks the row.
    audio : path or AudioClips
        A render_audio output (``datasets/audio``) or a dataset over it.

    Returns
    -------
    dict
        ``pianoroll``: float32 ``(bars, bar_steps, 128, tracks)`` (bars = last - first);
        ``tokens``: int64 ``(n,)``, the ids from the token of ``first_bar``'s ``bar_starts`` to the
        one of ``last_bar`` (or the end of the stream); ``audio``: float32 ``(frames,)`` (mono) or
        ``(channels, frames)``, the samples from the start of ``first_bar`` to the start of
        ``last_bar`` (or the end of the beat grid), when one clip covers them all; ``sample_range``:
        those frames in the song; ``audio_exact``: whether ``audio`` is that cut.

        The audio is cut at ``round(bar_time * sample_rate)``, as render_audio placed its clips,
        with the bar times derived from the build_lpd song NPZ and manifest (:func:`bar_bounds`),
        not from the source MIDI. When they are unavailable (no ``lpd`` folder, or a song NPZ
        missing) or no single clip covers the range, ``audio`` is None, ``audio_exact`` False, and
        ``clips`` lists every clip that overlaps the bars, whole, with its ``start_bar``,
        ``end_bar`` (exclusive), ``start_sample`` and ``valid_samples``. A modality not given, or
        without the song, is None. The bar index is the build_lpd bar (``other_meters: pad``;
        with ``drop`` the tensor bars are renumbered and do not match the tokens or audio).
    """
    if not 0 <= first_bar < last_bar:
        raise ValueError(f"first_bar={first_bar}, last_bar={last_bar}: need 0 <= first_bar < last_bar")
    out: dict = {"id": song_id, "first_bar": first_bar, "last_bar": last_bar, "pianoroll": None, "tokens": None,
                 "audio": None, "audio_exact": False, "sample_range": None, "sample_rate": None, "clips": []}
    root = lpd_root if lpd_root is not None else (None if isinstance(lpd, PianorollBars) or lpd is None else lpd)
    if lpd is not None:
        bars = lpd if isinstance(lpd, PianorollBars) else PianorollBars(lpd, bars=1, binarize=binarize)
        if song_id in bars.songs:
            out["n_bars"] = bars.songs[song_id][2]
            out["pianoroll"] = bars.bars_of(song_id, first_bar, last_bar)
    if vocab is not None:
        row = _token_row(Path(vocab), song_id, stream)
        if row is not None:
            bs, toks = row["bar_starts"], row["tokens"]
            if last_bar > len(bs):
                raise IndexError(f"bars {first_bar}..{last_bar} are outside song {song_id} ({len(bs)} bars in its tokens)")
            end = int(bs[last_bar]) if last_bar < len(bs) else len(toks)
            out["tokens"] = torch.from_numpy(toks[int(bs[first_bar]) : end].copy())
            out["token_bars"] = len(bs)
    if audio is not None:
        clips = audio if isinstance(audio, AudioClips) else AudioClips(audio)
        idx = [i for i in clips.clips_of(song_id)
               if clips.meta[i]["start_bar"] is not None and clips.meta[i]["start_bar"] < last_bar
               and clips.meta[i]["end_bar"] > first_bar]
        bounds = bar_bounds(root, song_id) if root is not None else None
        if idx:
            sr = int(clips.meta[idx[0]]["sample_rate"])
            out["sample_rate"] = sr
        if idx and bounds is not None and last_bar < len(bounds):
            lo, hi = (int(v) for v in np.round(bounds[[first_bar, last_bar]] * sr))
            out["sample_range"] = (lo, hi)
            for i in idx:
                m = clips.meta[i]
                if m["start_sample"] <= lo and hi <= m["start_sample"] + m["samples"]:
                    x = clips.raw(i)[lo - m["start_sample"] : hi - m["start_sample"]]
                    x = x[:, 0] if x.shape[1] == 1 else x.T
                    out["audio"] = torch.from_numpy(np.ascontiguousarray(x))
                    out["audio_exact"] = True
                    out["clip"] = int(m["clip"])
                    break
        if not out["audio_exact"]:
            for i in idx:
                m = clips.meta[i]
                x = clips.raw(i)
                out["clips"].append({**{k: m[k] for k in ("clip", "start_bar", "end_bar", "start_sample",
                                                          "valid_samples")},
                                     "audio": torch.from_numpy(np.ascontiguousarray(x[:, 0] if x.shape[1] == 1 else x.T))})
    return out
