"""learnlr: learned learning-rate schedules.

>>> from learnlr import GreedyLR

Names are resolved lazily (PEP 562): ``import learnlr`` loads neither torch nor numpy; the
torch scheduler is imported the first time ``learnlr.GreedyLR`` is used.
"""

from learnlr._lazy import lazy_names

__version__ = "0.1.0"
__all__ = ["EvalGreedyLR", "GreedyConfig", "GreedyController", "GreedyLR", "__version__"]

__getattr__, __dir__ = lazy_names(__name__, {
    "GreedyConfig": "learnlr.control.greedy",
    "GreedyController": "learnlr.control.greedy",
    "GreedyLR": "learnlr.torch.greedy",
    "EvalGreedyLR": "learnlr.torch.clocked",
})
