"""GreedyLR with the Hugging Face Trainer: a 2-layer GPT-2 built from a config (no download).

    .venv/bin/python examples/hf_trainer.py [--seed 0] [--steps 40] [--out /tmp/learnlr-hf]

Synthetic next-token data (token i+1 = token i + 1 mod 64), gradient accumulation 2, one GreedyLR
decision per optimizer step on the training loss. ``use_greedy_lr(trainer)`` keeps the optimizer
Trainer builds (AdamW with its weight-decay groups) and takes the step budget (``max_steps``) and
the LR warmup (``warmup_steps``) from TrainingArguments: warmup, GreedyLR, final anneal to ~0. The
LR is in Trainer's logs. Re-run with ``--resume`` to continue from the last checkpoint with the
scheduler restored exactly.
"""

from __future__ import annotations

import argparse

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from learnlr.integrations.transformers import use_greedy_lr

VOCAB, SEQ = 64, 16


class TokenData(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = (torch.randint(0, VOCAB, (n, 1), generator=g) + torch.arange(SEQ)) % VOCAB

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def main(seed: int = 0, steps: int = 40, out: str = "/tmp/learnlr-hf", resume: bool = False) -> list:
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB,
                                       n_positions=SEQ))
    args = TrainingArguments(
        output_dir=out, max_steps=steps, warmup_steps=0.1, learning_rate=1e-3, weight_decay=0.01,
        per_device_train_batch_size=8, gradient_accumulation_steps=2, logging_steps=5,
        save_steps=20, report_to=[], use_cpu=True, seed=seed, disable_tqdm=True,
    )
    trainer = use_greedy_lr(Trainer(model=model, args=args, train_dataset=TokenData(1024, seed)))
    trainer.train(resume_from_checkpoint=True if resume else None)
    return [(e["step"], e["loss"], e["learning_rate"]) for e in trainer.state.log_history
            if "learning_rate" in e]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", default="/tmp/learnlr-hf")
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    for step, loss, lr in main(a.seed, a.steps, a.out, a.resume):
        print(f"step {step:3d}  loss {loss:.3f}  learning_rate {lr:.2e}")
