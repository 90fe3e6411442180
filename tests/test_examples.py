"""Every script in examples/ runs as the README shows it (short settings, a real subprocess).

The examples are what a user copies first: one that no longer runs, or runs and prints nonsense,
is a failure here. Each check reads what the script prints, not only its exit code.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True,
                          text=True, timeout=600, env=env, cwd=EXAMPLES.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _floats(pattern: str, text: str) -> list[float]:
    return [float(m) for m in re.findall(pattern, text)]


def test_every_example_has_a_test():
    tested = {"quickstart.py", "plain_torch.py", "plain_torch_eval.py", "optax_greedy.py",
              "lightning_fit.py", "accelerate_loop.py", "distributed_ddp.py", "hf_trainer.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_quickstart_trains_to_a_finite_held_out_loss():
    greedy = _floats(r"held-out loss ([0-9.]+)", _run("quickstart.py", "--epochs", "2"))
    assert len(greedy) == 1 and 0 < greedy[0] < math.log(10)  # better than chance (10 classes)


@pytest.mark.parametrize("sync_every", ["1", "4"])
def test_plain_torch_prints_a_positive_lr_each_epoch(sync_every):
    out = _run("plain_torch.py", "--epochs", "2", "--sync-every", sync_every)
    lrs = _floats(r"lr ([0-9.e+-]+)", out)
    assert len(lrs) == 2 and all(lr > 0 for lr in lrs)


def test_plain_torch_eval_decides_on_the_validation_loss():
    out = _run("plain_torch_eval.py", "--epochs", "2")
    losses = _floats(r"val loss ([0-9.]+)", out)
    assert len(losses) == 2 and losses[1] < losses[0] < math.log(10)


def test_optax_example_learns_under_jit():
    out = _run("optax_greedy.py", "--steps", "30")
    accuracy = _floats(r"train accuracy ([0-9.]+)", out)
    assert accuracy and accuracy[0] > 0.8


@pytest.mark.parametrize("monitor", ["train_loss", "val_loss"])
def test_lightning_example_fits(monitor):
    out = _run("lightning_fit.py", "--epochs", "2", "--monitor", monitor)
    final = re.search(r"final lr ([0-9.e+-]+), val_loss ([0-9.]+)", out)
    assert final and float(final.group(1)) > 0 and float(final.group(2)) < math.log(10)


def test_accelerate_example_runs():
    lrs = _floats(r"lr ([0-9.e+-]+)", _run("accelerate_loop.py", "--epochs", "1"))
    assert lrs and lrs[-1] > 0


def test_ddp_example_keeps_both_ranks_on_the_same_lr():
    out = _run("distributed_ddp.py", "--steps", "10")
    # (the two processes share one pipe: match each line's fields exactly, never across lines)
    line = r"rank (\d) step +10 local loss +[-0-9.naif]+ lr ([0-9.]+)"
    last = {rank: lr for rank, lr in re.findall(line, out)}
    assert set(last) == {"0", "1"} and last["0"] == last["1"], out


def test_hf_trainer_example_trains_and_logs_the_lr(tmp_path):
    out = _run("hf_trainer.py", "--steps", "6", "--out", str(tmp_path / "hf"))
    lrs = _floats(r"learning_rate ([0-9.e+-]+)", out)
    assert lrs and all(lr >= 0 for lr in lrs)
