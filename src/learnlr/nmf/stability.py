"""Learning-rate stability bounds for gradient descent on ``f(W, H) = 0.5 * ||X - W H||_F^2``.

The derivation is in ``docs/nmf_stability.md``. In short, with ``R = W H - X`` the second
directional derivative of ``f`` along ``(dW, dH)`` is::

    Q(dW, dH) = ||dW H + W dH||_F^2 + 2 <R, dW dH>

and bounding the two terms gives ``|Q| <= L_t * (||dW||_F^2 + ||dH||_F^2)`` with
``L_t = ||W||_2^2 + ||H||_2^2 + ||R||_F``. So the joint Hessian has spectral norm at most
``L_t`` and a simultaneous gradient step on ``(W, H)`` is stable (the linearized iteration
``I - eta * Hess`` is non-expansive near a minimum, where the Hessian is positive semi-definite
with zero eigenvalues from the scaling symmetry; docs/nmf_stability.md, section 2) for
``eta < 2 / L_t``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "blockwise_bounds",
    "clipped_uniform_bound",
    "curvature_bound",
    "hessian_vector_product",
    "max_hessian_eigenvalue",
    "spectral_norm_squared",
    "stability_bound",
]


def spectral_norm_squared(A: np.ndarray) -> float:
    """``||A||_2^2``, the largest eigenvalue of the smaller Gram matrix of ``A``."""
    # ||A||_2^2 is the top eigenvalue of the small k x k Gram matrix: far cheaper than an SVD
    # of the tall factor, and it is computed every step by the solver.
    gram = A.T @ A if A.shape[0] >= A.shape[1] else A @ A.T
    return float(max(np.linalg.eigvalsh(gram)[-1], 0.0))


def _check_shapes(X: np.ndarray, W: np.ndarray, H: np.ndarray) -> None:
    if X.ndim != 2 or W.ndim != 2 or H.ndim != 2:
        raise ValueError(
            f"X, W, H must be 2-D arrays, got ndim {X.ndim}, {W.ndim}, {H.ndim}"
        )
    m, n = X.shape
    if W.shape[0] != m or H.shape[1] != n or W.shape[1] != H.shape[0]:
        raise ValueError(
            f"shapes must be X (m, n), W (m, k), H (k, n); got X {X.shape}, W {W.shape}, "
            f"H {H.shape}"
        )


def curvature_bound(X: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    """``L_t = ||W||_2^2 + ||H||_2^2 + ||W H - X||_F``, an upper bound on the Hessian norm."""
    _check_shapes(X, W, H)
    residual = float(np.linalg.norm(W @ H - X))
    return spectral_norm_squared(W) + spectral_norm_squared(H) + residual


def stability_bound(X: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    """The largest learning rate the theory allows for a simultaneous full-gradient step.

    Returns ``2 / L_t`` with ``L_t = ||W||_2^2 + ||H||_2^2 + ||W H - X||_F`` (see
    ``docs/nmf_stability.md``). Learning rates strictly below this value keep every eigenvalue of
    the linearized gradient-descent map at ``(W, H)`` above -1 (non-expansive near a minimum;
    not a contraction: the scaling symmetry leaves eigenvalues at 1). Returns ``inf`` only when
    ``L_t = 0`` (``W = 0``, ``H = 0`` and ``X = 0``).

    Example:
        >>> import numpy as np
        >>> X = np.ones((4, 3)); W = np.ones((4, 1)); H = np.ones((1, 3))
        >>> round(stability_bound(X, W, H), 4)   # 2 / (4 + 3 + 0)
        0.2857
    """
    L = curvature_bound(np.asarray(X, float), np.asarray(W, float), np.asarray(H, float))
    return 2.0 / L if L > 0 else float("inf")


def blockwise_bounds(X: np.ndarray, W: np.ndarray, H: np.ndarray) -> tuple[float, float]:
    """``(2 / ||H||_2^2, 2 / ||W||_2^2)``: exact stability limits for a step on W alone / H alone.

    ``f`` is a convex quadratic in ``W`` for fixed ``H`` with Hessian ``I kron H H^T``, so these
    are exact, not bounds. They are ``inf`` when the other factor is zero, which is why the
    solver never uses them on their own (see :func:`stability_bound`).
    """
    _check_shapes(X, W, H)
    w_sq, h_sq = spectral_norm_squared(W), spectral_norm_squared(H)
    return (2.0 / h_sq if h_sq > 0 else float("inf"), 2.0 / w_sq if w_sq > 0 else float("inf"))


def clipped_uniform_bound(X: np.ndarray, rank: int, clip: float) -> float:
    """``2 / (c^2 k (m + n + sqrt(m n)) + ||X||_F)``: valid for every ``(W, H)`` in ``[0, c]``.

    A floor for :func:`stability_bound` over the whole box, so projected SGD with entries clipped
    to ``[0, clip]`` can always run at this learning rate, whatever happens to the factors.
    """
    if not (clip > 0 and np.isfinite(clip)):
        raise ValueError(f"clip must be a finite value > 0, got {clip}")
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    m, n = X.shape
    return 2.0 / (clip**2 * rank * (m + n + np.sqrt(m * n)) + float(np.linalg.norm(X)))


def hessian_vector_product(
    X: np.ndarray, W: np.ndarray, H: np.ndarray, dW: np.ndarray, dH: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact product of the joint Hessian of ``f`` at ``(W, H)`` with the direction ``(dW, dH)``.

    Differentiating ``grad_W = R H^T`` and ``grad_H = W^T R`` with ``dR = dW H + W dH`` gives
    ``(dR H^T + R dH^T, W^T dR + dW^T R)``.
    """
    R = W @ H - X
    dR = dW @ H + W @ dH
    return dR @ H.T + R @ dH.T, W.T @ dR + dW.T @ R


def max_hessian_eigenvalue(
    X: np.ndarray, W: np.ndarray, H: np.ndarray, *, iters: int = 300, seed: int = 0
) -> float:
    """Largest absolute Hessian eigenvalue at ``(W, H)``, by power iteration on HVPs.

    The Hessian is symmetric but can be indefinite away from a minimum, so this estimates the
    spectral norm (largest ``|lambda|``), which is what limits the step size.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    rng = np.random.default_rng(seed)
    vW, vH = rng.standard_normal(W.shape), rng.standard_normal(H.shape)
    norm = np.sqrt((vW**2).sum() + (vH**2).sum())
    vW, vH = vW / norm, vH / norm
    estimate = 0.0
    for _ in range(iters):
        hW, hH = hessian_vector_product(X, W, H, vW, vH)
        norm = float(np.sqrt((hW**2).sum() + (hH**2).sum()))
        if norm == 0.0:
            return 0.0
        estimate = norm
        vW, vH = hW / norm, hH / norm
    return estimate
