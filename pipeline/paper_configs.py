"""The papers' model sizes, one YAML file per family, laid over a params.yaml.

``pipeline/defaults/paper/<family>.yaml`` holds only the keys that differ from the CPU-small
params.yaml, in the same sections, with the source of every size in its comments (``lstm``:
Skúli's Keras recipe; ``musegan``: Dong et al. 2018 and the official v1 code; ``jukebox``:
openai/jukebox's hparams and training commands, VQ-VAE included). Two ways to use one:

- ``merged_params(family, base)``: the whole params document with the family's sizes on top
  (``pipeline paper-config FAMILY --out paper.yaml``, then ``pipeline train ... --params paper.yaml``);
- ``set_args(family)``: the same overrides as ``-S key=value`` arguments of ``dvc exp run``, so DVC
  records the experiment's params (``pipeline paper-config FAMILY --dvc-args``).

Nothing here checks the values against the stages' typed params (a library module does not import
the stages); ``pipeline paper-config`` and ``tests/test_paper_configs.py`` do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.config import DEFAULTS_DIR, merged, read_params
from pipeline.errors import ParamsError

PAPER_DIR = DEFAULTS_DIR / "paper"

#: the families with a paper-scale config (``jukebox`` carries the VQ-VAE and the audio it needs)
FAMILIES = ("lstm", "musegan", "jukebox")


def config_path(family: str) -> Path:
    if family not in FAMILIES:
        raise ParamsError(f"no paper-scale config for {family!r}; one of {', '.join(FAMILIES)}")
    return PAPER_DIR / f"{family}.yaml"


def overrides(family: str) -> dict[str, Any]:
    """The family's paper-scale keys, as nested sections (``{"musegan": {"model": {...}}, ...}``)."""
    return read_params(config_path(family))


def merged_params(family: str, base: Path | str) -> dict[str, Any]:
    """The params document ``base`` with the family's paper-scale keys laid on top; a key the base
    file does not have is a ``ParamsError`` (a config must only change what params.yaml defines)."""
    over = overrides(family)  # an unknown family first: the one line that names the choices
    doc = read_params(base)
    for key in _flat(over):
        node: Any = doc
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ParamsError(f"{config_path(family)}: {key} is not a key of {base}")
            node = node[part]
    return merged(doc, over)


def _flat(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _value(v: Any) -> str:
    """A value as DVC's ``-S key=value`` parses it back (Hydra's override grammar: YAML-like
    scalars and ``[a,b]`` lists; strings quoted when they could read as something else)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    s = str(v)
    return s if s.replace("_", "").isalnum() and not s[0].isdigit() and s not in ("true", "false", "null") \
        else json.dumps(s)


def set_args(family: str) -> list[str]:
    """``["-S", "lstm.model.hidden=512", ...]``: the family's config as ``dvc exp run`` arguments."""
    args: list[str] = []
    for key, v in _flat(overrides(family)).items():
        args += ["-S", f"{key}={_value(v)}"]
    return args
