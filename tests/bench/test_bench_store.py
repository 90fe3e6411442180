"""The SQLite experiment store: round trip, idempotence, atomic cells, the trajectory reader."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest

from learnlr.bench.leases import Heartbeat, Owner, pid_exists
from learnlr.bench.runner import CellConfig, CellResult
from learnlr.bench.store import ExperimentStore, StoreError


def _result(schedule: str, seed: int, final: float | None, steps: int = 5) -> CellResult:
    config = CellConfig("w", "sgd", schedule, seed, 0.1, steps, 5)
    summary = {"status": "ok" if final is not None else "diverged", "final_val_loss": final,
               "best_val_loss": final}
    lrs = [0.1 * (i + 1) for i in range(steps)]
    losses = [1.0 / (i + 1) for i in range(steps)]
    evals = [{"step": steps, "val_loss": final, "metric": 0.5, "extra": {"recall": 0.25}}]
    return CellResult(config, summary, lrs, losses, evals)


def test_round_trip_and_skip_of_finished_cells(tmp_path):
    with ExperimentStore(tmp_path / "runs.sqlite") as store:
        r = _result("cosine", 0, 0.5)
        assert not store.has_cell(r.config)
        assert store.write_cell(r, suite="tiny", purpose="main")
        assert store.has_cell(r.config)
        assert not store.write_cell(r, suite="tiny", purpose="main")  # second write is a no-op
        assert store.count_cells() == 1
        t = store.trajectory(r.config.hash)
        assert t.lr == r.trajectory_lr and t.train_loss == r.trajectory_train_loss
        assert t.evals == r.evals
        assert t.config["schedule"] == "cosine" and t.results == r.summary
    # Reopening sees the same data (and WAL mode is on).
    with ExperimentStore(tmp_path / "runs.sqlite") as store:
        assert store.finished_hashes() == {r.config.hash}
    conn = sqlite3.connect(tmp_path / "runs.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_failed_write_leaves_no_partial_cell(tmp_path):
    with ExperimentStore(tmp_path / "runs.sqlite") as store:
        broken = _result("cosine", 0, 0.5)
        broken.trajectory_train_loss.pop()  # lengths differ: the write raises midway
        with pytest.raises(ValueError):
            store.write_cell(broken, suite="tiny", purpose="main")
        assert store.count_cells() == 0
        conn = store._conn
        assert conn.execute("SELECT COUNT(*) FROM trajectory").fetchone()[0] == 0


class _InterruptAfterCommit:
    """The store's real connection, with a Ctrl-C delivered just after ``COMMIT`` returns (where
    Python can raise a KeyboardInterrupt between two bytecodes; a loaded CI machine hit it)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __getattr__(self, name: str):
        return getattr(self.conn, name)

    def execute(self, sql: str, *args):
        cursor = self.conn.execute(sql, *args)
        if sql == "COMMIT":
            raise KeyboardInterrupt
        return cursor


def test_an_interrupt_after_commit_stays_an_interrupt_and_keeps_the_cell(tmp_path):
    with ExperimentStore(tmp_path / "runs.sqlite") as store:
        real = store._conn
        store._conn = _InterruptAfterCommit(real)
        try:
            with pytest.raises(KeyboardInterrupt):  # not "cannot rollback": the CLI exits 130
                store.write_cell(_result("cosine", 0, 0.5), suite="tiny", purpose="main")
        finally:
            store._conn = real
        assert not real.in_transaction
        assert store.count_cells() == 1  # the committed cell is kept
        assert real.execute("SELECT COUNT(*) FROM trajectory").fetchone()[0] == 5


def test_trajectories_reader_returns_best_runs_first_with_filters(tmp_path):
    with ExperimentStore(tmp_path / "runs.sqlite") as store:
        for schedule, seed, final in [("cosine", 0, 0.7), ("greedy_step", 0, 0.3),
                                      ("greedy_step", 1, 0.5), ("constant", 0, None),
                                      ("it's; DROP TABLE cells", 0, 0.9)]:
            store.write_cell(_result(schedule, seed, final), suite="tiny", purpose="main")
        best = store.trajectories(best=2)
        assert [t.results["final_val_loss"] for t in best] == [0.3, 0.5]
        greedy = store.trajectories(schedule="greedy_step")
        assert [t.config["seed"] for t in greedy] == [0, 1]
        assert store.trajectories(schedule="it's; DROP TABLE cells")[0].config["seed"] == 0
        # Diverged runs are not offered as examples to learn from.
        assert store.trajectories(schedule="constant") == []
        assert store.count_cells() == 5
        with pytest.raises(ValueError, match="best"):
            store.trajectories(best=0)


def test_base_lr_cache(tmp_path):
    with ExperimentStore(tmp_path / "runs.sqlite") as store:
        assert store.base_lr("w", "sgd", 100) is None
        store.set_base_lr("w", "sgd", 100, 0.03, {"grid": [0.01, 0.03]})
        assert store.base_lr("w", "sgd", 100) == 0.03
        assert store.base_lr("w", "sgd", 200) is None
        assert store.base_lrs()[0]["protocol"] == {"grid": [0.01, 0.03]}


