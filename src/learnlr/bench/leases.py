"""Who computes which cell when several ``learnlr bench`` processes share one ``--out``.

Before a process runs a cell it *claims* it in the store (a row in ``claims`` with its owner and
a heartbeat, taken in one ``BEGIN IMMEDIATE`` transaction), so two processes never compute the
same cell. A claim whose owner is gone is taken over: on this machine when the owner's pid no
longer exists (a SIGKILLed run frees its cells at once), anywhere when its heartbeat is older
than :data:`STALE_AFTER_S`. :class:`Heartbeat` renews the owner's claims from a thread.

This is for processes on **one machine**: SQLite's locking is unreliable on network file
systems, so to spread a benchmark over machines use ``--backend ray`` (one driver, one store).

Example::

    owner = Owner.current()
    with Heartbeat(store_path, owner):
        for config in store.claim(todo, owner, limit=4):
            ...
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HEARTBEAT_S = 5.0
"""How often a running benchmark renews its claims."""
STALE_AFTER_S = 60.0
"""A claim not renewed for this long is taken over (its owner hangs, or runs elsewhere)."""


@dataclass(frozen=True)
class Owner:
    """One running benchmark: host and pid, plus a token in case the pid is reused later."""

    host: str
    pid: int
    token: str

    @classmethod
    def current(cls) -> Owner:
        """The owner identity of this process (a fresh token per call: one per run)."""
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:12])

    @property
    def key(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"


def pid_exists(pid: int) -> bool:
    """True if a process with this pid exists on this machine (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:  # a zombie (killed, not yet reaped by its parent) computes nothing any more
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def holder_is_live(host: str, pid: int, heartbeat: float, now: float,
                   stale_after: float = STALE_AFTER_S) -> bool:
    """Whether a claim's holder may still be computing the cell."""
    if now - heartbeat > stale_after:
        return False
    return pid_exists(pid) if host == socket.gethostname() else True


class Heartbeat:
    """Renews ``owner``'s claims every ``interval`` seconds from a daemon thread.

    It has its own connection (SQLite connections belong to one thread); use as a context
    manager around the run.
    """

    def __init__(self, store_path: Path, owner: Owner, interval: float = HEARTBEAT_S) -> None:
        self._path, self._owner, self._interval = store_path, owner, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="claims-heartbeat")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=60.0)
        try:
            while not self._stop.wait(self._interval):
                try:
                    conn.execute("UPDATE claims SET heartbeat = ? WHERE owner = ?",
                                 (time.time(), self._owner.key))
                except sqlite3.OperationalError:  # busy past the timeout: try again next beat
                    continue
        finally:
            conn.close()
