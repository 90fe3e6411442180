"""A tiny workload for the harness tests, independent of the real workloads.

Logistic regression on sklearn's breast-cancer data (569 rows, shipped with scikit-learn, no
network). Registered through the harness's plugin mechanism: ``--plugin bench_toy_workload``.
"""

from __future__ import annotations

import os

import torch
from sklearn.datasets import load_breast_cancer
from torch import nn

from learnlr.bench.workloads.base import EvalResult, Workload

TOY_PLUGIN = "bench_toy_workload"
"""Module name to pass as ``--plugin`` (tests/bench is on the import path under pytest)."""
CALL_LOG_ENV = "LEARNLR_TOY_CALL_LOG"
"""If set, every cell trained on a toy workload appends "pid workload seed" to this file, so
the concurrency test can count computations independently of the store."""


def strip_timing(summary: dict) -> dict:
    """The summary without wall times (the only part that may differ between runs)."""
    return {k: v for k, v in summary.items() if k != "timing"}


def _log_call(workload: str, seed: int) -> None:
    path = os.environ.get(CALL_LOG_ENV)
    if path:  # O_APPEND: lines from several processes never interleave
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{os.getpid()} {workload} {seed}\n".encode())
        finally:
            os.close(fd)


class ToyLogReg(Workload):
    """Logistic regression on standardized breast-cancer features, 30 steps in the tiny suite."""

    name = "toy-logreg"
    provenance = "sklearn.datasets.load_breast_cancer() (ships with scikit-learn)"
    metric_name = "accuracy"
    higher_is_better = True
    budget_steps = {"tiny": 30, "quick": 60, "full": 200}
    eval_every = {"tiny": 10, "quick": 10, "full": 20}

    def __init__(self) -> None:
        self._seed: int | None = None

    def setup(self, seed: int) -> None:
        if self._seed == seed:
            return
        data = load_breast_cancer()
        x = torch.tensor(data.data, dtype=torch.float32)
        y = torch.tensor(data.target, dtype=torch.float32)
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        x, y = x[perm], y[perm]
        x = (x - x[:400].mean(0)) / (x[:400].std(0) + 1e-6)
        self.x_train, self.y_train = x[:400], y[:400]
        self.x_val, self.y_val = x[400:], y[400:]
        self._seed = seed

    def make_model(self, seed: int) -> nn.Module:
        _log_call(self.name, seed)
        torch.manual_seed(seed)
        return nn.Linear(30, 1)

    def batch(self, step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self.x_train), (32,), generator=generator)
        return self.x_train[idx], self.y_train[idx]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(-1), y)

    def evaluate(self, model: nn.Module) -> EvalResult:
        logits = model(self.x_val).squeeze(-1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, self.y_val)
        accuracy = ((logits > 0).float() == self.y_val).float().mean()
        return EvalResult(loss=float(loss), metric=float(accuracy))


WORKLOADS = {ToyLogReg.name: ToyLogReg}


class SlowToyLogReg(ToyLogReg):
    """The same problem with a longer budget, so a benchmark run lasts long enough to kill."""

    name = "toy-logreg-slow"
    budget_steps = {"tiny": 1500, "quick": 1500, "full": 1500}
    eval_every = {"tiny": 300, "quick": 300, "full": 300}


WORKLOADS[SlowToyLogReg.name] = SlowToyLogReg


class ToyLinReg(ToyLogReg):
    """Least squares on sklearn's diabetes data: with a too-large LR, SGD blows up to inf."""

    name = "toy-linreg"
    provenance = "sklearn.datasets.load_diabetes() (ships with scikit-learn)"
    metric_name = "mse"
    higher_is_better = False

    def setup(self, seed: int) -> None:
        if self._seed == seed:
            return
        from sklearn.datasets import load_diabetes

        data = load_diabetes()
        x = torch.tensor(data.data, dtype=torch.float32)
        y = torch.tensor(data.target, dtype=torch.float32)
        x = (x - x.mean(0)) / x.std(0)
        y = (y - y.mean()) / y.std()
        self.x_train, self.y_train = x[:350], y[:350]
        self.x_val, self.y_val = x[350:], y[350:]
        self._seed = seed

    def make_model(self, seed: int) -> nn.Module:
        _log_call(self.name, seed)
        torch.manual_seed(seed)
        return nn.Linear(10, 1)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(model(x).squeeze(-1), y)

    def evaluate(self, model: nn.Module) -> EvalResult:
        mse = float(nn.functional.mse_loss(model(self.x_val).squeeze(-1), self.y_val))
        return EvalResult(loss=mse, metric=mse)


WORKLOADS[ToyLinReg.name] = ToyLinReg


class ToyTinyOnly(ToyLogReg):
    """A workload with a budget for the tiny suite only (``--suite quick`` must refuse it)."""

    name = "toy-tiny-only"
    budget_steps = {"tiny": 30}
    eval_every = {"tiny": 10}


WORKLOADS[ToyTinyOnly.name] = ToyTinyOnly
