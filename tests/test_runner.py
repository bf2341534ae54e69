"""run_tasks: in-process, local processes and a loopback cluster give the same results."""

from __future__ import annotations

import logging
import os

import pytest

import runner_tasks as rt
from pipeline.errors import ParamsError
from pipeline.progress import progress_bar, progress_enabled
from pipeline.runner import run_tasks

TASKS = list(range(50))
EXPECTED = [(i, i * i) for i in TASKS]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                      silence_logs=logging.WARNING) as c:
        yield c


def test_in_process_runs_here_in_order():
    results = list(run_tasks(rt.square_with_pid, TASKS, workers=1))
    assert [i for i, _ in results] == TASKS
    assert [(i, r[0]) for i, r in results] == EXPECTED
    assert {r[1] for _, r in results} == {os.getpid()}


def test_local_processes():
    results = sorted(run_tasks(rt.square_with_pid, TASKS, workers=2))
    assert [(i, r[0]) for i, r in results] == EXPECTED
    assert os.getpid() not in {r[1] for _, r in results}


@pytest.mark.cluster
def test_cluster_address(cluster):
    results = sorted(run_tasks(rt.square, TASKS, scheduler=cluster.scheduler_address))
    assert results == EXPECTED


@pytest.mark.cluster
def test_env_scheduler_address_is_honoured(cluster, monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
    results = sorted(run_tasks(rt.square_with_pid, TASKS, workers=1))
    assert [(i, r[0]) for i, r in results] == EXPECTED
    assert os.getpid() not in {r[1] for _, r in results}  # ran on the cluster, not in-process


def test_exception_propagates_in_process():
    with pytest.raises(ValueError, match="task x=7 failed on purpose"):
        list(run_tasks(rt.fail_on_seven, TASKS, workers=1))


@pytest.mark.cluster
def test_exception_propagates_from_workers(cluster):
    with pytest.raises(ValueError, match="task x=7 failed on purpose"):
        list(run_tasks(rt.fail_on_seven, TASKS, scheduler=cluster.scheduler_address))


def test_killed_worker_is_retried(tmp_path):
    marker = tmp_path / "kill-once"
    marker.touch()
    tasks = [(str(marker), x) for x in TASKS]
    results = sorted(run_tasks(rt.die_once, tasks, workers=2))
    assert not marker.exists()  # a worker did die
    assert results == EXPECTED


def test_empty_tasks_start_nothing():
    assert list(run_tasks(rt.square, [], workers=2)) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"workers": -1}, "workers=-1 must be >= 0"),
    ({"retries": -2}, "retries=-2 must be >= 0"),
])
def test_bad_options_fail_at_call_time(kwargs, message):
    with pytest.raises(ParamsError, match=message):
        run_tasks(rt.square, TASKS, **kwargs)  # not iterated


