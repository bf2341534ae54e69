"""mido 1.3 reads a meta event of a type it does not know without its delta time, so pretty_midi (and
LPD) put the later events of that track earlier. We keep the file's times and say so: a coded
warning in the manifest row, and the count in summary.json."""

from __future__ import annotations

import io
import json

import pandas as pd
import pretty_midi
import pytest

from pipeline.io.midi import WARN_MIDO_META_TIME, read_midi
from test_pretty_midi_rejects import EOT, TEMPO, chunk, header

# a meta event of type 0x71 after 34 ticks, then E4 for 96 ticks (96 per quarter, 120 BPM)
TRACK = b"\x22\xff\x71\x02\x00\x00" + b"\x00\x90\x40\x64" + b"\x60\x80\x40\x00" + EOT
RAW = header(2) + chunk(TEMPO + EOT) + chunk(TRACK)


def test_the_file_keeps_its_times_and_says_pretty_midi_differs():
    pm = pretty_midi.PrettyMIDI(io.BytesIO(RAW))
    assert [n.start for n in pm.instruments[0].notes] == [0.0]  # mido lost the 34 ticks
    score = read_midi(RAW)
    assert score.note_start.tolist() == pytest.approx([34 / 96 * 0.5], abs=1e-12)
    assert not score.repairs  # nothing was wrong with the file
    (w,) = score.warnings
    assert w.startswith(f"{WARN_MIDO_META_TIME}: ") and "34 ticks" in w


def test_known_meta_types_and_sysex_keep_their_times_in_mido_too():
    """Sequencer-specific (0x7F) meta and sysex/escape events: mido keeps the delta, no warning."""
    for event in (b"\x22\xff\x7f\x02\x00\x00", b"\x22\xf0\x02\x7e\xf7", b"\x22\xf7\x01\x7e"):
        raw = header(2) + chunk(TEMPO + EOT) + chunk(event + TRACK[6:])
        pm = pretty_midi.PrettyMIDI(io.BytesIO(raw))
        score = read_midi(raw)
        assert [n.start for n in pm.instruments[0].notes] == score.note_start.tolist()
        assert score.note_start.tolist() == pytest.approx([34 / 96 * 0.5], abs=1e-12)
        assert not score.warnings


def test_build_lpd_row_and_summary(tmp_path):
    from pipeline.stages import build_lpd

    src = tmp_path / "in"
    src.mkdir()
    (src / "meta71.mid").write_bytes(RAW)
    (src / "plain.mid").write_bytes(header(2) + chunk(TEMPO + EOT) + chunk(TRACK[6:]))
    build_lpd.run(source=src, out=tmp_path / "lpd", params=build_lpd.Params(), workers=1)
    m = pd.read_parquet(tmp_path / "lpd" / "manifest.parquet").set_index("source")
    assert m.loc["meta71.mid", "status"] == "ok"
    assert [w.split(":")[0] for w in m.loc["meta71.mid", "warnings"]] == [WARN_MIDO_META_TIME]
    assert list(m.loc["plain.mid", "warnings"]) == []
    summary = json.loads((tmp_path / "lpd" / "summary.json").read_text())
    assert summary["warnings"] == {WARN_MIDO_META_TIME: 1}
