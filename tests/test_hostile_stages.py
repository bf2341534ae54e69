"""Hostile files through every stage's reader (build_lpd's converter, build_vocab's three
tokenizers, render_audio's FluidSynth path): huge tick counts, absurd tempos, 5,000 tracks,
ticks per beat of 0 and SMPTE time, running status abuse. Each becomes a manifest row (never an
uncaught exception), within the per-file time limit, with bounded memory (peak RSS per file,
measured in a fresh subprocess), and a file that runs past the time limit becomes
``error: input.timeout``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hostile_files import hostile_files
from stage_support import STAGE_PARAMS, needs_fluidsynth

ROOT = Path(__file__).resolve().parents[1]

CHECK = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from pipeline.errors import MidiError
    from pipeline.stagekit import call_with_time_limit

    stage, folder = sys.argv[1], Path(sys.argv[2])

    def peak_mb():  # VmHWM since the last reset
        return int([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]) / 1024

    if stage == "build_lpd":
        from pipeline.stages.build_lpd import Params, convert_one, run
        params = Params()
        readers = {"lpd": lambda raw, key: convert_one(raw, key, params)}
        kinds = [{}]
    elif stage == "build_vocab":
        from pipeline.stages.build_vocab import Params, run, tokenize_one
        params = Params()
        readers = {k: (lambda k: lambda raw, key: tokenize_one(raw, key, k, params))(k) for k in ("notes", "remi", "midilike")}
        kinds = [{"kind": k} for k in ("notes", "remi", "midilike")]
    else:
        from pipeline.audio.render import make_settings
        from pipeline.stages.render_audio import Params, render_one, run
        params = Params(render_seconds=20.0, max_duration=1800.0, clips_per_song=0)
        settings = make_settings(soundfont=params.soundfont, sample_rate=params.sample_rate, gain=params.gain,
                                 reverb=params.reverb, chorus=params.chorus, period_size=params.period_size,
                                 polyphony=params.polyphony)
        readers = {"render": lambda raw, key: render_one(raw, key, params, settings)}
        kinds = [{}]
    files = sorted(folder.glob("*.mid"))
    per_file = {}
    for reader, fn in readers.items():
        fn((folder / sys.argv[4]).read_bytes(), "warm-up")  # imports and compiled kernels are not the file's cost
        for path in files:
            raw = path.read_bytes()
            open("/proc/self/clear_refs", "w").write("5")
            base = peak_mb()
            t = time.perf_counter()
            try:
                call_with_time_limit(fn, raw, path.name, key=path.name)
                outcome = "ok"
            except MidiError as exc:
                outcome = exc.code
            per_file[f"{reader}:{path.stem}"] = {"outcome": outcome, "seconds": time.perf_counter() - t,
                                                 "peak_mb": peak_mb() - base}
    rows = {}
    for kw in kinds:
        out = Path(sys.argv[3]) / kw.get("kind", stage)
        run(source=folder, out=out, params=params, workers=1, **kw)
        import pyarrow.parquet as pq
        for r in pq.read_table(out / "manifest.parquet").to_pylist():
            rows[f"{kw.get('kind', stage)}:{r['source']}"] = [r["status"], r["code"]]
    print(json.dumps({"per_file": per_file, "rows": rows}))
    """
)


def _check(stage: str, tmp_path: Path, files: dict[str, bytes], *, warm_up: str, env: dict | None = None) -> dict:
    folder = tmp_path / "hostile"
    folder.mkdir()
    for name, raw in files.items():
        (folder / f"{name}.mid").write_bytes(raw)
    import os

    res = subprocess.run([sys.executable, "-c", CHECK, stage, str(folder), str(tmp_path / "out"),
                          f"{warm_up}.mid"], capture_output=True,
                         text=True, timeout=600, cwd=ROOT, env={**os.environ, "PIPELINE_PROGRESS": "0", **(env or {})})
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


#: what each stage must say about each file (None: converted, ok or recovered)
EXPECTED = {
    "huge_ticks": "skip.too_long", "huge_note": "skip.too_long", "tempo_1us_long": "skip.too_long",
    "tpq_0": "midi.zero_division", "smpte_25x40": "midi.smpte_division", "smpte_30x80": "midi.smpte_division",
    "smpte_24x0": "midi.smpte_division",
}
LIMITS = {"seconds": 20.0, "peak_mb": 400.0}  # per file, over the process's size before it


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGE_PARAMS)
def test_hostile_files_become_rows_quickly_in_bounded_memory(stage, tmp_path):
    files = hostile_files()
    got = _check(stage, tmp_path, files, warm_up="tempo_max")
    for key, r in got["per_file"].items():
        assert r["seconds"] < LIMITS["seconds"], (key, r)
        assert r["peak_mb"] < LIMITS["peak_mb"], (key, r)
        name = key.split(":")[1]
        if name in EXPECTED and not (stage == "render_audio" and name == "tempo_1us_long"):
            assert r["outcome"] == EXPECTED[name], (key, r)
    # the whole stage: one manifest row per file, none of them a bug
    per_kind: dict[str, int] = {}
    for key, (status, code) in got["rows"].items():
        per_kind[key.split(":")[0]] = per_kind.get(key.split(":")[0], 0) + 1
        assert status in ("ok", "recovered", "skipped", "error"), (key, status)
        assert code != "internal.bug", key
    assert set(per_kind.values()) == {len(files)}
    # the 5,000-track file is converted (rendered from one merged track: FluidSynth plays <= 127)
    reader = {"build_lpd": "lpd", "build_vocab": "remi", "render_audio": "render"}[stage]
    assert got["per_file"][f"{reader}:tracks_5000"]["outcome"] == "ok"


