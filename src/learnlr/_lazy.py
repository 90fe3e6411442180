"""PEP 562 lazy names for package ``__init__`` files.

A package lists ``name -> defining module`` once; the module is imported on first attribute
access, so ``import learnlr`` or ``import learnlr.control`` loads no torch and ``learnlr --help``
stays fast. Used by every ``learnlr`` package that re-exports names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` that import ``names[name]`` on first use.

    Example (in a package's ``__init__.py``)::

        __getattr__, __dir__ = lazy_names(__name__, {"GreedyLR": "learnlr.torch.greedy"})
    """

    def __getattr__(name: str) -> Any:
        module_name = names.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name), name)
        setattr(importlib.import_module(package), name, value)  # later lookups skip this hook
        return value

    def __dir__() -> list[str]:
        return sorted(set(names) | set(vars(importlib.import_module(package))))

    return __getattr__, __dir__
