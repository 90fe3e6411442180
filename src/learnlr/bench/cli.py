"""``learnlr bench``, ``learnlr report`` and ``learnlr list``.

Every option is checked here, once, before any work starts; past that point, errors a user can
cause (an unusable store, an unwritable folder, Ctrl-C) become one line on stderr.
Exit codes: 0 success, 2 bad usage or an unusable store / output folder, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import shlex
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from learnlr.bench.backends import BACKENDS, default_workers
from learnlr.bench.benchmark import (
    TUNE_MODES,
    BenchRequest,
    Progress,
    run_benchmark,
    workload_budget,
)
from learnlr.bench.records import CellConfig
from learnlr.bench.schedules import OPTIMIZERS, SCHEDULES, expand_schedule_names
from learnlr.bench.store import STORE_FILENAME, ExperimentStore, StoreError
from learnlr.bench.suites import SUITES
from learnlr.bench.workloads import load_workloads
from learnlr.cli_args import folder_problem, nonempty_path, positive_int
from learnlr.errors import UserError

USAGE_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command


class UsageError(Exception):
    """A bad option value found while checking (the message names the option)."""


def _names(value: str) -> list[str]:
    """Accept both ``--schedules a b`` and ``--schedules a,b``."""
    return [v for v in value.split(",") if v]


def _flatten(groups: list[list[str]] | None) -> list[str] | None:
    return None if groups is None else [n for group in groups for n in group]


def _usage_error(message: str) -> int:
    print(f"learnlr: error: {message}", file=sys.stderr)
    return USAGE_ERROR


def _one_line_errors(command: Callable[[argparse.Namespace], int]
                     ) -> Callable[[argparse.Namespace], int]:
    """Turn what a user can cause into one line and an exit code, never a traceback."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except UsageError as exc:
            return _usage_error(str(exc))
        except StoreError as exc:
            return _usage_error(str(exc))
        except UserError as exc:  # e.g. a pool worker killed mid-run (WorkerDied)
            return _usage_error(str(exc))
        except sqlite3.DatabaseError as exc:  # corruption or a full disk, past the open checks
            saved = getattr(args, "saved_cells", 0)
            kept = (f"{saved} cells saved; re-run to resume" if saved
                    else "the file was left as it was")
            return _usage_error(f"{_store_path(args)}: {exc} ({kept})")
        except OSError as exc:  # writing report.md / plots: unwritable folder, disk full, ...
            if exc.filename is None:
                return _usage_error(str(exc))
            return _usage_error(f"{exc.filename}: {exc.strerror or exc}")
        except KeyboardInterrupt:
            if hasattr(args, "saved_cells"):  # bench: say what is kept and how to go on
                print(f"\nlearnlr: interrupted; {args.saved_cells} cells saved; re-run to "
                      f"resume ({_store_path(args)})", file=sys.stderr)
            else:
                print("\nlearnlr: interrupted", file=sys.stderr)
            return INTERRUPTED

    return run


def _store_path(args: argparse.Namespace) -> Path:
    """The store a command reads: ``report DIR``'s, or ``bench --out``'s."""
    return Path(getattr(args, "dir", None) or getattr(args, "out", None) or ".") / STORE_FILENAME


def _check_out_folder(option: str, folder: Path) -> None:
    """An existing --out must be a writable folder (a file there would be a confusing error)."""
    problem = folder_problem(folder)
    if problem is not None:
        raise UsageError(f"{option}: {problem}")


