"""Windows of bars from the build_lpd tensor shards (``datasets/lpd/tensors/*.parquet``)."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from pipeline.schema import check_parquet
from pipeline.formats.tensor_shards import TENSORS
from pipeline.schema import read_schema

# -- per-process lazy Parquet handles and a row cache (used by every dataset here) ----------------


class LazyParquet:
    """Opens Parquet files on first use in the current process and reads single rows.

    The handles are keyed by process id: a dataset copied into a DataLoader worker (fork or
    spawn) never uses a handle opened by its parent.
    """

    def __init__(self) -> None:
        self._pid: int | None = None
        self._files: dict[str, tuple[pq.ParquetFile, np.ndarray]] = {}

    def __getstate__(self) -> dict:
        return {"_pid": None, "_files": {}}

    def _handle(self, path: str) -> tuple[pq.ParquetFile, np.ndarray]:
        if self._pid != os.getpid():
            self._pid, self._files = os.getpid(), {}
        got = self._files.get(path)
        if got is None:
            pf = pq.ParquetFile(path)
            sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
            got = (pf, np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]))
            self._files[path] = got
        return got

    def row(self, path: str | Path, row: int, columns: list[str] | None = None) -> pa.Table:
        """Row ``row`` of the file as a one-row table (reads only its row group)."""
        pf, starts = self._handle(str(path))
        g = int(np.searchsorted(starts, row, side="right")) - 1
        if not 0 <= row < starts[-1]:
            raise IndexError(f"row={row} is outside {path} ({starts[-1]} rows)")
        return pf.read_row_group(g, columns=columns).slice(row - int(starts[g]), 1)


class LRU:
    """A tiny least-recently-used cache (per process, like the handles)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pid: int | None = None
        self._items: OrderedDict = OrderedDict()

    def __getstate__(self) -> dict:
        return {"size": self.size, "_pid": None, "_items": OrderedDict()}

    def get(self, key, make):
        if self._pid != os.getpid():
            self._pid, self._items = os.getpid(), OrderedDict()
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        if self.size > 0:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def shard_paths(folder: Path, sub: str) -> list[Path]:
    """``folder/sub/*.parquet`` when ``folder/sub`` exists, else ``folder/*.parquet`` (sorted)."""
    folder = Path(folder)
    base = folder / sub if (folder / sub).is_dir() else folder
    paths = sorted(p for p in base.glob("*.parquet") if p.name != "manifest.parquet")
    if not paths:
        raise FileNotFoundError(f"no Parquet shards in {base}")
    return paths


COORDS = ("bar", "step", "pitch", "track", "velocity")


def decode_row(table) -> dict[str, np.ndarray]:
    """Coordinates of a one-row tensor-shard table as numpy arrays (plus ``id`` and ``n_bars``)."""
    out = {name: table.column(name)[0].values.to_numpy(zero_copy_only=False) for name in COORDS}
    out["id"] = table.column("id")[0].as_py()
    out["n_bars"] = int(table.column("n_bars")[0].as_py())
    return out


def dense_bars(row: dict, first_bar: int, last_bar: int, *, bar_steps: int, n_tracks: int,
               binarize: bool = True) -> np.ndarray:
    """Dense float32 ``(last_bar - first_bar, bar_steps, 128, n_tracks)`` of bars first..last-1."""
    x = np.zeros((last_bar - first_bar, bar_steps, 128, n_tracks), np.float32)
    bar = row["bar"].astype(np.int64)
    keep = (bar >= first_bar) & (bar < last_bar)
    value = 1.0 if binarize else row["velocity"][keep].astype(np.float32)
    x[bar[keep] - first_bar, row["step"][keep].astype(np.int64), row["pitch"][keep].astype(np.int64),
      row["track"][keep].astype(np.int64)] = value
    return x


