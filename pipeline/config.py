"""Typed params: one params.yaml section -> one frozen dataclass; unknown keys are errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints, Literal

import yaml

from pipeline.errors import ParamsError

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")


def _coerce(section: str, name: str, value: Any, tp: Any) -> Any:
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
    """Build ``cls`` from a mapping, refusing unknown keys and wrong types."""
    data = dict(data or {})
    hints = get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ParamsError(f"{section}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    kwargs = {k: _coerce(section, k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


#: libyaml's safe loader when PyYAML was built with it (the same documents, ~10x faster to load)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_section(cls: type[T], section: str, path: Path | str = DEFAULT_PARAMS) -> T:
    """Load ``section`` of a params file into ``cls`` (defaults when the file or section is absent)."""
    path = Path(path)
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = yaml.load(path.read_text(), Loader=_SAFE_LOADER) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or exc.__class__.__name__
            raise ParamsError(f"{path}: not valid YAML{where}: {problem}") from None
        if not isinstance(raw, dict):
            raise ParamsError(f"{path}: the top level must be a mapping of sections")
    return from_dict(cls, raw.get(section), section=section)


def params_digest(params: Any) -> str:
    """A short, stable digest of a params dataclass (for resumable shards)."""
    blob = json.dumps(dataclasses.asdict(params), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