def test_progress_silent_when_disabled(monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_PROGRESS", "0")
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert not progress_enabled()
    assert sorted(run_tasks(rt.square, TASKS, workers=1)) == EXPECTED
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_bar_counts_units(capsys):
    with progress_bar("converting", 6, enabled=True) as bar:
        for n in (1, 2, 3):
            bar.advance(n)
    err = capsys.readouterr().err
    assert "converting" in err and "6/6" in err


def test_units_feed_the_bar(monkeypatch):
    seen = []

    class Bar:
        def advance(self, n):
            seen.append(n)

    from contextlib import contextmanager

    @contextmanager
    def fake_bar(description, total):
        seen.append((description, total))
        yield Bar()

    monkeypatch.setattr("pipeline.runner.progress_bar", fake_bar)
    list(run_tasks(rt.square, [1, 2, 3], workers=1, description="files", units=lambda t: t))
    assert seen == [("files", 6), 1, 2, 3]


class _RecordingBar:
    """Stands in for the runner's bar: every advance, in order (from any thread)."""

    enabled = True

    def __init__(self):
        self.advances: list[int] = []
        self.total = None

    def advance(self, n):
        self.advances.append(n)


@pytest.fixture
def recording_bar(monkeypatch):
    from contextlib import contextmanager

    bars: list[_RecordingBar] = []

    @contextmanager
    def fake_bar(description, total):
        bar = _RecordingBar()
        bar.description, bar.total = description, total
        bars.append(bar)
        yield bar

    monkeypatch.setattr("pipeline.runner.progress_bar", fake_bar)
    return bars


def test_the_bar_moves_per_file_in_process(recording_bar):
    assert sorted(run_tasks(rt.files, [3, 5, 2], workers=1, units=lambda t: t)) == [(0, 3), (1, 5), (2, 2)]
    (bar,) = recording_bar
    assert bar.total == 10 and bar.advances == [1] * 10


@pytest.mark.cluster
def test_the_bar_moves_per_file_on_a_cluster(cluster, recording_bar):
    # workers send their counts through the scheduler as files are done; each task's count is
    # settled when it finishes, so the bar ends at its total exactly
    assert sorted(run_tasks(rt.files_slowly, [4, 4], scheduler=cluster.scheduler_address, units=lambda t: t)) == \
        [(0, 4), (1, 4)]
    (bar,) = recording_bar
    assert sum(bar.advances) == bar.total == 8
    assert len(bar.advances) > 2 and max(bar.advances) < 4  # moved within the tasks, not per task


def test_a_task_that_counts_no_files_moves_the_bar_when_it_ends(recording_bar):
    list(run_tasks(rt.square, [1, 2, 3], workers=1, units=lambda t: t))
    assert recording_bar[0].advances == [1, 2, 3]


def test_the_data_stages_bars_count_every_file(recording_bar, small_corpus, tmp_path):
    from pipeline.config import load_params
    from pipeline.stages import build_lpd, build_vocab, render_audio

    n_files = 10  # 8 songs, an HTML page and an empty file
    build_lpd.run(source=small_corpus, out=tmp_path / "lpd", params=load_params(build_lpd.Params, shard_size=3),
                  workers=1)
    build_vocab.run(source=small_corpus, out=tmp_path / "vocab", kind="remi", workers=1,
                    params=load_params(build_vocab.Params, shard_size=3))
    render_audio.run(source=small_corpus, out=tmp_path / "audio", workers=1,
                     params=load_params(render_audio.Params, shard_size=3))
    assert [b.description for b in recording_bar] == ["build-lpd", "build-vocab remi: count",
                                                      "build-vocab remi: encode", "render-audio"]
    for bar in recording_bar:  # one step per file, shards of 3 files notwithstanding
        assert (bar.total, bar.advances) == (n_files, [1] * n_files), bar.description


def test_a_real_bar_reaches_the_number_of_files(small_corpus, tmp_path, monkeypatch, capsys):
    from pipeline.config import load_params
    from pipeline.stages import build_lpd

    monkeypatch.delenv("PIPELINE_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    build_lpd.run(source=small_corpus, out=tmp_path / "lpd", params=load_params(build_lpd.Params, shard_size=3),
                  workers=1)
    assert "10/10" in capsys.readouterr().err


def test_unreachable_scheduler_is_one_line_stage_error():
    import dask

    from pipeline.errors import StageError

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(StageError, match="cannot reach the dask scheduler") as err:
            list(run_tasks(rt.square, TASKS, scheduler="tcp://127.0.0.1:1"))
    assert "\n" not in str(err.value)


@pytest.fixture
def fragile_cluster():
    """Two workers under a scheduler that gives up on a task at its first lost worker."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                          silence_logs=logging.CRITICAL) as c:
            yield c


@pytest.mark.cluster
def test_task_the_scheduler_gave_up_on_is_submitted_again(fragile_cluster, tmp_path):
    marker = tmp_path / "kill-once"
    marker.touch()
    tasks = [(str(marker), x) for x in TASKS]
    results = sorted(run_tasks(rt.die_once, tasks, scheduler=fragile_cluster.scheduler_address))
    assert not marker.exists()  # a worker died, and the scheduler raised KilledWorker for the task
    assert results == EXPECTED


@pytest.mark.cluster
def test_task_that_kills_every_worker_fails_with_one_line(fragile_cluster):
    from pipeline.errors import StageError

    with pytest.raises(StageError, match=r"the scheduler gave up on task \d+ of 50 2 times \(KilledWorker") as err:
        list(run_tasks(rt.die_always_on_ten, TASKS, scheduler=fragile_cluster.scheduler_address, resubmits=1))
    assert "\n" not in str(err.value)
