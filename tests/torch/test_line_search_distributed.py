"""SLS under DDP: 2 real processes (torch.multiprocessing.spawn, gloo, CPU).

Same pattern as test_distributed.py: the test runs this file as a script in a subprocess, the
workers write what each rank saw to JSON, and the test compares the ranks.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from learnlr.torch.line_search import SLS

WORLD_SIZE = 2
STEPS = 8


def run_ddp_sls(rank: int, reset_option: int) -> dict:
    """DDP(Linear) with SLS at a large initial step, each rank on its own shard and target, so
    the local losses (and local Armijo decisions) differ from rank to rank."""
    torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts them)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
    opt = SLS(model.parameters(), lr=10.0, beta=0.7, reset_option=reset_option,
              n_batches_per_epoch=4)
    gen = torch.Generator().manual_seed(100 + rank)
    w_true = torch.tensor([[1.0, -2.0, 0.5, 3.0]]) * (1 + 3 * rank)
    params, sizes = [], []
    for _ in range(STEPS):
        x = torch.randn(16, 4, generator=gen)
        y = x @ w_true.T

        def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            return torch.nn.functional.mse_loss(model(x), y)

        opt.step(closure)
        params.append([v for p in model.parameters() for v in p.detach().reshape(-1).tolist()])
        sizes.append(opt.param_groups[0]["lr"])
    return {"params": params, "sizes": sizes, "n_forwards": opt.state["n_forwards"],
            "n_backtracks": opt.state["n_backtracks"]}


def worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)  # two workers on a 2-core box
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        result = {f"reset{option}": run_ddp_sls(rank, option) for option in (0, 1, 2)}
    finally:
        dist.destroy_process_group()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    # As in test_distributed.py: gloo sometimes aborts in a C++ destructor at interpreter exit,
    # after the results are written; leave without running those destructors.
    os._exit(0)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("dist_sls")
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp / "init"), str(tmp)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]


@pytest.mark.parametrize("reset_option", [0, 1, 2])
def test_ddp_ranks_take_the_same_steps_and_stay_identical(ranks, reset_option):
    r0, r1 = ranks[0][f"reset{reset_option}"], ranks[1][f"reset{reset_option}"]
    assert r0["n_backtracks"] > 0  # lr=10 is too large: the search really backtracked
    assert r0["sizes"] == r1["sizes"]
    assert r0["n_forwards"] == r1["n_forwards"]
    assert r0["params"] == r1["params"]  # bit-for-bit, at every step
    assert r0["params"][-1] != r0["params"][0]  # and the model moved


if __name__ == "__main__":
    mp.spawn(worker, args=(sys.argv[1], sys.argv[2]), nprocs=WORLD_SIZE, join=True)
