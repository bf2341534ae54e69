"""Every parallel stage on an existing dask.distributed cluster: a real scheduler and two real
workers (``dask scheduler`` / ``dask worker`` processes on loopback); one worker is killed with
SIGKILL once the first tasks are done, and the run still completes with outputs byte-identical
to a run in one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stage_support import STAGE_PARAMS, make_corpus, markers, n_tasks, run_stage, tree_digest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

DASK = str(Path(sys.executable).with_name("dask"))
N_SONGS = 24


class LoopbackCluster:
    """``dask scheduler`` and ``n`` ``dask worker --no-nanny`` processes on 127.0.0.1 (one
    thread each): killing a worker's pid kills the worker, and nothing restarts it."""

    def __init__(self, folder: Path, n_workers: int = 2) -> None:
        self.folder = folder
        self.file = folder / "scheduler.json"
        env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
        env["PIPELINE_PROGRESS"] = "0"
        self.logs = [open(folder / f"log-{name}.txt", "w") for name in ["scheduler"] + [f"worker{i}" for i in range(n_workers)]]
        self.scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(self.file)],
            stdout=self.logs[0], stderr=subprocess.STDOUT, env=env)
        self.workers = [subprocess.Popen(
            [DASK, "worker", "--scheduler-file", str(self.file), "--host", "127.0.0.1", "--nthreads", "1",
             "--no-nanny", "--no-dashboard", "--name", f"w{i}"],
            stdout=self.logs[1 + i], stderr=subprocess.STDOUT, env=env) for i in range(n_workers)]
        deadline = time.monotonic() + 60
        while not self.file.exists() or not self.file.read_text().strip():
            assert self.scheduler.poll() is None, "the scheduler exited"
            assert time.monotonic() < deadline, "no scheduler file after 60 s"
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(n_workers, timeout=60)
            self.worker_pids = client.run(os.getpid)  # address -> pid

    def close(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in self.logs:
            f.close()


@pytest.fixture
def loopback_cluster(tmp_path):
    folder = tmp_path / "cluster"
    folder.mkdir()
    cluster = LoopbackCluster(folder)
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("songs"), N_SONGS)


@pytest.mark.parametrize("stage", STAGE_PARAMS)
def test_run_survives_a_killed_worker(stage, corpus, loopback_cluster, tmp_path, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    reference = tmp_path / "ref"
    run_stage(stage, corpus, reference, workers=1)
    total = n_tasks(stage, N_SONGS + 3)
    out = tmp_path / "cluster-out"
    victim = loopback_cluster.workers[0]
    assert victim.pid in loopback_cluster.worker_pids.values()  # the pid is the worker itself
    seen_at_kill: list[int] = []

    def kill_after_first_results():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = len(markers(stage, out))
            if done >= 1:
                os.kill(victim.pid, signal.SIGKILL)
                seen_at_kill.append(done)
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_after_first_results)
    killer.start()
    try:
        run_stage(stage, corpus, out, scheduler=loopback_cluster.address)
    finally:
        killer.join()
    assert victim.wait(timeout=30) == -signal.SIGKILL
    assert seen_at_kill and seen_at_kill[0] < total  # killed in the middle of the run
    assert loopback_cluster.workers[1].poll() is None  # the other worker finished the run
    log = (loopback_cluster.folder / "log-scheduler.txt").read_text()
    assert "Remove worker" in log and "name: w0" in log  # the scheduler saw it go
    assert tree_digest(out) == tree_digest(reference)
