#!/usr/bin/env python
"""Benchmark: the build-vocab tokenizers against their references, in one run.

    .venv/bin/python benchmarks/bench_build_vocab.py [FOLDER] [--repeat N] [--timeout S] [--out JSON]

FOLDER (default ``../shared/midi`` from the project root) is any folder of .mid/.midi/.rmi files.
Everything runs on one core (thread pools pinned to 1).

1. The seed's recipe (``vocab: notes``, merged non-drum tracks, no rests or durations), in both
   tie modes: ``ties: merge`` (one token per note) and ``ties: split`` (one per tied fragment in
   music21's order: the recipe's exact stream). ``pipeline.tokens.notes.notes_music21_many``
   (music21 10 parses the MIDI once and gives both; each file in a forked child capped at
   ``--timeout`` seconds, the time of the call measured in the child, music21 imported beforehand)
   against ``notes_fast`` (in-process, after a warm-up, best of ``--repeat`` passes) on the files
   music21 parses; the outputs are compared token for token per mode, and every file music21
   refuses or where the strings differ is listed with the first difference. Also timed: the
   ``tracks + durations + rests`` config.
2. Event tokens: our REMI (``pipeline.tokens.events.encode``: bytes -> read_midi -> build-lpd grid
   -> token codes) against MidiTok's ``REMI()`` with its default config (``symusic.Score.from_midi``
   on the same bytes, then the tokenizer), on the files both read; notes/s = the notes of those files
   (symusic's count, the same for both) over each one's time, best of ``--repeat`` passes.
"""

from __future__ import annotations

import os

_ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS", "RAYON_NUM_THREADS")}
for _k, _v in _ONE_THREAD.items():
    os.environ.setdefault(_k, _v)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def list_midi(folder: Path) -> list[Path]:
    from pipeline.sources import is_midi_name

    return sorted((p for p in folder.rglob("*") if p.is_file() and is_midi_name(p.name)),
                  key=lambda p: p.relative_to(folder).as_posix())


def bench_notes(files: list[Path], *, repeat: int, timeout: float) -> dict:
    import music21  # noqa: F401 - imported once, before the children fork

    from pipeline.errors import MidiError
    from pipeline.tokens.notes import NotesConfig, notes_fast, notes_music21_timed

    cfg = NotesConfig()
    modes = {"merge": cfg, "split": NotesConfig(ties="split")}
    raws = {p: p.read_bytes() for p in files}
    ref_seconds, parsed, refused, timeouts = 0.0, [], {}, []
    ref_out = {}
    for p in files:
        status, result, seconds = notes_music21_timed(raws[p], p.name, config=list(modes.values()), timeout=timeout)
        if status == "ok":
            ref_seconds += seconds
            parsed.append(p)
            ref_out[p] = dict(zip(modes, result))
        elif status == "error":
            refused[p.name] = result
        else:
            timeouts.append(p.name)
    same = {m: 0 for m in modes}
    differ: dict[str, dict[str, str]] = {m: {} for m in modes}
    for mode, config in modes.items():
        for p in parsed:  # the first pass also warms up
            try:
                b = notes_fast(raws[p], p.name, config=config)
            except MidiError as exc:
                b = f"MidiError {exc.code}"
            a = ref_out[p][mode]
            if a == b:
                same[mode] += 1
            else:
                differ[mode][p.name] = f"fast path: {b}" if isinstance(b, str) else _first_difference(a, b)
    fast_refused = {}
    for name in refused:
        p = next(q for q in files if q.name == name)
        try:
            n = sum(map(len, notes_fast(raws[p], name, config=cfg).values()))
            fast_refused[name] = f"fast path reads it ({n} tokens)"
        except MidiError as exc:
            fast_refused[name] = f"fast path: {exc.code} too"

    def timed(config) -> float:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for p in parsed:
                try:
                    notes_fast(raws[p], p.name, config=config)
                except MidiError:
                    pass
            best = min(best, time.perf_counter() - t0)
        return best

    fast_seconds = timed(cfg)
    fast_split = timed(modes["split"])
    fast_full = timed(NotesConfig(streams="tracks", durations=True, rests=True))
    n = len(parsed)
    return {
        "files": len(files), "music21_parsed": n, "identical": same, "differ": differ,
        "fast_seconds_split": fast_split, "ratio_split": ref_seconds / fast_split if fast_split else None,
        "music21_refused": {k: f"{v} | {fast_refused[k]}" for k, v in refused.items()},
        "music21_timeouts": timeouts,
        "music21_seconds": ref_seconds, "fast_seconds": fast_seconds, "fast_seconds_tracks_durations_rests": fast_full,
        "music21_files_per_s": n / ref_seconds if ref_seconds else None,
        "fast_files_per_s": n / fast_seconds if fast_seconds else None,
        "ratio": ref_seconds / fast_seconds if fast_seconds else None,
        "ratio_tracks_durations_rests": ref_seconds / fast_full if fast_full else None,
    }


