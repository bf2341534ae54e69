"""params.yaml is the only place a default value lives (issue #14): the packaged copies that
``pipeline init`` writes are the repository's files, every ``Params()`` is its section of params.yaml,
a missing file or key is a one-line error, and bounds are declared per field and echo the value."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import yaml

from pipeline import config
from pipeline.config import (PACKAGED_DVC, PACKAGED_PARAMS, Range, from_dict, load_params, load_section,
                             params_section, read_params, section_doc)
from pipeline.errors import ParamsError, PipelineError

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = list(yaml.safe_load((ROOT / "params.yaml").read_text()))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from pipeline.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("name", ["params.yaml", "dvc.yaml"])
def test_packaged_copies_are_the_repositorys_files(name):
    # refresh after editing the repository's file: cp params.yaml dvc.yaml pipeline/defaults/
    packaged = {"params.yaml": PACKAGED_PARAMS, "dvc.yaml": PACKAGED_DVC}[name]
    assert packaged.read_bytes() == (ROOT / name).read_bytes(), (
        f"{packaged} differs from the repository's {name}: cp {name} {packaged.relative_to(ROOT)}")


def test_package_data_ships_them():
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["pipeline"]
    shipped = {p.relative_to(ROOT / "pipeline").as_posix() for pat in patterns for p in (ROOT / "pipeline").glob(pat)}
    assert {"defaults/params.yaml", "defaults/dvc.yaml"} <= shipped
    # the paper-scale configs (`pipeline paper-config`), every one of them
    assert {f"defaults/paper/{p.name}" for p in (ROOT / "pipeline" / "defaults" / "paper").glob("*.yaml")} <= shipped


@pytest.mark.parametrize("section", SECTIONS)
def test_every_default_is_params_yaml(section):
    module = importlib.import_module(f"pipeline.stages.{section}")
    loaded = load_section(module.Params, section, ROOT / "params.yaml")
    assert module.Params() == loaded
    assert load_params(module.Params) == loaded
    assert module.Params.__params_section__ == section


def _nested_classes(cls):
    yield cls
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default):
            yield from _nested_classes(type(f.default))


@pytest.mark.parametrize("section", SECTIONS)
def test_every_field_is_a_key_of_params_yaml(section):
    """No field has a default of its own: each takes its section's value (a field missing there would
    fail at import, a key of params.yaml without a field fails in from_dict)."""
    module = importlib.import_module(f"pipeline.stages.{section}")
    for cls in _nested_classes(module.Params):
        doc = section_doc(cls.__params_section__)
        assert {f.name for f in dataclasses.fields(cls)} == set(doc), cls


def test_missing_key_is_named():
    doc = section_doc("build_lpd")
    del doc["max_beats"], doc["tensor"]["bar_steps"]
    from pipeline.stages import build_lpd

    with pytest.raises(ParamsError, match=r"^build_lpd.tensor: missing key\(s\) bar_steps "):
        from_dict(build_lpd.Params, doc, section="build_lpd")
    doc["tensor"]["bar_steps"] = 96
    with pytest.raises(ParamsError, match=r"^build_lpd: missing key\(s\) max_beats "):
        from_dict(build_lpd.Params, doc, section="build_lpd")


def test_missing_or_bad_file_is_an_error(tmp_path, monkeypatch):
    from pipeline.stages import build_lpd

    with pytest.raises(ParamsError, match=f"^{tmp_path / 'nope.yaml'}: no such params file$"):
        load_section(build_lpd.Params, "build_lpd", tmp_path / "nope.yaml")
    with pytest.raises(ParamsError, match="not a file"):
        load_section(build_lpd.Params, "build_lpd", tmp_path)
    (tmp_path / "p.yaml").write_text("corpus: {}\n")
    with pytest.raises(ParamsError, match="no section 'build_lpd'"):
        load_section(build_lpd.Params, "build_lpd", tmp_path / "p.yaml")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError, match="no params.yaml here; run `pipeline init`"):
        read_params()


@pytest.mark.parametrize("text, line", [
    # a colon inside a value: where the parser stopped, as path:line:column
    ("build_lpd:\n  resolution: 24\n  semantics: lpd: x\n", "p.yaml:3:17: mapping values are not allowed in this context"),
    # an unclosed bracket is found at the end of the file: where it opened follows
    ("build_lpd:\n  tracks: [lpd5\n", "p.yaml:3:1: did not find expected ',' or ']' (while parsing a flow sequence at 2:11)"),
    ("build_lpd:\n\tresolution: 24\n", "p.yaml:2:1: found character that cannot start any token"),
])
def test_malformed_yaml_is_one_line_with_line_and_column(tmp_path, monkeypatch, text, line):
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(text)
    with pytest.raises(ParamsError) as err:
        read_params("p.yaml")
    assert str(err.value) == line


def test_yaml_error_counts_from_the_first_line_of_the_parsed_text():
    with pytest.raises(yaml.YAMLError) as err:
        yaml.safe_load("a: 1\nb: c: d\n")
    assert config.yaml_error(err.value, "card.md", first_line=2) == "card.md:3:5: mapping values are not allowed here"
    assert config.yaml_error(err.value) == "line 2, column 5: mapping values are not allowed here"


def test_range_messages_echo_the_value():
    assert Range(1).describe() == ">= 1"
    assert Range(0, 1, hi_open=True).describe() == "in [0, 1)"
    assert Range(0, 10, lo_open=True).describe() == "in (0, 10]"
    assert Range(1, 1024).describe() == "between 1 and 1024"
    assert Range(hi=0, hi_open=True).describe() == "< 0"
    with pytest.raises(ParamsError, match=r"^x.y=-0.5 must be in \[0, 1\) \(why\)$"):
        Range(0, 1, hi_open=True, note="why").check("x.y", -0.5)
    from pipeline.stages import build_vocab, lstm

    with pytest.raises(ParamsError, match=r"^build_vocab.midilike.velocity_bins=0 must be >= 1$"):
        build_vocab.Params(midilike=build_vocab.EventParams(velocity_bins=0))
    with pytest.raises(ParamsError, match=r"^lstm.sample.prime='x' must be one of test, bos$"):
        load_params(lstm.Params, sample={"prime": "x"})
    with pytest.raises(ParamsError, match=r"^lstm.model.hidden=True must be an integer$"):
        lstm.Params(model=lstm.ModelParams(hidden=True))


def test_params_section_takes_defaults_from_the_packaged_file(monkeypatch, tmp_path):
    (tmp_path / "params.yaml").write_text("demo:\n  n: 3\n  kind: a\n")
    monkeypatch.setattr(config, "PACKAGED_PARAMS", tmp_path / "params.yaml")
    config._packaged.cache_clear()
    try:
        @dataclasses.dataclass(frozen=True, kw_only=True)
        @params_section("demo")
        class Demo:
            n: Annotated[int, Range(1)]
            kind: str

        assert Demo() == Demo(n=3, kind="a")
        with pytest.raises(ParamsError, match="^demo.n=0 must be >= 1$"):
            Demo(n=0)
        with pytest.raises(ParamsError, match=r"demo: missing key\(s\) extra"):
            @dataclasses.dataclass(frozen=True, kw_only=True)
            @params_section("demo")
            class Bigger:
                n: int
                kind: str
                extra: int
    finally:
        config._packaged.cache_clear()


def test_init_writes_the_packaged_files(tmp_path):
    res = _cli("init", "proj", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "proj" / "params.yaml").read_bytes() == (ROOT / "params.yaml").read_bytes()
    assert (tmp_path / "proj" / "dvc.yaml").read_bytes() == (ROOT / "dvc.yaml").read_bytes()
    (tmp_path / "proj" / "params.yaml").write_text("mine: {}\n")
    res = _cli("init", "proj", cwd=tmp_path)
    assert res.returncode == 1 and "already there (pass --force to overwrite)" in res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert (tmp_path / "proj" / "params.yaml").read_text() == "mine: {}\n"
    assert _cli("init", "proj", "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / "proj" / "params.yaml").read_bytes() == (ROOT / "params.yaml").read_bytes()
    with pytest.raises(PipelineError, match="already there"):
        config.init_project(tmp_path / "proj")


def test_a_command_without_params_yaml_says_how_to_get_one(tmp_path):
    res = _cli("corpus", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert res.returncode == 1 and not (tmp_path / "out").exists()
    assert res.stderr.strip() == (f"error: {tmp_path / 'params.yaml'}: no params.yaml here; run `pipeline init` "
                                  "to write the default params.yaml and dvc.yaml, or pass --params FILE")
    res = _cli("corpus", "--params", "no/such/file.yaml", cwd=tmp_path)
    assert res.returncode == 1 and res.stderr.strip() == "error: no/such/file.yaml: no such params file"
