"""NMF problem instances: planted low-rank synthetic matrices and real offline matrices.

Provenance:

- ``planted``: generated here. ``W* ~ U(0, 1)^{m x k}``, ``H* ~ U(0, 1)^{k x n}``, then
  ``X = max(W* H* + noise * std(W* H*) * N(0, 1), 0)``, finally scaled so that ``mean(X) = 1``.
  Everything is drawn from ``numpy.random.default_rng(seed)``.
- ``digits``: ``sklearn.datasets.load_digits().data`` (1797 x 64, pixel counts 0..16, shipped
  inside scikit-learn, no download), divided by 16.
- ``breast-cancer``: ``sklearn.datasets.load_breast_cancer().data`` (569 x 30, non-negative
  measurements), each column divided by its maximum so that all features share the [0, 1] scale.
- ``wine``: ``sklearn.datasets.load_wine().data`` (178 x 13, non-negative), column-max scaled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "NMFProblem",
    "REAL_PROBLEMS",
    "check_seed",
    "initialize_factors",
    "make_problem",
    "planted_problem",
    "real_problem",
]


@dataclass(frozen=True)
class NMFProblem:
    """One instance of ``min 0.5 * ||X - W H||_F^2`` over ``W >= 0, H >= 0``."""

    X: np.ndarray
    """The non-negative data matrix, shape ``(m, n)``, float64."""
    rank: int
    """The factorization rank ``k``."""
    name: str
    """Human-readable identifier, for example ``"planted-40x30-k4-noise0.05-s7"``."""
    provenance: str
    """Where the matrix comes from (shown by the CLI and in reports)."""

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``."""
        return self.X.shape  # type: ignore[return-value]


def check_seed(name: str, value: object) -> None:
    """A ValueError naming ``name`` unless ``value`` is an integer in ``[0, 2**32)`` (bools are
    not): the seeds numpy's generators and ``numpy.random.seed`` all accept."""
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
            or not 0 <= value < 2**32):
        raise ValueError(f"{name} must be an integer in [0, 2**32), got {value!r}")


def _check_positive_int(name: str, value: int, low: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def planted_problem(
    m: int, n: int, rank: int, *, noise: float = 0.05, seed: int = 0
) -> NMFProblem:
    """A planted rank-``rank`` non-negative matrix with Gaussian noise, scaled to mean 1.

    Example:
        >>> p = planted_problem(30, 20, 3, noise=0.1, seed=1)
        >>> p.X.shape, bool((p.X >= 0).all())
        ((30, 20), True)
    """
    _check_positive_int("m", m)
    _check_positive_int("n", n)
    _check_positive_int("rank", rank)
    check_seed("seed", seed)
    if rank > min(m, n):
        raise ValueError(f"rank must be in [1, min(m, n)] = [1, {min(m, n)}], got {rank}")
    if not (0.0 <= noise <= 10.0):
        raise ValueError(f"noise must be in [0, 10], got {noise}")
    rng = np.random.default_rng(seed)
    W = rng.uniform(0.0, 1.0, size=(m, rank))
    H = rng.uniform(0.0, 1.0, size=(rank, n))
    clean = W @ H
    X = np.maximum(clean + noise * clean.std() * rng.standard_normal((m, n)), 0.0)
    X = X / X.mean()
    return NMFProblem(
        X=X,
        rank=rank,
        name=f"planted-{m}x{n}-k{rank}-noise{noise:g}-s{seed}",
        provenance=f"learnlr.nmf.planted_problem(m={m}, n={n}, rank={rank}, noise={noise}, "
        f"seed={seed})",
    )


def _load_real(name: str) -> tuple[np.ndarray, str]:
    # Imported lazily: scikit-learn is an optional (bench) dependency.
    from sklearn import datasets

    if name == "digits":
        return datasets.load_digits().data / 16.0, "sklearn.datasets.load_digits().data / 16"
    if name == "breast-cancer":
        X = datasets.load_breast_cancer().data
        return X / X.max(axis=0), "sklearn.datasets.load_breast_cancer().data, column-max scaled"
    if name == "wine":
        X = datasets.load_wine().data
        return X / X.max(axis=0), "sklearn.datasets.load_wine().data, column-max scaled"
    raise ValueError(f"real problem name must be one of {sorted(REAL_PROBLEMS)}, got {name!r}")


REAL_PROBLEMS = ("digits", "breast-cancer", "wine")
"""Names accepted by :func:`real_problem` (all shipped with scikit-learn, no download)."""


def real_problem(name: str, rank: int) -> NMFProblem:
    """A real non-negative matrix shipped with scikit-learn (see the module docstring).

    Example:
        >>> real_problem("wine", 3).shape
        (178, 13)
    """
    if name not in REAL_PROBLEMS:
        raise ValueError(f"name must be one of {list(REAL_PROBLEMS)}, got {name!r}")
    X, provenance = _load_real(name)
    _check_positive_int("rank", rank)
    if rank > min(X.shape):
        raise ValueError(f"rank must be in [1, {min(X.shape)}] for {name}, got {rank}")
    return NMFProblem(X=np.ascontiguousarray(X, dtype=np.float64), rank=rank,
                      name=f"{name}-k{rank}", provenance=provenance)


def make_problem(spec: str, rank: int, *, noise: float = 0.05, seed: int = 0) -> NMFProblem:
    """Build a problem from a CLI-style spec: ``"planted:MxN"`` or one of :data:`REAL_PROBLEMS`."""
    if spec.startswith("planted:"):
        dims = spec.split(":", 1)[1].lower().split("x")
        if len(dims) != 2 or not all(d.isdigit() for d in dims):
            raise ValueError(f"problem spec must look like 'planted:40x30', got {spec!r}")
        return planted_problem(int(dims[0]), int(dims[1]), rank, noise=noise, seed=seed)
    if spec in REAL_PROBLEMS:
        return real_problem(spec, rank)
    raise ValueError(
        f"problem must be 'planted:MxN' or one of {list(REAL_PROBLEMS)}, got {spec!r}"
    )


def initialize_factors(
    X: np.ndarray, rank: int, *, seed: int = 0, clip: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced random initialization.

    Entries of ``W`` and ``H`` are drawn i.i.d. from ``U(a/2, a)`` with the same ``a`` for both
    factors, chosen so that ``mean(W H) = mean(X)``: ``k * (3a/4)^2 = mean(X)``. Why: equal scales
    keep ``||W||_2^2`` and ``||H||_2^2`` (the two curvature terms of the stability bound)
    balanced, and the strictly positive lower end ``a/2`` means no factor starts at zero, so no
    component is dead from step 0. With ``clip`` given, ``a`` is capped at ``clip``.
    """
    _check_positive_int("rank", rank)
    mean = float(np.mean(X))
    if not np.isfinite(mean) or mean <= 0.0:
        raise ValueError(f"X must have a positive finite mean, got {mean}")
    a = (4.0 / 3.0) * np.sqrt(mean / rank)
    if clip is not None:
        a = min(a, clip)
    rng = np.random.default_rng(seed)
    m, n = X.shape
    W = rng.uniform(a / 2, a, size=(m, rank))
    H = rng.uniform(a / 2, a, size=(rank, n))
    return W, H
