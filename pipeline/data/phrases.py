"""MuseGAN phrase tensors from the build_phrases output (``datasets/phrases/npz/<split>.npz``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.formats.phrase_shards import PHRASES, read_phrase_npz
from pipeline.schema import read_schema, schema_path
from pipeline.splits import SPLITS


class PhraseTensors(Dataset):
    """One item per phrase of a split, as MuseGAN trains on them.

    Parameters
    ----------
    folder : path
        The build_phrases output (``datasets/phrases``) or its ``npz/`` folder.
    split : str
        ``train`` | ``valid`` | ``test``.
    dtype : torch.dtype
        Of the items (1 where a note sounds, else 0); ``torch.bool`` keeps them small.

    Items are ``(phrase_bars, steps_per_bar, pitches, tracks)`` tensors, ``(4, 48, 84, 5)`` with
    the defaults (pitch index i is MIDI pitch ``lowest_pitch + i``; tracks in ``track_order``).
    ``ids[i]`` and ``first_bar[i]`` say where phrase i comes from. The folder's ``schema.json``
    is checked first, then the NPZ is read without unpickling (``shape``, ``nonzero``, ``ids``,
    ``first_bar``; about 10 bytes per non-zero cell) and held as plain numpy, so the dataset is
    safe in a ``DataLoader`` with workers.
    """

    def __init__(self, folder: str | Path, *, split: str = "train", dtype: torch.dtype = torch.float32) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} must be one of {', '.join(SPLITS)}")
        self.schema = read_schema(folder, PHRASES)
        self.path = schema_path(folder, PHRASES).parent / "npz" / f"{split}.npz"
        z = read_phrase_npz(self.path, item_shape=self.schema["tensor_shape"][1:])
        shape, nonzero, n = z.shape, z.nonzero, int(z.shape[0])
        order = np.argsort(nonzero[0], kind="stable")
        self._coords = np.ascontiguousarray(nonzero[1:, order])
        self._starts = np.searchsorted(nonzero[0, order], np.arange(n + 1))
        self.item_shape = tuple(int(k) for k in shape[1:])
        self.ids = [str(s) for s in z.ids]
        self.first_bar = z.first_bar.astype(np.int64)
        self.split, self.dtype = split, dtype
        self.track_order = list(self.schema["track_order"])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} is outside the dataset ({len(self)} phrases)")
        i = i % len(self)
        c = self._coords[:, self._starts[i] : self._starts[i + 1]].astype(np.int64)
        x = torch.zeros(self.item_shape, dtype=self.dtype)
        x[tuple(torch.from_numpy(c))] = 1
        return x
