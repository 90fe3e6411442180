"""The experiment store: one SQLite file (``runs.sqlite``) per output folder.

Tables:

* ``cells``: one row per *finished* cell: config hash (primary key), the columns people filter
  on, the full config JSON, the results JSON, the suite and purpose (``"tune"`` for base-LR
  tuning runs, ``"main"`` for the comparison grid) that first asked for it;
* ``trajectory``: (cell hash, step, lr, train_loss), one row per optimizer step;
* ``evals``: (cell hash, step, val_loss, metric, extra JSON), one row per evaluation;
* ``base_lrs``: the chosen base LR per (workload, optimizer, budget) with the protocol JSON;
* ``claims``: cells being computed right now, one row per cell with its owner (host, pid and a
  per-run token) and a heartbeat, so that several ``learnlr bench`` processes on one machine
  split the work (see :mod:`learnlr.bench.leases`). A finished cell's claim is deleted in the
  transaction that stores it;
* ``commands``: each ``learnlr bench`` command line run into the folder, with its suite, so that
  ``learnlr report`` can say how the cells were made.

A cell and its trajectory are written in one transaction after the run finishes, so a process
killed at any moment (SIGKILL included) leaves only whole cells; WAL mode keeps readers (a
report, an RL agent) unblocked while a benchmark writes. All SQL is parameterized.

The store never rewrites a file it does not recognise: a file that is not a SQLite database,
or a SQLite database without the store's tables, raises :class:`StoreError` before anything is
written. SQLite on a network share is not supported (its locks are unreliable there): to spread
a benchmark across machines, use ``--backend ray``.

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

from learnlr.bench.leases import STALE_AFTER_S, Owner, holder_is_live
from learnlr.bench.records import CellConfig, CellResult
from learnlr.errors import UserError

STORE_FILENAME = "runs.sqlite"
_SQLITE_HEADER = b"SQLite format 3\x00"
_CELL_COLUMNS = {"hash", "workload", "optimizer", "schedule", "seed", "config_json",
                 "results_json"}


class StoreError(UserError):
    """The store file cannot be used: not a store, corrupt, unreadable or not writable."""

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
CREATE TABLE IF NOT EXISTS claims (
    hash TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    heartbeat REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    command TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    first_run REAL NOT NULL
);
"""


def _rollback(conn: sqlite3.Connection) -> None:
    """Undo the open transaction, if there is one. A Ctrl-C can land after ``COMMIT`` has
    returned (Python raises it between two bytecodes): a ROLLBACK then fails ("no transaction
    is active") and its error would replace the interrupt, so the CLI would exit 2, not 130."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _check_is_sqlite(path: Path) -> None:
    """Refuse a file that is not SQLite before sqlite3 sees it (it would treat it as empty)."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"{path}: cannot read ({exc.strerror})") from exc
    if head and head != _SQLITE_HEADER:
        raise StoreError(f"{path} is not a SQLite database (corrupt or another kind of file); "
                         "it was left as it was: move it away or choose another folder")


