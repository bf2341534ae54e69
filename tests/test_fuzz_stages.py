"""Seeded mutation fuzzing of the readers of build_vocab (its three tokenizers) and render_audio
(read, sanitize, FluidSynth), and of whole stage runs over a folder of mutants: thousands of
damaged and truncated files from ../shared/midi and the built-in corpus (songs made here where
those are absent); no exception other than MidiError, no file past the time limit, and one
manifest row per file. build_lpd's reader has its own fuzz test (tests/test_fuzz_midi.py)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import MidiError
from pipeline.stagekit import call_with_time_limit
from test_fuzz_midi import mutate
from stage_support import needs_fluidsynth
from tests_support import seed_files

CORPUS = Path(__file__).resolve().parents[1] / "datasets" / "corpus" / "midi"
PER_FILE_SECONDS = 10.0


def all_seeds() -> list[bytes]:
    """../shared/midi (or songs made here) and the built-in corpus when it has been built."""
    seeds = seed_files()
    seeds += [p.read_bytes() for p in sorted(CORPUS.rglob("*.mid"))] if CORPUS.is_dir() else []
    return seeds


def mutants(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    seeds = all_seeds()
    return [mutate(seeds[i % len(seeds)], rng) for i in range(n)]


def _outcomes(fn, files: list[bytes]) -> dict[str, int]:
    codes: dict[str, int] = {}
    for i, raw in enumerate(files):
        start = time.perf_counter()
        try:
            call_with_time_limit(fn, raw, f"mutant{i}", key=f"mutant{i}", seconds=PER_FILE_SECONDS)
            code = "converted"
        except MidiError as exc:
            assert exc.code != "input.timeout", f"mutant {i} hit the time limit"
            code = exc.code
        assert time.perf_counter() - start < PER_FILE_SECONDS, f"mutant {i} took too long"
        codes[code] = codes.get(code, 0) + 1
    return codes


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["remi", "midilike", "notes"])
def test_tokenizers_on_mutants_only_raise_midi_errors(kind):
    from pipeline.stages.build_vocab import Params, tokenize_one

    params = Params()
    files = mutants(3000, 2026)
    codes = _outcomes(lambda raw, key: tokenize_one(raw, key, kind, params), files)
    assert sum(codes.values()) == len(files)
    assert codes.get("converted", 0) > len(files) // 4  # most damage is recoverable
    assert len(codes) >= 4  # and the rest is refused for several reasons


@pytest.mark.slow
@needs_fluidsynth
def test_render_on_mutants_only_raises_midi_errors():
    from pipeline.audio.render import make_settings
    from pipeline.stages.render_audio import Params, render_one

    params = Params(render_seconds=1.0, max_duration=1800.0, clips_per_song=0)
    settings = make_settings(soundfont=params.soundfont, sample_rate=params.sample_rate, gain=params.gain,
                             reverb=params.reverb, chorus=params.chorus, period_size=params.period_size,
                             polyphony=params.polyphony)
    peaks = []

    def render(raw, key):
        (_, stereo), info = render_one(raw, key, params, settings)
        assert stereo.dtype == np.float32 and stereo.ndim == 2 and stereo.shape[1] == 2
        assert np.isfinite(stereo).all()
        peaks.append(float(np.abs(stereo).max()))

    files = mutants(150, 2027)
    codes = _outcomes(render, files)
    assert sum(codes.values()) == len(files)
    assert codes.get("converted", 0) > len(files) // 5
    assert max(peaks) <= 1.0


@pytest.mark.slow
@needs_fluidsynth
def test_stages_give_one_row_per_mutant(tmp_path):
    """The stages themselves over a folder of mutants: a row per file, no bug, no crash."""
    import pyarrow.parquet as pq

    from pipeline.stages import build_lpd, build_vocab, render_audio

    folder = tmp_path / "mutants"
    folder.mkdir()
    files = mutants(300, 2028)
    for i, raw in enumerate(files):
        (folder / f"m{i:04d}.mid").write_bytes(raw)
    small = tmp_path / "few"
    small.mkdir()
    for i in range(30):
        (small / f"m{i:04d}.mid").write_bytes(files[i])
    runs = [
        (lambda out: build_lpd.run(source=folder, out=out, params=build_lpd.Params(shard_size=64), workers=1), 300),
        (lambda out: build_vocab.run(source=folder, out=out, kind="remi", params=build_vocab.Params(shard_size=64),
                                     workers=1), 300),
        (lambda out: render_audio.run(source=small, out=out, params=render_audio.Params(render_seconds=1.0, shard_size=8, clips_per_song=0),
                                      workers=1), 30),
    ]
    for k, (run, n) in enumerate(runs):
        out = tmp_path / f"out{k}"
        summary = run(out)
        rows = pq.read_table(out / "manifest.parquet").to_pylist()
        assert len(rows) == n == summary["files"]
        assert all(r["status"] in ("ok", "recovered", "skipped", "error") for r in rows)
        assert "internal.bug" not in summary["codes"], summary["codes"]
        assert summary["songs"] > 0
