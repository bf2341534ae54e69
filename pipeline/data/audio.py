"""Clips from the render_audio / ingest_audio Parquet shards (``datasets/audio/parquet/*.parquet``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from pipeline.audio.downmix import song_rng
from pipeline.data.pianoroll import LazyParquet, shard_paths
from pipeline.schema import check_parquet
from pipeline.formats.audio_shards import AUDIO
from pipeline.schema import read_schema

#: metadata read at ``__init__`` (everything but the FLAC bytes and the render JSON)
META = ("id", "clip", "sample_rate", "channels", "samples", "valid_samples", "start_sample", "start_bar",
        "end_bar", "downmix")


def decode_flac(blob: bytes) -> np.ndarray:
    """FLAC bytes -> float32 ``(frames, channels)`` (16-bit PCM / 32768, as soundfile reads it)."""
    import soundfile as sf

    x, _ = sf.read(io.BytesIO(blob), dtype="float32", always_2d=True)
    return x


class AudioClips(Dataset):
    """One item per clip of the audio shards.

    Parameters
    ----------
    folder : path
        The render_audio output (``datasets/audio``; its ``parquet/`` is used) or a Parquet folder.
    mono : bool
        True: items are ``(samples,)``; a stereo clip (``downmix: none``) is mixed at load time as
        Jukebox does, ``x = m*L + (1-m)*R`` with ``m ~ U(0, 1)`` from a generator seeded per item
        (``default_rng([seed, int(id[:8], 16), clip, epoch])``: the same item, seed and epoch give
        the same ``m``; :meth:`set_epoch` draws new ones). Mono clips are returned as stored.
        False: items are ``(channels, samples)``.
    seed : int
        Seeds the load-time downmix.

    Items are float32 tensors of the clip's ``samples`` frames (zero padding included; see
    ``meta[i]["valid_samples"]``). ``meta[i]`` holds the clip's metadata columns; files are opened
    lazily per process and only the clip's row group is read.
    """

    def __init__(self, folder: str | Path, *, mono: bool = True, seed: int = 0) -> None:
        self.schema = read_schema(folder, AUDIO)  # SchemaError before any shard is read
        self.paths = [str(p) for p in shard_paths(Path(folder), "parquet")]
        for path in self.paths:
            check_parquet(path, AUDIO, columns=[*META, "audio"])
        self.mono, self.seed, self.epoch = mono, seed, 0
        self.meta: list[dict] = []
        self._where: list[tuple[int, int]] = []
        for s, path in enumerate(self.paths):
            t = pq.read_table(path, columns=list(META))
            for r, row in enumerate(t.to_pylist()):
                self.meta.append(row)
                self._where.append((s, r))
        self._files = LazyParquet()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.meta)

    def clips_of(self, song_id: str) -> list[int]:
        """Indices of a song's clips, in clip order."""
        return sorted((i for i, m in enumerate(self.meta) if m["id"] == song_id), key=lambda i: self.meta[i]["clip"])

    def raw(self, i: int) -> np.ndarray:
        """The stored clip, float32 ``(samples, channels)``."""
        s, r = self._where[i]
        blob = self._files.row(self.paths[s], r, columns=["audio"]).column("audio")[0]["bytes"].as_py()
        return decode_flac(blob)

    def mix_weight(self, i: int) -> float:
        m = self.meta[i]
        return float(song_rng(self.seed, m["id"], int(m["clip"]), self.epoch).uniform())

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} is outside the dataset ({len(self)} clips)")
        i = i % len(self)
        x = self.raw(i)
        if not self.mono:
            return torch.from_numpy(np.ascontiguousarray(x.T))
        if x.shape[1] == 1:
            return torch.from_numpy(np.ascontiguousarray(x[:, 0]))
        w = np.float32(self.mix_weight(i))
        return torch.from_numpy(w * x[:, 0] + (np.float32(1) - w) * x[:, 1])
