"""Thin adapters from GreedyLR to the places people train.

Each submodule imports its framework, so import only the one you use:

* :mod:`learnlr.integrations.transformers`: ``use_greedy_lr(trainer)`` for the HF ``Trainer``
  (``learnlr[hf]``)
* :mod:`learnlr.integrations.lightning`: ``lr_scheduler_config(self, opt)`` for PyTorch Lightning
  (``learnlr[lightning]``)
* :mod:`learnlr.integrations.optax`: ``greedy_lr``, an optax transformation (``learnlr[jax]``)

Distributed metric reduction and deferred (GPU-friendly) stepping live in :class:`learnlr.GreedyLR`
itself (``reduce=``, ``sync_every=``); see docs/integrations.md.
"""
