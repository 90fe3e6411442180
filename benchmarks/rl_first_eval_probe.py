"""Can the first evaluation tell which constant correction a run needs? (issue 11 probe)

The oracle of ``rl_residual_folds.py --oracle`` picks, per (workload, optimizer, LR track) and
in hindsight, the best constant correction of GreedyLR's LR from the first evaluation on. A
residual that acts once, at the first evaluation, could only match it if what it sees there
predicts that choice. This probe needs no new run: every action's cells are in the stores.

For every cell (workload, optimizer, track, seed) it reads four features of the *base* run
(``greedy_step``) at its first evaluation, the same for every action since corrections start
there: log LR / initial LR, log of the recent over the first training loss, log of the
validation over the recent training loss, and SGD or not. The label is the cell's best action
(the base or a constant). A k-nearest-neighbour vote (k=5) fitted on one half of the workloads
picks the action for every cell of the other half (leave-workloads-out, both folds); the
picked action's stored final loss is then judged like the folds: seed means per pair, 1 % band,
against the base, cosine and wsd.

    python benchmarks/rl_first_eval_probe.py --store bench-out/quick3 --out bench-out/rl-residual-v2
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from learnlr.bench.schedules import schedule_fingerprint
from learnlr.bench.store import STORE_FILENAME, ExperimentStore
from learnlr.bench.summary import compare, seed_means
from learnlr.rl.schedules import policy_digest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rl_residual_folds import FOLDS, ORACLE_ACTIONS, ORACLE_SPACES  # noqa: E402

Key = tuple[str, str, float, int]  # workload, optimizer, track, seed


def cell_key(config: dict[str, Any]) -> Key:
    return (config["workload"], config["optimizer"], float(config.get("lr_scale", 1.0)),
            int(config["seed"]))


def final(results: dict[str, Any]) -> float:
    value = results.get("final_val_loss")
    return math.inf if results.get("status") != "ok" or value is None else float(value)


def base_features(store: ExperimentStore) -> tuple[dict[Key, list[float]], dict[Key, float]]:
    """Features at the first evaluation and the final loss of every greedy_step cell."""
    feats, losses = {}, {}
    fingerprint = schedule_fingerprint("greedy_step")
    for t in store.trajectories(schedule="greedy_step"):
        if t.config.get("fingerprint", "") != fingerprint or not t.evals:
            continue
        first = t.evals[0]["step"]
        upto = [i for i, s in enumerate(t.steps) if s < first]
        recent = statistics.mean(t.train_loss[i] for i in upto[-10:])
        start = statistics.mean(t.train_loss[i] for i in upto[:10])
        key = cell_key(t.config)
        feats[key] = [math.log(t.lr[upto[-1]] / t.lr[0]), math.log(recent / start),
                      math.log(t.evals[0]["val_loss"] / recent),
                      float(t.config["optimizer"] == "sgd")]
        losses[key] = final(t.results)
    return feats, losses


def finals(store: ExperimentStore, schedule: str, fingerprint: str | None = None
           ) -> dict[Key, float]:
    fingerprint = schedule_fingerprint(schedule) if fingerprint is None else fingerprint
    return {cell_key(c.config): final(c.results) for c in store.cells()
            if c.config["schedule"] == schedule and c.config.get("fingerprint", "") == fingerprint}


def judge(name: str, picked: dict[Key, float], rivals: dict[str, dict[Key, float]]) -> None:
    """Per track: the share of pairs (seed means, 1 % band) where ``picked`` is as good or
    better than each rival on the same cells."""
    def cell(key: Key, schedule: str, loss: float) -> dict[str, Any]:
        w, o, _, seed = key
        return {"config": {"workload": w, "optimizer": o, "seed": seed, "schedule": schedule},
                "results": {"final_val_loss": loss}}

    for track in (0.1, 1.0, 10.0):
        keys = [k for k in picked if k[2] == track]
        cells = [cell(k, name, picked[k]) for k in keys]
        cells += [cell(k, rival, losses[k]) for rival, losses in rivals.items()
                  for k in keys if k in losses]
        means = seed_means(cells)
        parts = []
        for rival in rivals:
            out = [compare(m[name], m[rival], "rel_1pct") for m in means.values() if rival in m]
            parts.append(f"{rival} {sum(o >= 0 for o in out) / len(out):4.0%}")
        print(f"  {name:<22} x{track:<4g} as good or better than " + ", ".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True, help="bench folder with greedy_step, "
                    "cosine and wsd cells (quick suite, seeds 0-2, LR tracks)")
    ap.add_argument("--out", type=Path, required=True, help="rl_residual_folds.py --out folder "
                    "after --oracle")
    args = ap.parse_args()
    with ExperimentStore(args.store / STORE_FILENAME, readonly=True) as bench:
        feats, base = base_features(bench)
        rivals = {"base": base, "cosine": finals(bench, "cosine"), "wsd": finals(bench, "wsd")}
    for space, (max_change, lower_only) in ORACLE_SPACES.items():
        actions: dict[float, dict[Key, float]] = {0.0: base}
        with ExperimentStore(args.out / STORE_FILENAME, readonly=True) as store:
            for a in ORACLE_ACTIONS:
                if lower_only and a > 0:
                    continue
                stem = args.out / f"constant{a:+g}-x{max_change:g}{'-lower' if lower_only else ''}"
                actions[a] = finals(store, f"constant_correction{a:+g}", policy_digest(stem))
        keys = sorted(k for k in feats if all(k in losses for losses in actions.values()))
        label = {k: min(actions, key=lambda a, k=k: actions[a][k]) for k in keys}
        print(f"\n{space}: {len(keys)} cells, best action per cell: "
              + ", ".join(f"{a:+g} {sum(v == a for v in label.values())}" for a in actions))
        for fold, (train, held) in FOLDS.items():
            fit = [k for k in keys if k[0] in train]
            test = [k for k in keys if k[0] in held]
            scaler = StandardScaler().fit([feats[k] for k in fit])
            knn = KNeighborsClassifier(5).fit(scaler.transform([feats[k] for k in fit]),
                                              [str(label[k]) for k in fit])
            chosen = knn.predict(scaler.transform([feats[k] for k in test]))
            picked = {k: actions[float(a)][k] for k, a in zip(test, chosen)}
            hits = np.mean([float(a) == label[k] for k, a in zip(test, chosen)])
            print(f" fold {fold} (held out: {', '.join(held)}); picks the cell's best action "
                  f"on {hits:.0%}")
            judge("first-eval kNN", picked, rivals)
            judge("per-cell hindsight best", {k: actions[label[k]][k] for k in test}, rivals)


if __name__ == "__main__":
    main()
