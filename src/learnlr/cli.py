"""The ``learnlr`` command line.

Each area registers its own sub-commands (``register(subparsers)`` in ``learnlr.<area>.cli``),
and this file only dispatches. The table below names every command, so ``learnlr --help`` lists
them all without importing any area (it stays fast and shows commands whose extra is missing);
only the area of the command being run is imported. A command whose optional extra is missing
exits 2 with one line that names the ``pip install`` to run.

Exit codes: 0 success, 2 bad usage (unknown names, malformed options, a missing extra), 130
interrupted (Ctrl-C in ``bench`` and the ``rl`` commands, which say what they kept).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from learnlr import __version__
from learnlr.errors import MissingExtra, UserError

USAGE_ERROR = 2

# Modules whose absence means the extra is not installed (one per extra is enough to tell).
_EXTRA_MODULES = {
    "bench": ("sklearn", "rich", "matplotlib"),
    "rl": ("gymnasium", "stable_baselines3", "safetensors"),
}


@dataclass(frozen=True)
class Command:
    """A top-level sub-command: the module that registers it and the extras it needs."""

    name: str
    module: str
    help: str
    extras: tuple[str, ...]


COMMANDS = (
    Command("demo", "learnlr.demo", "GreedyLR vs a constant LR on sklearn digits (seconds)",
            ("bench",)),
    Command("bench", "learnlr.bench.cli",
            "run every schedule side by side (tune base LRs, train, report)", ("bench",)),
    Command("report", "learnlr.bench.cli",
            "rebuild report.md, summary.json and plots from DIR/runs.sqlite", ("bench",)),
    Command("list", "learnlr.bench.cli", "list workloads, optimizers, schedules, suites",
            ("bench",)),
    Command("nmf", "learnlr.nmf.cli", "stochastic NMF with a learning-rate stability bound",
            ("bench",)),
    Command("rl", "learnlr.rl.cli", "train / evaluate RL learning-rate policies", ("rl", "bench")),
)


def _check_extras(command: Command) -> None:
    for extra in command.extras:
        missing = [m for m in _EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingExtra(f"'learnlr {command.name}' needs the {extra} extra (module "
                               f"{missing[0]!r} is missing): pip install \"learnlr[{extra}]\"")


def _command_of(argv: Sequence[str]) -> Command | None:
    # The top-level parser has only -h/--version, so the first word is the command.
    first = next(iter(argv), "")
    return next((c for c in COMMANDS if c.name == first), None)


def build_parser(command: Command | None = None) -> argparse.ArgumentParser:
    """The parser; ``command``'s area is imported and registers its real sub-parsers, every
    other command is a stub that only shows its help line."""
    parser = argparse.ArgumentParser(
        prog="learnlr",
        description="Learned learning-rate schedules: GreedyLR, NMF stability bounds, "
        "RL-learned schedules and a side-by-side schedule benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"learnlr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    loaded = None
    for entry in COMMANDS:
        if command is not None and entry.module == command.module:
            if loaded is None:
                _check_extras(command)
                importlib.import_module(command.module).register(sub)
                loaded = command.module
            continue
        sub.add_parser(entry.name, help=entry.help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(_command_of(argv))
    except MissingExtra as exc:
        print(f"learnlr: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:  # e.g. a corrupt store given to `rl train --bc-store`
        print(f"learnlr: error: {exc}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
