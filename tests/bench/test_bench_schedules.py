"""The schedule registry: every entry builds and trains, fixed schedules follow their formulas."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from learnlr.bench.runner import CellConfig, get_workload_instance, run_cell
from learnlr.bench.schedules import (
    FIXED_SCHEDULES,
    SCHEDULES,
    build_schedule,
    expand_schedule_names,
)
from learnlr.torch.greedy import GreedyLR

TOY = ["bench_toy_workload"]
REQUIRED = {
    "constant", "step", "exponential", "linear", "cosine", "warmup_cosine", "polynomial",
    "onecycle", "plateau", "greedy_step", "greedy_eval", "hf_greedy", "sgd_hd_group",
    "sgd_hd_param", "adam_hd_group", "adam_hd_param", "sls", "schedulefree", "prodigy", "dadapt",
}


def test_registry_has_every_schedule_of_issues_3_and_4():
    # issue 3's list, issue 4's learned schedules, issue 9's wsd and the reactive GreedyLR
    assert set(SCHEDULES) == REQUIRED | {"rl", "rl_deep", "wsd", "greedy_reactive",
                                         "greedy_eval_budget"}
    assert set(FIXED_SCHEDULES) == {"constant", "step", "exponential", "linear", "cosine",
                                    "warmup_cosine", "polynomial", "onecycle", "wsd"}


@pytest.mark.parametrize(
    ("name", "optimizer"),
    [(n, o) for n, spec in SCHEDULES.items() for o in spec.optimizers],
)
def test_every_schedule_trains_the_toy_workload(name, optimizer):
    config = CellConfig("toy-logreg", optimizer, name, seed=0, base_lr=0.05,
                        budget_steps=30, eval_every=10)
    result = run_cell(config, TOY)
    assert result.summary["status"] == "ok"
    assert len(result.trajectory_lr) == 30
    assert all(lr > 0 and math.isfinite(lr) for lr in result.trajectory_lr)
    assert [e["step"] for e in result.evals] == [10, 20, 30]
    # It learned something: better than the same seed's untrained model.
    assert result.summary["final_val_loss"] < _untrained_val_loss()


def _untrained_val_loss() -> float:
    workload = get_workload_instance("toy-logreg", TOY)
    workload.setup(0)
    with torch.no_grad():
        return workload.evaluate(workload.make_model(0)).loss


def _lrs(name: str, optimizer: str = "sgd", budget: int = 100) -> list[float]:
    w = torch.nn.Parameter(torch.zeros(1))
    opt, hooks = build_schedule(name, [w], optimizer, base_lr=1.0, budget_steps=budget,
                                eval_every=10)
    out = []
    for _ in range(budget):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        hooks.scheduler.step()
    return out


def test_fixed_schedules_follow_their_formulas():
    cosine = _lrs("cosine")
    assert cosine[0] == pytest.approx(1.0)
    assert cosine[50] == pytest.approx(0.5)
    step = _lrs("step")
    assert step[49] == pytest.approx(1.0) and step[50] == pytest.approx(0.1)
    assert step[75] == pytest.approx(0.01)
    assert _lrs("linear")[50] == pytest.approx(0.5)
    assert _lrs("polynomial")[50] == pytest.approx(0.25)
    exponential = _lrs("exponential")
    assert exponential[50] == pytest.approx(0.1)
    warm = _lrs("warmup_cosine")
    assert warm[0] == pytest.approx(0.2) and warm[4] == pytest.approx(1.0)
    onecycle = _lrs("onecycle")
    assert max(onecycle) == pytest.approx(1.0, rel=1e-3)
    assert onecycle.index(max(onecycle)) == pytest.approx(30, abs=1)


def test_hooks_say_when_to_step():
    w = [torch.nn.Parameter(torch.zeros(1))]
    kw = {"base_lr": 0.1, "budget_steps": 10, "eval_every": 5}
    assert build_schedule("greedy_step", w, "sgd", **kw)[1].step_on == "step_loss"
    _, hooks = build_schedule("greedy_eval", w, "adamw", **kw)
    assert hooks.step_on == "eval_loss" and isinstance(hooks.scheduler, GreedyLR)
    assert build_schedule("plateau", w, "sgd", **kw)[1].step_on == "eval_loss"
    assert build_schedule("sls", w, "sgd", **kw)[1].needs_closure
    sf = build_schedule("schedulefree", w, "adamw", **kw)[1]
    assert sf.train_mode is not None and sf.eval_mode is not None


def test_bad_arguments_raise_value_errors_naming_the_valid_values():
    w = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="cosine"):
        build_schedule("cosinus", w, "sgd", base_lr=0.1, budget_steps=10, eval_every=5)
    with pytest.raises(ValueError, match=r"prodigy.*\['adamw'\]"):
        build_schedule("prodigy", w, "sgd", base_lr=0.1, budget_steps=10, eval_every=5)
    with pytest.raises(ValueError, match="base_lr"):
        build_schedule("constant", w, "sgd", base_lr=-1.0, budget_steps=10, eval_every=5)
    with pytest.raises(ValueError, match=r"'lion'.*allowed: \['sgd', 'adamw', 'adagrad'\]"):
        build_schedule("constant", w, "lion", base_lr=0.1, budget_steps=10, eval_every=5)


def test_aliases_expand_and_unknown_names_list_valid_ones():
    assert expand_schedule_names(["sgd_hd", "cosine", "sgd_hd_group"]) == [
        "sgd_hd_group", "sgd_hd_param", "cosine"]
    with pytest.raises(ValueError, match="valid schedules: .*greedy_step"):
        expand_schedule_names(["nope"])


def test_peer_entries_name_the_packages_they_need():
    assert SCHEDULES["prodigy"].requires == ("prodigyopt",)
    assert SCHEDULES["hf_greedy"].requires == ("transformers",)
    assert SCHEDULES["cosine"].missing_modules() == []
    assert SCHEDULES["dadapt"].missing_modules() == []  # installed in the dev environment
    absent = dataclasses.replace(SCHEDULES["prodigy"], requires=("prodigyopt", "no_such_pkg_xyz"))
    assert absent.missing_modules() == ["no_such_pkg_xyz"]


def test_greedy_defaults_are_part_of_the_greedy_cells_hash(monkeypatch):
    from learnlr.bench.schedules import schedule_fingerprint
    from learnlr.control import schedule as defaults

    before = {n: schedule_fingerprint(n) for n in ("greedy_step", "greedy_reactive", "cosine")}
    assert before["greedy_step"].startswith("greedy-defaults:") and before["cosine"] == ""
    residual_before = schedule_fingerprint("rl_deep")  # the residual policy over greedy_step
    monkeypatch.setitem(defaults.BUDGET_DEFAULTS, "adaptation", 0.3)
    assert schedule_fingerprint("greedy_step") != before["greedy_step"]
    assert schedule_fingerprint("cosine") == ""
    assert schedule_fingerprint("rl_deep") != residual_before
    assert schedule_fingerprint("rl_deep").endswith(schedule_fingerprint("greedy_step"))


def test_the_eval_mode_warmup_is_part_of_greedy_eval_budget_cells_hash(monkeypatch):
    from learnlr.bench.schedules import schedule_fingerprint
    from learnlr.control import schedule as defaults

    before = {n: schedule_fingerprint(n) for n in ("greedy_eval_budget", "greedy_step")}
    monkeypatch.setattr(defaults, "EVAL_WARMUP_FRACTION", 0.1)
    assert schedule_fingerprint("greedy_eval_budget") != before["greedy_eval_budget"]
    assert schedule_fingerprint("greedy_step") == before["greedy_step"]  # only its own cells