class PianorollBars(Dataset):
    """Windows of ``bars`` consecutive bars of every song in the build_lpd tensor shards.

    Parameters
    ----------
    folder : path
        The build_lpd output (``datasets/lpd``; its ``tensors/`` is used) or the tensors folder.
    bars : int
        Bars per item.
    hop : int, optional
        Bars between window starts (default ``bars``: non-overlapping windows); a song shorter
        than ``bars`` gives no item.
    binarize : bool
        True: 1.0 where a note sounds; False: the velocity (1..127) as float.
    cache_rows : int
        Decoded songs kept per process (an LRU), so that neighbouring windows decode once.

    Items are float32 tensors ``(bars, bar_steps, 128, tracks)`` (bar_steps 96 and tracks 5 for the
    defaults; read from ``schema.json``, whose kind and version are checked first, as is every
    shard's Parquet schema: :class:`~pipeline.errors.SchemaError` on a mismatch). ``index[i]`` is
    ``(song id, first bar)``; ``__init__`` reads only the ``id`` and ``n_bars`` columns; files are
    opened lazily per process.
    """

    def __init__(self, folder: str | Path, *, bars: int = 4, hop: int | None = None, binarize: bool = True,
                 cache_rows: int = 8) -> None:
        if bars < 1:
            raise ValueError(f"bars={bars} must be positive")
        hop = bars if hop is None else hop
        if hop < 1:
            raise ValueError(f"hop={hop} must be positive")
        self.schema = read_schema(folder, TENSORS)  # SchemaError before any shard is read
        self.paths = [str(p) for p in shard_paths(Path(folder), "tensors")]
        for path in self.paths:
            check_parquet(path, TENSORS)
        self.bar_steps, self.n_tracks = int(self.schema["bar_steps"]), len(self.schema["track_order"])
        self.track_order = list(self.schema["track_order"])
        self.bars, self.hop, self.binarize = bars, hop, binarize
        self.songs: dict[str, tuple[int, int, int]] = {}  # id -> (shard index, row, n_bars)
        windows: list[tuple[int, int]] = []  # (song index, first bar)
        self.song_ids: list[str] = []
        for s, path in enumerate(self.paths):
            t = pq.read_table(path, columns=["id", "n_bars"])
            for r, (sid, n) in enumerate(zip(t.column("id").to_pylist(), t.column("n_bars").to_pylist())):
                self.songs[sid] = (s, r, int(n))
                k = len(self.song_ids)
                self.song_ids.append(sid)
                windows += [(k, b) for b in range(0, int(n) - bars + 1, hop)]
        self._windows = np.array(windows, np.int64).reshape(-1, 2)
        self._files = LazyParquet()
        self._cache = LRU(cache_rows)

    def __len__(self) -> int:
        return len(self._windows)

    @property
    def index(self) -> list[tuple[str, int]]:
        return [(self.song_ids[k], int(b)) for k, b in self._windows]

    def song(self, song_id: str) -> dict[str, np.ndarray]:
        """The decoded sparse row of one song (cached)."""
        try:
            s, r, _ = self.songs[song_id]
        except KeyError:
            raise KeyError(f"song {song_id!r} is not in the tensor shards") from None
        return self._cache.get(song_id, lambda: decode_row(self._files.row(self.paths[s], r)))

    def bars_of(self, song_id: str, first_bar: int, last_bar: int) -> torch.Tensor:
        """Bars ``first_bar .. last_bar - 1`` of a song, dense (any range inside the song)."""
        n = self.songs[song_id][2] if song_id in self.songs else self.song(song_id)["n_bars"]
        if not 0 <= first_bar < last_bar <= n:
            raise IndexError(f"bars {first_bar}..{last_bar} are outside song {song_id} ({n} bars)")
        x = dense_bars(self.song(song_id), first_bar, last_bar, bar_steps=self.bar_steps,
                       n_tracks=self.n_tracks, binarize=self.binarize)
        return torch.from_numpy(x)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} is outside the dataset ({len(self)} windows)")
        k, b = self._windows[i]
        return self.bars_of(self.song_ids[int(k)], int(b), int(b) + self.bars)
