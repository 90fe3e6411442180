"""Ctrl-C on a running `learnlr bench`, and two `learnlr bench` processes on one folder.

Real subprocesses and real signals: Ctrl-C in a terminal sends SIGINT to the whole foreground
process group (the bench and its pool workers), so the test starts bench in its own session
and signals the group.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable

import pytest
from bench_toy_workload import CALL_LOG_ENV, TOY_PLUGIN
from test_bench_resume import _count

from learnlr.bench.backends import InProcessExecutor
from learnlr.bench.benchmark import BenchPlan, Progress, _Run
from learnlr.bench.leases import Owner
from learnlr.bench.records import CellConfig
from learnlr.bench.store import ExperimentStore

SLOW = ["bench", "--suite", "tiny", "--plugin", TOY_PLUGIN, "--workloads", "toy-logreg-slow",
        "--optimizers", "sgd", "--schedules", "constant", "cosine", "greedy_step", "--seeds", "1"]
N_MAIN = 3 * 3  # three schedules x three LR tracks x one seed


def _interactive_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored (nohup, `cmd &`), children inherit
    # that, and Python then installs no KeyboardInterrupt handler: a test run launched that
    # way would see the bench ignore the signal. A terminal's foreground job has it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _bench(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "learnlr.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_interactive_sigint)


def _stop_after_cells(args: list[str], env: dict[str, str], db, cells: int,
                      stop: Callable[[subprocess.Popen[str]], None]) -> tuple[int, str]:
    """Start bench, wait until ``db`` holds ``cells`` cells, ``stop(proc)``; (exit code, stderr)."""
    proc = _bench(args, env)
    try:
        deadline = time.monotonic() + 90
        while _count(db) < cells and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert proc.poll() is None, "bench finished before it was stopped"
        stop(proc)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err


@pytest.mark.parametrize(("workers", "stop"), [("1", signal.SIGINT), ("2", signal.SIGINT),
                                               ("2", signal.SIGTERM)])
def test_ctrl_c_exits_130_keeps_cells_and_rerun_resumes(tmp_path, toy_env, workers, stop):
    out = tmp_path / "run"
    db = out / "runs.sqlite"
    args = [*SLOW, "--workers", workers, "--out", str(out)]

    def send(proc: subprocess.Popen[str]) -> None:
        if stop == signal.SIGINT:
            os.killpg(proc.pid, stop)  # a terminal's Ctrl-C reaches the whole group
        else:
            os.kill(proc.pid, stop)  # docker stop, a scheduler: the main process only

    returncode, err = _stop_after_cells(args, toy_env, db, 3, send)
    assert returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    match = re.search(r"(\d+) cells saved; re-run to resume", last)
    assert match, err
    with ExperimentStore(db) as store:
        saved = {c.hash: c.results for c in store.cells()}
        assert store.claims() == []  # an interrupted run leaves no cell claimed
    assert int(match.group(1)) == len(saved) >= 3
    assert len(saved) < 1 + N_MAIN, "run was complete before Ctrl-C"

    done = subprocess.run([sys.executable, "-m", "learnlr.cli", *args], env=toy_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with ExperimentStore(db) as store:
        after = {c.hash: c.results for c in store.cells()}
        assert store.count_cells("main") == N_MAIN
    assert {h: after[h] for h in saved} == saved  # kept, not re-run


def test_two_processes_on_one_folder_split_the_cells(tmp_path, toy_env):
    out = tmp_path / "shared"
    log = tmp_path / "calls.log"
    env = {**toy_env, CALL_LOG_ENV: str(log)}
    args = [*SLOW, "--workers", "1", "--out", str(out)]
    procs = [_bench(args, env) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    calls = log.read_text().splitlines()
    with ExperimentStore(out / "runs.sqlite") as store:
        stored = store.count_cells()
        assert store.count_cells("main") == N_MAIN
        assert store.claims() == []
    # Every stored cell was trained exactly once, by one of the two processes...
    assert len(calls) == stored
    by_pid = Counter(line.split()[0] for line in calls)
    assert set(by_pid) == {str(p.pid) for p in procs}, by_pid  # ...and both did some.
    for proc, (stdout, _) in zip(procs, outputs, strict=True):
        assert f"{by_pid[str(proc.pid)]} cells computed here" in stdout


class _RacedExecutor(InProcessExecutor):
    """Runs each cell for real, but another connection stores it first (a stale claim taken
    over: both processes computed it, and the first to store wins)."""

    def __init__(self, store_path, plugins) -> None:
        super().__init__(plugins)
        self._store_path = store_path

    def wait(self, timeout: float) -> list:
        results = super().wait(timeout)
        with ExperimentStore(self._store_path) as other:
            for result in results:
                other.write_cell(result, suite="tiny", purpose="main")
        return results


def test_a_cell_stored_first_elsewhere_counts_as_theirs(tmp_path):
    path = tmp_path / "runs.sqlite"
    config = CellConfig("toy-logreg", "sgd", "cosine", 0, 0.1, 30, 10)
    plan = BenchPlan()
    with ExperimentStore(path) as store:
        run = _Run(store, _RacedExecutor(path, [TOY_PLUGIN]), Owner.current(), "tiny",
                   Progress(), plan)
        run.run([config], "cells", "main")
        assert store.count_cells() == 1 and store.claims() == []
    assert (plan.computed, plan.by_others) == (0, 1)


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (its pool workers), from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry))
    return out


def _is_pool_worker(pid: int) -> bool:
    """A spawned pool worker (not multiprocessing's resource tracker, also a child)."""
    with open(f"/proc/{pid}/cmdline") as f:
        cmdline = f.read()
    return "spawn_main" in cmdline and "resource_tracker" not in cmdline


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the pool workers in /proc")
def test_a_killed_pool_worker_ends_the_run_in_one_line_and_keeps_the_cells(tmp_path, toy_env):
    # What an out-of-memory kill does: one worker dies mid-run. Before, BrokenProcessPool
    # ended the bench with a traceback.
    out = tmp_path / "run"
    db = out / "runs.sqlite"
    args = [*SLOW, "--workers", "2", "--out", str(out)]

    def kill_a_worker(proc: subprocess.Popen[str]) -> None:
        workers = [p for p in _children(proc.pid) if _is_pool_worker(p)]
        assert workers, "no pool worker to kill"
        os.kill(workers[0], signal.SIGKILL)

    returncode, err = _stop_after_cells(args, toy_env, db, 2, kill_a_worker)
    assert returncode == 2, err
    assert "Traceback" not in err
    assert "worker process died" in err.strip().splitlines()[-1]
    with ExperimentStore(db) as store:
        assert store.claims() == []
        assert len(store.cells()) >= 2
