"""GreedyLR in PyTorch Lightning, per-step on the training loss (Trainer.fit on CPU).

    .venv/bin/python examples/lightning_fit.py [--seed 0] [--epochs 5] [--monitor val_loss]

``lr_scheduler_config(self, opt)`` takes the step budget from ``trainer.estimated_stepping_batches``
(warmup, GreedyLR, final anneal to ~0). ``--monitor val_loss`` switches to one decision per epoch
on the validation loss (the per-evaluation defaults).
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits

from learnlr.integrations.lightning import lr_scheduler_config


class DigitsMLP(pl.LightningModule):
    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                       torch.nn.Linear(64, 10))
        self.monitor = monitor

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)  # the per-step mode monitors this
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-3)
        interval = "step" if self.monitor == "train_loss" else "epoch"
        config = lr_scheduler_config(self, opt, monitor=self.monitor, interval=interval,
                                     warmup_steps=10)
        return {"optimizer": opt, "lr_scheduler": config}


def loaders(seed: int):
    x, y = load_digits(return_X_y=True)
    data = torch.utils.data.TensorDataset(torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y))
    train, val = torch.utils.data.random_split(data, [1500, len(data) - 1500],
                                               generator=torch.Generator().manual_seed(seed))
    return (torch.utils.data.DataLoader(train, batch_size=64, shuffle=True,
                                        generator=torch.Generator().manual_seed(seed)),
            torch.utils.data.DataLoader(val, batch_size=256))


def main(seed: int = 0, epochs: int = 5, monitor: str = "train_loss") -> float:
    pl.seed_everything(seed, verbose=False)
    model = DigitsMLP(monitor)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(model, *loaders(seed))
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    print(f"final lr {lr:.2e}, val_loss {float(trainer.callback_metrics['val_loss']):.3f}")
    return lr


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--monitor", default="train_loss", choices=["train_loss", "val_loss"])
    a = ap.parse_args()
    main(a.seed, a.epochs, a.monitor)
