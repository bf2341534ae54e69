"""Vocabulary files: an explicit token -> id table with its config and a hash.

Ids 0-3 are fixed: PAD 0, BOS 1, EOS 2, UNK 3. The other tokens follow by decreasing count, then
token text (``min_count`` drops rare ones, ``max_size`` caps the table, specials included). The
hash is the sha256 of the canonical JSON of (config, token list); it travels with every shard made
with the vocabulary, and a vocabulary whose hash does not match the one expected is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from pipeline.errors import PipelineError

SPECIALS = ("PAD", "BOS", "EOS", "UNK")
PAD, BOS, EOS, UNK = 0, 1, 2, 3
MAX_IDS = 65536  # ids are stored as uint16
FORMAT_VERSION = 1


class VocabError(PipelineError):
    """A vocabulary file is unusable, or does not belong to the data or config it is used with."""


def vocab_hash(config: Mapping[str, Any], tokens: Iterable[str]) -> str:
    blob = json.dumps({"config": config, "tokens": list(tokens)}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Vocabulary:
    tokens: tuple[str, ...]  # index = id; starts with SPECIALS
    config: dict
    counts: tuple[int, ...] = ()  # per token (0 for specials), as counted when built

    @cached_property
    def hash(self) -> str:
        return vocab_hash(self.config, self.tokens)

    @cached_property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, tokens: Iterable[str]) -> np.ndarray:
        """Token strings -> uint16 ids; tokens not in the table become UNK."""
        get = self.index.get
        return np.fromiter((get(t, UNK) for t in tokens), np.uint16)

    def lookup_table(self, table: tuple[str, ...]) -> np.ndarray:
        """For a tokenizer's base table (code -> string): an array code -> id (UNK when absent)."""
        get = self.index.get
        return np.array([get(t, UNK) for t in table], np.uint16)

    def strings(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT_VERSION,
            "hash": self.hash,
            "config": self.config,
            "specials": {s: i for i, s in enumerate(SPECIALS)},
            "size": len(self.tokens),
            "tokens": {t: i for i, t in enumerate(self.tokens)},
            "counts": {t: c for t, c in zip(self.tokens, self.counts)} if self.counts else {},
        }
        return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode()

    def save(self, path: Path) -> None:
        from pipeline.files import atomic_write_bytes

        atomic_write_bytes(Path(path), self.to_json())


def build_vocabulary(counts: Mapping[str, int], *, config: Mapping[str, Any], min_count: int = 1,
                     max_size: int = MAX_IDS) -> Vocabulary:
    """Specials, then tokens seen at least ``min_count`` times by (-count, token), at most ``max_size`` ids."""
    if min_count < 1:
        raise VocabError(f"min_count={min_count} must be >= 1")
    if not len(SPECIALS) < max_size <= MAX_IDS:
        raise VocabError(f"max_size={max_size} must be in {len(SPECIALS) + 1}..{MAX_IDS}")
    items = sorted(((t, c) for t, c in counts.items() if c >= min_count and t not in SPECIALS),
                   key=lambda tc: (-tc[1], tc[0]))
    items = items[: max_size - len(SPECIALS)]
    return Vocabulary(tokens=SPECIALS + tuple(t for t, _ in items), config=dict(config),
                      counts=(0,) * len(SPECIALS) + tuple(c for _, c in items))


def load_vocabulary(path: Path, *, expect_hash: str | None = None,
                    expect_config: Mapping[str, Any] | None = None) -> Vocabulary:
    """Read a vocabulary file; refuse it when it is damaged or not the one expected.

    Raises
    ------
    VocabError
        Unreadable file, a table whose ids are not 0..n-1 or whose specials moved, a stored hash
        that does not match the table (edited by hand), a hash other than ``expect_hash`` (the
        data was tokenised with another vocabulary), or a config other than ``expect_config``.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise VocabError(f"{path}: cannot read the vocabulary ({exc.strerror or exc})") from None
    except ValueError:
        raise VocabError(f"{path}: the vocabulary is not valid JSON") from None
    try:
        table = doc["tokens"]
        config = doc["config"]
        stored = doc["hash"]
    except (KeyError, TypeError):
        raise VocabError(f"{path}: not a vocabulary file (needs 'tokens', 'config' and 'hash')") from None
    by_id = sorted(table.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise VocabError(f"{path}: token ids must be 0..{len(by_id) - 1} without gaps")
    tokens = tuple(t for t, _ in by_id)
    if tokens[: len(SPECIALS)] != SPECIALS:
        raise VocabError(f"{path}: ids 0-3 must be {', '.join(SPECIALS)}, found {', '.join(tokens[:4])}")
    counts_doc = doc.get("counts") or {}
    vocab = Vocabulary(tokens=tokens, config=config, counts=tuple(int(counts_doc.get(t, 0)) for t in tokens)
                       if counts_doc else ())
    if vocab.hash != stored:
        raise VocabError(f"{path}: hash mismatch: the file says {stored[:12]}, its table and config give "
                         f"{vocab.hash[:12]} (edited by hand?)")
    if expect_hash is not None and vocab.hash != expect_hash:
        raise VocabError(f"{path}: vocabulary {vocab.hash[:12]} does not match the data, which was made with "
                         f"{expect_hash[:12]}")
    if expect_config is not None and dict(expect_config) != config:
        diff = sorted(k for k in set(config) | set(expect_config) if config.get(k) != expect_config.get(k))
        raise VocabError(f"{path}: vocabulary config differs from the expected one in {', '.join(diff)}")
    return vocab
