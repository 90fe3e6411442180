"""Stochastic non-negative matrix factorization with a learning-rate stability bound.

``X ~ W H`` with ``X >= 0`` (m x n), ``W >= 0`` (m x k), ``H >= 0`` (k x n), loss
``0.5 * ||X - W H||_F^2``, solved by projected SGD under a noisy gradient oracle. The public
bound :func:`stability_bound` is derived in ``docs/nmf_stability.md``.

Example:
    >>> from learnlr.nmf import planted_problem, solve, GradientOracle
    >>> run = solve(planted_problem(30, 20, 3, seed=0), steps=200, seed=0,
    ...             oracle=GradientOracle("additive", sigma=0.01))
    >>> run.losses[-1] < 0.1 * run.losses[0]
    True
"""

from learnlr._lazy import lazy_names

__all__ = [
    "REAL_PROBLEMS",
    "GradientOracle",
    "NMFProblem",
    "NMFRun",
    "StepRecord",
    "StochasticNMF",
    "blockwise_bounds",
    "clipped_uniform_bound",
    "curvature_bound",
    "hessian_vector_product",
    "initialize_factors",
    "make_problem",
    "max_hessian_eigenvalue",
    "planted_problem",
    "real_problem",
    "solve",
    "stability_bound",
]

__getattr__, __dir__ = lazy_names(__name__, {
    **dict.fromkeys(("REAL_PROBLEMS", "NMFProblem", "initialize_factors", "make_problem",
                     "planted_problem", "real_problem"), "learnlr.nmf.problems"),
    **dict.fromkeys(("GradientOracle", "NMFRun", "StepRecord", "StochasticNMF", "solve"),
                    "learnlr.nmf.solver"),
    **dict.fromkeys(("blockwise_bounds", "clipped_uniform_bound", "curvature_bound",
                     "hessian_vector_product", "max_hessian_eigenvalue", "stability_bound"),
                    "learnlr.nmf.stability"),
})
