"""The SQLite experiment store: round trip, idempotence, atomic cells, the trajectory reader."""

from __future__ import annotations

import sqlite3

import pytest

from learnlr.bench.runner import CellConfig, CellResult
from learnlr.bench.store import ExperimentStore


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
