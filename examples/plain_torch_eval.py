"""EvalGreedyLR in a plain PyTorch loop: decisions on the validation loss, the training loss as a
brake. An MLP on scikit-learn's digits (bundled, no download), a held-out fifth for validation.

    .venv/bin/python examples/plain_torch_eval.py [--seed 0] [--epochs 15] [--lr 1e-3]

``sched.step(loss)`` after every optimizer step moves the budget envelope (a 5 % LR warmup, the
final anneal) and feeds the brake; ``sched.decide(val_loss)`` after each evaluation (here: each
epoch) is one GreedyLR decision.
"""

from __future__ import annotations

import argparse
import math

import torch
from sklearn.datasets import load_digits

from learnlr import EvalGreedyLR


def main(seed: int = 0, epochs: int = 15, lr: float = 1e-3) -> tuple[list[float], float]:
    torch.manual_seed(seed)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=gen)
    val, train = order[: len(x) // 5], order[len(x) // 5:]
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    batches = math.ceil(len(train) / 64)
    sched = EvalGreedyLR(opt, total_steps=epochs * batches)
    lrs = []
    for epoch in range(epochs):
        perm = train[torch.randperm(len(train), generator=gen)]
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step(loss.detach())  # the clock and the brake, every optimizer step
            lrs.append(sched.get_last_lr()[0])
        with torch.no_grad():
            val_loss = torch.nn.functional.cross_entropy(model(x[val]), y[val]).item()
        sched.decide(val_loss)  # one decision per evaluation
        print(f"epoch {epoch:2d}  val loss {val_loss:.3f}  lr {lrs[-1]:.2e}")
    return lrs, val_loss


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=1e-3)
    a = ap.parse_args()
    main(a.seed, a.epochs, a.lr)
