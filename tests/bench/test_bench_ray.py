"""`--backend ray` runs the same cells as Ray tasks and gives the same summary as local."""

from __future__ import annotations

from pathlib import Path

from bench_toy_workload import TOY_PLUGIN, strip_timing

from learnlr.bench.benchmark import BenchRequest, run_benchmark
from learnlr.bench.report import write_report
from learnlr.bench.suites import SUITES


def _run(out: Path, backend: str, workers: int) -> dict:
    request = BenchRequest(
        suite=SUITES["tiny"], out_dir=out, workloads=("toy-logreg",), optimizers=("sgd",),
        schedules=("constant", "cosine", "greedy_step", "sls"), seeds=2, backend=backend,
        workers=workers, plugins=(TOY_PLUGIN,),
    )
    plan = run_benchmark(request)
    return write_report(out, hashes=plan.main_hashes, plugins=(TOY_PLUGIN,))


def test_ray_backend_matches_local(tmp_path):
    local = _run(tmp_path / "local", "local", 1)
    ray_summary = _run(tmp_path / "ray", "ray", 2)
    assert local["cells"] == (3 * 3 + 1) * 2  # 3 schedules x 3 LR tracks + sls once, 2 seeds
    assert strip_timing(ray_summary) == strip_timing(local)
