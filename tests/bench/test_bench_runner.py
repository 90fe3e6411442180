"""One cell: determinism, divergence handling, the measures it records."""

from __future__ import annotations

import pytest

from learnlr.bench.runner import CellConfig, config_hash, run_cell

TOY = ["bench_toy_workload"]


def _without_time(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("wall_time_s", "cpu_time_s")}


@pytest.mark.parametrize("schedule", ["greedy_step", "sls", "schedulefree"])
def test_same_seed_same_numbers(schedule):
    config = CellConfig("toy-logreg", "sgd", schedule, 3, 0.05, 40, 10)
    a, b = run_cell(config, TOY), run_cell(config, TOY)
    assert a.trajectory_lr == b.trajectory_lr
    assert a.trajectory_train_loss == b.trajectory_train_loss
    assert _without_time(a.summary) == _without_time(b.summary)
    other = run_cell(CellConfig("toy-logreg", "sgd", schedule, 4, 0.05, 40, 10), TOY)
    assert other.trajectory_train_loss != a.trajectory_train_loss


def test_measures_are_consistent_with_the_eval_history():
    result = run_cell(CellConfig("toy-logreg", "adamw", "cosine", 0, 0.05, 30, 10), TOY)
    s = result.summary
    losses = [e["val_loss"] for e in result.evals]
    assert s["final_val_loss"] == losses[-1]
    assert s["best_val_loss"] == min(losses)
    assert s["best_metric"] == max(e["metric"] for e in result.evals)  # accuracy: higher better
    # 10% of 30 steps comes before the first eval, so it falls back to the first one.
    assert s["val_loss_at"] == {"0.1": losses[0], "0.5": losses[0], "1.0": losses[-1]}
    assert s["val_curve"] == [[10, losses[0]], [20, losses[1]], [30, losses[2]]]


def test_a_diverging_run_is_recorded_not_raised():
    # Least squares with SGD at lr=50 grows geometrically until float32 overflows.
    result = run_cell(CellConfig("toy-linreg", "sgd", "constant", 0, 50.0, 100, 10), TOY)
    s = result.summary
    assert s["status"] == "diverged"
    assert s["final_val_loss"] is None and s["val_loss_at"]["1.0"] is None
    assert s["steps_run"] < 100
    assert result.trajectory_train_loss[-1] is None  # the non-finite loss that stopped it


def test_config_hash_is_canonical():
    a = {"b": 1, "a": [1, 2]}
    assert config_hash(a) == config_hash({"a": [1, 2], "b": 1})
    assert config_hash(a) != config_hash({"a": [2, 1], "b": 1})
    c = CellConfig("toy-logreg", "sgd", "constant", 0, 0.1, 30, 10)
    assert CellConfig.from_json(c.to_json()) == c
    assert c.hash != CellConfig("toy-logreg", "sgd", "constant", 1, 0.1, 30, 10).hash


def test_a_shipped_policy_digest_is_part_of_the_rl_cell_hash():
    import hashlib

    from learnlr.bench.schedules import schedule_fingerprint
    from learnlr.rl.scheduler import pretrained_path

    stem = pretrained_path("nmf")
    digest = hashlib.sha256(stem.with_suffix(".safetensors").read_bytes()
                            + stem.with_suffix(".json").read_bytes()).hexdigest()[:16]
    assert schedule_fingerprint("rl") == f"policy-sha256:{digest}"
    assert schedule_fingerprint("constant") == "" and schedule_fingerprint("nope") == ""
    plain = CellConfig("toy-logreg", "sgd", "rl", 0, 0.1, 30, 10)
    pinned = CellConfig("toy-logreg", "sgd", "rl", 0, 0.1, 30, 10, schedule_fingerprint("rl"))
    retrained = CellConfig("toy-logreg", "sgd", "rl", 0, 0.1, 30, 10, "policy-sha256:other")
    assert len({plain.hash, pinned.hash, retrained.hash}) == 3
    assert CellConfig.from_json(pinned.to_json()) == pinned
    # Schedules without files keep the hash they had before the field existed.
    assert "fingerprint" not in plain.to_json()


def test_unknown_workload_lists_the_valid_ones():
    with pytest.raises(ValueError, match="toy-logreg"):
        run_cell(CellConfig("nope", "sgd", "constant", 0, 0.1, 30, 10), TOY)


def test_greedy_eval_budget_moves_the_envelope_every_step_and_decides_at_evaluations():
    from learnlr.control.budget import Budget
    from learnlr.control.schedule import DEFAULT_ANNEAL_FRACTION, eval_warmup_steps

    budget = 40
    result = run_cell(CellConfig("toy-logreg", "sgd", "greedy_eval_budget", 0, 0.05, budget, 10),
                      TOY)
    warmup = eval_warmup_steps(budget)
    assert warmup == 2  # the eval mode's default LR warmup
    envelope = Budget.from_fraction(budget, warmup, DEFAULT_ANNEAL_FRACTION)
    lrs = result.trajectory_lr
    assert lrs[0] == pytest.approx(0.05 / warmup)
    # Between evaluations only the envelope (warmup, anneal) moves the LR: lr(t) / envelope(t)
    # is constant there.
    for first in (0, 10, 20, 30):
        stable = {round(lrs[t] / envelope.multiplier(t), 12) for t in range(first, first + 10)}
        assert len(stable) == 1
    assert lrs[-1] < 0.1 * max(lrs)  # the final anneal happened (1 - sqrt(8/9) of the LR)
