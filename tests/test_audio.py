"""Audio building blocks: downmix formulas, clips and their bars, trimming and gain rules, the
sanitized SMF, the FluidSynth render (bit-identical run to run) and the shard formats."""

from __future__ import annotations

import hashlib
import io
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.audio.clips import cut, plan_clips
from pipeline.audio.downmix import downmix, mix_weight
from pipeline.audio.render import stage_gain, trim
from pipeline.errors import ParamsError, StageError
from pipeline.formats.audio_shards import ShardWriter, flac_bytes
from tests.conftest import make_song

needs_fluidsynth = pytest.mark.skipif(shutil.which("fluidsynth") is None,
                                      reason="the fluidsynth program is absent (apt-get install --no-install-recommends fluidsynth)")

SR = 44100


# --- downmix ------------------------------------------------------------------------------------

def _stereo(n=1000, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 2)).astype(np.float32)


def test_downmix_formulas_exactly():
    x = _stereo()
    L, R = x[:, 0], x[:, 1]
    mean, m = downmix(x, "mean")
    assert m == 0.5 and np.array_equal(mean, (L + R) / np.float32(2))
    assert np.array_equal(downmix(x, "left")[0], L) and downmix(x, "left")[1] == 1.0
    assert np.array_equal(downmix(x, "right")[0], R) and downmix(x, "right")[1] == 0.0
    both, m = downmix(x, "none")
    assert m is None and np.array_equal(both, x)


def test_random_downmix_is_jukebox_blend_seeded_per_song():
    x = _stereo()
    sid = "9f86d081884c7d659a2feaa0c55ad015"
    y, m = downmix(x, "random", seed=7, song_id=sid)
    expected_m = np.random.default_rng([7, int(sid[:8], 16)]).uniform()
    assert m == expected_m and 0.0 <= m < 1.0
    w = np.float32(expected_m)
    assert np.array_equal(y, w * x[:, 0] + (np.float32(1) - w) * x[:, 1])
    assert mix_weight("random", seed=7, song_id=sid) == m  # reproducible
    assert mix_weight("random", seed=7, song_id="0" * 32) != m  # per song
    assert mix_weight("random", seed=8, song_id=sid) != m  # per seed


def test_downmix_rejects_a_bad_mode_and_shape():
    with pytest.raises(ValueError, match="downmix='center'"):
        downmix(_stereo(), "center")
    with pytest.raises(ValueError, match=r"shape \(frames, 2\)"):
        downmix(np.zeros(10, np.float32), "mean")


# --- clips ----------------------------------------------------------------------------------------

def test_bar_aligned_clips_start_on_downbeats_and_carry_their_bars():
    bar_times = np.arange(10) * 2.0  # 4/4 at 120 bpm: a bar every 2 s
    n = int(20.0 * SR)
    clips = plan_clips(n, 3 * 88192, offset="bar", rng=np.random.default_rng(0), bar_times=bar_times, sample_rate=SR)
    # 3 * 88192 frames = 5.9995 s: a clip covers bars b, b+1, b+2; the next starts 3 bars later
    assert [c.start for c in clips] == [0, 6 * SR, 12 * SR]
    assert [(c.start_bar, c.end_bar) for c in clips] == [(0, 3), (3, 6), (6, 9)]
    assert all(c.valid == 3 * 88192 for c in clips)


def test_seeded_clips_are_back_to_back_after_a_seeded_offset():
    n = 10 * 128 * 100 + 77
    a = plan_clips(n, 12800, offset="seeded", rng=np.random.default_rng([1, 2, 1]), bar_times=None, sample_rate=SR)
    b = plan_clips(n, 12800, offset="seeded", rng=np.random.default_rng([1, 2, 1]), bar_times=None, sample_rate=SR)
    assert a == b
    o = a[0].start
    assert 0 <= o <= 12800 and [c.start for c in a] == list(range(o, n - 12800 + 1, 12800))
    assert all(c.start_bar is None and c.end_bar is None for c in a)


def test_clip_bars_when_starting_inside_a_bar_and_before_the_first_bar():
    bar_times = np.array([1.0, 3.0, 5.0])
    clips = plan_clips(int(8 * SR), 44032, offset="seeded", rng=np.random.default_rng(3), bar_times=bar_times,
                       sample_rate=SR)
    bars = np.round(bar_times * SR)
    for c in clips:
        expect_start = int(np.searchsorted(bars, c.start, side="right")) - 1  # -1: before the first bar
        assert c.start_bar == expect_start
        assert c.end_bar == int(np.sum(bars < c.start + 44032))