class _RichProgress(Progress):
    """A rich progress bar with ETA, one task per phase, on stderr; counts the cells saved."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args  # args.saved_cells: what the Ctrl-C message reports
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[last]}"),
            console=Console(stderr=True),
        )
        self._task: Any = None

    def __enter__(self) -> _RichProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def phase(self, name: str, total: int) -> None:
        self._task = self._bar.add_task(name, total=total, last="")

    def advance(self, config: CellConfig, *, elsewhere: bool = False) -> None:
        c = config
        if not elsewhere:
            self._args.saved_cells += 1
        self._bar.update(self._task, advance=1,
                         last=f"{c.workload}/{c.optimizer}/{c.schedule}/s{c.seed}"
                         + (" (another process)" if elsewhere else ""))


def _console() -> Any:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped (make demo | tee): rich would assume 80 columns
        console = Console(width=120)
    return console


def _print_headline(summary: dict[str, Any]) -> None:
    """report.md's headline: one seed-mean table per LR track (the per-seed table for a summary
    without tracks), then the steps-to-target speedups."""
    from rich.table import Table

    from learnlr.bench.report import sorted_tracks, track_table, track_title

    console = _console()
    tracks = sorted_tracks(summary)
    for scale, track in tracks:
        columns, rows = track_table(track)
        # A line of its own: rich would wrap a title wider than the table.
        print(f"GreedyLR as-good-or-better, {track_title(scale, track)}", flush=True)
        table = Table()
        for column in columns:
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    if tracks:
        print(f"{summary['cells']} cells; seed-mean final val loss per (workload, optimizer), "
              "1% band; only the track schedules run at x0.1 / x10 (see report.md)")
    else:
        _print_per_seed(summary, console)
    for greedy, s in summary["speedup_vs_cosine"].items():
        speed = s["median_speedup"]
        print(f"{greedy}: median steps-to-target speedup vs cosine = "
              f"{'-' if speed is None else f'{speed:.2f}x'} over {s['n_both_reached']} pairs")


def _print_per_seed(summary: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    from learnlr.bench.report import HEADLINE_COLUMNS_SHORT, headline_rows

    table = Table(
        title=f"GreedyLR as-good-or-better, paired per seed ({summary['cells']} cells)",
        caption="step/eval = greedy_step/greedy_eval; 1% = relative tie band, 0.1 = absolute; "
        "W/T/L at 1%; area = rival's steps-to-target profile area",
    )
    for column in HEADLINE_COLUMNS_SHORT:
        table.add_column(column, no_wrap=column in ("vs", "W/T/L"))
    for row in headline_rows(summary):
        table.add_row(*row)
    console.print(table)


def _command_line(args: argparse.Namespace) -> str:
    """The bench command as a user would retype it (recorded in report.md)."""
    parts = ["learnlr", "bench", "--suite", args.suite]
    for option in ("workloads", "schedules", "optimizers"):
        names = _flatten(getattr(args, option))
        if names:
            parts += [f"--{option}", *names]
    for option in ("seeds", "workers"):
        if getattr(args, option) is not None:
            parts += [f"--{option}", str(getattr(args, option))]
    parts += ["--backend", args.backend, "--tune", args.tune]
    for plugin in args.plugin or ():
        parts += ["--plugin", plugin]
    parts += ["--out", args.out]
    return " ".join(shlex.quote(p) for p in parts)


def _check_names(args: argparse.Namespace, registry: dict[str, Any]) -> None:
    """--workloads / --optimizers / --schedules: known names, at least one each."""
    for option in ("workloads", "schedules", "optimizers"):
        if getattr(args, option) is not None and not _flatten(getattr(args, option)):
            raise UsageError(f"--{option}: expected at least one name, got none")
    for name in _flatten(args.workloads) or ():
        if name not in registry:
            raise UsageError(f"--workloads: unknown workload {name!r}; valid workloads: "
                             f"{', '.join(sorted(registry)) or '(none registered)'}")
    for name in _flatten(args.optimizers) or ():
        if name not in OPTIMIZERS:
            raise UsageError(f"--optimizers: unknown optimizer {name!r}; valid optimizers: "
                             f"{', '.join(OPTIMIZERS)}")


def _check_workloads(args: argparse.Namespace, registry: dict[str, Any]) -> list[str]:
    """The workloads to run: named ones, or the suite's; each needs a budget in the suite."""
    suite = SUITES[args.suite]
    if args.plugin and args.workloads is None:
        raise UsageError(
            "--plugin: also name the plugin's workloads with --workloads (without it the "
            f"suite's built-in workloads would run); registered: {', '.join(sorted(registry))}")
    workloads = _flatten(args.workloads) or list(suite.workloads)
    missing = [w for w in workloads if w not in registry]
    if missing:
        raise UsageError(f"suite {suite.name!r} needs workloads that are not registered: "
                         f"{missing}; registered: {sorted(registry)} (a built-in workload is "
                         'missing when its package is: pip install "learnlr[bench]")')
    for name in workloads:
        if workload_budget(registry[name], suite) is None:
            entry = registry[name]
            raise UsageError(
                f"--suite {suite.name}: workload {name!r} has no budget for {suite.budget_key!r} "
                f"(its budget_steps: {dict(entry.budget_steps)}, eval_every: "
                f"{dict(entry.eval_every)}); pick another --suite or add the budget")
    return workloads


