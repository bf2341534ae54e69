"""The LSTM family for the solver: ``build_model``, ``step`` (teacher forcing), ``loss_sums``,
``sample`` (temperature, top-k, top-p), plus the data side: token shards -> windows, and
generated tokens -> MIDI through the vocabulary's decoder.

Every stream of the shards becomes ``BOS tokens... EOS`` before windows of ``window + 1`` ids are
cut (``pipeline.formats.token_shards.windows``): ``window`` inputs and, shifted by one, ``window``
targets, so a window trains every position (teacher forcing). Splits come from the shards'
``split`` column (by song).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from pipeline.models.lstm import LSTMConfig, LSTMModel
from pipeline.training.precision import to_device
from pipeline.training.solver import Panel, model_device
from pipeline.formats.token_shards import read_token_shards, windows
from pipeline.formats.vocab import BOS, EOS, PAD, SPECIALS, Vocabulary


# ---------------------------------------------------------------------------------------------
# data


#: the panels of ``loss.png`` (``solver.plot_curves``, per epoch)
LOSS_PANELS = (
    Panel("cross-entropy (nats/token)", (("train_loss", "train"), ("valid_loss", "valid"))),
    Panel("next-token accuracy", (("valid_accuracy", "valid"),)),
)


def song_sequences(folder: Path, vocab: Vocabulary, split: str) -> list[tuple[str, np.ndarray]]:
    """(id/stream, BOS + tokens + EOS) for every row of one split, in shard order."""
    table = read_token_shards(Path(folder), split=split, vocab=vocab)
    ids = table.column("id").to_pylist()
    streams = table.column("stream").to_pylist()
    toks = table.column("tokens").to_pylist()
    return [(f"{i}/{s}", np.concatenate([[BOS], np.asarray(t, np.int64), [EOS]]))
            for i, s, t in zip(ids, streams, toks)]


def make_windows(seqs: list[tuple[str, np.ndarray]], window: int, stride: int) -> np.ndarray:
    """(n, window + 1) int64 windows of every sequence (tails shorter than a window left out; a
    sequence shorter than one window becomes one window padded with PAD, which the loss ignores)."""
    parts = [windows(s, window + 1, stride) if len(s) > window
             else np.pad(s, (0, window + 1 - len(s)), constant_values=PAD)[None] for _, s in seqs]
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.zeros((0, window + 1), np.int64)
    return np.ascontiguousarray(np.concatenate(parts).astype(np.int64))


class SongWindows:
    """``make_windows(song_sequences(folder, vocab, split), window, stride)``, read window by window.

    ``__init__`` reads the shards one row group at a time (``split`` and ``tokens`` columns) and keeps
    only an index: per sequence its shard, row group, row and length, per window its sequence and
    first token (int arrays, a few bytes per window). ``windows[idx]`` (an int array) is the int64
    ``(len(idx), window + 1)`` batch, the same rows as ``make_windows``; the row groups it touches
    are decoded and kept in a per-process cache of ``cache_groups`` groups, so memory is bounded by
    the shards' row-group size, not by the split. Safe in a ``DataLoader`` with workers (files are
    opened per process).
    """

    def __init__(self, folder: Path, vocab: Vocabulary | None, split: str, window: int, stride: int, *,
                 cache_groups: int = 4) -> None:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from pipeline.formats.token_shards import check_split, shard_vocab_hash
        from pipeline.formats.vocab import VocabError

        windows(np.zeros(0, np.int64), window + 1, stride)  # validates window and stride
        self.split, self.window, self.stride = check_split(split), window, stride
        self.paths = [str(p) for p in sorted(Path(folder).glob("*.parquet"))]
        where: list[tuple[int, int, int, int]] = []  # per sequence: shard, row group, row, BOS + tokens + EOS length
        for k, path in enumerate(self.paths):
            if vocab is not None:
                h = shard_vocab_hash(path)
                if h != vocab.hash:
                    raise VocabError(f"{path}: shard made with vocabulary {str(h)[:12]}, not {vocab.hash[:12]}")
            pf = pq.ParquetFile(path)
            for g in range(pf.metadata.num_row_groups):
                t = pf.read_row_group(g, columns=["split", "tokens"])
                keep = np.flatnonzero(pc.equal(t["split"], split).to_numpy(zero_copy_only=False))
                lengths = pc.list_value_length(t["tokens"]).to_numpy(zero_copy_only=False)
                where += [(k, g, int(r), int(lengths[r]) + 2) for r in keep]
        self._seqs = np.array(where, np.int64).reshape(-1, 4)
        length = self._seqs[:, 3]
        counts = np.where(length > window, np.maximum((length - (window + 1)) // stride + 1, 0), 1)
        self._seq_of = np.repeat(np.arange(len(length), dtype=np.int64), counts)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        self._start = (np.arange(len(self._seq_of), dtype=np.int64) - first) * stride
        self.cache_groups = cache_groups
        self._pid: int | None = None
        self._cache: dict = {}

    def __len__(self) -> int:
        return len(self._seq_of)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.window + 1)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pid": None, "_cache": {}}

    def _group(self, shard: int, group: int) -> tuple[np.ndarray, np.ndarray]:
        import pyarrow.parquet as pq
        from collections import OrderedDict

        if self._pid != os.getpid():
            self._pid, self._cache = os.getpid(), OrderedDict()
        key = (shard, group)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        col = pq.ParquetFile(self.paths[shard]).read_row_group(group, columns=["tokens"]).column("tokens")
        col = col.combine_chunks()
        got = (col.offsets.to_numpy(), col.values.to_numpy(zero_copy_only=False))
        self._cache[key] = got
        while len(self._cache) > max(self.cache_groups, 1):
            self._cache.popitem(last=False)
        return got

    def __getitem__(self, idx) -> np.ndarray:
        if np.ndim(idx) == 0:
            return self[np.asarray([idx])][0]
        idx = np.asarray(idx, np.int64)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index outside the {n} windows")
        out = np.full((len(idx), self.window + 1), PAD, np.int64)
        for k, i in enumerate(idx % n if n else idx):
            shard, group, row, _ = self._seqs[self._seq_of[i]]
            offsets, values = self._group(int(shard), int(group))
            seq = np.concatenate([[BOS], values[offsets[row]:offsets[row + 1]].astype(np.int64), [EOS]])
            piece = seq[self._start[i]:self._start[i] + self.window + 1]
            out[k, :len(piece)] = piece
        return out


# ---------------------------------------------------------------------------------------------
# model, step, loss


def build_model(vocab_size: int, *, embedding: int, hidden: int, layers: int, dropout: float,
                attention: bool, attention_dim: int = 64) -> LSTMModel:
    return LSTMModel(LSTMConfig(vocab_size=vocab_size, embedding=embedding, hidden=hidden, layers=layers,
                                dropout=dropout, attention=attention, attention_dim=attention_dim))


def step(model: LSTMModel, batch: torch.Tensor) -> torch.Tensor:
    """Teacher forcing: inputs batch[:, :-1], targets batch[:, 1:]; mean cross-entropy (PAD ignored)."""
    batch = to_device(batch, model_device(model))
    logits = model(batch[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), ignore_index=PAD)


def target_tokens(batch: torch.Tensor) -> int:
    """The targets ``step`` averages over: the non-PAD ids of ``batch[:, 1:]``."""
    return int((batch[:, 1:] != PAD).sum())


@torch.no_grad()
def loss_sums(model: LSTMModel, batch: torch.Tensor) -> tuple[float, int, int]:
    """(summed cross-entropy, correct argmax predictions, target tokens) of a batch."""
    batch = to_device(batch, model_device(model))
    logits = model(batch[:, :-1])
    target = batch[:, 1:].reshape(-1)
    flat = logits.reshape(-1, logits.shape[-1])
    keep = target != PAD
    loss = F.cross_entropy(flat[keep], target[keep], reduction="sum")
    correct = (flat[keep].argmax(-1) == target[keep]).sum()
    return float(loss), int(correct), int(keep.sum())


# ---------------------------------------------------------------------------------------------
# sampling


def filter_logits(logits: torch.Tensor, *, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Keep the ``top_k`` best logits (0: all) and the smallest set whose probability reaches ``top_p``."""
    logits = logits.clone()
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits[logits < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, -1)
        cum = torch.cumsum(probs, -1)
        drop = cum - probs >= top_p  # keep every token until the mass before it reaches top_p
        drop[0] = False
        logits[order[drop]] = float("-inf")
    return logits


