"""Stage build_phrases: build_lpd's 5-D tensor shards -> binarised 4-bar phrases in MuseGAN's
training format (per split an NPZ with ``shape`` + ``nonzero``), Parquet shards with one row per
phrase, a manifest with one row per candidate phrase (scores, selected or why not), ``schema.json``
and ``summary.json``.

Selection rules (all params, in this order, per song):

1. candidates start at bars 0, hop_bars, 2*hop_bars, ... while the whole phrase fits in the song;
2. each candidate is scored per track: ``activity`` = fraction of its phrase_bars * steps_per_bar
   steps (after downsampling and pitch cropping) with at least one note of that track;
   a track is *active* when its activity >= min_activity;
3. a candidate is eligible when every track in ``require_families`` is active
   (else reason ``inactive:<Track>``) and at least ``min_families`` tracks are active
   (else ``too_few_families``);
4. when a song has more than ``max_phrases_per_song`` eligible candidates (0: no limit), that many
   are drawn without replacement by ``np.random.default_rng([seed, int(song_id[:8], 16)])``;
   the others get reason ``not_drawn``.

The split of a song is fixed by ``sha256(song_id)`` (``pipeline.splits``, the rule every stage uses):
its first 8 bytes / 2**64 below test_fraction -> test, below test_fraction + valid_fraction -> valid,
else train. (Before 2026-12-06 this stage read 8 hex digits, 4 bytes: the same split except for a
song within 2**-32 of a boundary.)
Input shards are read one at a time; nothing written depends on timing or host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np

from pipeline.config import Fraction, NonNegativeInt, PositiveInt, Range, params_section
from pipeline.errors import ParamsError, StageError
from pipeline.formats.phrase_shards import TRACKS
from pipeline.splits import SPLITS, song_split
from pipeline.stagekit import OutputLock


@dataclass(frozen=True, kw_only=True)
@params_section("build_phrases")
class Params:
    phrase_bars: PositiveInt
    steps_per_bar: PositiveInt           # 96 (as stored) or 48 (every other step: 0, 2, 4, ...)
    lowest_pitch: int                    # MIDI pitch of index 0
    n_pitches: PositiveInt               # 24..107
    hop_bars: PositiveInt                # stride between candidate phrases
    require_families: tuple[str, ...]
    min_families: Annotated[int, Range(0, len(TRACKS))]  # active tracks (of five) a phrase needs
    min_activity: Fraction               # fraction of steps with a note for a track to count as active
    max_phrases_per_song: NonNegativeInt  # 0: every eligible phrase
    seed: int
    valid_fraction: Fraction
    test_fraction: Fraction

    def __post_init__(self) -> None:
        if not 0 <= self.lowest_pitch or self.lowest_pitch + self.n_pitches > 128:
            raise ParamsError(f"build_phrases.lowest_pitch={self.lowest_pitch} with n_pitches={self.n_pitches} "
                              "must stay within MIDI pitches 0..127")
        for fam in self.require_families:
            if fam not in TRACKS:
                raise ParamsError(f"build_phrases.require_families: {fam!r} is not one of {', '.join(TRACKS)}")
        if self.valid_fraction + self.test_fraction > 1.0:
            raise ParamsError(f"build_phrases.valid_fraction + test_fraction = "
                              f"{self.valid_fraction + self.test_fraction} must be at most 1")


@dataclass
class SongPhrases:
    """One song's candidates and the coordinates of its selected phrases."""

    first_bar: np.ndarray            # (candidates,) int32
    activity: np.ndarray             # (candidates, 5) float32
    selected: np.ndarray             # (candidates,) bool
    reason: list[str]                # per candidate
    coords: list[np.ndarray]         # per selected candidate: (4, nnz) uint16 bar, step, pitch, track


