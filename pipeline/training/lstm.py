"""The LSTM family for the solver: ``build_model``, ``step`` (teacher forcing), ``loss_sums``,
``sample`` (temperature, top-k, top-p), plus the data side: token shards -> windows, and
generated tokens -> MIDI through the vocabulary's decoder.

Every stream of the shards becomes ``BOS tokens... EOS`` before windows of ``window + 1`` ids are
cut (``pipeline.formats.token_shards.windows``): ``window`` inputs and, shifted by one, ``window``
targets, so a window trains every position (teacher forcing). Splits come from the shards'
``split`` column (by song).
"""

from __future__ import annotations

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
