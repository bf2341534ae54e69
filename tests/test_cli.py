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
    """--kind, --variant, --part and --mode take their values from pipeline.names (defined once), list
    them in --help and refuse others (exit 2)."""
    import typing

    from pipeline import cli, fetch, names

    def choices(fn, option) -> tuple:
        alias = typing.get_type_hints(fn, include_extras=True)[option]
        return typing.get_args(typing.get_args(alias)[0])

    assert choices(cli.build_vocab, "kind") == names.VOCAB_KINDS
    for fn in (cli.train_lstm, cli.sample_lstm, cli.evaluate_lstm):
        assert choices(fn, "variant") == names.LSTM_VARIANTS
    for fn in (cli.train_musegan, cli.sample_musegan):
        assert choices(fn, "variant") == names.MUSEGAN_VARIANTS
    assert choices(cli.train_jukebox, "part") == names.JUKEBOX_PARTS
    assert choices(cli.sample_jukebox, "mode") == names.JUKEBOX_MODES
    assert choices(cli.fetch_lmd, "variant") == names.LMD_VARIANTS == tuple(fetch.ARCHIVES)
    for cmd, shown in [(["train", "musegan"], "<jamming|composer|"), (["train", "lstm"], "<lstm|lstm_attention>"),
                       (["train", "jukebox"], "<prior|upsampler>"), (["sample", "jukebox"], "<ancestral|windowed|primed>"),
                       (["build-vocab"], "<notes|remi|midilike>"), (["fetch-lmd"], "<full|matched|aligned|clean>")]:
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0 and shown in result.output, (cmd, result.output)
    result = runner.invoke(app, ["build-vocab", "x", "--kind", "bpe"])
    assert result.exit_code == 2


def test_a_wrong_choice_is_one_line_and_exit_2(tmp_path):
    """Through the console entry point: a value outside an option's choices is a usage error, one line."""
    for args, option in [(["build-vocab", str(tmp_path), "--kind", "bpe"], "--kind"),
                         (["train", "jukebox", "--part", "middle"], "--part"),
                         (["sample", "jukebox", "--mode", "beam"], "--mode"),
                         (["train", "lstm", "--variant", "gru"], "--variant")]:
        res = run_cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: Invalid value for '{option}'"), res.stderr


def test_jukebox_level_goes_with_the_upsampler(tmp_path):
    for args in (["train", "jukebox", "--part", "upsampler"], ["train", "jukebox", "--level", "0"]):
        res = run_cli(*args, "--out", str(tmp_path / "j"))
        assert res.returncode == 1 and res.stderr.strip() == "error: --level goes with --part upsampler (and only with it)"
    assert not (tmp_path / "j").exists()


def test_every_command_names_its_output_folder_out():
    """One name for the output-folder option: --out, in every command that writes a folder."""
    import typer

    def commands(group, prefix=()):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):  # a group (typer ships its own click)
                yield from commands(cmd, prefix + (name,))
            else:
                yield prefix + (name,), cmd

    root = typer.main.get_command(app)
    for path, cmd in commands(root):
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert not opts & {"--models", "--model-dir", "--models-dir", "--output"}, (path, opts)
        if path not in {("init",), ("inspect",)}:
            assert "--out" in opts, path


def test_a_bug_keeps_its_traceback_and_ends_with_one_line_exit_3(tmp_path, monkeypatch, capsys):
    """An unexpected exception is a bug: the traceback, then one `error: internal.bug` line, exit 3."""
    import pytest

    from pipeline import cli, config

    def broken(directory, force=False):
        raise KeyError("boom")

    monkeypatch.setattr(config, "init_project", broken)
    monkeypatch.setattr(sys, "argv", ["pipeline", "init", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == cli.EXIT_BUG == 3
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: internal.bug: KeyError: 'boom'")
