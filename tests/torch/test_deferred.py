"""GreedyLR(sync_every=k): buffered metrics, one host sync per k calls, same decisions late."""

import json
import math
import random

import pytest
import torch

from learnlr import GreedyLR


def two_group_optimizer(lr0=0.1, lr1=0.01):
    w = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(1))
    return torch.optim.SGD([{"params": [w], "lr": lr0}, {"params": [b], "lr": lr1}])


def noisy_loss_walk(n, seed):
    """A loss that falls, plateaus, rises and holds NaN/Inf spikes, so every decision happens."""
    rng = random.Random(seed)
    out, v = [], 5.0
    for i in range(n):
        v += rng.choice([-0.3, -0.1, 0.0, 0.05, 0.2]) if i % 40 < 25 else rng.choice([0.0, 0.1])
        out.append(v)
    for i in rng.sample(range(n), 4):
        out[i] = rng.choice([math.nan, math.inf, -math.inf])
    return out


KWARGS = {"factor": 0.7, "patience": 2, "window": 3, "keep_decreasing": 1, "keep_increasing": 1, "reset_after": 2,
          "max_lr": 1.0}


@pytest.mark.parametrize("sync_every", [2, 5, 16])
@pytest.mark.parametrize("seed", [0, 1])
def test_lrs_match_per_call_stepping_at_every_flush_and_hold_between(sync_every, seed):
    metrics = noisy_loss_walk(200, seed)
    eager = GreedyLR(two_group_optimizer(), **KWARGS)
    lazy = GreedyLR(two_group_optimizer(), sync_every=sync_every, **KWARGS)
    held = lazy.get_last_lr()
    changes = 0
    for i, m in enumerate(metrics, start=1):
        before = eager.get_last_lr()
        eager.step(m)
        changes += eager.get_last_lr() != before
        lazy.step(m)
        assert lazy.last_epoch == eager.last_epoch == i
        if i % sync_every == 0:
            assert lazy.pending == 0
            assert lazy.get_last_lr() == eager.get_last_lr()
            assert [g["lr"] for g in lazy.optimizer.param_groups] == eager.get_last_lr()
            held = lazy.get_last_lr()
        else:
            assert lazy.pending == i % sync_every
            assert lazy.get_last_lr() == held  # the documented delay: nothing moves mid-buffer
    assert changes > 10  # the sequence really exercised the controller
    lazy.flush()
    assert lazy.get_last_lr() == eager.get_last_lr()
    assert lazy.state_dict()["controller"] == eager.state_dict()["controller"]


def test_tensor_metrics_are_buffered_detached_and_decided_like_floats():
    metrics = noisy_loss_walk(60, 3)
    floats = GreedyLR(two_group_optimizer(), sync_every=4, **KWARGS)
    tensors = GreedyLR(two_group_optimizer(), sync_every=4, **KWARGS)
    w = torch.nn.Parameter(torch.ones((), dtype=torch.float64))  # float64: same numbers as floats
    for m in metrics:
        floats.step(m)
        loss = w * m  # carries an autograd graph, like a real loss
        tensors.step(loss)
        assert all(not t.requires_grad for t in tensors._pending)
    floats.flush()
    tensors.flush()
    assert tensors.state_dict() == floats.state_dict()


def test_shape_one_tensor_is_accepted_and_a_vector_is_rejected():
    sched = GreedyLR(two_group_optimizer(), sync_every=2, patience=0, window=1, max_lr=1.0)
    sched.step(torch.tensor([1.0]))
    sched.step(torch.tensor([0.5]))
    assert sched.get_last_lr()[0] > 0.1
    # Rejected when it arrives, before buffering, so no buffered metric is ever lost.
    with pytest.raises(ValueError, match="one-element tensor"):
        sched.step(torch.tensor([1.0, 2.0]))
    assert sched.pending == 0


def test_resume_mid_buffer_continues_the_same_trajectory():
    metrics = noisy_loss_walk(120, 5)
    full = GreedyLR(two_group_optimizer(), sync_every=7, **KWARGS)
    trajectory = []
    for m in metrics:
        full.step(m)
        trajectory.append(full.get_last_lr())

    cut = 52  # 52 % 7 == 3 metrics still buffered at the checkpoint
    first = GreedyLR(two_group_optimizer(), sync_every=7, **KWARGS)
    for m in metrics[:cut]:
        first.step(m)
    ckpt = json.loads(json.dumps({"opt": None, "sched": first.state_dict()}))
    assert len(ckpt["sched"]["pending"]) == 3
    opt = two_group_optimizer()
    opt.load_state_dict(first.optimizer.state_dict())
    second = GreedyLR(opt, sync_every=7, **KWARGS)
    second.load_state_dict(ckpt["sched"])
    for i, m in enumerate(metrics[cut:], start=cut):
        second.step(m)
        assert second.get_last_lr() == trajectory[i]


def test_not_distributed_reduce_is_a_no_op():
    metrics = noisy_loss_walk(80, 7)
    a = GreedyLR(two_group_optimizer(), reduce="max", **KWARGS)
    b = GreedyLR(two_group_optimizer(), reduce=None, **KWARGS)
    for m in metrics:
        a.step(m)
        b.step(m)
        assert a.get_last_lr() == b.get_last_lr()
        assert a.pending == 0  # decided on every call: nothing was buffered


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"sync_every": 0}, "sync_every"),
        ({"sync_every": 2.0}, "sync_every"),
        ({"sync_every": True}, "sync_every"),
        ({"reduce": "avg"}, "reduce"),
        ({"reduce": "MEAN"}, "reduce"),
    ],
)
def test_invalid_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GreedyLR(two_group_optimizer(), **kwargs)


def test_mixed_floats_dtypes_and_shapes_in_one_buffer_decide_like_floats():
    metrics = noisy_loss_walk(40, 9)
    floats = GreedyLR(two_group_optimizer(), sync_every=5, **KWARGS)
    mixed = GreedyLR(two_group_optimizer(), sync_every=5, **KWARGS)
    for i, m in enumerate(metrics):
        floats.step(m)
        kind = i % 3
        mixed.step(m if kind == 0 else torch.tensor([m], dtype=torch.float64) if kind == 1
                   else torch.tensor(m, dtype=torch.float64))
    assert mixed.state_dict() == floats.state_dict()


def test_metrics_buffered_before_a_checkpoint_are_decided_when_resumed_without_deferral():
    metrics = noisy_loss_walk(60, 3)
    cut = 31  # 31 % 4 != 0: three metrics are still buffered at the checkpoint
    eager = GreedyLR(two_group_optimizer(), **KWARGS)
    expected = []
    for m in metrics:
        eager.step(m)
        expected.append(eager.get_last_lr())
    lazy = GreedyLR(two_group_optimizer(), sync_every=4, **KWARGS)
    for m in metrics[:cut]:
        lazy.step(m)
    assert lazy.pending == 3
    state = json.loads(json.dumps(lazy.state_dict(), allow_nan=False))
    resumed = GreedyLR(two_group_optimizer(), **KWARGS)  # sync_every=1 now
    resumed.optimizer.load_state_dict(lazy.optimizer.state_dict())
    resumed.load_state_dict(state)
    for i, m in enumerate(metrics[cut:], start=cut):
        resumed.step(m)
        assert resumed.get_last_lr() == expected[i]
    assert resumed.pending == 0
