"""Where cells run: in this process, a local process pool, or Ray tasks.

An executor only *computes*: it takes cell configs one at a time (``submit``) and hands back
finished results (``wait``); the caller stores them. Because a cell is a pure function of its
config, every executor gives the same numbers for the same seeds (wall times aside).

Example::

    with open_executor("local", workers=2) as executor:
        executor.submit(config)
        results = executor.wait(timeout=1.0)   # [] if nothing finished within the timeout
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from learnlr.bench.records import CellConfig, CellResult
from learnlr.bench.runner import run_cell
from learnlr.errors import UserError

BACKENDS = ("local", "ray")


class WorkerDied(UserError):
    """A pool worker process ended mid-run (killed, out of memory): the pool cannot go on."""


class Executor:
    """Runs submitted cells; ``slots`` cells may be in flight at once."""

    slots = 1

    def submit(self, config: CellConfig) -> None:
        """Start (or queue) one cell."""
        raise NotImplementedError

    def wait(self, timeout: float) -> list[CellResult]:
        """Results finished since the last call; may return [] after ``timeout`` seconds."""
        raise NotImplementedError


class InProcessExecutor(Executor):
    """One cell at a time in this process (``--workers 1``): no start-up cost, easy to debug."""

    def __init__(self, plugins: Sequence[str]) -> None:
        self._plugins = list(plugins)
        self._queue: deque[CellConfig] = deque()

    def submit(self, config: CellConfig) -> None:
        self._queue.append(config)

    def wait(self, timeout: float) -> list[CellResult]:
        return [run_cell(self._queue.popleft(), self._plugins)] if self._queue else []


def _run_cell_task(config_json: dict[str, Any], plugins: list[str]) -> CellResult:
    return run_cell(CellConfig.from_json(config_json), plugins)


def _init_pool_worker(parent_pid: int) -> None:
    """Pool-worker initializer: leave Ctrl-C to the parent, and exit when the parent dies.

    A terminal's Ctrl-C reaches every process of the group; the parent alone decides what to
    do (stop the workers, keep what is stored), so a worker must not die with a traceback.
    A SIGKILLed parent cannot shut its pool down, and workers blocked on their task queue would
    otherwise live on as orphans, still burning CPU on an unwanted cell.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


class PoolExecutor(Executor):
    """``workers`` spawned processes, each running one cell at a time."""

    def __init__(self, workers: int, plugins: Sequence[str]) -> None:
        self.slots = workers
        self._plugins = list(plugins)
        # spawn, not fork: a forked torch process can deadlock on inherited thread pools.
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_pool_worker, initargs=(os.getpid(),))
        self._futures: set[concurrent.futures.Future[CellResult]] = set()
        self._broken = False

    def submit(self, config: CellConfig) -> None:
        self._futures.add(self._pool.submit(_run_cell_task, config.to_json(), self._plugins))

    def wait(self, timeout: float) -> list[CellResult]:
        done, self._futures = concurrent.futures.wait(
            self._futures, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        results = []
        for future in done:
            try:
                results.append(future.result())
            except BrokenProcessPool:
                # A worker was killed: every cell still in the pool is lost. The results that
                # did come back go to the store first; the next call then ends the run.
                self._broken = True
        if self._broken and not results:
            raise WorkerDied("a worker process died (killed, or out of memory?); the finished "
                             "cells are saved; re-run the same command to resume")
        return results

    def close(self, *, abort: bool) -> None:
        """Shut the pool down; ``abort`` (an error or Ctrl-C) stops running cells at once."""
        if abort:
            # Workers ignore SIGINT and a running cell may take minutes: end them now.
            if hasattr(self._pool, "terminate_workers"):  # Python >= 3.14
                self._pool.terminate_workers()
            else:  # the pool's own workers only, never other children of this process
                for process in list(self._pool._processes.values()):
                    process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=abort)


class RayExecutor(Executor):
    """Ray tasks with one CPU each, on a local Ray instance or a running cluster."""

    def __init__(self, workers: int, plugins: Sequence[str]) -> None:
        import ray

        self.slots = workers
        self._plugins = list(plugins)
        self._task = ray.remote(num_cpus=1)(_run_cell_task)
        self._pending: list[Any] = []

    def submit(self, config: CellConfig) -> None:
        self._pending.append(self._task.remote(config.to_json(), self._plugins))

    def wait(self, timeout: float) -> list[CellResult]:
        import ray

        if not self._pending:
            return []
        done, self._pending = ray.wait(self._pending, num_returns=1, timeout=timeout)
        return [ray.get(ref) for ref in done]


@contextlib.contextmanager
def open_executor(backend: str, workers: int, plugins: Sequence[str] = ()) -> Iterator[Executor]:
    """The executor for ``backend``; worker start-up (torch imports, Ray) is paid once."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if backend == "ray":
        with ray_session(workers):
            yield RayExecutor(workers, plugins)
    elif workers == 1:
        yield InProcessExecutor(plugins)
    else:
        pool = PoolExecutor(workers, plugins)
        try:
            yield pool
        except BaseException:
            pool.close(abort=True)
            raise
        pool.close(abort=False)


@contextlib.contextmanager
def ray_session(workers: int) -> Iterator[None]:
    """Start a local Ray instance for the block unless one is already running."""
    import ray

    if ray.is_initialized():
        yield
        return
    # Workers must import what the driver imports (plugins live on the driver's sys.path).
    path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    ray.init(
        num_cpus=workers,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield
    finally:
        ray.shutdown()


def default_workers() -> int:
    """One worker per available CPU core (each cell pins torch to one thread)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
