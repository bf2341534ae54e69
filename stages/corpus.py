"""Stage ``corpus``: the built-in corpus, made without any download.

Writes ``out/midi/music21/m21_*.mid`` (works from music21's own corpus, see
:mod:`pipeline.corpus.music21_works`), ``out/midi/band/band_*.mid`` (seeded band arrangements,
see :mod:`pipeline.corpus.band`) and ``out/corpus.json``, a manifest of every file (md5, notes per
LPD-5 family, tempo, time-signature and key events, source) read back from the written bytes.
Nothing in the outputs depends on time, host or order of work; music21 is imported only when
the stage runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any

from pipeline.corpus.music21_works import WORKS, WORKS_VERSION
from pipeline.config import NonNegativeInt, Range, params_section
from pipeline.errors import StageError

MUSIC21_DIR = Path("midi") / "music21"
BAND_DIR = Path("midi") / "band"
MANIFEST = "corpus.json"


@dataclass(frozen=True, kw_only=True)
@params_section("corpus")
class Params:
    """``corpus`` section of params.yaml.

    Attributes
    ----------
    seed : int
        Seed of the band arrangements (song ``i`` uses ``default_rng([seed, i])``), >= 0.
    music21_works : int
        How many of ``WORKS`` to export, in list order; 0 <= n <= len(WORKS).
    band_songs : int
        How many band arrangements to generate, >= 0.
    """

    seed: NonNegativeInt
    music21_works: Annotated[int, Range(0, len(WORKS), note="the works listed in pipeline.corpus.music21_works.WORKS")]
    band_songs: NonNegativeInt


def run(*, out: Path, params: Params) -> str:
    """Write the corpus under ``out`` and return a one-line summary.

    Parameters
    ----------
    out : Path
        Output folder; ``midi/music21``, ``midi/band`` and ``corpus.json`` are (re)written,
        ``.mid`` files there that this run did not write are removed.
    params : Params
        Stage parameters.

    Returns
    -------
    str
        E.g. ``"corpus: 55 music21 works + 120 band songs -> datasets/corpus (..., 1.9 MB)"``.
    """
    from pipeline.corpus import band, music21_works
    from pipeline.formats.midi import midi_bytes

    out = Path(out)
    records: list[dict[str, Any]] = []
    written: dict[Path, set[str]] = {out / MUSIC21_DIR: set(), out / BAND_DIR: set()}
    for folder in written:
        folder.mkdir(parents=True, exist_ok=True)

    for corpus_path in WORKS[: params.music21_works]:
        name = music21_works.work_filename(corpus_path)
        try:
            data = midi_bytes(music21_works.export_work(corpus_path))
        except Exception as exc:  # the reading boundary: name the work, keep the cause
            raise StageError(f"music21 work {corpus_path!r} could not be exported: {exc!r}") from exc
        _write_atomic(out / MUSIC21_DIR / name, data)
        written[out / MUSIC21_DIR].add(name)
        records.append({"path": (MUSIC21_DIR / name).as_posix(), "source": "music21",
                        "corpus_path": corpus_path} | describe(data))

    for index in range(params.band_songs):
        name = band.song_filename(index)
        data = midi_bytes(band.song_midi(seed=params.seed, index=index))
        _write_atomic(out / BAND_DIR / name, data)
        written[out / BAND_DIR].add(name)
        records.append({"path": (BAND_DIR / name).as_posix(), "source": "band",
                        "seed": params.seed, "index": index} | describe(data))

    for folder, keep in written.items():
        for stale in sorted(folder.glob("*.mid")):
            if stale.name not in keep:
                stale.unlink()
        for leftover in sorted(folder.glob(".*.tmp")):
            leftover.unlink()

    records.sort(key=lambda r: r["path"])
    notes = {family: sum(r["notes"][family] for r in records) for family in (*band.FAMILIES, "other")}
    total_bytes = sum(r["bytes"] for r in records)
    manifest = {
        "stage": "corpus",
        "params": asdict(params),
        "works_version": WORKS_VERSION,
        "music21_version": version("music21"),
        "counts": {"music21": params.music21_works, "band": params.band_songs, "files": len(records),
                   "bytes": total_bytes, "notes": notes},
        "files": records,
    }
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    _write_atomic(out / MANIFEST, text.encode())
    return (f"corpus: {params.music21_works} music21 works + {params.band_songs} band songs -> {out} "
            f"({sum(notes.values())} notes, {total_bytes / 1e6:.1f} MB)")


def describe(data: bytes) -> dict[str, Any]:
    """Summary of one MIDI file, read back from its bytes.

    Returns
    -------
    dict
        ``md5``, ``bytes``, ``ticks_per_beat``, ``tracks``, ``duration_s``, ``programs``
        (sorted ``[channel, program]``), ``notes`` (note-ons per LPD-5 family, plus ``other``),
        ``tempos`` (``[tick, bpm]``), ``time_signatures`` (``[tick, "n/d"]``) and ``keys``
        (``[tick, key]``), ticks absolute.
    """
    import mido

    from pipeline.corpus.band import FAMILIES, lpd5_family

    midi = mido.MidiFile(file=io.BytesIO(data))
    notes = dict.fromkeys((*FAMILIES, "other"), 0)
    programs: set[tuple[int, int]] = set()
    tempos, signatures, keys = [], [], []
    for track in midi.tracks:
        tick = 0
        current: dict[int, int] = {}
        for message in track:
            tick += message.time
            if message.type == "program_change":
                current[message.channel] = message.program
                programs.add((message.channel, message.program))
            elif message.type == "note_on" and message.velocity > 0:
                family = lpd5_family(current.get(message.channel, 0), is_drum=message.channel == 9)
                notes[family or "other"] += 1
            elif message.type == "set_tempo":
                tempos.append([tick, round(mido.tempo2bpm(message.tempo), 3)])
            elif message.type == "time_signature":
                signatures.append([tick, f"{message.numerator}/{message.denominator}"])
            elif message.type == "key_signature":
                keys.append([tick, message.key])
    return {
        "md5": hashlib.md5(data).hexdigest(),
        "bytes": len(data),
        "ticks_per_beat": midi.ticks_per_beat,
        "tracks": len(midi.tracks),
        "duration_s": round(midi.length, 3),
        "programs": [list(p) for p in sorted(programs)],
        "notes": notes,
        "tempos": sorted(tempos, key=_tick),
        "time_signatures": sorted(signatures, key=_tick),
        "keys": sorted(keys, key=_tick),
    }


def _tick(event: list[Any]) -> int:
    return event[0]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
