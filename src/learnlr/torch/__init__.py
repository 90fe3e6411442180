"""PyTorch adapters: GreedyLR as an LRScheduler, and optimizer-level peers used by the benchmark."""

from learnlr._lazy import lazy_names

__all__ = ["EvalGreedyLR", "GreedyLR"]

__getattr__, __dir__ = lazy_names(__name__, {"GreedyLR": "learnlr.torch.greedy",
                                             "EvalGreedyLR": "learnlr.torch.clocked"})