def _check_tables(path: Path, conn: sqlite3.Connection) -> None:
    """Refuse a SQLite database that holds other tables than a store's (someone else's file)."""
    tables = {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    # Every store ever written has a cells table with these columns; one table name in common
    # (someone's "trajectory") is not enough, and the checks below would then change the file.
    cells = {row[1] for row in conn.execute("PRAGMA table_info(cells)")}
    if tables and not _CELL_COLUMNS <= cells:
        conn.close()
        raise StoreError(f"{path} is a SQLite database but not a learnlr store (tables: "
                         f"{', '.join(sorted(tables))}); it was left as it was")


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


OPEN_PATIENCE_S = 60.0
"""How long opening a store retries while another process holds it locked."""


class ExperimentStore:
    """SQLite-backed store of finished cells; safe to reopen, resume and read concurrently."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:  # OperationalError too: locked, unwritable, ...
            raise StoreError(f"{self.path}: {exc} (the file was left as it was)") from exc

    def _open(self) -> sqlite3.Connection:
        """:meth:`_open_once`, retried while the store is locked by a process opening it at the
        same moment: creating the tables and switching to WAL can return SQLITE_BUSY without
        SQLite's busy handler (seen with two ``learnlr bench`` processes started together on a
        loaded machine); the other process is done within moments."""
        deadline = time.monotonic() + OPEN_PATIENCE_S
        while True:
            try:
                return self._open_once()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _open_once(self) -> sqlite3.Connection:
        _check_is_sqlite(self.path)
        if self.readonly:
            if not self.path.is_file():
                raise StoreError(f"{self.path}: no such store")
            conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True,
                                   isolation_level=None, timeout=60.0)
            _check_tables(self.path, conn)
            return conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path.parent}: cannot create the folder "
                             f"({exc.strerror})") from exc
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a cell is one transaction.
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=60.0)
        try:
            # Read the schema before anything writes: a corrupt file fails here, untouched.
            _check_tables(self.path, conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives process kills
            conn.executescript(_SCHEMA)
            self._conn = conn
            self._migrate_nullable_lr()
        except BaseException:
            conn.close()
            raise
        return conn

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
            _rollback(self._conn)
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
            if cur.rowcount == 0:  # stored meanwhile (a claim taken over as stale): keep it
                conn.execute("DELETE FROM claims WHERE hash = ?", (key,))
                conn.execute("COMMIT")
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
            conn.execute("DELETE FROM claims WHERE hash = ?", (key,))
            conn.executemany(
                "INSERT INTO evals (hash, step, val_loss, metric, extra_json) VALUES (?, ?, ?, ?, ?)",
                [
                    (key, e["step"], e["val_loss"], e["metric"], json.dumps(e["extra"]))
                    for e in result.evals
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return True

    # -- claims (several processes on one store) ---------------------------------------------

    def claim(self, configs: Iterable[CellConfig], owner: Owner, limit: int, *,
              stale_after: float = STALE_AFTER_S) -> list[CellConfig]:
        """Claim up to ``limit`` of ``configs`` that are neither stored nor claimed by a live
        owner; returns the claimed ones, in order. One ``BEGIN IMMEDIATE`` transaction, so two
        processes never claim the same cell."""
        now = time.time()
        claimed: list[CellConfig] = []
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for config in configs:
                if len(claimed) >= limit:
                    break
                if conn.execute("SELECT 1 FROM cells WHERE hash = ?", (config.hash,)).fetchone():
                    continue
                row = conn.execute("SELECT owner, host, pid, heartbeat FROM claims WHERE hash = ?",
                                   (config.hash,)).fetchone()
                if row and row[0] != owner.key and holder_is_live(*row[1:], now, stale_after):
                    continue
                conn.execute(
                    "INSERT OR REPLACE INTO claims (hash, owner, host, pid, heartbeat)"
                    " VALUES (?, ?, ?, ?, ?)", (config.hash, owner.key, owner.host, owner.pid, now))
                claimed.append(config)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return claimed

    def release_claims(self, owner: Owner) -> None:
        """Drop ``owner``'s claims (it stopped: an error, Ctrl-C or the end of the run)."""
        self._conn.execute("DELETE FROM claims WHERE owner = ?", (owner.key,))

    def claims(self) -> list[tuple[str, str]]:
        """(cell hash, owner key) of every claim held now."""
        return list(self._conn.execute("SELECT hash, owner FROM claims ORDER BY hash"))

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

    def record_command(self, command: str, suite: str) -> None:
        """Remember a ``learnlr bench`` command line run into this store (once per text)."""
        self._conn.execute(
            "INSERT OR IGNORE INTO commands (command, suite, first_run) VALUES (?, ?, ?)",
            (command, suite, time.time()))

    def mark_purpose(self, hashes: set[str], purpose: str) -> None:
        """Set the purpose of already stored cells (a tuning run reused by the main grid).

        A ``"main"`` cell keeps its purpose: a run for another purpose (an RL training run's
        base cells, ``"rl-base"``) that reuses a benchmark cell must not take it out of the
        benchmark's report.
        """
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(
                "UPDATE cells SET purpose = ? WHERE hash = ? AND (purpose != 'main' OR ? = 'main')",
                [(purpose, h, purpose) for h in hashes],
            )
            self._conn.execute("COMMIT")
        except BaseException:
            _rollback(self._conn)
            raise

    def supersede(self, configs: Iterable[CellConfig]) -> int:
        """Demote older main cells that ``configs`` replace; returns how many were demoted.

        A main cell with the same workload, optimizer, schedule, seed, budget and LR track as
        one of ``configs`` but another hash (a new base LR, harness version or policy fingerprint)
        gets purpose ``"superseded"``: it stays in the store, but ``learnlr report`` (every main
        cell) no longer counts it next to its replacement.
        """
        rows = [(c.workload, c.optimizer, c.schedule, c.seed, c.budget_steps, c.lr_scale, c.hash)
                for c in configs]
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            before = self._conn.total_changes
            self._conn.executemany(
                "UPDATE cells SET purpose = 'superseded' WHERE workload = ? AND optimizer = ?"
                " AND schedule = ? AND seed = ? AND budget_steps = ?"
                # lr_scale is left out of a tuned-track cell's config JSON (its hash predates it)
                " AND COALESCE(json_extract(config_json, '$.lr_scale'), 1.0) = ? AND hash != ?"
                " AND purpose = 'main'",
                rows,
            )
            demoted = self._conn.total_changes - before
            self._conn.execute("COMMIT")
        except BaseException:
            _rollback(self._conn)
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

    def lr_ranges(self) -> dict[str, tuple[float | None, float | None]]:
        """Cell hash -> (smallest, largest) finite LR of its trajectory (None: none finite)."""
        rows = self._conn.execute("SELECT hash, MIN(lr), MAX(lr) FROM trajectory GROUP BY hash")
        return {h: (lo, hi) for h, lo, hi in rows}

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

    def commands(self, suites: Iterable[str]) -> list[str]:
        """The recorded bench command lines of these suites, oldest first (none in a store
        written before commands were recorded, even opened read-only)."""
        has_table = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'commands'").fetchone()
        if not has_table:
            return []
        wanted = set(suites)
        rows = self._conn.execute("SELECT command, suite FROM commands ORDER BY first_run, command")
        return [command for command, suite in rows if suite in wanted]

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

