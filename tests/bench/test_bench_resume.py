"""A real SIGKILL of a running `learnlr bench` loses no finished cell; a rerun completes it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bench_toy_workload import TOY_PLUGIN

from learnlr.bench.store import ExperimentStore

ARGS = ["bench", "--suite", "tiny", "--plugin", TOY_PLUGIN, "--workloads", "toy-logreg-slow",
        "--optimizers", "sgd", "--schedules", "constant", "cosine", "greedy_step", "linear",
        "--seeds", "3", "--workers", "2"]
BUDGET = 1500  # toy-logreg-slow's budget: every stored cell must have all its steps


def _count(path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        conn.close()


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigkill_loses_no_finished_cell_and_rerun_completes(tmp_path, toy_env):
    out = tmp_path / "run"
    db = out / "runs.sqlite"
    cmd = [sys.executable, "-m", "learnlr.cli", *ARGS, "--out", str(out)]
    proc = subprocess.Popen(cmd, env=toy_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while _count(db) < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, "bench finished before it could be killed"
            time.sleep(0.05)
        assert proc.poll() is None, "bench finished before it could be killed"
        workers = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # The pool's worker processes notice and exit instead of running on as orphans.
    assert workers
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)

    with ExperimentStore(db) as store:
        survived = {c.hash: c.results for c in store.cells()}
        assert len(survived) >= 3
        for h in survived:  # no partial trajectory: a stored cell is a whole cell
            assert len(store.trajectory(h).lr) == BUDGET
    total_main = 4 * 3 * 3  # 4 schedules x 3 seeds x 3 LR tracks
    assert len(survived) < 2 + total_main, "run was complete before the kill"

    done = subprocess.run(cmd, env=toy_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with ExperimentStore(db) as store:
        after = {c.hash: c.results for c in store.cells()}
        assert store.count_cells("main") == total_main
        # Cells finished before the kill were kept as they were, not re-run.
        assert {h: after[h] for h in survived} == survived
        rows = store._conn.execute("SELECT COUNT(*), COUNT(DISTINCT hash) FROM trajectory")
        n_rows, n_cells = rows.fetchone()
        assert n_rows == BUDGET * len(after) and n_cells == len(after)
    assert json.loads((out / "summary.json").read_text())["cells"] == total_main
