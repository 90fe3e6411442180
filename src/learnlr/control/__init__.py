"""Framework-free decision logic (no torch import): the GreedyLR state machine and its helpers."""

from learnlr._lazy import lazy_names

__all__ = [
    "DECREASE",
    "HOLD",
    "INCREASE",
    "RESET",
    "GreedyConfig",
    "GreedyController",
    "RollingMean",
]

__getattr__, __dir__ = lazy_names(__name__, {
    **dict.fromkeys(
        ("DECREASE", "HOLD", "INCREASE", "RESET", "GreedyConfig", "GreedyController"),
        "learnlr.control.greedy",
    ),
    "RollingMean": "learnlr.control.smoothing",
})
