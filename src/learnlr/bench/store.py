"""The experiment store: one SQLite file (``runs.sqlite``) per output folder.

Tables:

* ``cells``: one row per *finished* cell: config hash (primary key), the columns people filter
  on, the full config JSON, the results JSON, the suite and purpose (``"tune"`` for base-LR
  tuning runs, ``"main"`` for the comparison grid) that first asked for it;
* ``trajectory``: (cell hash, step, lr, train_loss), one row per optimizer step;
* ``evals``: (cell hash, step, val_loss, metric, extra JSON), one row per evaluation;
* ``base_lrs``: the chosen base LR per (workload, optimizer, budget) with the protocol JSON.

A cell and its trajectory are written in one transaction after the run finishes, so a process
killed at any moment (SIGKILL included) leaves only whole cells; WAL mode keeps readers (a
report, an RL agent) unblocked while a benchmark writes. All SQL is parameterized.

Example::

    store = ExperimentStore("out/runs.sqlite")
    for t in store.trajectories(workload="digits-cnn", best=5):
        print(t.config["schedule"], t.lr[:5], t.train_loss[:5])
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learnlr.bench.records import CellConfig, CellResult

STORE_FILENAME = "runs.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    hash TEXT PRIMARY KEY,
    workload TEXT NOT NULL,
    optimizer TEXT NOT NULL,
    schedule TEXT NOT NULL,
    seed INTEGER NOT NULL,
    base_lr REAL NOT NULL,
    budget_steps INTEGER NOT NULL,
    suite TEXT NOT NULL,
    purpose TEXT NOT NULL,
    status TEXT NOT NULL,
    final_val_loss REAL,
    best_val_loss REAL,
    config_json TEXT NOT NULL,
    results_json TEXT NOT NULL,
    finished_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cells_by_group ON cells (workload, optimizer, schedule);
CREATE TABLE IF NOT EXISTS trajectory (
    hash TEXT NOT NULL REFERENCES cells (hash),
    step INTEGER NOT NULL,
    lr REAL,
    train_loss REAL,
    PRIMARY KEY (hash, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evals (
    hash TEXT NOT NULL REFERENCES cells (hash),
    step INTEGER NOT NULL,
    val_loss REAL,
    metric REAL,
    extra_json TEXT NOT NULL,
    PRIMARY KEY (hash, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS base_lrs (
    workload TEXT NOT NULL,
    optimizer TEXT NOT NULL,
    budget_steps INTEGER NOT NULL,
    base_lr REAL NOT NULL,
    protocol_json TEXT NOT NULL,
    PRIMARY KEY (workload, optimizer, budget_steps)
);
"""


@dataclass
class StoredCell:
    """One finished cell as read back from the store."""

    hash: str
    config: dict[str, Any]
    results: dict[str, Any]
    suite: str
    purpose: str


@dataclass
class Trajectory:
    """The per-step LR / training loss and the eval history of one finished cell."""

    hash: str
    config: dict[str, Any]
    results: dict[str, Any]
    steps: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    train_loss: list[float | None] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)


