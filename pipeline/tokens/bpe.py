"""Learned vocabularies: BPE over event-token ids with Hugging Face ``tokenizers``, never across a
bar line.

Each id of a base vocabulary (``vocab.json``) becomes one Unicode character; a song is cut at its
bar starts and each bar is a separate "word" for the trainer and the encoder, so no merge can join
the end of one bar to the start of the next and ``bar_starts`` stay exact after encoding. The
tokenizer is saved as Hugging Face's ``tokenizer.json``; ids are the same after save and reload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pipeline.formats.vocab import SPECIALS


def id_char(i: int) -> str:
    """The character that stands for base id ``i`` (skipping the surrogate range)."""
    c = 0x1000 + int(i)
    if c >= 0xD800:
        c += 0x800
    return chr(c)


def char_id(ch: str) -> int:
    c = ord(ch)
    if c >= 0xE000:
        c -= 0x800
    return c - 0x1000


def _bars(ids: np.ndarray, bar_starts: np.ndarray) -> list[str]:
    cuts = sorted(set([0, *[int(b) for b in bar_starts], len(ids)]))
    return ["".join(id_char(i) for i in ids[a:b].tolist()) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def train_bpe(songs: Iterable[tuple[np.ndarray, np.ndarray]], *, base_size: int, vocab_size: int):
    """Train BPE on ``(ids, bar_starts)`` pairs of a base vocabulary of ``base_size`` ids."""
    from tokenizers import Tokenizer, models, trainers

    if vocab_size <= base_size:
        raise ValueError(f"vocab_size={vocab_size} must exceed the base vocabulary ({base_size} ids)")
    tok = Tokenizer(models.BPE(unk_token=None))
    alphabet = [id_char(i) for i in range(len(SPECIALS), base_size)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[id_char(i) for i in range(len(SPECIALS))],
                                  initial_alphabet=alphabet, limit_alphabet=len(alphabet), min_frequency=2,
                                  show_progress=False)

    def words():
        for ids, bars in songs:
            yield from _bars(np.asarray(ids), np.asarray(bars))

    tok.train_from_iterator(words(), trainer=trainer)
    return tok


def bpe_encode(tok, ids: np.ndarray, bar_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Base ids -> BPE ids (uint16) and the new bar starts."""
    ids = np.asarray(ids)
    bars = np.asarray(bar_starts)
    cuts = sorted(set([0, *bars.tolist(), len(ids)]))
    pieces = ["".join(id_char(i) for i in ids[a:b].tolist()) for a, b in zip(cuts[:-1], cuts[1:])]
    enc = tok.encode_batch(pieces, add_special_tokens=False) if pieces else []
    out = [np.asarray(e.ids, np.uint16) for e in enc]
    starts_of_piece = np.zeros(len(out) + 1, np.int64)
    np.cumsum([len(o) for o in out], out=starts_of_piece[1:])
    piece_of_cut = {c: k for k, c in enumerate(cuts[:-1])}
    new_bars = np.array([starts_of_piece[piece_of_cut[b]] if b in piece_of_cut else starts_of_piece[-1]
                         for b in bars.tolist()], np.int32)
    return (np.concatenate(out) if out else np.zeros(0, np.uint16)), new_bars


def bpe_decode(tok, ids: Sequence[int]) -> np.ndarray:
    """BPE ids -> base ids."""
    text = "".join(tok.id_to_token(int(i)) for i in ids)
    return np.array([char_id(c) for c in text], np.int64)


def save_bpe(tok, path: Path) -> None:
    from pipeline.files import atomic_write_bytes

    atomic_write_bytes(Path(path), tok.to_str(pretty=False).encode())


def load_bpe(path: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))
