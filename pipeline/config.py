"""Typed params: one params.yaml section -> one frozen dataclass.

``params.yaml`` is the only place a default value lives. A ``Params`` dataclass declares the fields,
their types and their bounds (``Annotated[int, Range(1)]``, ``Literal[...]``) and takes its defaults
from the packaged copy of params.yaml (``pipeline/defaults/params.yaml``, byte-identical to the
repository's: ``tests/test_config.py``) through ``@params_section``; a run reads the user's file
(``load_section``), where a missing or unknown key, a wrong type, a value out of bounds or a missing
file is a ``ParamsError`` that names it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from pipeline.errors import ParamsError, PipelineError

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")
#: the packaged copies of the repository's params.yaml and dvc.yaml (what ``pipeline init`` writes).
#: Refresh them after editing the repository's files: cp params.yaml dvc.yaml pipeline/defaults/
DEFAULTS_DIR = Path(__file__).resolve().parent / "defaults"
PACKAGED_PARAMS = DEFAULTS_DIR / "params.yaml"
PACKAGED_DVC = DEFAULTS_DIR / "dvc.yaml"


# ---------------------------------------------------------------------------------------------
# bounds and choices, declared once per field


@dataclasses.dataclass(frozen=True)
class Range:
    """``lo <= value <= hi`` (``lo_open``/``hi_open``: strict); ``None``: unbounded on that side."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""  # appended to the message in parentheses

    def describe(self) -> str:
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            if not self.lo_open and not self.hi_open:
                return f"between {lo} and {hi}"
            return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if lo is not None:
            return f"{'>' if self.lo_open else '>='} {lo}"
        if hi is not None:
            return f"{'<' if self.hi_open else '<='} {hi}"
        return "any number"

    def holds(self, value: Any) -> bool:
        if self.lo is not None and not (value > self.lo if self.lo_open else value >= self.lo):
            return False
        if self.hi is not None and not (value < self.hi if self.hi_open else value <= self.hi):
            return False
        return True

    def check(self, where: str, value: Any, error: type[Exception] = ParamsError) -> None:
        if not self.holds(value):
            note = f" ({self.note})" if self.note else ""
            raise error(f"{where}={value!r} must be {self.describe()}{note}")


PositiveInt = Annotated[int, Range(1)]
NonNegativeInt = Annotated[int, Range(0)]
PositiveFloat = Annotated[float, Range(0, lo_open=True)]
NonNegativeFloat = Annotated[float, Range(0)]
Fraction = Annotated[float, Range(0, 1)]  # [0, 1]


def _hints(cls: type, extras: bool) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=extras)


_hints_cached = functools.lru_cache(maxsize=None)(_hints)


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _is_a(value: Any, tp: type) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if tp is float else isinstance(value, tp)


def check_fields(obj: Any, where: str) -> None:
    """Check every field's declared bounds and choices, recursing into nested params (``where``: the
    section path that prefixes the messages, e.g. ``build_vocab.remi``)."""
    hints = _hints_cached(type(obj), True)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{where}.{f.name}"
        tp = hints[f.name]
        meta: tuple = ()
        if get_origin(tp) is Annotated:
            tp, *rest = get_args(tp)
            meta = tuple(rest)
        if dataclasses.is_dataclass(tp) and dataclasses.is_dataclass(value):
            check_fields(value, name)
            continue
        if tp in _TYPE_NAMES and not _is_a(value, tp):
            raise ParamsError(f"{name}={value!r} must be {_TYPE_NAMES[tp]}")
        if get_origin(tp) is Literal and value not in get_args(tp):
            raise ParamsError(f"{name}={value!r} must be one of {', '.join(map(str, get_args(tp)))}")
        for m in meta:
            if isinstance(m, Range):
                m.check(name, value)


