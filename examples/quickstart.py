"""The README's quick start: GreedyLR told its budget, on real data, judged on a held-out split.

An MLP on scikit-learn's digits (bundled, no download), 75/25 stratified split, AdamW, and
``GreedyLR(opt, total_steps=...)``: GreedyLR's loss feedback in the stable phase, then the final
anneal to ~0. ``--schedule constant|cosine`` runs the same loop with a fixed schedule instead, and
``--lr`` lets you try a base LR 10x off (GreedyLR may move it 10x either way).

    .venv/bin/python examples/quickstart.py [--lr 1e-3] [--schedule greedy|constant|cosine]
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from learnlr import GreedyLR


def main(lr: float = 1e-3, schedule: str = "greedy", epochs: int = 20, seed: int = 0) -> float:
    """Train and return the held-out cross-entropy."""
    torch.manual_seed(seed)
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x / 16.0, y, test_size=0.25, stratify=y,
                                              random_state=seed)
    x_tr, x_te = (torch.tensor(a, dtype=torch.float32) for a in (x_tr, x_te))
    y_tr, y_te = torch.tensor(y_tr), torch.tensor(y_te)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    batches = -(-len(x_tr) // 32)
    total = epochs * batches
    if schedule == "greedy":
        sched = GreedyLR(opt, total_steps=total)  # the budget: optimizer steps in the run
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    else:
        sched = None
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(x_tr), 32):
            idx = perm[i:i + 32]
            loss = torch.nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if isinstance(sched, GreedyLR):
                sched.step(loss)  # once per optimizer step, on the training loss
            elif sched is not None:
                sched.step()
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(x_te), y_te).item()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--schedule", choices=("greedy", "constant", "cosine"), default="greedy")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(f"held-out loss {main(a.lr, a.schedule, a.epochs, a.seed):.4f}")