@pytest.mark.slow
@needs_fluidsynth
def test_a_file_past_the_time_limit_becomes_a_timeout_row(tmp_path):
    # 20,000 tracks take seconds to render (the merged SMF is written with mido); a song, a tenth of that
    from conftest import make_song
    from hostile_files import note, program, smf, tempo

    many = smf([tempo(500_000)] + [program(i % 16, i % 128) + note(i % 480, 30 + i % 60, 480, channel=i % 16)
                                   for i in range(20_000)])
    files = {"tracks_20000": many, "song": make_song(1)}
    got = _check("render_audio", tmp_path, files, warm_up="song", env={"PIPELINE_FILE_TIME_LIMIT": "1.5"})
    assert got["per_file"]["render:tracks_20000"]["outcome"] == "input.timeout"
    assert got["per_file"]["render:tracks_20000"]["seconds"] < 4.0
    assert got["per_file"]["render:song"]["outcome"] == "ok"
    assert got["rows"]["render_audio:tracks_20000.mid"] == ["error", "input.timeout"]
    assert got["rows"]["render_audio:song.mid"] == ["ok", None]


def test_time_limit_interrupts_python_code_in_any_thread():
    import threading
    import time

    from pipeline.errors import MidiError
    from pipeline.stagekit import call_with_time_limit

    def spin():
        while True:
            pass

    outcomes = []

    def worker():
        t = time.perf_counter()
        try:
            call_with_time_limit(spin, key="spin.mid", seconds=0.2)
        except MidiError as exc:
            outcomes.append((exc.code, time.perf_counter() - t))
        outcomes.append(call_with_time_limit(sum, [1, 2], key="quick.mid", seconds=0.2))
        time.sleep(0.3)  # a withdrawn or late timeout must not land here

    th = threading.Thread(target=worker)  # a dask worker runs tasks in a thread pool
    th.start()
    th.join()
    (code, seconds), quick = outcomes
    assert code == "input.timeout" and 0.2 <= seconds < 2.0
    assert quick == 3


def test_one_watchdog_serves_limits_of_any_length_in_many_threads():
    """A short limit armed while a long one is pending still fires on time, only in its own
    thread; the long one's call finishes untouched."""
    import threading
    import time

    from pipeline.errors import MidiError
    from pipeline.stagekit import call_with_time_limit

    def busy(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return "done"

    results = {}

    def long_call():
        results["long"] = call_with_time_limit(busy, 0.8, key="long.mid", seconds=600)

    def short_call():
        t = time.perf_counter()
        try:
            call_with_time_limit(busy, 30, key="short.mid", seconds=0.2)
        except MidiError as exc:
            results["short"] = (exc.code, time.perf_counter() - t)

    a = threading.Thread(target=long_call)
    a.start()
    time.sleep(0.05)
    b = threading.Thread(target=short_call)
    b.start()
    a.join()
    b.join()
    assert results["long"] == "done"
    code, seconds = results["short"]
    assert code == "input.timeout" and 0.2 <= seconds < 2.0
    assert [call_with_time_limit(sum, [k, 1], key="q.mid", seconds=5) for k in range(1000)] == list(range(1, 1001))


def test_time_limit_from_the_environment(monkeypatch):
    from pipeline.errors import ParamsError
    from pipeline.stagekit import FILE_TIME_LIMIT, file_time_limit

    monkeypatch.delenv("PIPELINE_FILE_TIME_LIMIT", raising=False)
    assert file_time_limit() == FILE_TIME_LIMIT
    monkeypatch.setenv("PIPELINE_FILE_TIME_LIMIT", "2.5")
    assert file_time_limit() == 2.5
    for bad in ("0", "-1", "soon", "nan"):
        monkeypatch.setenv("PIPELINE_FILE_TIME_LIMIT", bad)
        with pytest.raises(ParamsError, match="PIPELINE_FILE_TIME_LIMIT=.* must be a positive number of seconds"):
            file_time_limit()