def _check_schedules(args: argparse.Namespace) -> list[str] | None:
    """Known schedule names (aliases expanded) with cells in the chosen optimizer columns."""
    suite = SUITES[args.suite]
    schedules = _flatten(args.schedules)
    if schedules is not None:
        try:
            schedules = expand_schedule_names(schedules)
        except ValueError as exc:
            raise UsageError(f"--schedules: {exc}") from None
    chosen_optimizers = _flatten(args.optimizers) or list(suite.optimizers)
    chosen_schedules = schedules or list(suite.schedules)
    if not any(o in SCHEDULES[s].optimizers for s in chosen_schedules for o in chosen_optimizers):
        raise UsageError(
            f"no cells: schedules {chosen_schedules} do not run in optimizer columns "
            f"{chosen_optimizers} (see `learnlr list` for each schedule's columns)")
    missing = {s: SCHEDULES[s].missing_modules() for s in chosen_schedules}
    missing = {s: m for s, m in missing.items() if m}
    if missing:
        raise UsageError(
            f"--schedules: {sorted(missing)} need packages that are not installed "
            f"({sorted({m for ms in missing.values() for m in ms})}); pip install "
            '"learnlr[bench]" or leave these schedules out with --schedules')
    return schedules


def _bench_request(args: argparse.Namespace) -> BenchRequest:
    """Check every bench option; the request the runner can trust."""
    plugins = tuple(args.plugin or ())
    if args.backend == "ray":
        try:
            import ray  # noqa: F401
        except ModuleNotFoundError:
            raise UsageError(
                "--backend ray: Ray is not installed (pip install 'learnlr[ray]')") from None
    try:
        registry = load_workloads(plugins)
    except ValueError as exc:
        raise UsageError(f"--plugin: {exc}") from None
    _check_names(args, registry)
    schedules = _check_schedules(args)
    workloads = _check_workloads(args, registry)
    _check_out_folder("--out", Path(args.out))
    optimizers = _flatten(args.optimizers)
    return BenchRequest(
        suite=SUITES[args.suite],
        out_dir=Path(args.out),
        workloads=tuple(workloads),
        optimizers=None if optimizers is None else tuple(optimizers),
        schedules=None if schedules is None else tuple(schedules),
        seeds=args.seeds,
        backend=args.backend,
        workers=args.workers or default_workers(),
        plugins=plugins,
        tune=args.tune,
    )