@torch.no_grad()
def sample(model: LSTMModel, prime: np.ndarray, *, length: int, context: int, temperature: float = 1.0,
           top_k: int = 0, top_p: float = 1.0, generator: torch.Generator | None = None,
           forbid: tuple[int, ...] = (PAD, BOS), stop_at_eos: bool = True) -> np.ndarray:
    """Continue ``prime`` (its last ``context`` tokens) by up to ``length`` tokens, carrying the LSTM
    state; the attention variant attends over the last ``context`` LSTM outputs, as in training.
    Returns the generated ids only (EOS excluded)."""
    model.eval()
    seq = [int(t) for t in prime] or [BOS]
    out: list[int] = []
    device = model_device(model)
    x = torch.tensor([seq[-context:]], dtype=torch.int64, device=device)
    state = memory = None
    for _ in range(length):
        logits, state, memory = model.step_logits(x, state, memory, context)
        logits = logits[0].double().cpu()  # sampling on the CPU, with the caller's generator
        for f in forbid:
            logits[f] = float("-inf")
        if temperature <= 0:
            nxt = int(torch.argmax(logits))
        else:
            logits = filter_logits(logits / temperature, top_k=top_k, top_p=top_p)
            nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
        if nxt == EOS and stop_at_eos:
            break
        out.append(nxt)
        x = torch.tensor([[nxt]], dtype=torch.int64, device=device)
    return np.asarray(out, np.int64)


