"""Where the layers are wired together: the modules that plug into lower layers' registries.

The benchmark (:mod:`learnlr.bench`) sits below :mod:`learnlr.rl` and never imports it; rl adds
its schedules (``rl``, ``rl_deep``) to the benchmark registry from :mod:`learnlr.rl.schedules`
through :func:`learnlr.bench.schedules.register_schedule`. The benchmark imports the providers
listed here (this top-level module is the one place that knows both layers), plus those that
installed packages declare under the entry point group :data:`SCHEDULE_ENTRY_POINTS`::

    [project.entry-points."learnlr.schedules"]
    my_schedule = "my_package.learnlr_schedules"   # a module that calls register_schedule
"""

from __future__ import annotations

SCHEDULE_PROVIDERS: tuple[str, ...] = ("learnlr.rl.schedules",)
"""learnlr's own modules that register benchmark schedules when imported."""
SCHEDULE_ENTRY_POINTS = "learnlr.schedules"
"""Entry point group of third-party schedule providers (the value is a module name)."""