def test_non_finite_lr_is_stored_as_null_and_old_stores_are_migrated(tmp_path):
    path = tmp_path / "runs.sqlite"
    # A store created before lr became nullable: the old NOT NULL column.
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE cells (hash TEXT PRIMARY KEY, workload TEXT NOT NULL, optimizer TEXT NOT"
        " NULL, schedule TEXT NOT NULL, seed INTEGER NOT NULL, base_lr REAL NOT NULL,"
        " budget_steps INTEGER NOT NULL, suite TEXT NOT NULL, purpose TEXT NOT NULL, status TEXT"
        " NOT NULL, final_val_loss REAL, best_val_loss REAL, config_json TEXT NOT NULL,"
        " results_json TEXT NOT NULL, finished_at REAL NOT NULL);"
        "CREATE TABLE trajectory (hash TEXT NOT NULL, step INTEGER NOT NULL, lr REAL NOT NULL,"
        " train_loss REAL, PRIMARY KEY (hash, step)) WITHOUT ROWID;"
        "INSERT INTO trajectory VALUES ('old', 0, 0.5, 1.0);"
    )
    conn.close()
    r = _result("sgd_hd_group", 0, None)
    r.trajectory_lr[-1] = None  # the runner's record of a non-finite LR
    with ExperimentStore(path) as store:
        assert store.write_cell(r, suite="tiny", purpose="main")
        assert store.trajectory(r.config.hash).lr == r.trajectory_lr
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT lr FROM trajectory WHERE hash = 'old'").fetchone() == (0.5,)
    conn.close()


def test_a_replanned_cell_supersedes_the_old_main_cell(tmp_path):
    import dataclasses

    with ExperimentStore(tmp_path / "runs.sqlite") as store:
        old_rl, old_cos, other_seed = _result("rl", 0, 0.5), _result("cosine", 0, 0.4), _result(
            "rl", 1, 0.6)
        for r in (old_rl, old_cos, other_seed):
            store.write_cell(r, suite="full", purpose="main")
        # The policy behind "rl" changed: same workload/optimizer/schedule/seed, new hash.
        new_rl = dataclasses.replace(old_rl.config, fingerprint="policy-sha256:new")
        assert store.supersede([new_rl, old_cos.config]) == 1
        main = {c.hash for c in store.cells(purpose="main")}
        assert main == {old_cos.config.hash, other_seed.config.hash}
        assert [c.hash for c in store.cells(purpose="superseded")] == [old_rl.config.hash]
        # Its data stays readable.
        assert store.trajectory(old_rl.config.hash).lr == old_rl.trajectory_lr


def test_another_purpose_never_takes_a_cell_out_of_the_report(tmp_path):
    # An RL training run (purpose "rl-base") that reuses benchmark cells used to relabel them,
    # and `learnlr report` (main cells only) then lost them.
    with ExperimentStore(tmp_path / "runs.sqlite") as store:
        main, tune = _result("cosine", 0, 0.4), _result("constant", 0, 0.5)
        store.write_cell(main, suite="full", purpose="main")
        store.write_cell(tune, suite="full", purpose="tune")
        store.mark_purpose({main.config.hash, tune.config.hash}, "rl-base")
        assert [c.hash for c in store.cells(purpose="main")] == [main.config.hash]
        assert [c.hash for c in store.cells(purpose="rl-base")] == [tune.config.hash]
        store.mark_purpose({tune.config.hash}, "main")  # promotion still works
        assert {c.hash for c in store.cells(purpose="main")} == {main.config.hash,
                                                                  tune.config.hash}


def test_cells_of_other_lr_tracks_are_not_superseded(tmp_path):
    import dataclasses

    with ExperimentStore(tmp_path / "runs.sqlite") as store:
        tuned = _result("cosine", 0, 0.4)
        small = dataclasses.replace(tuned, config=dataclasses.replace(tuned.config, lr_scale=0.1))
        for r in (tuned, small):
            store.write_cell(r, suite="quick", purpose="main")
        # Planning only the tuned track must leave the x0.1 cell alone (and vice versa).
        assert store.supersede([tuned.config]) == 0
        assert store.supersede([small.config]) == 0
        assert store.count_cells("main") == 2


# -- claims: several processes on one store ----------------------------------------------------


def _owner(pid: int | None = None, token: str = "t") -> Owner:
    return Owner(socket.gethostname(), os.getpid() if pid is None else pid, token)


