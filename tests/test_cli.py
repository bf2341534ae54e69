"""The `pipeline` command: help, one-line errors with a non-zero exit, a good run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import section_doc

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Through the real console entry point, as a user runs it."""
    return subprocess.run([sys.executable, "-c", "from pipeline.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_the_stages():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "build-lpd" in result.output and "corpus" in result.output


def test_missing_source_is_one_line(tmp_path):
    res = run_cli("build-lpd", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0
    assert res.stderr.startswith("error: ") and "no such file or folder" in res.stderr
    assert "Traceback" not in res.stderr


def test_empty_folder_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    res = run_cli("build-lpd", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0 and "no .mid/.midi/.rmi files" in res.stderr


def test_bad_param_is_one_line(tmp_path, small_corpus):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"build_lpd": section_doc("build_lpd", resolution=0)}))
    res = run_cli("build-lpd", str(small_corpus), "--out", str(tmp_path / "o"), "--params", str(params))
    assert res.returncode == 1
    assert res.stderr.strip() == "error: build_lpd.resolution=0 must be >= 1"
    params.write_text(yaml.safe_dump({"build_lpd": section_doc("build_lpd", tracks="lpd9")}))
    res = run_cli("build-lpd", str(small_corpus), "--out", str(tmp_path / "o"), "--params", str(params))
    assert res.returncode == 1 and "build_lpd.tracks='lpd9' must be one of lpd5, lpd17" in res.stderr
    params.write_text("build_lpd:\n  resolutoin: 24\n")
    res = run_cli("build-lpd", str(small_corpus), "--out", str(tmp_path / "o"), "--params", str(params))
    assert res.returncode == 1 and "unknown key(s) resolutoin" in res.stderr
    params.write_text("build_lpd:\n  resolution: 24\n")
    res = run_cli("build-lpd", str(small_corpus), "--out", str(tmp_path / "o"), "--params", str(params))
    assert res.returncode == 1
    assert res.stderr.strip() == ("error: build_lpd: missing key(s) tracks, semantics, shard_size, max_beats, "
                                  "max_file_bytes, tensor (every key is required: `pipeline init` writes a complete "
                                  "params.yaml)")

    params.write_text("build_lpd:\n  resolution: 24\n  tracks: [lpd5\n")
    res = run_cli("build-lpd", str(small_corpus), "--out", str(tmp_path / "o"), "--params", str(params))
    assert res.returncode == 1
    assert res.stderr.strip() == (f"error: {params}:4:1: did not find expected ',' or ']' "
                                  "(while parsing a flow sequence at 3:11)")


def test_bad_option_exits_2():
    result = runner.invoke(app, ["build-lpd", "x", "--workers", "many"])
    assert result.exit_code == 2


def test_missing_params_file_is_one_line(tmp_path, small_corpus):
    res = run_cli("build-lpd", str(small_corpus), "--out", str(tmp_path / "o"), "--workers", "1",
                  "--params", str(tmp_path / "absent.yaml"))
    assert res.returncode == 1 and not (tmp_path / "o").exists()
    assert res.stderr.strip() == f"error: {tmp_path / 'absent.yaml'}: no such params file"


def test_good_run(tmp_path, small_corpus):
    res = run_cli("build-lpd", str(small_corpus), "--out", str(tmp_path / "o"), "--workers", "1",
                  "--params", str(ROOT / "params.yaml"))
    assert res.returncode == 0, res.stderr
    assert "10 files: 8 ok, 0 recovered, 0 skipped, 2 errors -> 8 songs" in res.stdout
    assert (tmp_path / "o" / "manifest.parquet").exists()


def test_fixed_choices_are_choices_in_help_and_match_the_stages():
    """--kind, --variant and --mode list their values in --help, refuse others (exit 2), and the
    lists are the stages' own constants."""
    import typing

    from pipeline import cli, fetch
    from stages import build_vocab, jukebox, lstm, musegan

    def choices(alias) -> tuple:
        return typing.get_args(typing.get_args(alias)[0]) if typing.get_origin(alias) is typing.Annotated \
            else typing.get_args(alias)

    assert choices(cli.VocabKind) == build_vocab.KINDS
    assert choices(cli.LstmVariant) == lstm.VARIANTS
    assert choices(cli.MuseganVariant) == musegan.VARIANTS
    hints = typing.get_type_hints(cli.sample_jukebox, include_extras=True)
    assert choices(hints["mode"]) == jukebox.MODES
    hints = typing.get_type_hints(cli.fetch_lmd, include_extras=True)
    assert set(choices(hints["variant"])) == set(fetch.VARIANTS)
    result = runner.invoke(app, ["train", "musegan", "--help"])
    assert "<jamming|composer|" in result.output
    result = runner.invoke(app, ["build-vocab", "x", "--kind", "bpe"])
    assert result.exit_code == 2
