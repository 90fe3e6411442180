"""Where the layers are wired together: the modules that plug into lower layers' registries.

The benchmark (:mod:`learnlr.bench`) and the NMF solver (:mod:`learnlr.nmf`) sit below
:mod:`learnlr.rl` and never import it; rl adds its schedules (``rl``, ``rl_deep``; NMF's ``rl``)
to their registries from :mod:`learnlr.rl.schedules`. Each registry calls
:func:`load_schedule_providers` when it is imported, which imports the providers listed here
(this top-level module is the one place that knows both layers) plus those that installed
packages declare under the entry point group :data:`SCHEDULE_ENTRY_POINTS`::

    [project.entry-points."learnlr.schedules"]
    my_schedule = "my_package.learnlr_schedules"   # a module that calls register_schedule
"""

from __future__ import annotations

import importlib
import importlib.metadata

__all__ = ["SCHEDULE_ENTRY_POINTS", "SCHEDULE_PROVIDERS", "load_schedule_providers"]

SCHEDULE_PROVIDERS: tuple[str, ...] = ("learnlr.rl.schedules",)
"""learnlr's own modules that register schedules when imported."""
SCHEDULE_ENTRY_POINTS = "learnlr.schedules"
"""Entry point group of third-party schedule providers (the value is a module name)."""


def load_schedule_providers() -> None:
    """Import every provider once (a registry imported later finds them already loaded).

    A provider whose third-party dependency is missing is skipped, so its schedules are absent;
    a broken learnlr module raises.
    """
    names = list(SCHEDULE_PROVIDERS)
    names += [ep.value for ep in importlib.metadata.entry_points(group=SCHEDULE_ENTRY_POINTS)
              if ep.value not in names]
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] == "learnlr":
                raise