def test_claims_are_exclusive_between_owners_and_cleared_by_storing(tmp_path):
    configs = [_result("cosine", seed, 0.5).config for seed in range(3)]
    path = tmp_path / "runs.sqlite"
    a, b = _owner(token="a"), _owner(token="b")
    with ExperimentStore(path) as store_a, ExperimentStore(path) as store_b:
        assert store_a.claim(configs, a, limit=2) == configs[:2]
        assert store_b.claim(configs, b, limit=5) == configs[2:]  # a's are taken
        assert store_b.claim(configs, b, limit=5) == [configs[2]]  # its own: claimable again
        assert store_a.write_cell(_result("cosine", 0, 0.5), suite="tiny", purpose="main")
        assert sorted(store_a.claims()) == sorted(
            [(configs[1].hash, a.key), (configs[2].hash, b.key)])
        assert store_b.claim(configs, b, limit=5) == [configs[2]]  # stored ones are skipped
        store_b.release_claims(b)
        assert store_a.claims() == [(configs[1].hash, a.key)]


def test_claims_of_a_dead_process_are_taken_over(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = _owner(pid=int(gone.stdout), token="dead")
    assert not pid_exists(dead.pid)
    config = _result("cosine", 0, 0.5).config
    with ExperimentStore(tmp_path / "runs.sqlite") as store:
        assert store.claim([config], dead, limit=1) == [config]
        assert store.claim([config], _owner(token="live"), limit=1) == [config]
        assert store.claims() == [(config.hash, _owner(token="live").key)]


def test_stale_claims_are_taken_over_and_heartbeat_keeps_them(tmp_path):
    path = tmp_path / "runs.sqlite"
    config = _result("cosine", 0, 0.5).config
    holder, other = _owner(token="holder"), _owner(token="other")
    with ExperimentStore(path) as store:
        assert store.claim([config], holder, limit=1) == [config]
        claimed_at = _heartbeat(path)
        _wait_until(lambda: time.time() > claimed_at + 0.05)
        # The holder's pid is alive (it is this process), but its claim was not renewed.
        assert store.claim([config], other, limit=1, stale_after=0.01) == [config]
        assert store.claim([config], holder, limit=1) == []  # other is live and fresh
        store.release_claims(other)
        assert store.claim([config], holder, limit=1) == [config]
        claimed_at = _heartbeat(path)
        with Heartbeat(path, holder, interval=0.05):
            # No fixed sleep (a busy machine can starve the heartbeat thread): wait for a renewal
            # well after the claim, then ask with a horizon that the claim's own time is past.
            _wait_until(lambda: _heartbeat(path) > claimed_at + 0.2)
            horizon = time.time() - (claimed_at + 0.1)
            assert store.claim([config], other, limit=1, stale_after=horizon) == []


def _heartbeat(path) -> float:
    """The (one) claim's last heartbeat, read on a connection of its own."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT heartbeat FROM claims").fetchone()[0]


def _wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def test_store_refuses_files_it_does_not_recognise(tmp_path):
    garbage = tmp_path / "runs.sqlite"
    garbage.write_bytes(b"\x00\x01not sqlite" * 100)
    with pytest.raises(StoreError, match="not a SQLite database"):
        ExperimentStore(garbage)
    with pytest.raises(StoreError, match="no such store"):
        ExperimentStore(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()


@pytest.mark.parametrize("table", ["trajectory (t INTEGER, x REAL, y REAL)",
                                   "cells (row INTEGER, col INTEGER, value REAL)"])
def test_a_foreign_database_sharing_a_table_name_is_refused_and_left_as_it_was(tmp_path, table):
    # One table name in common used to pass: the store then added its tables and switched the
    # file to WAL before failing, while saying the file "was left as it was".
    path = tmp_path / "runs.sqlite"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"CREATE TABLE {table}")
        conn.execute(f"INSERT INTO {table.split()[0]} VALUES (1, 2, 3)")
        conn.commit()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a learnlr store"):
        ExperimentStore(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.sqlite"]


def _locked_for(calls: int):
    """sqlite3.connect that answers "database is locked" for the first ``calls`` calls, as SQLite
    does (without its busy handler) when another process is creating the same store."""
    real = sqlite3.connect
    seen = {"n": 0}

    def connect(*args, **kwargs):
        seen["n"] += 1
        if seen["n"] <= calls:
            raise sqlite3.OperationalError("database is locked")
        return real(*args, **kwargs)

    return connect, seen


def test_opening_a_store_locked_by_another_process_retries(tmp_path, monkeypatch):
    import learnlr.bench.store as store_module

    connect, seen = _locked_for(2)
    monkeypatch.setattr(store_module.sqlite3, "connect", connect)
    with ExperimentStore(tmp_path / "runs.sqlite") as store:
        store.write_cell(_result("constant", 0, 0.5), suite="tiny", purpose="main")
        assert len(store.cells()) == 1
    assert seen["n"] == 3


def test_a_store_locked_past_the_patience_is_a_store_error(tmp_path, monkeypatch):
    import learnlr.bench.store as store_module

    connect, _ = _locked_for(10**6)
    monkeypatch.setattr(store_module.sqlite3, "connect", connect)
    monkeypatch.setattr(store_module, "OPEN_PATIENCE_S", 0.3)
    with pytest.raises(StoreError, match="database is locked"):
        ExperimentStore(tmp_path / "runs.sqlite")