def test_clips_per_song_picks_a_seeded_subset_in_order_and_short_songs_are_padded():
    clips = plan_clips(100 * 1280, 1280, offset="seeded", rng=np.random.default_rng(5), bar_times=None,
                       sample_rate=SR, clips_per_song=3)
    assert len(clips) == 3 and [c.index for c in clips] == [0, 1, 2]
    assert sorted(c.start for c in clips) == [c.start for c in clips]
    short = plan_clips(1000, 1280, offset="bar", rng=np.random.default_rng(0), bar_times=np.array([0.0]),
                       sample_rate=SR)
    assert len(short) == 1 and short[0].valid == 1000
    x = np.ones(1000, np.float32)
    y = cut(x, short[0], 1280)
    assert y.shape == (1280,) and y[:1000].all() and not y[1000:].any()


# --- trimming and gain ------------------------------------------------------------------------------

def test_trim_rule_cuts_at_end_plus_tail_then_below_threshold():
    x = np.zeros((10 * SR, 2), np.float32)
    x[: 3 * SR] = 0.5
    x[3 * SR : 4 * SR, 1] = 1e-3  # a quiet release until 4 s
    x[8 * SR :] = 0.5  # past end + tail: cut regardless of level
    y, cut_frames = trim(x, end_time=3.0, release_tail=2.0, threshold=1e-4, sample_rate=SR)
    assert len(y) == 4 * SR and cut_frames == 6 * SR
    y, _ = trim(x, end_time=3.0, release_tail=2.0, threshold=1e-2, sample_rate=SR)
    assert len(y) == 3 * SR
    assert len(trim(np.zeros((SR, 2), np.float32), end_time=1, release_tail=0, threshold=1e-4, sample_rate=SR)[0]) == 0


def test_gain_staging_scales_down_only_over_full_scale():
    x = np.full((10, 2), 0.5, np.float32)
    y, peak, scale = stage_gain(x)
    assert y is x and peak == 0.5 and scale == 1.0
    x[3, 1] = -2.0
    y, peak, scale = stage_gain(x)
    assert peak == 2.0 and scale == 0.5 and np.abs(y).max() == 1.0 and y[0, 0] == 0.25


# --- params ---------------------------------------------------------------------------------------

def test_params_validation_echoes_the_bad_value():
    from pipeline.stages.render_audio import Params

    with pytest.raises(ParamsError, match=r"render_audio.clip_samples=1000 must be a positive multiple of 128"):
        Params(clip_samples=1000)
    with pytest.raises(ParamsError, match=r"period_size=2048 must be between 1 and 1024"):
        Params(period_size=2048)
    with pytest.raises(ParamsError, match=r"silence_db=3"):
        Params(silence_db=3.0)


# --- rendering --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def settings():
    from pipeline.audio.render import make_settings

    if shutil.which("fluidsynth") is None:
        pytest.skip("the fluidsynth program is absent")
    return make_settings(soundfont="timgm6mb", sample_rate=SR, gain=0.2, reverb=True, chorus=True,
                         period_size=64, polyphony=256)


@needs_fluidsynth
def test_render_is_stereo_float32_and_bit_identical_run_to_run(settings):
    from pipeline.audio.render import render_midi

    raw = make_song(3, n_bars=2)
    a = render_midi(raw, settings, max_frames=5 * SR)
    b = render_midi(raw, settings, max_frames=5 * SR)
    assert a.dtype == np.float32 and a.shape[1] == 2 and len(a) > 3 * SR
    assert hashlib.sha256(a.tobytes()).digest() == hashlib.sha256(b.tobytes()).digest()
    assert not np.array_equal(a[:, 0], a[:, 1])  # real stereo, not one channel copied
    rec = settings.as_record()
    assert rec["soundfont"] == "TimGM6mb.sf2" and len(rec["soundfont_sha256"]) == 64
    assert rec["synth"].startswith("fluidsynth 2.") and rec["cpu_cores"] == 1 and rec["period_size"] == 64


