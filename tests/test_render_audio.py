"""Stage render_audio end to end on short real MIDI: every file a manifest row, determinism (twice,
1 and 2 workers), clips aligned with the build_lpd bars, shards read back with pyarrow, pandas,
soundfile and Hugging Face datasets, and the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml

from pipeline.config import section_doc
from pipeline.stages import render_audio as stage
from tests.conftest import make_song
from tests_support import smf_from_events

pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None,
                                reason="the fluidsynth program is absent (apt-get install --no-install-recommends fluidsynth)")

SR = 44100
SMALL = dict(clip_samples=88192, row_group_mb=0.25, shard_size=3, render_seconds=0.0, clips_per_song=0)


def _midi(events, *, tpq=480, tempo_bpm=120.0, extra=()) -> bytes:
    """One track: (tick, note, velocity, duration ticks, channel, program)."""
    meta = [(0, 0, mido.MetaMessage("set_tempo", tempo=int(6e7 / tempo_bpm))),
            (0, 1, mido.MetaMessage("time_signature", numerator=4, denominator=4))]
    ev = [(0, 0, m) for m in extra]
    for tick, note, vel, dur, ch, prog in events:
        ev.append((tick, 1, mido.Message("program_change", channel=ch, program=prog)))
        ev.append((tick, 2, mido.Message("note_on", channel=ch, note=note, velocity=vel)))
        ev.append((tick + dur, 0, mido.Message("note_off", channel=ch, note=note, velocity=0)))
    return smf_from_events([meta, ev], tpq=tpq)


@pytest.fixture
def midi_dir(tmp_path) -> Path:
    root = tmp_path / "midi"
    root.mkdir()
    for i in range(4):
        (root / f"song{i}.mid").write_bytes(make_song(i, n_bars=3, ts=[(4, 4), (3, 4)][i % 2], tempo_bpm=100 + 20 * i))
    (root / "copy.mid").write_bytes(make_song(0, n_bars=3, tempo_bpm=100))  # same bytes as song0
    (root / "empty.mid").write_bytes(b"")
    (root / "page.mid").write_bytes(b"<!DOCTYPE html><html><body>404</body></html>")
    (root / "nonotes.mid").write_bytes(_midi([]))
    # notes, but channel volume 0: FluidSynth renders silence
    mute = [mido.Message("control_change", channel=0, control=7, value=0)]
    (root / "silent.mid").write_bytes(_midi([(0, 60, 100, 960, 0, 0)], extra=mute))
    (root / "long.mid").write_bytes(_midi([(0, 60, 100, 480, 0, 0), (480 * 200, 62, 100, 480, 0, 0)]))  # 100 s
    return root


def _tree_digest(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and ".state" not in p.parts and p.name != ".lock"}


def test_every_file_is_a_row_with_a_reason(midi_dir, tmp_path):
    params = stage.Params(max_duration=60.0, **SMALL)
    summary = stage.run(source=midi_dir, out=tmp_path / "out", params=params, workers=1)
    m = pd.read_parquet(tmp_path / "out" / "manifest.parquet").set_index("source")
    assert len(m) == 10 and summary["files"] == 10
    expect = {"empty.mid": ("error", "midi.empty_file"), "page.mid": ("error", "midi.not_midi"),
              "nonotes.mid": ("skipped", "skip.no_notes"), "silent.mid": ("skipped", "skip.silent"),
              "long.mid": ("skipped", "skip.too_long")}
    for src, (status, code) in expect.items():
        assert (m.loc[src, "status"], m.loc[src, "code"]) == (status, code), src
        assert m.loc[src, "message"]
    dup = [s for s in ("song0.mid", "copy.mid") if m.loc[s, "code"] == "skip.duplicate"]
    assert dup == ["song0.mid"]  # copy.mid sorts first and is kept; song0.mid is its duplicate (other task)
    ok = m[m.status == "ok"]
    assert sorted(ok.index) == ["copy.mid", "song1.mid", "song2.mid", "song3.mid"]
    assert (ok.rendered_from == "original").all() and (ok.render_soundfont == "TimGM6mb.sf2").all()
    assert (ok.render_synth.str.startswith("fluidsynth 2.")).all() and (ok.render_cpu_cores == 1).all()
    assert (ok.render_soundfont_sha256.str.len() == 64).all()
    # trimming rule: at most end + release_tail, and the audio reaches the last note
    assert (ok.duration <= ok.midi_end_time + params.release_tail + 1e-9).all()
    assert (ok.duration >= ok.midi_end_time - 0.5).all()
    assert summary["status"] == {"ok": 4, "recovered": 0, "skipped": 4, "error": 2}
    clips = pd.read_parquet(tmp_path / "out" / "parquet")  # the whole folder
    assert set(clips.id) == set(ok.id) and len(clips) == summary["clips"] == ok.n_clips.sum()
    assert "song0.mid" not in set(clips.source)
    schema = json.loads((tmp_path / "out" / "schema.json").read_text())
    assert schema["sample_rate"] == SR and schema["settings"]["render"]["soundfont"] == "TimGM6mb.sf2"


def test_deterministic_twice_and_with_1_or_2_workers(tmp_path):
    src = tmp_path / "midi"
    src.mkdir()
    for i in range(3):
        (src / f"s{i}.mid").write_bytes(make_song(10 + i, n_bars=2))
    params = stage.Params(downmix="random", clip_offset="seeded", **SMALL)
    stage.run(source=src, out=tmp_path / "a", params=params, workers=1)
    first = _tree_digest(tmp_path / "a")
    shutil.rmtree(tmp_path / "a")
    stage.run(source=src, out=tmp_path / "a", params=params, workers=1)
    assert _tree_digest(tmp_path / "a") == first
    stage.run(source=src, out=tmp_path / "b", params=params, workers=2)
    assert _tree_digest(tmp_path / "b") == first
    # resume: a rerun skips every task (markers) and leaves the bytes as they are
    stage.run(source=src, out=tmp_path / "b", params=params, workers=1)
    assert _tree_digest(tmp_path / "b") == first


def test_clips_align_with_the_bars(tmp_path):
    # 4/4 at 120 bpm: bars every 2 s; one note only, at the start of bar 2 (4 s)
    src = tmp_path / "midi"
    src.mkdir()
    raw = _midi([(480 * 8, 60, 120, 480, 0, 0), (480 * 15, 40, 100, 10, 9, 0)])  # + a drum hit at 7.5 s
    (src / "one.mid").write_bytes(raw)
    params = stage.Params(clip_offset="bar", downmix="mean", clip_samples=87936, release_tail=0.5,
                          row_group_mb=1.0, shard_size=4, render_seconds=0.0, clips_per_song=0)  # 87936 frames: just under one bar
    stage.run(source=src, out=tmp_path / "out", params=params, workers=1)
    t = pq.read_table(next((tmp_path / "out" / "parquet").glob("*.parquet"))).to_pandas()
    from pipeline.io.midi import read_midi
    from pipeline.symbolic.lpd import bar_grid

    bars = np.round(bar_grid(read_midi(raw)).bar_times * SR).astype(int)
    assert 2 in set(t.start_bar)
    assert list(t.start_sample) == list(bars[: len(t)])
    assert list(t.start_bar) == list(range(len(t))) and list(t.end_bar) == list(range(1, len(t) + 1))
    for _, row in t.iterrows():
        x, _ = sf.read(io.BytesIO(row.audio["bytes"]), dtype="int16")
        sounding = np.flatnonzero(x)
        if row.start_bar == 2:  # the note starts within ~6 ms (next 64-frame period + the sample's attack)
            assert len(sounding) and 0 < sounding[0] < 256
        elif row.start_bar < 2:
            assert not len(sounding)


def test_shards_read_back_with_pyarrow_pandas_soundfile_and_datasets(tmp_path):
    src = tmp_path / "midi"
    src.mkdir()
    for i in range(2):
        (src / f"s{i}.mid").write_bytes(make_song(20 + i, n_bars=4))
    params = stage.Params(downmix="none", clip_offset="seeded", **SMALL)
    stage.run(source=src, out=tmp_path / "out", params=params, workers=1)
    part = sorted((tmp_path / "out" / "parquet").glob("*.parquet"))[0]
    f = pq.ParquetFile(part)
    assert f.metadata.num_row_groups >= 2  # row_group_mb 0.25
    df = pd.read_parquet(part)
    z = np.load(tmp_path / "out" / "npz" / part.with_suffix(".npz").name, allow_pickle=False)
    assert z["audio"].shape == (len(df), 2, 88192) and list(z["ids"]) == list(df.id)
    for j, row in df.iterrows():
        x, sr = sf.read(io.BytesIO(row.audio["bytes"]), dtype="float32")
        assert sr == SR and x.shape == (88192, 2) and row.channels == 2
        assert np.abs(x.T - z["audio"][j]).max() <= 1 / 32767 + 1e-7
        assert row.samples % 128 == 0 and json.loads(row.render)["period_size"] == 64

    import datasets

    ds = datasets.Dataset.from_parquet(str(part))
    assert ds.features["audio"] == datasets.Audio(sampling_rate=SR)
    assert ds.features["start_bar"] == datasets.Value("int32")
    try:
        arr = ds[0]["audio"]
    except ImportError as exc:  # datasets >= 4 decodes audio through torchcodec, not installed here
        assert "torchcodec" in str(exc)
        raw = ds.with_format("arrow")[0:1].column("audio")[0]["bytes"].as_py()
        x, sr = sf.read(io.BytesIO(raw), dtype="float32")
        assert sr == SR and x.shape == (88192, 2)
    else:  # pragma: no cover - where torchcodec is installed
        assert arr is not None


def test_sanitized_render_for_repaired_files(tmp_path):
    src = tmp_path / "midi"
    src.mkdir()
    raw = bytearray(make_song(30, n_bars=2))
    # a data byte over 127 in a note-on velocity: read_midi clips it (a repair)
    at = raw.index(bytes([0x90]))  # first note-on status on channel 0 (drums are on 9)
    raw[at + 2] = 0xC8
    (src / "bad.mid").write_bytes(bytes(raw))
    params = stage.Params(**SMALL)
    stage.run(source=src, out=tmp_path / "out", params=params, workers=1)
    m = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert m.status[0] == "recovered" and m.rendered_from[0] == "sanitized"
    assert "data bytes over 127" in m.message[0] and m.n_clips[0] >= 1


def test_real_midi_cut_to_a_few_seconds(shared_midi, tmp_path):
    src = tmp_path / "midi"
    src.mkdir()
    for name in sorted(p.name for p in shared_midi.glob("*.mid"))[:4]:
        shutil.copy(shared_midi / name, src / name)
    params = stage.Params(render_seconds=3.0, clip_samples=65536, clips_per_song=1, shard_size=2, row_group_mb=1.0)
    summary = stage.run(source=src, out=tmp_path / "out", params=params, workers=1)
    m = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert len(m) == 4 and summary["files"] == 4
    done = m[m.status.isin(["ok", "recovered"])]
    assert len(done) >= 2 and (done.duration <= 3.0).all() and (done.n_clips == 1).all()


def test_cli_render_audio_and_one_line_errors(tmp_path):
    src = tmp_path / "midi"
    src.mkdir()
    (src / "a.mid").write_bytes(make_song(40, n_bars=2))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"render_audio": section_doc("render_audio", clip_samples=1000)}))
    cmd = [sys.executable, "-c", "from pipeline.cli import main; main()", "render-audio", str(src),
           "--out", str(tmp_path / "o"), "--workers", "1", "--params", str(params)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert res.stderr.strip() == "error: render_audio.clip_samples=1000 must be a positive multiple of 128"
    params.write_text(yaml.safe_dump({"render_audio": section_doc("render_audio", clip_samples=44032, row_group_mb=1.0,
                                                                  render_seconds=0.0, clips_per_song=0)}))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**_env(), "FLUIDSYNTH": "/nope/fluidsynth"})
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0
    assert "apt-get install --no-install-recommends fluidsynth" in res.stderr
    res = subprocess.run(["bash", "-c", "umask 022; exec \"$0\" \"$@\"", *cmd], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "1 files: 1 ok" in res.stdout and (tmp_path / "o" / "summary.json").exists()
    # every shard part and file gets the umask's mode (0644), not mkstemp's 0600
    files = [p for p in (tmp_path / "o").rglob("*") if p.is_file() and p.name != ".lock"]
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}, [(p.name, oct(p.stat().st_mode & 0o777)) for p in files]


def _env():
    import os

    return dict(os.environ)


def test_tempo_outside_the_first_track_is_timed_as_pretty_midi(tmp_path):
    # pretty_midi ignores the 240 bpm in track 1; FluidSynth would play the song twice as fast
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)]))
    tr = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=250000, time=0),
                         mido.Message("control_change", channel=0, control=10, value=0, time=0)])
    for b in range(8):
        tr.append(mido.Message("note_on", channel=0, note=60 + b, velocity=100, time=0))
        tr.append(mido.Message("note_off", channel=0, note=60 + b, velocity=0, time=480))
    mid.tracks.append(tr)
    src = tmp_path / "midi"
    src.mkdir()
    mid.save(str(src / "t.mid"))
    stage.run(source=src, out=tmp_path / "out", params=stage.Params(**SMALL), workers=1)
    m = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert m.status[0] == "ok" and m.rendered_from[0] == "first_track_tempo" and m.midi_end_time[0] == 4.0
    assert 4.0 <= m.duration[0] <= 4.0 + 2.0


def test_archive_source_gives_the_same_bytes_and_stale_parts_go(tmp_path):
    import tarfile

    src = tmp_path / "midi"
    src.mkdir()
    for i in range(3):
        (src / f"s{i}.mid").write_bytes(make_song(50 + i, n_bars=2))
    with tarfile.open(tmp_path / "midi.tar.gz", "w:gz") as tar:
        for p in sorted(src.iterdir()):
            tar.add(p, arcname=p.name)
    params = stage.Params(**{**SMALL, "shard_size": 1})
    stage.run(source=src, out=tmp_path / "a", params=params, workers=1)
    stage.run(source=tmp_path / "midi.tar.gz", out=tmp_path / "b", params=params, workers=1)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert len(list((tmp_path / "a" / "parquet").glob("*.parquet"))) == 3
    # fewer, larger shards: the old parts are removed, the clips are the same
    before = pd.read_parquet(tmp_path / "a" / "parquet")
    stage.run(source=src, out=tmp_path / "a", params=stage.Params(**{**SMALL, "shard_size": 8}), workers=1)
    assert sorted(p.name for p in (tmp_path / "a" / "parquet").iterdir()) == ["audio-00000-00.parquet"]
    assert sorted(p.name for p in (tmp_path / "a" / "npz").iterdir()) == ["audio-00000-00.npz"]
    after = pd.read_parquet(tmp_path / "a" / "parquet")
    assert before.drop(columns="audio").equals(after.drop(columns="audio"))


def test_help_lists_the_audio_commands():
    from typer.testing import CliRunner

    from pipeline.cli import app

    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0 and "render-audio" in res.output and "ingest-audio" in res.output
