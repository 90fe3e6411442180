"""``WorkloadLRControlEnv``: one episode = one training run of a benchmark workload.

The deep-network counterpart of :class:`learnlr.rl.env.LRControlEnv` (NMF). An episode trains
one :mod:`learnlr.bench` workload (drawn per episode from ``workloads``) with one optimizer
(drawn from ``optimizers``) with the benchmark runner's own loop
(:class:`learnlr.bench.runner.TrainingRun`, the loop of :func:`~learnlr.bench.runner.run_cell`,
driven here between decisions; same seeding of the batch generator and of the global RNGs),
while the agent controls the learning rate with the *same* contract as
:class:`learnlr.rl.scheduler.RLScheduler` without a stability bound:

* **Decision timing.** ``RLScheduler`` decides on its calls 0, K, 2K, ... (K =
  ``steps_per_action``), i.e. right after optimizer steps 0, K, 2K, ... (0-based). So
  :meth:`reset` runs step 0 at the base LR and returns the first observation; every
  :meth:`step` applies the action and runs the next K optimizer steps (fewer at the end of
  the budget) and observes after the last of them.
* **Action.** ``a`` in ``[-1, 1]``; ``lr <- lr * exp(a * max_log_change)``, clipped to
  ``[min_relative_lr, max_lr_factor] x base LR`` (the LR is written back as
  ``lr * (new / lr)``, bit for bit what ``RLScheduler`` does).
* **Observation.** :class:`learnlr.rl.features.ObservationBuilder` with the training loss of
  the step, the gradient norm read from the optimizer's ``.grad`` tensors, the LR relative to
  the base LR, and ``step_index / budget`` as the budget fraction.

A policy trained here therefore produces the identical LR trajectory when it runs as
``RLScheduler`` inside the benchmark (tested in ``tests/rl/test_workload_env.py``).

**Reward.** The benchmark's objective is the final validation loss, but one number per run is a
sparse signal. Each decision is rewarded with the decrease of the log of the *mean* training
loss over its window: ``log(mean(previous window)) - log(mean(this window))`` (the first
"window" is step 0's loss), which telescopes to ``log(loss_0 / mean(last window))``. At the end
of the budget the validation loss is evaluated once and ``terminal_weight * log(val_0 /
val_T)`` is added (``val_0``: the untrained model, evaluated at :meth:`reset`); only two
evaluations per episode, so training stays cheap. The end of the budget *truncates* the
episode, as in :class:`learnlr.rl.env.LRControlEnv`. A divergence (a training loss that
:func:`learnlr.control.divergence.has_diverged` flags: non-finite or above ``1e3 x`` step 0's
loss, or a non-finite final validation loss) terminates the episode with
``-divergence_penalty``.

**Base LR.** ``base_lr=None`` (default) uses the centre of the suite's base-LR grid
(:meth:`learnlr.bench.suites.Suite.lr_grid`: SGD 0.1, AdamW 3e-3, Adagrad 3e-2); ``"grid"``
draws one grid point per episode; a float is used for every run; a mapping
``{(workload, optimizer): lr}`` (e.g. the LRs the suite protocol chose, from a benchmark store)
is used where it has an entry, the grid centre elsewhere.

**Determinism.** Each episode draws its workload, optimizer, base LR (``"grid"``) and workload
seed (from ``range(data_seeds)``; workloads cache their data split per seed) from
``self.np_random``; the workload seed then fixes the data split, the initial weights and the
batch generator and the run's global RNG states (:class:`learnlr.bench.runner.RunRNG`, swapped
in only while the run computes, so the agent's own random numbers do not perturb it). Same
``reset(seed=...)``, same episode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from learnlr.bench.runner import TrainingRun
from learnlr.bench.schedules import OPTIMIZERS, TrainingHooks, make_optimizer
from learnlr.bench.suites import SUITES
from learnlr.bench.workloads import WORKLOADS, shared_workload
from learnlr.control.divergence import has_diverged
from learnlr.rl.base_env import LRControlBase
from learnlr.rl.features import ObservationBuilder
from learnlr.rl.scheduler import apply_lr_action, grad_norm_of

__all__ = ["WorkloadLRControlEnv", "default_base_lr", "grad_norm_of"]

LOSS_FLOOR = 1e-4
"""In the reward's logarithms a loss counts as at least this fraction of the run's first loss
(training) or of the untrained model's validation loss: a loss of exactly 0 (a small data set
fitted perfectly) stays finite and one window cannot earn more than log(1e4)."""
BaseLR = float | str | Mapping[tuple[str, str], float] | None


def default_base_lr(optimizer: str, suite: str = "quick") -> float:
    """Centre of ``suite``'s base-LR grid for ``optimizer`` (SGD 0.1, AdamW 3e-3 for quick)."""
    grid = SUITES[suite].lr_grid(optimizer)
    return float(grid[len(grid) // 2])


def _log(x: float, floor: float) -> float:
    """log with a floor: a loss can reach exactly 0 (a perfectly fitted small data set)."""
    return math.log(max(x, floor, 1e-30))


def _names(value: str | Sequence[str], what: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{what} must be a non-empty name or sequence of names, got {value!r}")
    return names


class WorkloadLRControlEnv(LRControlBase):
    """Learning-rate control of a benchmark workload's training run, as a gymnasium env.

    Args:
        workloads: a workload name or names (``learnlr list``); one is drawn per episode.
        optimizers: optimizer column name(s) (``sgd`` = SGD momentum 0.9, ``adamw``,
            ``adagrad``; built by :func:`learnlr.bench.schedules.make_optimizer`); one per
            episode.
        seed: seeds the episode stream (``reset(seed=...)`` overrides it).
        suite: budget key (``"tiny"``, ``"quick"``, ``"full"``) for each workload's budget and
            for the base-LR grid.
        budget_steps: if given, every episode runs this many optimizer steps instead of the
            workload's suite budget (short episodes for tests and cheap training).
        base_lr: see the module docstring (None = grid centre, ``"grid"``, float, or mapping).
        steps_per_action: optimizer steps between two decisions (the policy's K).
        max_log_change: the largest LR change per decision is ``exp(max_log_change)``.
        min_relative_lr: LR floor as a fraction of the base LR.
        max_lr_factor: LR ceiling as a multiple of the base LR (``RLScheduler``'s default 10).
        feature_window: losses in the variance feature.
        terminal_weight: weight of the terminal ``log(val_0 / val_T)`` reward (0 disables the
            two evaluations).
        divergence_penalty: reward when a run diverges (the episode then ends).
        data_seeds: workload seeds are drawn from ``range(data_seeds)``.

    Example:
        >>> env = WorkloadLRControlEnv("digits-cnn", "sgd", seed=0, budget_steps=20)
        >>> obs, info = env.reset()
        >>> obs.shape, info["workload"]
        ((7,), 'digits-cnn')
    """

    def __init__(
        self,
        workloads: str | Sequence[str] = "digits-cnn",
        optimizers: str | Sequence[str] = ("sgd", "adamw"),
        seed: int | None = None,
        *,
        suite: str = "quick",
        budget_steps: int | None = None,
        base_lr: BaseLR = None,
        steps_per_action: int = 10,
        max_log_change: float = math.log(2.0),
        min_relative_lr: float = 1e-2,
        max_lr_factor: float = 10.0,
        feature_window: int = 10,
        terminal_weight: float = 1.0,
        divergence_penalty: float = 10.0,
        data_seeds: int = 16,
    ) -> None:
        super().__init__(seed, steps_per_action=steps_per_action, max_log_change=max_log_change,
                         min_relative_lr=min_relative_lr, feature_window=feature_window,
                         divergence_penalty=divergence_penalty)
        self.workloads = _names(workloads, "workloads")
        self.optimizers = _names(optimizers, "optimizers")
        for name in self.workloads:
            if name == "nmf":
                raise ValueError("workload 'nmf' runs in learnlr.rl.env.LRControlEnv; valid "
                                 f"workloads here: {sorted(WORKLOADS)}")
            if name not in WORKLOADS:
                raise ValueError(f"workload {name!r} is unknown; valid workloads: 'nmf' "
                                 f"(LRControlEnv) or the benchmark's {sorted(WORKLOADS)}")
        for name in self.optimizers:
            if name not in OPTIMIZERS:
                raise ValueError(f"optimizer {name!r} is unknown; valid optimizers: "
                                 f"{sorted(OPTIMIZERS)}")
        if suite not in SUITES:
            raise ValueError(f"suite must be one of {sorted(SUITES)}, got {suite!r}")
        budgets = {}
        for name in self.workloads:
            budget = WORKLOADS[name].budget_steps[suite] if budget_steps is None else budget_steps
            if not isinstance(budget, int) or budget <= steps_per_action:
                raise ValueError(f"budget_steps must be an integer > steps_per_action "
                                 f"({steps_per_action}), got {budget!r} for {name!r}")
            budgets[name] = budget
        if not (max_lr_factor >= 1 and math.isfinite(max_lr_factor)):
            raise ValueError(f"max_lr_factor must be a finite value >= 1, got {max_lr_factor}")
        if not (terminal_weight >= 0 and math.isfinite(terminal_weight)):
            raise ValueError(f"terminal_weight must be finite and >= 0, got {terminal_weight}")
        if not isinstance(data_seeds, int) or data_seeds < 1:
            raise ValueError(f"data_seeds must be an integer >= 1, got {data_seeds!r}")
        self._check_base_lr(base_lr)
        self.suite = suite
        self.budgets = budgets
        self.base_lr_spec = base_lr
        self.max_lr_factor = max_lr_factor
        self.terminal_weight = terminal_weight
        self.data_seeds = data_seeds
        self.loss_history: list[float] = []
        """Per-optimizer-step training losses of the current episode."""
        self.lr_history: list[float] = []
        """The LR each optimizer step of the current episode used."""

    @staticmethod
    def _check_base_lr(base_lr: BaseLR) -> None:
        if base_lr is None or base_lr == "grid":
            return
        if isinstance(base_lr, str):
            raise ValueError(f"base_lr must be None, 'grid', a float or a mapping, got {base_lr!r}")
        values = base_lr.values() if isinstance(base_lr, Mapping) else [base_lr]
        for value in values:
            try:
                ok = math.isfinite(float(value)) and float(value) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"base LRs must be finite numbers > 0, got {value!r}")

    def _pick_base_lr(self, workload: str, optimizer: str) -> float:
        spec = self.base_lr_spec
        if spec == "grid":
            grid = SUITES[self.suite].lr_grid(optimizer)
            return float(grid[int(self.np_random.integers(len(grid)))])
        if isinstance(spec, Mapping):
            if (workload, optimizer) in spec:
                return float(spec[(workload, optimizer)])
            return default_base_lr(optimizer, self.suite)
        if spec is None:
            return default_base_lr(optimizer, self.suite)
        return float(spec)

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a run, train its step 0 at the base LR and return the first observation."""
        self._seed_episode(seed)
        self._start_run()
        self.loss_history, self.lr_history = [], []
        self.step_index = 0
        self.val_loss: float | None = None
        self.diverged = False
        with self.run.rng.active():
            self.val_initial = self.run.evaluate() if self.terminal_weight > 0 else float("nan")
            loss = self._train_step()
        self.initial_loss = loss
        self.loss = loss
        self.features = ObservationBuilder(self.feature_window)
        if has_diverged(loss, loss):
            # Step 0 itself blew up: report it on the first step() call.
            self.diverged = True
            return np.zeros(self.observation_space.shape, dtype=np.float32), self._info()
        grad_norm = grad_norm_of(self.optimizer)
        self.features.reset(loss, grad_norm)
        self.window_mean = loss
        obs = self.features.observe(loss, grad_norm, self.lr, self.base_lr, 0.0)
        return obs, self._info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the LR change, run up to ``steps_per_action`` optimizer steps, observe."""
        if self.diverged:
            return self._diverged()
        a = self._action_value(action)
        self._apply_action(a)
        last = min(self.step_index + self.steps_per_action, self.budget - 1)
        losses: list[float] = []
        with self.run.rng.active():
            while self.step_index < last:
                loss = self._train_step()
                self.step_index += 1
                losses.append(loss)
                if has_diverged(loss, self.initial_loss):
                    return self._diverged()
                self.features.record(loss)
        self.loss = losses[-1]
        mean = float(np.mean(losses))
        floor = LOSS_FLOOR * self.initial_loss
        reward = _log(self.window_mean, floor) - _log(mean, floor)
        self.window_mean = mean
        over = self.step_index >= self.budget - 1
        if over and self.terminal_weight > 0:
            if not math.isfinite(self.val_loss):  # evaluated by the loop after the last step
                return self._diverged()
            floor = LOSS_FLOOR * self.val_initial
            reward += self.terminal_weight * (_log(self.val_initial, floor)
                                              - _log(self.val_loss, floor))
        obs = self.features.observe(self.loss, grad_norm_of(self.optimizer), self.lr,
                                    self.base_lr, self.step_index / self.budget)
        # The budget truncates the episode (as in LRControlEnv): the run is cut, not finished.
        return obs, float(reward), False, over, self._info()

    # -- helpers -------------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The current LR of the optimizer's first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _start_run(self) -> None:
        """Draw the episode's run and start it with the benchmark runner's loop."""
        rng = self.np_random
        self.workload_name = self.workloads[int(rng.integers(len(self.workloads)))]
        self.optimizer_name = self.optimizers[int(rng.integers(len(self.optimizers)))]
        self.base_lr = self._pick_base_lr(self.workload_name, self.optimizer_name)
        self.run_seed = int(rng.integers(self.data_seeds))
        self.budget = self.budgets[self.workload_name]
        self.workload = shared_workload(self.workload_name)

        def build(params: Any) -> TrainingHooks:
            # The plain column optimizer: the agent is the schedule.
            return TrainingHooks(make_optimizer(self.optimizer_name, params, self.base_lr))

        self.run = TrainingRun.start(self.workload, self.run_seed, build, self.budget)
        self.model, self.optimizer = self.run.model, self.run.hooks.optimizer
        self._steps = self.run.steps(eval_every=None, final_eval=self.terminal_weight > 0)

    def _apply_action(self, a: float) -> None:
        apply_lr_action(self.optimizer, a, self.max_log_change,
                        self.min_relative_lr * self.base_lr, self.max_lr_factor * self.base_lr)

    def _train_step(self) -> float:
        """One optimizer step of the runner's loop (which evaluates after the last one)."""
        outcome = next(self._steps)
        self.loss_history.append(outcome.loss)
        self.lr_history.append(outcome.lr)
        if outcome.val_loss is not None:
            self.val_loss = outcome.val_loss
        return outcome.loss

    def _diverged(self) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.diverged = True
        zeros = np.zeros(self.observation_space.shape, dtype=np.float32)
        return zeros, -self.divergence_penalty, True, False, self._info()

    def _info(self) -> dict[str, Any]:
        return {
            "workload": self.workload_name,
            "optimizer": self.optimizer_name,
            "base_lr": self.base_lr,
            "run_seed": self.run_seed,
            "loss": self.loss,
            "lr": self.lr,
            "steps": self.step_index + 1,
            "budget": self.budget,
            "val_loss": self.val_loss,
            "diverged": self.diverged,
        }