def song_phrases(song_id: str, n_bars: int, bar: np.ndarray, step: np.ndarray, pitch: np.ndarray,
                 track: np.ndarray, *, in_steps: int, params: Params,
                 track_map: np.ndarray | None = None) -> SongPhrases:
    """Crop pitches, downsample steps, score every candidate phrase and apply the selection rules.

    ``track_map`` maps input tracks to LPD-5 (-1: dropped), e.g. for LPD-17 input; cells that
    land on the same LPD-5 cell merge (binarised union).
    """
    factor = in_steps // params.steps_per_bar
    bar, step = np.asarray(bar, np.int64), np.asarray(step, np.int64)
    pitch, track = np.asarray(pitch, np.int64), np.asarray(track, np.int64)
    if track_map is not None:
        track = np.asarray(track_map, np.int64)[track]
    keep = ((pitch >= params.lowest_pitch) & (pitch < params.lowest_pitch + params.n_pitches)
            & (step % factor == 0) & (step < in_steps) & (track >= 0) & (track < len(TRACKS)) & (bar < n_bars))
    bar, step = bar[keep], step[keep] // factor
    pitch, track = pitch[keep] - params.lowest_pitch, track[keep]
    S, P = params.steps_per_bar, params.phrase_bars
    # a cell appears once (sorted, unique) whatever the input order
    lin = np.unique(((bar * S + step) * params.n_pitches + pitch) * len(TRACKS) + track)
    track = lin % len(TRACKS)
    pitch = (lin // len(TRACKS)) % params.n_pitches
    t = lin // (len(TRACKS) * params.n_pitches)  # absolute step
    bar, step = t // S, t % S
    occupied = np.zeros((max(n_bars, 0) * S, len(TRACKS)), bool)
    occupied[t, track] = True
    per_bar = occupied.reshape(max(n_bars, 0), S, len(TRACKS)).sum(axis=1)  # (bars, 5) active steps

    starts = np.arange(0, n_bars - P + 1, params.hop_bars, dtype=np.int32) if n_bars >= P else np.zeros(0, np.int32)
    cum = np.concatenate([np.zeros((1, len(TRACKS)), np.int64), np.cumsum(per_bar, axis=0)])
    activity = ((cum[starts + P] - cum[starts]) / float(P * S)).astype(np.float32)
    active = activity >= np.float32(params.min_activity)
    reason: list[str] = []
    eligible = np.zeros(len(starts), bool)
    req = [TRACKS.index(f) for f in params.require_families]
    for i in range(len(starts)):
        missing = [TRACKS[k] for k in req if not active[i, k]]
        if missing:
            reason.append("inactive:" + ",".join(missing))
        elif int(active[i].sum()) < params.min_families:
            reason.append("too_few_families")
        else:
            reason.append("selected")
            eligible[i] = True
    selected = eligible.copy()
    idx = np.flatnonzero(eligible)
    if params.max_phrases_per_song and len(idx) > params.max_phrases_per_song:
        rng = np.random.default_rng([params.seed, int(song_id[:8], 16)])
        chosen = np.sort(rng.choice(idx, size=params.max_phrases_per_song, replace=False))
        selected[:] = False
        selected[chosen] = True
        for i in idx:
            if not selected[i]:
                reason[i] = "not_drawn"
    coords = []
    for i in np.flatnonzero(selected):
        b0 = int(starts[i])
        m = (bar >= b0) & (bar < b0 + P)
        coords.append(np.stack([bar[m] - b0, step[m], pitch[m], track[m]]).astype(np.uint16))
    return SongPhrases(first_bar=starts, activity=activity, selected=selected, reason=reason, coords=coords)


def run(*, lpd: Path, out: Path, params: Params) -> dict:
    """Make the phrase dataset from ``lpd``/tensors into ``out``; return the summary (also written)."""
    import pyarrow as pa

    from pipeline.files import atomic_write_bytes, write_json
    from pipeline.formats.manifest import manifest_metadata
    from pipeline.formats.phrase_shards import (nonzero_dtype, parquet_bytes, phrase_metadata, phrase_npz_bytes,
                                                phrase_table, schema_document)
    from pipeline.formats.tensor_shards import TENSORS, read_tensor_rows

    lpd, out = Path(lpd), Path(out)
    tensors = lpd / "tensors"
    if not (tensors / "schema.json").is_file():
        raise StageError(f"{tensors}: no schema.json (run build-lpd first)")
    from pipeline.schema import read_schema

    schema = read_schema(lpd, TENSORS)  # SchemaError: another kind or a version this code does not read
    from pipeline.symbolic.lpd import TRACK_SETS, family_of

    order = list(schema.get("track_order", []))
    names = [k for k, spec in TRACK_SETS.items() if [t[0] for t in spec] == order]
    if not names:
        raise StageError(f"{tensors}: tracks {order} are neither LPD-5 nor LPD-17")
    spec = TRACK_SETS[names[0]]
    # LPD-17 families are whole groups of 8 programs, so each maps to one LPD-5 track (or none)
    track_map = family_of(np.array([t[1] for t in spec]), np.array([t[2] for t in spec]), "lpd5")
    in_steps = int(schema["bar_steps"])
    if in_steps % params.steps_per_bar:
        raise ParamsError(f"build_phrases.steps_per_bar={params.steps_per_bar} must divide the input's "
                          f"bar_steps={in_steps}")
    shards = sorted(tensors.glob(f"{names[0]}-[0-9][0-9][0-9][0-9][0-9].parquet"))
    if not shards:
        raise StageError(f"{tensors}: no {names[0]}-*.parquet tensor shards")

    with OutputLock(out):
        npz_parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
        npz_ids: dict[str, list[str]] = {s: [] for s in SPLITS}
        npz_first: dict[str, list[int]] = {s: [] for s in SPLITS}
        man: dict[str, list] = {k: [] for k in ("id", "first_bar", "split", "activity", "selected", "reason")}
        written: set[str] = set()
        songs = {s: 0 for s in SPLITS}
        n_songs = 0
        shard_meta = phrase_metadata(params)
        from pipeline.cards import Digest

        digest = Digest()
        for shard_path in shards:
            ids, bars = read_tensor_rows(shard_path)
            rows_by_split: dict[str, list] = {s: [] for s in SPLITS}
            digest.update({"source": shard_path.name, "id": i} for i in ids)
            for song_id, t in zip(ids, bars):
                n_songs += 1
                split = song_split(song_id, valid_fraction=params.valid_fraction, test_fraction=params.test_fraction)
                sp = song_phrases(song_id, t.n_bars, t.bar, t.step, t.pitch, t.track, in_steps=in_steps,
                                  params=params, track_map=track_map)
                n = len(sp.first_bar)
                man["id"] += [song_id] * n
                man["first_bar"].append(sp.first_bar)
                man["split"] += [split] * n
                man["activity"].append(sp.activity)
                man["selected"].append(sp.selected)
                man["reason"] += sp.reason
                if sp.coords:
                    songs[split] += 1
                for i, c in zip(np.flatnonzero(sp.selected), sp.coords):
                    index = len(npz_ids[split])
                    npz_ids[split].append(song_id)
                    npz_first[split].append(int(sp.first_bar[i]))
                    npz_parts[split].append(c)  # uint16 (4, nnz); the phrase axis is added at the end
                    rows_by_split[split].append((song_id, int(sp.first_bar[i]), split, index, sp.activity[i], c))
            for split, rows in rows_by_split.items():
                if rows:
                    name = f"{split}-{shard_path.stem.rpartition('-')[2]}.parquet"
                    atomic_write_bytes(out / "shards" / name, parquet_bytes(phrase_table(rows), shard_meta))
                    written.add(name)
        if (out / "shards").exists():
            for p in (out / "shards").glob("*.parquet"):
                if p.name not in written:
                    p.unlink()

        S, P = params.steps_per_bar, params.phrase_bars
        counts = {}
        for split in SPLITS:
            n = len(npz_ids[split])
            counts[split] = n
            shape = [n, P, S, params.n_pitches, len(TRACKS)]
            dtype = nonzero_dtype(shape)
            sizes = [c.shape[1] for c in npz_parts[split]]
            nonzero = np.empty((5, sum(sizes)), dtype)
            nonzero[0] = np.repeat(np.arange(n, dtype=dtype), sizes)
            at = 0
            for c, size in zip(npz_parts[split], sizes):
                nonzero[1:, at : at + size] = c
                at += size
            atomic_write_bytes(out / "npz" / f"{split}.npz", phrase_npz_bytes(
                shape, nonzero, ids=npz_ids[split], first_bar=npz_first[split]))
            npz_parts[split] = []

        activity = np.concatenate(man["activity"]) if man["activity"] else np.zeros((0, 5), np.float32)
        selected = np.concatenate(man["selected"]) if man["selected"] else np.zeros(0, bool)
        cols = {
            "id": pa.array(man["id"], pa.string()),
            "first_bar": pa.array(np.concatenate(man["first_bar"]) if man["first_bar"] else np.zeros(0, np.int32),
                                  pa.int32()),
            "split": pa.array(man["split"], pa.string()),
        }
        for k, name in enumerate(TRACKS):
            cols[f"activity_{name.lower()}"] = pa.array(activity[:, k], pa.float32())
        cols["n_active"] = pa.array((activity >= np.float32(params.min_activity)).sum(axis=1).astype(np.int8),
                                    pa.int8())
        cols["selected"] = pa.array(selected, pa.bool_())
        cols["reason"] = pa.array(man["reason"], pa.string())
        atomic_write_bytes(out / "manifest.parquet",
                           parquet_bytes(pa.table(cols), manifest_metadata("build_phrases", row="one candidate phrase")))
        doc = schema_document(params, in_steps, names[0], int(schema["resolution"]))
        atomic_write_bytes(out / "schema.json", json.dumps(doc, indent=2, sort_keys=True).encode())
        reasons: dict[str, int] = {}
        for r in man["reason"]:
            key = "inactive" if r.startswith("inactive:") else r
            reasons[key] = reasons.get(key, 0) + 1
        summary = {
            "songs": n_songs,
            "candidates": len(man["reason"]),
            "phrases": counts,
            "songs_with_phrases": songs,
            "reasons": dict(sorted(reasons.items())),
        }
        write_json(out / "summary.json", summary)
        from pipeline.cards import write_card

        present = [s for s in SPLITS if any(n.startswith(f"{s}-") for n in written)]
        write_card(out, card_text(params, doc, summary, digest.hexdigest(), splits=present))
    return summary


def card_text(params: Params, schema: dict, summary: dict, inputs_digest: str | None, *,
              splits: list[str]) -> str:
    """The dataset card (``README.md``) of build_phrases' output folder; ``splits``: those with shards."""
    from pipeline.cards import Config, render

    P, S = params.phrase_bars, params.steps_per_bar
    configs = [Config("default", {s: f"shards/{s}-*.parquet" for s in splits}, default=True,
                      description="the phrase shards, one row per phrase, one split per file name (train / valid / "
                                  "test)")] if splits else []
    return render(
        title="LPD-5 phrases for MuseGAN",
        about=(f"Phrases of {P} bars cut from build_lpd's tensor shards, binarised, {S} steps per bar, "
               f"{params.n_pitches} pitches from MIDI {params.lowest_pitch}, five tracks "
               f"({', '.join(schema['track_order'])}), drawn per song and split train / valid / test by a hash of "
               "the song id (MuseGAN's training data)."),
        stage="build_phrases", params=params, n_songs=int(summary["songs"]),
        task_categories=["other"], tags=["music", "midi", "symbolic-music", "pianoroll", "lakh-midi", "musegan"],
        configs=configs,
        files=[("shards/<split>-*.parquet", "phrase shards: one row per selected phrase, sparse cells and activity"),
               ("npz/<split>.npz", "the phrases of each split as MuseGAN's `shape` + `nonzero` NPZ"),
               ("schema.json", "the phrases' schema (kind, version, track order, pitch range)"),
               ("manifest.parquet", "one row per candidate phrase: activity, selected or why not"),
               ("summary.json", "the counts below (a DVC metric)")],
        schema=schema, schema_glob="shards/*.parquet", summary=summary,
        inputs="build_lpd's tensor shards (`<lpd>/tensors/*.parquet`)", inputs_digest=inputs_digest)
