"""``learnlr demo``: GreedyLR rescues a too-small learning rate on a real model (sklearn digits).

Trains the same MLP twice from the same seed with SGD at a deliberately small LR: once with the
LR held constant, once with GreedyLR stepped on the training loss after every optimizer step, and
prints the LR trajectory and the final losses side by side.

Data: ``sklearn.datasets.load_digits`` (1,797 8x8 images shipped inside scikit-learn), split
1,347 train / 450 validation with a seeded permutation.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import torch
from torch import nn

from learnlr.cli_args import positive_float, positive_int
from learnlr.torch.greedy import GreedyLR


@dataclass
class DigitsRun:
    lrs: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    val_loss: float = float("nan")
    val_accuracy: float = float("nan")


def load_digits_split(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    return x[:1347], y[:1347], x[1347:], y[1347:]


def train_digits(
    schedule: str, *, lr: float = 1e-3, steps: int = 600, batch_size: int = 64, seed: int = 0,
    greedy_kwargs: dict | None = None,
) -> DigitsRun:
    """Train a 64-128-10 MLP with SGD(momentum=0.9); ``schedule`` is "constant" or "greedy"."""
    if schedule not in ("constant", "greedy"):
        raise ValueError(f"schedule must be 'constant' or 'greedy', got {schedule!r}")
    torch.manual_seed(seed)
    xtr, ytr, xva, yva = load_digits_split(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sched = GreedyLR(opt, **(greedy_kwargs or {})) if schedule == "greedy" else None
    gen = torch.Generator().manual_seed(seed + 1)
    loss_fn = nn.CrossEntropyLoss()
    run = DigitsRun()
    for _ in range(steps):
        idx = torch.randint(0, len(xtr), (batch_size,), generator=gen)
        loss = loss_fn(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step(loss.detach())
        run.lrs.append(opt.param_groups[0]["lr"])
        run.train_losses.append(float(loss.detach()))
    with torch.no_grad():
        logits = model(xva)
        run.val_loss = float(loss_fn(logits, yva))
        run.val_accuracy = float((logits.argmax(1) == yva).float().mean())
    return run


def _run(args: argparse.Namespace) -> int:
    greedy_kwargs = {"max_lr": args.lr * 100}
    constant = train_digits("constant", lr=args.lr, steps=args.steps, seed=args.seed)
    greedy = train_digits("greedy", lr=args.lr, steps=args.steps, seed=args.seed,
                          greedy_kwargs=greedy_kwargs)
    print(f"sklearn digits MLP, SGD(momentum=0.9) from lr={args.lr:g}, {args.steps} steps, "
          f"seed {args.seed}")
    print("GreedyLR(max_lr=100 x lr) LR trajectory:")
    every = max(1, args.steps // 10)
    for i in range(every - 1, args.steps, every):
        print(f"  step {i + 1:5d}  lr {greedy.lrs[i]:.3e}  train loss {greedy.train_losses[i]:.4f}")
    print(f"{'schedule':<10} {'val loss':>9} {'val acc':>8}")
    for name, run in (("constant", constant), ("greedy", greedy)):
        print(f"{name:<10} {run.val_loss:9.4f} {run.val_accuracy:8.3f}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="GreedyLR vs a constant LR on sklearn digits (seconds)")
    p.add_argument("--lr", type=positive_float, default=1e-3,
                   help="deliberately small starting LR")
    p.add_argument("--steps", type=positive_int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)
