"""Dataset cards: the ``README.md`` that each data stage writes beside its ``summary.json``.

A card is Hugging Face's dataset card (https://huggingface.co/docs/hub/datasets-cards): a YAML
header (licence, task categories, size category from the number of songs, tags, and ``configs``
whose ``data_files`` globs, relative to the folder, name the Parquet files, so that
``datasets.load_dataset(folder)`` reads them), then Markdown: what the folder holds, where it comes
from (stage, params digest, inputs digest), the Parquet columns with their types and meanings
(from the stage's ``schema.json`` document), the counts of ``summary.json`` and the citations.

It is a pure function of what the stage knows (params, schema, summary): no time, host or worker
count, so the same inputs and params give the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

CARD_NAME = "README.md"

LMD_LICENSE = "cc-by-4.0"
LICENSE_NOTE = ("cc-by-4.0 (Lakh MIDI Dataset); check your own sources' licences: a corpus other than the "
                "Lakh MIDI Dataset carries the licences of its own files, which this pipeline cannot know")

LMD_BIBTEX = """@phdthesis{raffel2016learning,
  title  = {Learning-Based Methods for Comparing Sequences, with Applications to Audio-to-{MIDI} Alignment and Matching},
  author = {Raffel, Colin},
  school = {Columbia University},
  year   = {2016}
}"""

LPD_BIBTEX = """@inproceedings{dong2018musegan,
  title     = {{MuseGAN}: Multi-track Sequential Generative Adversarial Networks for Symbolic Music Generation and Accompaniment},
  author    = {Dong, Hao-Wen and Hsiao, Wen-Yi and Yang, Li-Chia and Yang, Yi-Hsuan},
  booktitle = {Proceedings of the 32nd AAAI Conference on Artificial Intelligence (AAAI)},
  year      = {2018}
}"""


def size_category(n: int) -> str:
    """Hugging Face's ``size_categories`` value for ``n`` items (``n<1K``, ``1K<n<10K``...)."""
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    bounds = [(10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
              (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B")]
    for bound, name in bounds:
        if n < bound:
            return name
    return "n>1T" if n >= 10**12 else "1B<n<10B" if n < 10**10 else "10B<n<100B" if n < 10**11 else "100B<n<1T"


@dataclasses.dataclass(frozen=True)
class Config:
    """One ``configs`` entry: ``data_files`` maps a split name to a glob relative to the folder."""

    name: str
    data_files: dict[str, str]
    default: bool = False
    description: str = ""


def header(*, license: str, task_categories: Sequence[str], n_songs: int, tags: Sequence[str],
           configs: Sequence[Config], pretty_name: str) -> dict:
    """The YAML header of a card, as a dict (keys in Hugging Face's usual order)."""
    cfgs = []
    for c in configs:
        entry: dict[str, Any] = {"config_name": c.name,
                                 "data_files": [{"split": s, "path": p} for s, p in c.data_files.items()]}
        if c.default:
            entry["default"] = True
        cfgs.append(entry)
    return {"license": license, "pretty_name": pretty_name, "task_categories": list(task_categories),
            "size_categories": [size_category(n_songs)], "tags": list(tags), "configs": cfgs}


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
    return ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(esc[0])] + ["| " + " | ".join(r) + " |"
                                                                           for r in esc[1:]]


def schema_lines(doc: dict, *, file_glob: str) -> list[str]:
    """The Parquet columns of a ``schema.json`` document (``dtypes.parquet`` and ``fields``) as a
    Markdown table, plus the manifest's columns where the document has them."""
    dtypes = (doc.get("dtypes") or {}).get("parquet") or {}
    fields = doc.get("fields") or {}
    lines = [f"`{file_glob}`, shard kind `{doc.get('kind')}` version {doc.get('schema_version')} "
             "(the same in each file's key-value metadata, `lakh_pipeline.*`):", ""]
    lines += _table([("column", "type", "meaning")] + [(f"`{n}`", f"`{t}`", fields.get(n, "")) for n, t in dtypes.items()])
    man = doc.get("manifest")
    if isinstance(man, dict) and man.get("dtypes"):
        lines += ["", f"`manifest.parquet` ({man.get('row', 'one row per input')}): "
                  + ", ".join(f"`{n}` {t}" for n, t in man["dtypes"].items())]
    return lines


def render(*, title: str, about: str, stage: str, params: Any, n_songs: int, task_categories: Sequence[str],
           tags: Sequence[str], configs: Sequence[Config], files: Sequence[tuple[str, str]], schema: dict,
           schema_glob: str, summary: dict, inputs: str, inputs_digest: str | None = None,
           license: str = LMD_LICENSE, license_note: str = LICENSE_NOTE, cite_lmd: bool = True,
           cite_lpd: bool = True) -> str:
    """The card's text. ``params``: the stage's params dataclass or its ``asdict`` record (its digest
    and values are shown);
    ``files``: (path or glob, what it holds); ``schema``: the ``schema.json`` document of the
    Parquet shards; ``inputs``: what the stage read; ``inputs_digest``: a digest of them, if any."""
    import yaml

    from pipeline.config import params_digest

    head = yaml.safe_dump(header(license=license, task_categories=task_categories, n_songs=n_songs, tags=tags,
                                 configs=configs, pretty_name=title),
                          sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
    record = params if isinstance(params, dict) else dataclasses.asdict(params)
    values = json.loads(json.dumps(record, sort_keys=True, default=str))  # paths and tuples as YAML can hold them
    lines = ["---", head.rstrip("\n"), "---", "", f"# {title}", "", about, "",
             "Written by lakh-pipeline's `" + stage + "` stage; do not edit (the next run rewrites it).", "",
             "## Files", ""]
    lines += [f"- `{path}`: {what}" for path, what in files]
    lines += ["", "Load the Parquet files with `datasets.load_dataset(\"<this folder>\")` (the configs of the "
              "header), or with `pyarrow.parquet` / `pandas.read_parquet`:", ""]
    lines += [f"- config `{c.name}`{' (default)' if c.default else ''}: {c.description}" for c in configs]
    lines += ["", "## Provenance", "",
              f"- stage: `{stage}` (`dvc repro {stage}`), params section `{stage}`",
              f"- params digest: `{params_digest(params)}` (`pipeline.config.params_digest`)",
              f"- inputs: {inputs}"]
    if inputs_digest is not None:
        lines.append(f"- inputs digest: `{inputs_digest}`")
    lines += ["", "```yaml", yaml.safe_dump({stage: values}, sort_keys=True, default_flow_style=False,
                                            width=1000).rstrip("\n"), "```",
              "", "## Schema", ""]
    lines += schema_lines(schema, file_glob=schema_glob)
    lines += ["", "## Counts", "", "From `summary.json`:", "", "```json",
              json.dumps(summary, indent=2, sort_keys=True), "```",
              "", "## Licence", "", license_note, "",
              "## Citation", ""]
    if cite_lmd:
        lines += ["The Lakh MIDI Dataset:", "", "```bibtex", LMD_BIBTEX, "```"]
    if cite_lpd:
        lines += ["", "The Lakh Pianoroll Dataset (LPD) and its conventions:", "", "```bibtex", LPD_BIBTEX, "```"]
    if not (cite_lmd or cite_lpd):
        lines.append("Cite the sources of your own corpus.")
    return "\n".join(lines) + "\n"


def write_card(folder: str | Path, text: str) -> Path:
    """Write ``text`` as ``folder/README.md``, atomically."""
    from pipeline.files import atomic_write_bytes

    path = Path(folder) / CARD_NAME
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def front_matter(text: str) -> dict:
    """The YAML header of a card's text, parsed (for tests and ``pipeline inspect``)."""
    import yaml

    if not text.startswith("---\n"):
        raise ValueError("a dataset card starts with a '---' line")
    end = text.index("\n---\n", 4)
    return yaml.safe_load(text[4:end])


class Digest:
    """A running sha256 of (source, id) pairs, in the order the stage writes its manifest rows: the
    inputs digest of a card (which files, with what bytes: ``id`` is the MD5 of a file's bytes)."""

    def __init__(self) -> None:
        import hashlib

        self._h = hashlib.sha256()

    def update(self, rows) -> None:
        for r in rows:
            self._h.update(f"{r.get('source')}\0{r.get('id')}\n".encode())

    def hexdigest(self) -> str:
        return self._h.hexdigest()[:16]