def check_bounds(obj: Any, error: type[Exception] = ParamsError) -> None:
    """Check the declared bounds (``Range``) and choices (``Literal``) of a config built in code (a model's
    or a tokenizer's, from its ``__post_init__``), not the types; ``error``: the exception to raise, with
    ``<field>=<value> must be ...``."""
    hints = _hints_cached(type(obj), True)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        tp = hints[f.name]
        meta: tuple = ()
        if get_origin(tp) is Annotated:
            tp, *rest = get_args(tp)
            meta = tuple(rest)
        if get_origin(tp) is Literal and value not in get_args(tp):
            raise error(f"{f.name}={value!r} must be one of {', '.join(map(str, get_args(tp)))}")
        for m in meta:
            if isinstance(m, Range):
                m.check(f.name, value, error)


# ---------------------------------------------------------------------------------------------
# reading params files


def _coerce(section: str, name: str, value: Any, tp: Any) -> Any:
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"{section}.{name}={value!r} must be a mapping")
        return from_dict(tp, value, section=f"{section}.{name}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ParamsError(f"{section}.{name}={value!r} must be one of {', '.join(map(str, allowed))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{section}.{name}={value!r} must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{section}.{name}={value!r} must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{section}.{name}={value!r} must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{section}.{name}={value!r} must be a string")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{section}.{name}={value!r} must be a list")
        (inner, *_rest) = get_args(tp) or (Any,)
        return tuple(_coerce(section, name, v, inner) for v in value)
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, *, section: str) -> T:
    """Build ``cls`` from a mapping that names every field: unknown and missing keys are errors, as are
    wrong types (and, through the dataclass, values out of bounds)."""
    if data is None:
        raise ParamsError(f"{section}: missing section")
    if not isinstance(data, dict):
        raise ParamsError(f"{section}={data!r} must be a mapping")
    hints = get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(f"{section}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    kwargs = {k: _coerce(section, k, v, hints[k]) for k, v in data.items()}  # nested sections first
    missing = [k for k in fields if k not in data]
    if missing:
        raise ParamsError(f"{section}: missing key(s) {', '.join(missing)} (every key is required: "
                          f"`pipeline init` writes a complete params.yaml)")
    return cls(**kwargs)


#: libyaml's safe loader when PyYAML was built with it (the same documents, ~10x faster to load)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_params(path: Path | str = DEFAULT_PARAMS) -> dict[str, Any]:
    """The whole params file as a mapping of sections; a missing, unreadable or malformed file is a
    one-line ``ParamsError`` that names the path."""
    path = Path(path)
    if not path.is_file():
        if path == DEFAULT_PARAMS:
            raise ParamsError(f"{Path.cwd() / path}: no params.yaml here; run `pipeline init` to write the "
                              "default params.yaml and dvc.yaml, or pass --params FILE")
        raise ParamsError(f"{path}: {'not a file' if path.exists() else 'no such params file'}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError(f"{path}: cannot read the params file: {exc.__class__.__name__}: {exc}") from None
    return _parse(text, path)


def yaml_error(exc: Exception, path: Path | str | None = None, first_line: int = 1) -> str:
    """A YAML parse error as one line, the way compilers write one: ``params.yaml:12:5: mapping values
    are not allowed here`` (1-based line and column; without ``path``: ``line 12, column 5: ...``;
    ``first_line``: the file's line where the parsed text starts). Where the parser names where the
    construct began (an unclosed bracket or quote), that follows in parentheses."""
    mark = getattr(exc, "problem_mark", None)
    problem = " ".join(str(getattr(exc, "problem", None) or exc.__class__.__name__).split())
    if mark is None:
        return f"{path}: not valid YAML: {problem}" if path is not None else f"not valid YAML: {problem}"
    where = (f"{path}:{mark.line + first_line}:{mark.column + 1}" if path is not None
             else f"line {mark.line + first_line}, column {mark.column + 1}")
    line = f"{where}: {problem}"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None and (start.line, start.column) != (mark.line, mark.column):
        line += f" ({' '.join(str(context).split())} at {start.line + first_line}:{start.column + 1})"
    return line


def _parse(text: str, path: Path) -> dict[str, Any]:
    try:
        raw = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise ParamsError(yaml_error(exc, path)) from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of sections")
    return raw


@functools.lru_cache(maxsize=1)
def _packaged() -> dict[str, Any]:
    return read_params(PACKAGED_PARAMS)


def _section_doc(doc: dict[str, Any], section: str, path: Path | str) -> Any:
    node: Any = doc
    for part in section.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"{path}: no section {section!r}")
        node = node[part]
    return node


def load_section(cls: type[T], section: str, path: Path | str = DEFAULT_PARAMS) -> T:
    """Load ``section`` of a params file into ``cls``: the file and every key of the section must exist."""
    return from_dict(cls, _section_doc(read_params(path), section, path), section=section)


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, mapping by mapping (a deep copy; ``base`` is not changed)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def section_doc(section: str, path: Path | str | None = None, **overrides: Any) -> dict[str, Any]:
    """The mapping of ``section`` in a params file (``None``: the packaged params.yaml) with
    ``overrides`` merged in (nested sections as dicts): a complete section to write or to load."""
    doc = _packaged() if path is None else read_params(path)
    return merged(_section_doc(doc, section, path or PACKAGED_PARAMS), overrides)


def load_params(cls: type[T], path: Path | str | None = None, **overrides: Any) -> T:
    """``cls``'s section of a params file (``None``: the packaged params.yaml) with ``overrides`` merged
    in: ``load_params(lstm.Params, train={"epochs": 1})``. Tests build their params this way or as
    ``Params(field=...)``, never from a second set of defaults."""
    section = cls.__params_section__  # type: ignore[attr-defined]
    return from_dict(cls, section_doc(section, path, **overrides), section=section)


# ---------------------------------------------------------------------------------------------
# the dataclasses


def params_section(section: str) -> Any:
    """Class decorator, applied *under* ``@dataclass``: the fields' defaults are the values of
    ``section`` (a dotted path) in the packaged params.yaml, so ``Params()`` is that file's section
    and no default is typed in the code. A top-level section (no dot) also checks every field's
    declared bounds and choices, nested params included, on construction (nested params classes are
    checked through the section that holds them, so their messages name where they sit)."""

    def wrap(cls: type[T]) -> type[T]:
        doc = _section_doc(_packaged(), section, PACKAGED_PARAMS)
        hints = {k: v for k, v in get_type_hints(cls).items() if get_origin(v) is not ClassVar}
        own = cls.__dict__.get("__annotations__")
        if own is None:
            own = {}
            cls.__annotations__ = own
        inherited = {}
        for base in reversed(cls.__mro__[1:]):
            inherited.update(getattr(base, "__annotations__", {}) if "__annotations__" in base.__dict__ else {})
        unknown = sorted(set(doc) - set(hints))
        missing = [name for name in hints if name not in doc]
        if unknown or missing:
            raise ParamsError(f"{PACKAGED_PARAMS}: {section}: " + "; ".join(
                ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
                + ([f"missing key(s) {', '.join(missing)}"] if missing else [])))
        for name in hints:
            if name not in own:  # an inherited field: redeclare it so the default below is its own
                own[name] = inherited[name]
            value = _coerce(section, name, doc[name], hints[name])
            setattr(cls, name, value)
        cls.__params_section__ = section  # type: ignore[attr-defined]
        if "." not in section:
            post = cls.__dict__.get("__post_init__")

            def __post_init__(self) -> None:
                check_fields(self, section)
                if post is not None:
                    post(self)

            cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
        return cls

    return wrap


def init_project(directory: Path | str, *, force: bool = False) -> list[Path]:
    """Write the packaged params.yaml and dvc.yaml into ``directory`` (``pipeline init``); an existing
    file is an error unless ``force``. Returns the paths written."""
    directory = Path(directory)
    pairs = [(src, directory / src.name) for src in (PACKAGED_PARAMS, PACKAGED_DVC)]
    existing = [str(dst) for _src, dst in pairs if dst.exists()]
    if existing and not force:
        raise PipelineError(f"{', '.join(existing)}: already there (pass --force to overwrite)")
    directory.mkdir(parents=True, exist_ok=True)
    for src, dst in pairs:
        dst.write_bytes(src.read_bytes())
    return [dst for _src, dst in pairs]


def params_digest(params: Any) -> str:
    """A short, stable digest of a params dataclass, or of its ``dataclasses.asdict`` record (for
    resumable shards and dataset cards)."""
    record = params if isinstance(params, dict) else dataclasses.asdict(params)
    blob = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