@needs_fluidsynth
def test_render_stops_at_max_frames(settings):
    from pipeline.audio.render import render_midi

    x = render_midi(make_song(1, n_bars=8), settings, max_frames=SR // 2)
    assert len(x) == SR // 2


@needs_fluidsynth
def test_sanitized_smf_renders_like_the_original(settings):
    from pipeline.audio.render import render_midi, sanitized_smf
    from pipeline.io.midi import read_midi

    raw = make_song(4, n_bars=2, ts=(3, 4), tempo_bpm=100)
    score = read_midi(raw)
    clean, notes = sanitized_smf(score)
    back = read_midi(clean)
    assert notes == [] and back.end_time == pytest.approx(score.end_time, abs=1e-9)
    assert np.allclose(np.sort(back.note_start), np.sort(score.note_start))
    assert list(back.ts_num) == [3] and sorted(back.inst_program) == sorted(score.inst_program)
    assert list(back.inst_channel[back.inst_program == 0]).count(9) == 1  # drums stay on channel 10
    a = render_midi(raw, settings, max_frames=4 * SR)
    b = render_midi(clean, settings, max_frames=4 * SR)
    assert np.array_equal(a, b)


def test_missing_fluidsynth_is_one_line_with_the_install_command(monkeypatch):
    from pipeline.audio.render import fluidsynth_path

    monkeypatch.setenv("FLUIDSYNTH", "/nonexistent/fluidsynth")
    with pytest.raises(StageError) as err:
        fluidsynth_path()
    msg = str(err.value)
    assert "\n" not in msg and "apt-get install --no-install-recommends fluidsynth" in msg


def test_soundfont_choices(tmp_path):
    from pipeline.audio.render import FLUIDR3_PATH, resolve_soundfont

    assert resolve_soundfont("timgm6mb").name == "TimGM6mb.sf2"
    if not FLUIDR3_PATH.exists():
        with pytest.raises(StageError, match="apt-get install fluid-soundfont-gm"):
            resolve_soundfont("fluidr3_gm")
    bad = tmp_path / "x.sf2"
    bad.write_bytes(b"not a soundfont")
    with pytest.raises(StageError, match="not a SoundFont 2 file"):
        resolve_soundfont(str(bad))


# --- shards ---------------------------------------------------------------------------------------

def _meta(i, sid="ab" * 16, channels=1):
    return dict(id=sid, source="x.mid", clip=i, sample_rate=SR, channels=channels, samples=1280, valid_samples=1280,
                duration=1280 / SR, start_sample=i * 1280, start_time=i * 1280 / SR, start_bar=i, end_bar=i + 1,
                song_duration=1.0, peak=0.5, gain=0.2, gain_scale=1.0, downmix="mean", downmix_weight=0.5,
                render="{}")


def test_flac_is_16_bit_and_decodes_to_the_quantised_floats():
    x = np.random.default_rng(0).uniform(-1, 1, 4410).astype(np.float32)
    blob = flac_bytes(x, SR)
    info = sf.info(io.BytesIO(blob))
    assert info.format == "FLAC" and info.subtype == "PCM_16" and info.samplerate == SR and info.channels == 1
    pcm, _ = sf.read(io.BytesIO(blob), dtype="int16")
    assert np.array_equal(pcm, np.rint(x * 32767).astype(np.int16))


def test_shard_writer_row_groups_parts_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    clips = [rng.uniform(-0.5, 0.5, (1280, 2)).astype(np.float32) for _ in range(10)]
    w = ShardWriter(tmp_path, "audio-00000", sample_rate=SR, row_group_bytes=8000, shard_bytes=30000)
    for i, c in enumerate(clips):
        w.add(c, _meta(i, channels=2))
    parts = w.close()
    assert len(parts) >= 2 and parts[0] == "audio-00000-00.parquet"
    n = 0
    for part in parts:
        f = pq.ParquetFile(tmp_path / part)
        assert f.metadata.num_row_groups >= 2
        meta = json.loads(f.schema_arrow.metadata[b"huggingface"])
        assert meta["info"]["features"]["audio"] == {"_type": "Audio", "sampling_rate": SR}
        t = f.read()
        z = np.load((tmp_path / part).with_suffix(".npz"), allow_pickle=False)
        assert z["audio"].dtype == np.float32 and z["audio"].shape == (t.num_rows, 2, 1280)
        for j, row in enumerate(t.to_pylist()):
            assert row["clip"] == n
            x, sr = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="float32")
            assert sr == SR and x.shape == (1280, 2)
            assert np.abs(x - clips[n]).max() <= 1 / 32767
            assert np.array_equal(z["audio"][j], clips[n].T)
            n += 1
    assert n == 10


def test_shards_are_deterministic(tmp_path):
    def write(folder):
        w = ShardWriter(folder, "audio-00000", sample_rate=SR, row_group_bytes=5000, shard_bytes=10**9)
        for i in range(4):
            w.add(np.full(1280, 0.1 * i, np.float32), _meta(i))
        return [(folder / p).read_bytes() + (folder / p).with_suffix(".npz").read_bytes() for p in w.close()]

    assert write(tmp_path / "a") == write(tmp_path / "b")


def test_streamed_npz_has_valid_crcs_and_loads(tmp_path):
    import zipfile
    import zlib

    from pipeline.formats.audio_shards import crc32_combine

    for a, b in ((b"", b"xyz"), (b"header", b""), (bytes(range(256)) * 3, b"\x00" * 100_001)):
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    w = ShardWriter(tmp_path, "audio-00000", sample_rate=SR, row_group_bytes=10**9, shard_bytes=10**9)
    clips = [np.random.default_rng(i).uniform(-1, 1, 1280).astype(np.float32) for i in range(3)]
    for i, c in enumerate(clips):
        w.add(c, _meta(i))
    (part,) = w.close()
    npz = (tmp_path / part).with_suffix(".npz")
    with zipfile.ZipFile(npz) as zf:
        assert zf.testzip() is None  # every member's CRC-32 checks
    z = np.load(npz, allow_pickle=False)
    assert np.array_equal(z["audio"], np.stack(clips)) and list(z["clip"]) == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio-00000-00.npz", "audio-00000-00.parquet"]