# ---------------------------------------------------------------------------------------------
# tokens -> MIDI

_STEP = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def note_pitch(name: str) -> int:
    """music21 spelling -> MIDI pitch: C4 = 60, C#4 = 61, E-4 = 63, B--3, F##2..."""
    letter, rest = name[0], name[1:]
    i = 0
    alter = 0
    while i < len(rest) and rest[i] in "#-":
        alter += 1 if rest[i] == "#" else -1
        i += 1
    octave = int(rest[i:])
    return 12 * (octave + 1) + _STEP[letter] + alter


def notes_to_midi(tokens: list[str], *, tpq: int = 480, program: int = 0, chord_octave: int = 4) -> bytes:
    """``notes`` strings -> a one-track MIDI file with mido. Notes (``C4``) keep their octave; chords
    (``0.4.7``, pitch classes of the normal order) are voiced upwards from C of ``chord_octave``.
    Every token lasts its ``_<quarter length>`` suffix when the vocabulary has durations, else a
    quarter note; ``rest`` tokens advance time. Specials and unreadable tokens are skipped."""
    import mido

    from pipeline.formats.midi import midi_bytes, midi_file, track

    events = []
    now = Fraction(0)
    for tok in tokens:
        if tok in SPECIALS:
            continue
        body, _, dur_text = tok.partition("_")
        try:
            dur = Fraction(dur_text) if dur_text else Fraction(1)
        except (ValueError, ZeroDivisionError):
            dur = Fraction(1)
        if dur <= 0:
            dur = Fraction(1, 4)
        try:
            if body == "rest":
                pitches = []
            elif body[0].isdigit():
                pcs = [int(p) for p in body.split(".")]
                pitches, last = [], None
                for pc in pcs:
                    p = 12 * (chord_octave + 1) + pc
                    while last is not None and p <= last:
                        p += 12
                    pitches.append(p)
                    last = p
            else:
                pitches = [note_pitch(body)]
        except (ValueError, KeyError, IndexError):
            continue
        on, off = int(now * tpq), int((now + dur) * tpq)
        for p in pitches:
            if 0 <= p < 128:  # at one tick, note-offs (0) before note-ons (1)
                events.append((off, (0, p), mido.Message("note_off", channel=0, note=p, velocity=0)))
                events.append((on, (1, p), mido.Message("note_on", channel=0, note=p, velocity=80)))
        now += dur
    head = [mido.MetaMessage("set_tempo", tempo=500000, time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
            mido.Message("program_change", channel=0, program=program, time=0)]
    return midi_bytes(midi_file([track(events, head=head)], ticks_per_beat=tpq))


def tokens_to_midi(ids, vocab: Vocabulary) -> bytes:
    """Vocabulary ids -> MIDI bytes through the vocabulary's decoder."""
    strings = [s for s in vocab.strings(ids) if s not in SPECIALS]
    kind = vocab.config.get("kind")
    if kind == "notes":
        return notes_to_midi(strings)
    from pipeline.tokens.events import EventConfig, decode

    cfg = vocab.config
    ev = EventConfig(kind=kind, resolution=cfg["resolution"], velocity_bins=cfg["velocity_bins"],
                     max_duration=cfg["max_duration"], max_shift=cfg["max_shift"], tempo_min=cfg["tempo_min"],
                     tempo_max=cfg["tempo_max"], max_beats=cfg.get("max_beats", 20_000))
    return decode(strings, ev)