def _first_difference(a: dict, b: dict) -> str:
    """Where two {stream: tokens} first part: the stream, the index and a few tokens of each."""
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name, []), b.get(name, [])
        if x != y:
            i = next((k for k, (u, v) in enumerate(zip(x, y)) if u != v), min(len(x), len(y)))
            return (f"stream {name}: {len(x)} vs {len(y)} tokens, first difference at {i}: "
                    f"music21 {x[i:i + 3]} fast {y[i:i + 3]}")
    return "same"


def bench_remi(files: list[Path], *, repeat: int) -> dict:
    import miditok
    import symusic

    from pipeline.errors import MidiError
    from pipeline.tokens.events import EventConfig, encode

    cfg = EventConfig(kind="remi")
    tok = miditok.REMI()
    raws = {p: p.read_bytes() for p in files}
    both, notes = [], 0
    for p in files:
        try:
            score = symusic.Score.from_midi(raws[p])
            tok(score)
            encode(raws[p], p.name, cfg=cfg)
        except (MidiError, Exception):  # noqa: BLE001 - either side cannot read it: left out
            continue
        both.append(p)
        notes += sum(len(t.notes) for t in score.tracks)

    def best(fn) -> float:
        b = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for p in both:
                fn(raws[p])
            b = min(b, time.perf_counter() - t0)
        return b

    ours = best(lambda raw: encode(raw, cfg=cfg))
    theirs = best(lambda raw: tok(symusic.Score.from_midi(raw)))
    ours_tokens = sum(len(e.codes) for p in both for e in encode(raws[p], cfg=cfg).values())
    return {
        "files": len(both), "notes": notes, "miditok_version": getattr(miditok, "__version__", None) or _version("miditok"),
        "miditok_vocab_size": len(tok), "ours_table_size": len(cfg.table), "ours_tokens": ours_tokens,
        "ours_seconds": ours, "miditok_seconds": theirs,
        "ours_notes_per_s": notes / ours, "miditok_notes_per_s": notes / theirs, "ratio": theirs / ours,
    }


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", type=Path, default=ROOT.parent / "shared" / "midi")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "build_vocab.json")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    files = list_midi(args.folder)
    if not files:
        sys.exit(f"error: no MIDI files under {args.folder}")
    notes = bench_notes(files, repeat=args.repeat, timeout=args.timeout)
    remi = bench_remi(files, repeat=args.repeat)
    result = {"folder": str(args.folder), "machine": platform.platform(), "python": platform.python_version(),
              "music21": _version("music21"), "notes": notes, "remi": remi}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    n = notes
    print(f"notes recipe, {n['music21_parsed']} of {n['files']} files that music21 parses "
          f"(cap {args.timeout:.0f} s each):")
    print(f"  music21 path   {n['music21_files_per_s']:10.2f} files/s  ({n['music21_seconds']:.1f} s)")
    print(f"  fast path      {n['fast_files_per_s']:10.1f} files/s  ({n['fast_seconds'] * 1000:.1f} ms)"
          f"   ratio {n['ratio']:.0f}x")
    print(f"  fast path, ties: split: ratio {n['ratio_split']:.0f}x "
          f"({n['music21_parsed'] / n['fast_seconds_split']:.1f} files/s)")
    print(f"  fast path, tracks + durations + rests: ratio {n['ratio_tracks_durations_rests']:.0f}x")
    for mode in ("merge", "split"):
        print(f"  identical strings, ties: {mode}: {n['identical'][mode]} of {n['music21_parsed']} files")
        for name, why in sorted(n["differ"][mode].items()):
            print(f"  DIFFERENT ({mode}) {name}: {why}")
    for name, why in sorted(n["music21_refused"].items()):
        print(f"  music21 cannot read {name}: {why}")
    for name in n["music21_timeouts"]:
        print(f"  music21 timed out on {name}")
    r = remi
    print(f"REMI, {r['files']} files both read, {r['notes']} notes:")
    print(f"  ours           {r['ours_notes_per_s']:12.0f} notes/s  ({r['ours_seconds'] * 1000:.0f} ms)")
    print(f"  MidiTok REMI   {r['miditok_notes_per_s']:12.0f} notes/s  ({r['miditok_seconds'] * 1000:.0f} ms, "
          f"miditok {r['miditok_version']})   ratio {r['ratio']:.1f}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
