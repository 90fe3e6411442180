"""SLS (Vaswani et al. 2019) against hand computations of the Armijo rule and a slow reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from learnlr.torch.line_search import SLS


def test_one_step_by_hand_backtracks_to_the_first_armijo_point() -> None:
    w = torch.nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    opt = SLS([w], lr=1.0, c=0.1, beta=0.5, reset_option=2)
    loss = opt.step(lambda: (w**2).sum())
    # f = 9, g = 6, ||g||^2 = 36.  eta=1: f(3-6)=9 > 9 - 0.1*1*36 = 5.4, reject.
    # eta=0.5: f(0)=0 <= 9 - 0.1*0.5*36 = 7.2, accept.
    assert loss.item() == 9.0
    assert w.item() == pytest.approx(0.0)
    assert opt.state["step_size"] == pytest.approx(0.5)
    assert opt.state["n_forwards"] == 3  # the gradient evaluation plus two trials
    assert opt.state["n_backtracks"] == 1
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_accepts_the_initial_step_when_armijo_holds() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = SLS([w], lr=0.1, c=0.5, reset_option=0)
    opt.step(lambda: 0.5 * (w**2).sum())
    # f = 2.5, g = w, ||g||^2 = 5; f(0.9 w) = 0.81*2.5 = 2.025 <= 2.5 - 0.5*0.1*5 = 2.25
    assert w.tolist() == pytest.approx([0.9, -1.8])
    assert opt.state["n_backtracks"] == 0


def test_reset_options_by_hand() -> None:
    def run(option: int, steps: int) -> list[float]:
        # A very flat quadratic: Armijo always accepts, so only the reset rule moves eta.
        w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
        opt = SLS(
            [w], lr=0.5, reset_option=option, gamma=2.0, n_batches_per_epoch=4,
            max_step_size=0.8,
        )
        sizes = []
        for _ in range(steps):
            opt.step(lambda: 1e-3 * (w**2).sum())
            sizes.append(opt.state["step_size"])
        return sizes

    assert run(0, 3) == pytest.approx([0.5, 0.5, 0.5])
    assert run(2, 3) == pytest.approx([0.5, 0.5, 0.5])
    grow = 2.0 ** (1 / 4)
    assert run(1, 4) == pytest.approx([0.5 * grow, 0.5 * grow**2, 0.8, 0.8])  # capped at 0.8


def test_reset_option_two_restarts_after_a_backtrack() -> None:
    w = torch.nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    opt = SLS([w], lr=1.0, beta=0.5, reset_option=2)
    opt.step(lambda: (w**2).sum())  # backtracks to 0.5 (see the hand computation above)
    with torch.no_grad():
        w.fill_(0.1)
    opt.step(lambda: 1e-3 * (w**2).sum())
    assert opt.state["step_size"] == pytest.approx(1.0)


def _reference_sls(
    x: np.ndarray, y: np.ndarray, batches: list[np.ndarray], w0: np.ndarray, **cfg: float
) -> np.ndarray:
    """Algorithm 1 + 3 of the paper on least squares, with explicit loops and float64."""
    w = w0.copy()
    eta = cfg["lr"]
    for idx in batches:
        xb, yb = x[idx], y[idx]

        def f(v: np.ndarray, xb: np.ndarray = xb, yb: np.ndarray = yb) -> float:
            return float(np.mean((xb @ v - yb) ** 2))

        g = 2.0 * xb.T @ (xb @ w - yb) / len(idx)
        if cfg["reset_option"] == 1:
            eta = min(eta * cfg["gamma"] ** (1.0 / cfg["n_batches_per_epoch"]),
                      cfg["max_step_size"])
        elif cfg["reset_option"] == 2:
            eta = cfg["lr"]
        gg = float(g @ g)
        while f(w - eta * g) > f(w) - cfg["c"] * eta * gg:
            eta *= cfg["beta"]
        w = w - eta * g
    return w


@pytest.mark.parametrize("reset_option", [0, 1, 2])
def test_fast_matches_slow_reference_over_many_random_steps(reset_option: int) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 6))
    y = x @ rng.normal(size=6) + 0.3 * rng.normal(size=200)
    w0 = rng.normal(size=6)
    batches = [rng.choice(200, size=16, replace=False) for _ in range(80)]
    cfg = {"lr": 2.0, "c": 0.1, "beta": 0.7, "gamma": 2.0, "reset_option": reset_option,
           "n_batches_per_epoch": 12, "max_step_size": 5.0}
    want = _reference_sls(x, y, batches, w0, **cfg)

    xt, yt = torch.tensor(x), torch.tensor(y)
    w = torch.nn.Parameter(torch.tensor(w0))
    opt = SLS([w], **cfg)
    for idx in batches:
        ib = torch.as_tensor(idx)
        opt.step(lambda ib=ib: torch.mean((xt[ib] @ w - yt[ib]) ** 2))
    np.testing.assert_allclose(w.detach().numpy(), want, rtol=1e-9, atol=1e-12)


def test_every_evaluation_of_a_step_sees_the_same_random_numbers() -> None:
    torch.manual_seed(0)
    w_noisy = torch.nn.Parameter(torch.tensor([2.0, -1.0], dtype=torch.float64))
    w_clean = torch.nn.Parameter(w_noisy.detach().clone())
    # lr=1.3 keeps every Armijo comparison away from an exact tie, where rounding would decide
    opt_noisy = SLS([w_noisy], lr=1.3, reset_option=2)
    opt_clean = SLS([w_clean], lr=1.3, reset_option=2)
    for _ in range(5):
        # An additive random offset per call: harmless only if every trial sees the same one.
        opt_noisy.step(lambda: (w_noisy**2).sum() + 100.0 * torch.rand((), dtype=torch.float64))
        opt_clean.step(lambda: (w_clean**2).sum())
    assert opt_noisy.state["n_backtracks"] > 0  # the search really compared trial losses
    torch.testing.assert_close(w_noisy, w_clean)


def test_closure_that_calls_backward_itself_is_supported() -> None:
    w1 = torch.nn.Parameter(torch.tensor([3.0, 1.0], dtype=torch.float64))
    w2 = torch.nn.Parameter(w1.detach().clone())
    opt1, opt2 = SLS([w1], reset_option=1), SLS([w2], reset_option=1)

    def closure_with_backward() -> torch.Tensor:
        loss = (w2**4).sum()
        if torch.is_grad_enabled():
            loss.backward()
        return loss

    for _ in range(4):
        opt1.step(lambda: (w1**4).sum())
        opt2.step(closure_with_backward)
    torch.testing.assert_close(w1, w2)


def test_closure_that_zeroes_gradients_in_place_moves_like_one_that_sets_them_to_none() -> None:
    def run(set_to_none: bool) -> tuple[float, float]:
        w = torch.nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
        opt = SLS([w], lr=1.0, beta=0.5, reset_option=2)

        def closure() -> torch.Tensor:
            # The usual training-loop closure; under no_grad (the trials) it still zeroes.
            opt.zero_grad(set_to_none=set_to_none)
            loss = (w**2).sum()
            if torch.is_grad_enabled():
                loss.backward()
            return loss

        opt.step(closure)
        return w.item(), opt.state["step_size"]

    # By hand (first test): eta=1 is rejected, eta=0.5 takes w from 3 to 0.
    assert run(set_to_none=True) == pytest.approx((0.0, 0.5))
    assert run(set_to_none=False) == pytest.approx((0.0, 0.5))


def test_failed_search_reports_the_fallback_step_it_took_and_keeps_the_shrunken_size() -> None:
    w = torch.nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    opt = SLS([w], lr=1.0, beta=0.5, reset_option=0, max_backtracks=1)
    opt.step(lambda: (w**2).sum())
    # eta=1 fails Armijo (first test) and no backtrack is left: w moves by 1e-6 * g = 6e-6.
    assert w.item() == pytest.approx(3.0 - 6e-6, abs=1e-12)
    assert opt.param_groups[0]["lr"] == 1e-6  # the step size the parameters actually moved by
    assert opt.state["step_size"] == 0.5  # the next search starts from the shrunken size
    opt.step(lambda: (w**2).sum())
    # from w ~ 3, eta=0.5 passes Armijo at once: w ~ 0, and lr reports 0.5 again
    assert w.item() == pytest.approx(0.0, abs=1e-5)
    assert opt.param_groups[0]["lr"] == 0.5
    assert opt.state["step_size"] == 0.5


def test_trains_a_small_classifier() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 10)
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    opt = SLS(model.parameters(), n_batches_per_epoch=8)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        idx = torch.randint(0, 256, (32,), generator=g)
        loss = opt.step(lambda idx=idx: torch.nn.functional.cross_entropy(model(x[idx]), y[idx]))
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


def test_state_dict_is_json_and_round_trips() -> None:
    w = torch.nn.Parameter(torch.tensor([3.0]))
    opt = SLS([w], lr=1.0, beta=0.5)
    opt.step(lambda: (w**2).sum())
    saved = json.loads(json.dumps(opt.state_dict()))
    other = SLS([torch.nn.Parameter(torch.tensor([0.0]))], lr=7.0)
    other.load_state_dict(saved)
    assert other.state["step_size"] == opt.state["step_size"]
    assert other.state["initial_step_size"] == 1.0
    assert other.param_groups[0]["beta"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": -1.0}, "lr"),
        ({"c": 1.0}, "c="),
        ({"beta": 0.0}, "beta"),
        ({"gamma": 0.5}, "gamma"),
        ({"reset_option": 3}, "reset_option"),
        ({"n_batches_per_epoch": 0}, "n_batches_per_epoch"),
        ({"max_step_size": 0.0}, "max_step_size"),
        ({"max_backtracks": 0}, "max_backtracks"),
        # bools and floats are not option numbers or counts, an infinite cap is no cap
        ({"lr": True}, "lr"),
        ({"max_step_size": float("inf")}, "max_step_size"),
        ({"reset_option": True}, "reset_option"),
        ({"reset_option": 1.0}, "reset_option"),
        ({"max_backtracks": True}, "max_backtracks"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SLS([torch.nn.Parameter(torch.ones(2))], **kwargs)


@pytest.mark.parametrize(
    "lr", [np.float32(0.5), torch.tensor(0.5), torch.tensor(0.5, dtype=torch.float64)]
)
def test_numpy_and_zero_dim_tensor_arguments_are_accepted_as_floats(lr: object) -> None:
    # torch's own optimizers accept these for lr; the stored values are plain floats.
    opt = SLS([torch.nn.Parameter(torch.ones(2))], lr=lr, n_batches_per_epoch=np.int64(4))
    assert type(opt.param_groups[0]["lr"]) is float
    assert opt.param_groups[0]["lr"] == 0.5
    assert opt.state["step_size"] == 0.5
    assert type(opt.param_groups[0]["n_batches_per_epoch"]) is int


def test_step_without_closure_and_multiple_groups_are_rejected() -> None:
    a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError, match="closure"):
        SLS([a]).step()
    with pytest.raises(ValueError, match="parameter groups"):
        SLS([{"params": [a]}, {"params": [b]}])