@contextlib.contextmanager
def _stops_as_interrupts() -> Iterator[None]:
    """SIGTERM and SIGHUP (``docker stop``, a batch scheduler, a closed ssh session) end the run
    as Ctrl-C does: running cells stopped, claims released, "N cells saved" and exit 130."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # only main may set them
        yield
        return
    stops = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {sig: signal.signal(sig, interrupt) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@_one_line_errors
def _bench(args: argparse.Namespace) -> int:
    from learnlr.bench.report import REPORT_FILENAME, write_report

    args.saved_cells = 0  # counted by the progress bar; reported on Ctrl-C
    request = _bench_request(args)
    command = _command_line(args)
    # Recorded before any cell runs, so `learnlr report` can name it even after a Ctrl-C.
    with ExperimentStore(request.out_dir / STORE_FILENAME) as store:
        store.record_command(command, request.suite.name)
    with _RichProgress(args) as progress, _stops_as_interrupts():
        plan = run_benchmark(request, progress)
    summary = write_report(request.out_dir, hashes=plan.main_hashes, plugins=request.plugins,
                           command=command)
    _print_headline(summary)
    if plan.by_others:
        print(f"{plan.computed} cells computed here, {plan.by_others} by other processes "
              "sharing this folder")
    print(f"report: {request.out_dir / REPORT_FILENAME}")
    _hint_partial_report(request.out_dir, len(plan.main_hashes))
    return 0


def _hint_partial_report(out_dir: Path, reported: int) -> None:
    """Say so when the store holds more main cells than this run's report covers (a run with
    --schedules / --workloads on an existing folder rewrites the report for its selection)."""
    with ExperimentStore(out_dir / STORE_FILENAME, readonly=True) as store:
        stored = store.count_cells("main")
    if stored > reported:
        print(f"the report covers this run's {reported} cells; {out_dir / STORE_FILENAME} holds "
              f"{stored}: `learnlr report {out_dir}` rebuilds it from all of them")


@_one_line_errors
def _report(args: argparse.Namespace) -> int:
    from learnlr.bench.report import REPORT_FILENAME, ReportFilter, write_report

    store_dir = Path(args.dir)
    if not (store_dir / STORE_FILENAME).is_file():
        raise UsageError(f"DIR: no {STORE_FILENAME} in {str(store_dir)!r} "
                         "(run `learnlr bench` first)")
    out = Path(args.out or args.dir)
    _check_out_folder("--out" if args.out else "DIR", out)
    chosen = ReportFilter(suite=args.suite, workloads=_flatten(args.workloads))
    try:
        summary = write_report(store_dir, out_dir=out, only=chosen,
                               plugins=tuple(args.plugin or ()))
    except ValueError as exc:  # a filter that matches nothing in this store
        raise UsageError(str(exc)) from None
    _print_headline(summary)
    print(f"report: {out / REPORT_FILENAME}")
    return 0


@_one_line_errors
def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    try:
        registry = load_workloads(tuple(args.plugin or ()))
    except ValueError as exc:
        raise UsageError(f"--plugin: {exc}") from None
    table = Table(title="workloads")
    for column in ("name", "metric", "steps tiny/quick/full"):
        table.add_column(column, no_wrap=True)
    table.add_column("provenance", ratio=1)
    for name, entry in sorted(registry.items()):
        budgets = "/".join(str(entry.budget_steps.get(k, "-")) for k in ("tiny", "quick", "full"))
        table.add_row(name, entry.metric_name, budgets, entry.provenance)
    console.print(table)
    table = Table(title="optimizers")
    table.add_column("name")
    table.add_column("what")
    for name, what in OPTIMIZERS.items():
        table.add_row(name, what)
    console.print(table)
    table = Table(title="schedules")
    for column in ("name", "kind", "optimizer columns", "what"):
        table.add_column(column)
    for name, spec in SCHEDULES.items():
        table.add_row(name, spec.kind, ", ".join(spec.optimizers), spec.description)
    console.print(table)
    table = Table(title="suites")
    for column in ("name", "workloads", "optimizers", "schedules", "seeds", "what"):
        table.add_column(column)
    for suite in SUITES.values():
        table.add_row(suite.name, str(len(suite.workloads)), ", ".join(suite.optimizers),
                      str(len(suite.schedules)), str(suite.seeds), suite.description)
    console.print(table)
    return 0


def _add_plugin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plugin", action="append", metavar="MODULE",
        help="import MODULE, which defines WORKLOADS = {name: Workload class}, to benchmark "
        "your own workloads (repeatable)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench``, ``report`` and ``list`` to the ``learnlr`` command line."""
    bench = subparsers.add_parser(
        "bench", help="run every schedule side by side (tune base LRs, train, report)",
        description="Run a benchmark suite into DIR (resumable: finished cells are skipped; "
        "Ctrl-C keeps every finished cell). Several `learnlr bench` processes on one machine "
        "may share DIR: they claim cells in DIR/runs.sqlite and split the work. Across machines "
        "use --backend ray (SQLite's locks are unreliable on network file systems).",
    )
    bench.add_argument("--suite", choices=sorted(SUITES), default="quick",
                       help="which cells to run (default: quick)")
    bench.add_argument("--workloads", nargs="+", type=_names, metavar="NAME",
                       help="only these workloads (names from `learnlr list`)")
    bench.add_argument("--schedules", nargs="+", type=_names, metavar="NAME",
                       help="only these schedules (aliases: sgd_hd, adam_hd, hd, greedy)")
    bench.add_argument("--optimizers", nargs="+", type=_names, metavar="NAME",
                       help=f"only these optimizer columns ({', '.join(OPTIMIZERS)})")
    bench.add_argument("--seeds", type=positive_int, metavar="N",
                       help="seeds 0..N-1 (default: the suite's)")
    bench.add_argument("--workers", type=positive_int, metavar="N",
                       help="parallel worker processes (default: one per CPU core)")
    bench.add_argument("--backend", choices=BACKENDS, default="local",
                       help="local process pool or Ray tasks (extra learnlr[ray])")
    bench.add_argument("--tune", choices=TUNE_MODES, default="shared",
                       help="shared: one base LR per (workload, optimizer) from the constant "
                       "schedule's grid (default); per-schedule: each fixed schedule also gets "
                       "its own from the grid (AlgoPerf's external tuning: the strongest "
                       "baselines; use its own --out)")
    bench.add_argument("--out", required=True, metavar="DIR", type=nonempty_path,
                       help="output folder: runs.sqlite, summary.json, report.md, plots")
    _add_plugin(bench)
    bench.set_defaults(func=_bench)

    report = subparsers.add_parser(
        "report", help="rebuild report.md, summary.json and plots from DIR/runs.sqlite",
        description="Summarize the comparison cells stored in DIR/runs.sqlite (all of them, or "
        "those of one suite / some workloads) into report.md, summary.json and plots.")
    report.add_argument("dir", metavar="DIR", type=nonempty_path)
    report.add_argument("--suite", choices=sorted(SUITES),
                        help="only cells run by this suite (a folder may hold several)")
    report.add_argument("--workloads", nargs="+", type=_names, metavar="NAME",
                        help="only these workloads")
    report.add_argument("--out", metavar="FOLDER", type=nonempty_path,
                        help="write the report files here instead of DIR (DIR is only read)")
    _add_plugin(report)
    report.set_defaults(func=_report)

    listing = subparsers.add_parser("list", help="list workloads, optimizers, schedules, suites")
    _add_plugin(listing)
    listing.set_defaults(func=_list)
