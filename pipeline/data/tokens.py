"""Token windows from the build_vocab token shards (``datasets/vocab/<kind>/shards/*.parquet``)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from pipeline.data.pianoroll import shard_paths
from pipeline.schema import check_parquet
from pipeline.schema import read_schema
from pipeline.formats.token_shards import TOKENS, read_token_shards, windows


def _shard_folder(folder: Path) -> Path:
    folder = Path(folder)
    return folder / "shards" if (folder / "shards").is_dir() else folder


def checked_token_shards(folder: str | Path) -> tuple[dict, list[str]]:
    """The checked ``schema.json`` of a token shard folder and its shard paths, each checked
    (columns, types, ``schema_version`` and vocabulary hash against the schema)."""
    doc = read_schema(folder, TOKENS)
    paths = [str(p) for p in shard_paths(_shard_folder(folder), ".")]
    for p in paths:
        check_parquet(p, TOKENS, doc)
    return doc, paths


def _rows(table: pa.Table, stream: str | None) -> tuple[list[str], list[str], list[np.ndarray]]:
    if stream is not None:
        table = table.filter(pc.equal(table["stream"], stream))
    toks = table.column("tokens")
    arrays = [np.asarray(toks[i].values.to_numpy(zero_copy_only=False), np.int64) for i in range(table.num_rows)]
    return table.column("id").to_pylist(), table.column("stream").to_pylist(), arrays


class TokenWindows(Dataset):
    """Map-style windows of ``length`` token ids every ``stride`` over every stream of a split.

    Parameters
    ----------
    folder : path
        A build_vocab output (``datasets/vocab/remi``; its ``shards/`` is used) or a shard folder.
    length, stride : int
        As :func:`pipeline.formats.token_shards.windows` (a tail shorter than ``length`` is left out).
    split : str or None
        ``train`` | ``valid`` | ``test``; None: every row.
    stream : str or None
        Only rows of this stream (``all`` for merged streams); None: every stream.

    Items are int64 tensors ``(length,)``; ``index[i]`` is ``(song id, stream, first token)``.
    The token arrays are read once in ``__init__`` (plain numpy, shared with workers), after the
    folder's ``schema.json`` and every shard are checked (``self.schema``; its ``vocab_hash`` is
    the vocabulary the ids belong to).
    """

    def __init__(self, folder: str | Path, *, length: int = 100, stride: int = 100, split: str | None = "train",
                 stream: str | None = None) -> None:
        windows(np.zeros(0, np.int64), length, stride)  # validates length and stride
        self.length, self.stride = length, stride
        self.schema, _ = checked_token_shards(folder)
        table = read_token_shards(_shard_folder(folder), split=split)
        self.ids, self.streams, self.tokens = _rows(table, stream)
        pairs = [(r, w * stride) for r, t in enumerate(self.tokens) for w in range(len(windows(t, length, stride)))]
        self._windows = np.array(pairs, np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._windows)

    @property
    def index(self) -> list[tuple[str, str, int]]:
        return [(self.ids[r], self.streams[r], int(s)) for r, s in self._windows]

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} is outside the dataset ({len(self)} windows)")
        r, s = self._windows[i]
        return torch.from_numpy(self.tokens[int(r)][int(s) : int(s) + self.length].copy())


class TokenStream(IterableDataset):
    """Windows streamed from many token shards, one shard in memory at a time.

    Shards are ordered by a permutation drawn from ``seed`` (and ``epoch``; call
    :meth:`set_epoch`), then dealt to DataLoader workers round-robin (worker ``w`` of ``n`` reads
    shards ``w, w + n, ...`` of that order), so every window is yielded exactly once per epoch
    whatever the worker count. With ``shuffle``, the windows inside a shard are permuted by a
    generator seeded with ``(seed, epoch, shard position)``: the same seed gives the same order.
    """

    def __init__(self, folder: str | Path, *, length: int = 100, stride: int = 100, split: str | None = "train",
                 stream: str | None = None, seed: int = 0, shuffle: bool = True) -> None:
        super().__init__()
        windows(np.zeros(0, np.int64), length, stride)
        self.schema, self.paths = checked_token_shards(folder)
        from pipeline.formats.token_shards import check_split

        self.length, self.stride, self.split, self.stream = length, stride, check_split(split), stream
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def shard_order(self) -> list[str]:
        if not self.shuffle:
            return list(self.paths)
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.paths))
        return [self.paths[i] for i in perm]

    def shards_for(self, worker_id: int, num_workers: int) -> list[tuple[int, str]]:
        """(position in the epoch's order, path) of the shards one worker reads."""
        order = self.shard_order()
        return [(k, order[k]) for k in range(worker_id, len(order), num_workers)]

    def _shard_windows(self, position: int, path: str) -> Iterator[torch.Tensor]:
        table = pq.read_table(path).replace_schema_metadata(None)
        if self.split is not None:
            table = table.filter(pc.equal(table["split"], self.split))
        _, _, arrays = _rows(table, self.stream)
        if not arrays:
            return
        win = [windows(t, self.length, self.stride) for t in arrays]
        allw = np.concatenate(win) if win else np.zeros((0, self.length), np.int64)
        order = np.arange(len(allw))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, position]).permutation(len(allw))
        for i in order:
            yield torch.from_numpy(np.array(allw[i]))

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        wid, n = (0, 1) if info is None else (info.id, info.num_workers)
        for position, path in self.shards_for(wid, n):
            yield from self._shard_windows(position, path)
