"""The runnable examples under examples/ still run (short settings) and their LR really moves."""

import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("sync_every", [1, 16])
def test_plain_torch_example(sync_every):
    lrs = load("plain_torch").main(seed=0, epochs=2, sync_every=sync_every)
    assert len(lrs) == 2 * math.ceil(1797 / 64)
    assert len(set(lrs)) > 1


def test_plain_torch_eval_example():
    lrs, val_loss = load("plain_torch_eval").main(seed=0, epochs=3)
    assert len(lrs) == 3 * math.ceil((1797 - 1797 // 5) / 64)
    assert lrs[0] < lrs[5] <= 1e-3  # the LR warmup
    assert lrs[-1] < 0.1 * 1e-3  # the final anneal
    assert val_loss < math.log(10)  # it learned something


def test_optax_example():
    acc, factor = load("optax_greedy").main(seed=0, steps=120)
    assert acc > 0.9 and factor != 1.0


def test_hf_trainer_example(tmp_path):
    logs = load("hf_trainer").main(seed=0, steps=10, out=str(tmp_path))
    assert [step for step, _, _ in logs] == [5, 10]
    assert all(lr > 0 for _, _, lr in logs)


def test_lightning_example():
    lr = load("lightning_fit").main(seed=0, epochs=1)
    assert lr != 1e-3


def test_quickstart_rescues_a_10x_too_small_lr_on_held_out_data():
    quick = load("quickstart")
    greedy = quick.main(lr=1e-4, schedule="greedy", epochs=10)
    constant = quick.main(lr=1e-4, schedule="constant", epochs=10)
    assert math.isfinite(greedy) and greedy < 0.5 * constant