class ExperimentStore:
    """SQLite-backed store of finished cells; safe to reopen, resume and read concurrently."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a cell is one transaction.
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=60.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives process kills
        self._conn.executescript(_SCHEMA)
        self._migrate_nullable_lr()

    def _migrate_nullable_lr(self) -> None:
        """Stores written before lr became nullable (NULL = non-finite LR) get the new column."""
        columns = self._conn.execute("PRAGMA table_info(trajectory)").fetchall()
        if not any(name == "lr" and notnull for _, name, _, notnull, _, _ in columns):
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute(
                "CREATE TABLE trajectory_migrated (hash TEXT NOT NULL REFERENCES cells (hash),"
                " step INTEGER NOT NULL, lr REAL, train_loss REAL, PRIMARY KEY (hash, step))"
                " WITHOUT ROWID"
            )
            self._conn.execute("INSERT INTO trajectory_migrated SELECT hash, step, lr, train_loss"
                               " FROM trajectory")
            self._conn.execute("DROP TABLE trajectory")
            self._conn.execute("ALTER TABLE trajectory_migrated RENAME TO trajectory")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> ExperimentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def write_cell(self, result: CellResult, *, suite: str, purpose: str) -> bool:
        """Store a finished cell in one transaction; returns False if it was already there."""
        config = result.config
        key = config.hash
        summary = result.summary
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                "INSERT OR IGNORE INTO cells (hash, workload, optimizer, schedule, seed, base_lr,"
                " budget_steps, suite, purpose, status, final_val_loss, best_val_loss,"
                " config_json, results_json, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key, config.workload, config.optimizer, config.schedule, config.seed,
                    config.base_lr, config.budget_steps, suite, purpose, summary["status"],
                    summary["final_val_loss"], summary["best_val_loss"],
                    json.dumps(config.to_json(), sort_keys=True),
                    json.dumps(summary, sort_keys=True, allow_nan=False),
                    time.time(),
                ),
            )
            if cur.rowcount == 0:
                conn.execute("ROLLBACK")
                return False
            conn.executemany(
                "INSERT INTO trajectory (hash, step, lr, train_loss) VALUES (?, ?, ?, ?)",
                [
                    (key, step, lr, loss)
                    for step, (lr, loss) in enumerate(
                        zip(result.trajectory_lr, result.trajectory_train_loss, strict=True)
                    )
                ],
            )
            conn.executemany(
                "INSERT INTO evals (hash, step, val_loss, metric, extra_json) VALUES (?, ?, ?, ?, ?)",
                [
                    (key, e["step"], e["val_loss"], e["metric"], json.dumps(e["extra"]))
                    for e in result.evals
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return True

    def set_base_lr(
        self, workload: str, optimizer: str, budget_steps: int, base_lr: float,
        protocol: dict[str, Any],
    ) -> None:
        """Record the chosen base LR for (workload, optimizer, budget) and how it was chosen."""
        with closing(self._conn.cursor()) as cur:
            cur.execute(
                "INSERT OR REPLACE INTO base_lrs (workload, optimizer, budget_steps, base_lr,"
                " protocol_json) VALUES (?, ?, ?, ?, ?)",
                (workload, optimizer, budget_steps, base_lr, json.dumps(protocol, sort_keys=True)),
            )

    def mark_purpose(self, hashes: set[str], purpose: str) -> None:
        """Set the purpose of already stored cells (a tuning run reused by the main grid)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(
                "UPDATE cells SET purpose = ? WHERE hash = ?", [(purpose, h) for h in hashes]
            )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def supersede(self, configs: Iterable[CellConfig]) -> int:
        """Demote older main cells that ``configs`` replace; returns how many were demoted.

        A main cell with the same workload, optimizer, schedule, seed and budget as one of
        ``configs`` but another hash (a new base LR, harness version or policy fingerprint)
        gets purpose ``"superseded"``: it stays in the store, but ``learnlr report`` (every main
        cell) no longer counts it next to its replacement.
        """
        rows = [(c.workload, c.optimizer, c.schedule, c.seed, c.budget_steps, c.hash)
                for c in configs]
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            before = self._conn.total_changes
            self._conn.executemany(
                "UPDATE cells SET purpose = 'superseded' WHERE workload = ? AND optimizer = ?"
                " AND schedule = ? AND seed = ? AND budget_steps = ? AND hash != ?"
                " AND purpose = 'main'",
                rows,
            )
            demoted = self._conn.total_changes - before
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return demoted

    # -- reading -------------------------------------------------------------------------------

    def has_cell(self, config: CellConfig) -> bool:
        """True if the cell with this config is finished and stored."""
        row = self._conn.execute("SELECT 1 FROM cells WHERE hash = ?", (config.hash,)).fetchone()
        return row is not None

    def finished_hashes(self) -> set[str]:
        """Hashes of every finished cell."""
        return {h for (h,) in self._conn.execute("SELECT hash FROM cells")}

    def count_cells(self, purpose: str | None = None) -> int:
        """Number of finished cells (optionally of one purpose)."""
        if purpose is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0])
        row = self._conn.execute("SELECT COUNT(*) FROM cells WHERE purpose = ?", (purpose,))
        return int(row.fetchone()[0])

    def get_result(self, config: CellConfig) -> dict[str, Any] | None:
        """The results JSON of a finished cell, or None."""
        row = self._conn.execute(
            "SELECT results_json FROM cells WHERE hash = ?", (config.hash,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def base_lr(self, workload: str, optimizer: str, budget_steps: int) -> float | None:
        """The cached base LR for (workload, optimizer, budget), or None."""
        row = self._conn.execute(
            "SELECT base_lr FROM base_lrs WHERE workload = ? AND optimizer = ? AND budget_steps = ?",
            (workload, optimizer, budget_steps),
        ).fetchone()
        return float(row[0]) if row else None

    def base_lrs(self) -> list[dict[str, Any]]:
        """Every chosen base LR with its protocol."""
        rows = self._conn.execute(
            "SELECT workload, optimizer, budget_steps, base_lr, protocol_json FROM base_lrs"
            " ORDER BY workload, optimizer, budget_steps"
        )
        return [
            {"workload": w, "optimizer": o, "budget_steps": b, "base_lr": lr,
             "protocol": json.loads(p)}
            for w, o, b, lr, p in rows
        ]

    def cells(
        self,
        *,
        purpose: str | None = None,
        hashes: set[str] | None = None,
    ) -> list[StoredCell]:
        """Finished cells, optionally only one purpose or only the given hashes."""
        query = "SELECT hash, config_json, results_json, suite, purpose FROM cells"
        params: tuple[Any, ...] = ()
        if purpose is not None:
            query += " WHERE purpose = ?"
            params = (purpose,)
        query += " ORDER BY workload, optimizer, schedule, seed, hash"
        out = []
        for h, cfg, res, suite, purp in self._conn.execute(query, params):
            if hashes is not None and h not in hashes:
                continue
            out.append(StoredCell(h, json.loads(cfg), json.loads(res), suite, purp))
        return out

    def trajectories(
        self,
        *,
        workload: str | None = None,
        optimizer: str | None = None,
        schedule: str | None = None,
        best: int | None = None,
        purpose: str | None = "main",
    ) -> list[Trajectory]:
        """Trajectories of finished, non-diverged cells, best final val loss first.

        Filters are exact matches (None = any); ``best`` keeps only the first ``best`` runs.
        This is the reader an RL agent uses to learn from past runs.
        """
        if best is not None and best < 1:
            raise ValueError(f"best must be None or an integer >= 1, got {best!r}")
        clauses = ["status = 'ok'", "final_val_loss IS NOT NULL"]
        params: list[Any] = []
        for column, value in (("workload", workload), ("optimizer", optimizer),
                              ("schedule", schedule), ("purpose", purpose)):
            if value is not None:
                clauses.append(f"{column} = ?")  # column names are fixed literals, not input
                params.append(value)
        query = (
            "SELECT hash, config_json, results_json FROM cells WHERE " + " AND ".join(clauses)
            + " ORDER BY final_val_loss ASC, hash"
        )
        if best is not None:
            query += " LIMIT ?"
            params.append(best)
        rows = self._conn.execute(query, params).fetchall()
        return [self._trajectory(h, json.loads(c), json.loads(r)) for h, c, r in rows]

    def trajectory(self, cell_hash: str) -> Trajectory:
        """The trajectory of one cell by hash (KeyError if it is not stored)."""
        row = self._conn.execute(
            "SELECT config_json, results_json FROM cells WHERE hash = ?", (cell_hash,)
        ).fetchone()
        if row is None:
            raise KeyError(cell_hash)
        return self._trajectory(cell_hash, json.loads(row[0]), json.loads(row[1]))

    def _trajectory(self, h: str, config: dict[str, Any], results: dict[str, Any]) -> Trajectory:
        t = Trajectory(h, config, results)
        for step, lr, loss in self._conn.execute(
            "SELECT step, lr, train_loss FROM trajectory WHERE hash = ? ORDER BY step", (h,)
        ):
            t.steps.append(step)
            t.lr.append(lr)
            t.train_loss.append(loss)
        t.evals = [
            {"step": s, "val_loss": v, "metric": m, "extra": json.loads(x)}
            for s, v, m, x in self._conn.execute(
                "SELECT step, val_loss, metric, extra_json FROM evals WHERE hash = ? ORDER BY step",
                (h,),
            )
        ]
        return t

