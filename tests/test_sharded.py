"""The sharded-stage engine (pipeline/sharded.py) on its own: tasks, markers, the per-file rows,
duplicates, the stale sweep and the tally. The stages' tests run it end to end."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pipeline.errors import MidiError, StageError
from pipeline.sharded import (FileRows, Markers, Tally, Task, attempt, final_rows, find_duplicates, make_tasks,
                              mark_duplicate, remove_stale, task_number)


@dataclass(frozen=True)
class Item:
    key: str
    msd_id: str | None = None


class Folder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def items(self):
        return [Item(p.relative_to(self.root).as_posix()) for p in sorted(self.root.rglob("*")) if p.is_file()]

    def path_of(self, item):
        return self.root / item.key


def _folder(tmp_path: Path, files: dict[str, bytes]) -> Folder:
    root = tmp_path / "in"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return Folder(root)


def test_tasks_cut_the_inputs_in_order(tmp_path):
    src = _folder(tmp_path, {f"f{i}.mid": bytes([i]) for i in range(5)})
    tasks = make_tasks(src.items(), src, tmp_path / "out", shard_size=2, max_file_bytes=10, job="j")
    assert [t.keys for t in tasks] == [("f0.mid", "f1.mid"), ("f2.mid", "f3.mid"), ("f4.mid",)]
    assert [t.index for t in tasks] == [0, 1, 2] and {t.job for t in tasks} == {"j"}
    assert tasks[2].read(0) == (b"\x04", None)
    assert tasks[2].inputs_digest() != replace(tasks[2], msd_ids=("TR",)).inputs_digest()


def test_file_rows_fill_in_unreadable_files_and_repeats(tmp_path):
    src = _folder(tmp_path, {"a.mid": b"song", "b.mid": b"x" * 50, "c.mid": b"song", "d.mid": b"other"})
    task = make_tasks(src.items(), src, tmp_path, shard_size=10, max_file_bytes=10)[0]
    files = FileRows(task, extra={"warnings": []})
    got = [(i, raw) for i, raw, _ in files]
    assert got == [(0, b"song"), (3, b"other")]
    a, b, c, d = files.rows
    assert a["id"] == hashlib.md5(b"song").hexdigest() and a["size_bytes"] == 4 and a["status"] is None
    assert (b["status"], b["code"], b["id"]) == ("error", "input.too_large", None)
    assert (c["status"], c["code"], c["message"]) == ("skipped", "skip.duplicate", "same bytes as a.mid")
    assert a["warnings"] == [] and a["warnings"] is not d["warnings"]  # a fresh list per row
    files = FileRows(task, keep_bytes=False)
    assert [raw for _, raw, _ in files] == [None, None] and files.rows[3]["id"] == hashlib.md5(b"other").hexdigest()


def test_attempt_turns_a_bad_file_into_its_row():
    def bad(code):
        raise MidiError(code, "k", "why")

    row = {}
    assert attempt(row, bad, "skip.no_notes", key="k") is None and row["status"] == "skipped"
    assert attempt(row, bad, "midi.truncated", key="k") is None
    assert (row["status"], row["code"], row["message"]) == ("error", "midi.truncated", "why")
    assert attempt(row, lambda: 1 / 0, key="k") is None
    assert (row["code"], row["message"]) == ("internal.bug", "ZeroDivisionError: division by zero")
    with pytest.raises(OSError):
        attempt(row, lambda: open("/nonexistent/x"), key="k", reraise=(OSError,))
    assert attempt({}, lambda x: x + 1, 1, key="k", time_limit=False) == 2


def test_markers_match_params_inputs_checks_and_outputs(tmp_path):
    src = _folder(tmp_path, {"a.mid": b"a", "b.mid": b"b"})
    out = tmp_path / "out"
    task = make_tasks(src.items(), src, out, shard_size=2, max_file_bytes=10)[0]
    m = Markers(out, "task", params="p1", checks={"settings": "s"})
    assert m.read(task) is None
    m.write(task, {"rows": [{"source": "a.mid"}]})
    doc = json.loads((out / ".state" / "task-00000.json").read_text())
    assert doc == {"params": "p1", "settings": "s", "inputs": task.inputs_digest(), "rows": [{"source": "a.mid"}]}
    assert m.read(task)["rows"] == [{"source": "a.mid"}]
    assert Markers(out, "task", params="p2", checks={"settings": "s"}).read(task) is None  # other params
    assert Markers(out, "task", params="p1", checks={"settings": "t"}).read(task) is None  # other settings
    assert m.read(replace(task, keys=("a.mid", "c.mid"))) is None  # other inputs
    assert m.read(task, lambda data: [out / "missing.parquet"]) is None  # an output gone
    assert Markers(out, "task", params=lambda t: f"p{t.index + 1}", checks={"settings": "s"}).read(task)
    (out / ".state" / "task-00000.json").write_text("{half")
    assert m.read(task) is None
    with pytest.raises(StageError, match="marker of a finished shard is missing or damaged"):
        m.finished(0)


def test_sweep_removes_markers_and_shards_of_a_larger_run(tmp_path):
    state = tmp_path / ".state"
    state.mkdir()
    for name in ("task-00000.json", "task-00001.json", "task-00002.json", "remi-count-00003.json"):
        (state / name).write_text("{}")
    Markers(tmp_path, "task", params="p").sweep(2)
    assert sorted(p.name for p in state.iterdir()) == ["remi-count-00003.json", "task-00000.json", "task-00001.json"]
    assert task_number(Path("lpd5-00012.parquet")) == 12 and task_number(Path("remi-count-00003.json")) == 3
    remove_stale(state, "remi-*.json", lambda p: task_number(p) < 3)
    assert not (state / "remi-count-00003.json").exists()
    remove_stale(tmp_path / "absent", "*", lambda p: False)  # nothing to sweep


def _finished_rows(tmp_path, shards: list[list[tuple[str, str | None, str]]]):
    """Markers of finished tasks whose rows are ``(source, id, status)``."""
    out = tmp_path / "out"
    markers = Markers(out, "shard", params="p")
    tasks = []
    for k, rows in enumerate(shards):
        task = Task(index=k, out=str(out), keys=tuple(r[0] for r in rows), msd_ids=(None,) * len(rows),
                    paths=(None,) * len(rows), max_file_bytes=1)
        markers.write(task, {"rows": [{"source": s, "id": i, "msd_id": None, "size_bytes": 1, "status": st,
                                       "code": "skip.duplicate" if st == "skipped" else None, "message": None,
                                       "shard": k if st == "ok" else None, "n_clips": 3 if st == "ok" else 0}
                                      for s, i, st in rows]})
        tasks.append(task)
    return markers, tasks


def test_duplicates_point_at_the_first_copy_in_input_order(tmp_path):
    # a in task 0; its copies b (converted in task 1) and c (a repeat inside task 1); e errored, f is its copy
    markers, tasks = _finished_rows(tmp_path, [
        [("a", "A", "ok"), ("e", "E", "error")],
        [("b", "A", "ok"), ("c", "A", "skipped"), ("d", "D", "ok"), ("f", "E", "ok"), ("g", None, "error")],
    ])
    seen = []
    dups = find_duplicates(markers, tasks, on_first=lambda r: seen.append(r["source"]))
    assert seen == ["a", "e", "d"]
    assert dups.first == {1: {0: "a", 1: "a", 3: "e"}}
    assert [(k, i, r["source"]) for k, i, r in dups.converted] == [(1, 0, "b"), (1, 3, "f")]
    rows = {r["source"]: r for _, chunk in final_rows(markers, tasks, dups, reset={"n_clips": 0}) for r in chunk}
    for s, first in (("b", "a"), ("c", "a"), ("f", "e")):
        assert rows[s] == {"source": s, "id": rows[s]["id"], "msd_id": None, "size_bytes": 1, "status": "skipped",
                           "code": "skip.duplicate", "message": f"same bytes as {first}", "shard": None, "n_clips": 0}
    assert rows["d"]["status"] == "ok" and rows["d"]["n_clips"] == 3


def test_mark_duplicate_keeps_only_the_base_fields():
    row = {"source": "s", "id": "i", "msd_id": "m", "size_bytes": 3, "status": "ok", "n_notes": 5, "repairs": ["x"]}
    mark_duplicate(row, "first", {"repairs": []})
    assert row == {"source": "s", "id": "i", "msd_id": "m", "size_bytes": 3, "status": "skipped", "n_notes": None,
                   "repairs": [], "code": "skip.duplicate", "message": "same bytes as first"}


def test_tally_counts_statuses_codes_and_coded_warnings():
    t = Tally()
    t.add([{"status": "ok", "code": None, "warnings": ["midi.meta: x", "a sentence: no code"]},
           {"status": "error", "code": "midi.truncated"}])
    t.add([{"status": "skipped", "code": "skip.duplicate", "warnings": []}])
    assert t.record() == {"files": 3, "status": {"ok": 1, "recovered": 0, "skipped": 1, "error": 1},
                          "codes": {"midi.truncated": 1, "skip.duplicate": 1}, "warnings": {"midi.meta": 1}}
    assert "warnings" not in t.record(warnings=False)
