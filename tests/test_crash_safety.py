"""Crash safety of every parallel stage, through the real CLI in a subprocess:

- ``kill -9`` of the whole run (its process group) at a seeded random moment, then a rerun: the
  outputs are byte-identical to an uninterrupted run, and no temporary file is left;
- while the killed run writes, a reader scanning the output folder never finds a partial file
  under a final name (every writer writes a temporary name, then ``os.replace``);
- two runs into one folder at once: the second is refused with one line naming the first; the
  lock of a killed run does not block the next one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from stage_support import (STAGE_PARAMS, STAGES, check_complete, cli, cli_env, is_temporary, make_corpus, markers,
                           n_tasks, tree_digest, write_params)

N_SONGS = 24
N_FILES = N_SONGS + 3  # the duplicate, the HTML page, the truncated song


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("songs"), N_SONGS)


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    return write_params(tmp_path_factory.mktemp("params") / "params.yaml")


def _run_cli(stage, corpus, out, params_file) -> subprocess.CompletedProcess:
    return subprocess.run(cli(stage, corpus, out, params_file), capture_output=True, text=True, env=cli_env(),
                          timeout=300)


class Scanner(threading.Thread):
    """Reads every file under its final name, over and over, while a run writes the folder."""

    def __init__(self, out: Path) -> None:
        super().__init__(daemon=True)
        self.out = out
        self.stop = threading.Event()
        self.partial: list[str] = []
        self.checked = 0
        self.temporaries_seen = 0

    def run(self) -> None:
        while not self.stop.is_set():
            for folder, _, names in os.walk(self.out):
                for name in names:
                    if is_temporary(name):
                        self.temporaries_seen += 1
                    elif name != ".lock":
                        why = check_complete(Path(folder) / name)
                        self.checked += 1
                        if why:
                            self.partial.append(why)
            time.sleep(0.002)  # leave the GIL to the test's own polling


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGE_PARAMS)
def test_kill_9_then_rerun_gives_identical_outputs(stage, corpus, params_file, tmp_path):
    reference = tmp_path / "reference"
    res = _run_cli(stage, corpus, reference, params_file)
    assert res.returncode == 0, res.stderr
    expected = tree_digest(reference)

    rng = np.random.default_rng([2026, STAGES.index(stage)])
    total = n_tasks(stage, N_FILES)
    kill_after = int(rng.integers(1, total // 2 + 1))  # finished tasks before the kill...
    delay = float(rng.uniform(0.0, 0.05))  # ...and a little more
    out = tmp_path / "out"
    scanner = Scanner(out)
    proc = subprocess.Popen(cli(stage, corpus, out, params_file), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=cli_env(), start_new_session=True)
    scanner.start()
    try:
        deadline = time.monotonic() + 240
        while len(markers(stage, out)) < kill_after:
            assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        time.sleep(delay)
        _kill_while_writing(proc, stage, out, patience=3 if stage == "render_audio" else 1)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        time.sleep(0.2)  # the scanner goes on over what the killed run left
    finally:
        scanner.stop.set()
        scanner.join()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    assert scanner.partial == []
    assert scanner.checked > 0
    assert len(markers(stage, out)) >= kill_after
    if stage == "render_audio":  # its shard parts stay open under temporary names while a task writes clips
        assert _temporaries(out), "the kill left no temporary file to sweep"
    assert (out / ".lock").exists()  # the dead run's lock file, which must not block the rerun

    res = _run_cli(stage, corpus, out, params_file)
    assert res.returncode == 0, res.stderr
    got = tree_digest(out)
    assert not [p for p in got if is_temporary(Path(p).name)]
    assert got == expected


def _temporaries(out: Path) -> list[str]:
    return [name for _, _, names in os.walk(out) for name in names if is_temporary(name)]


def _kill_while_writing(proc: subprocess.Popen, stage: str, out: Path, *, patience: int) -> None:
    """SIGKILL the run's process group while it has a file half-written (seen under its temporary
    name, and still there once the group is stopped), or after ``patience`` more finished tasks."""
    total = n_tasks(stage, N_FILES) * (2 if stage == "build_vocab" else 1)  # build_vocab: two passes
    give_up = min(len(markers(stage, out)) + patience, total)
    while True:
        assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read().decode()}"
        if _temporaries(out):
            os.killpg(proc.pid, signal.SIGSTOP)
            if _temporaries(out):
                break
            os.killpg(proc.pid, signal.SIGCONT)
        elif len(markers(stage, out)) >= give_up:
            break
    os.killpg(proc.pid, signal.SIGKILL)


def _wait_for_marker(stage: str, out: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not markers(stage, out):
        assert proc.poll() is None, "the first run ended too soon"
        assert time.monotonic() < deadline
        time.sleep(0.005)


@pytest.mark.slow
def test_second_run_into_the_same_folder_is_refused(corpus, params_file, tmp_path):
    stage = "build_lpd"
    out = tmp_path / "out"
    first = subprocess.Popen(cli(stage, corpus, out, params_file), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=cli_env(), start_new_session=True, text=True)
    try:
        _wait_for_marker(stage, out, first)
        os.killpg(first.pid, signal.SIGSTOP)  # the first run holds the lock, paused mid-run
        second = _run_cli(stage, corpus, out, params_file)
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert lines[0] == (f"error: {out}: another build is writing to this folder (locked by pid {first.pid}); "
                            f"wait for it to finish or stop it")
        os.killpg(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    # once the first has finished, a second run goes through (and has nothing left to do)
    again = _run_cli(stage, corpus, out, params_file)
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("stage", STAGE_PARAMS)
def test_every_parallel_stage_takes_the_lock(stage, corpus, tmp_path):
    from pipeline.errors import StageError
    from pipeline.stagekit import OutputLock
    from stage_support import run_stage

    out = tmp_path / "out"
    with OutputLock(out):
        with pytest.raises(StageError, match=rf"\(locked by pid {os.getpid()}\)"):
            run_stage(stage, corpus, out)
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # refused before writing anything


def test_temporary_files_of_a_killed_run_are_swept(tmp_path):
    from pipeline.stagekit import OutputLock

    out = tmp_path / "out"
    (out / "songs" / "a").mkdir(parents=True)
    (out / "songs" / "a" / ".a1.npz.x81kq.tmp").write_bytes(b"half a song")
    (out / ".manifest.parquet.2j3k.tmp").write_bytes(b"half a manifest")
    (out / "songs" / "a" / "a1.npz").write_bytes(b"a song")
    with OutputLock(out):
        assert not [p for p in out.rglob("*") if is_temporary(p.name)]
    assert (out / "songs" / "a" / "a1.npz").read_bytes() == b"a song"
