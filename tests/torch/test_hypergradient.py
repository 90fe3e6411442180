"""SGD-HD and Adam-HD against hand computations of Baydin et al. (2018) and a slow reference."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from learnlr.torch.hypergradient import SGDHD, AdamHD


def _set_grads(params: list[torch.Tensor], grads: list[list[float]] | list[np.ndarray]) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.as_tensor(np.asarray(g), dtype=p.dtype).reshape(p.shape).clone()


# --------------------------------------------------------------------------- hand computations


def test_sgd_hd_group_two_steps_by_hand() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = SGDHD([w], lr=0.1, hypergrad_lr=0.01)
    _set_grads([w], [[1.0, -1.0]])
    opt.step()
    # no previous direction: plain SGD, rate unchanged
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    assert w.tolist() == pytest.approx([0.9, 2.1])
    _set_grads([w], [[2.0, 3.0]])
    opt.step()
    # h = g2 . g1 = 2 - 3 = -1  ->  alpha = 0.1 + 0.01 * (-1) = 0.09
    assert opt.param_groups[0]["lr"] == pytest.approx(0.09)
    assert w.tolist() == pytest.approx([0.9 - 0.09 * 2.0, 2.1 - 0.09 * 3.0])


def test_sgd_hd_parameter_two_steps_by_hand() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = SGDHD([w], lr=0.1, hypergrad_lr=0.01, granularity="parameter")
    _set_grads([w], [[1.0, -1.0]])
    opt.step()
    _set_grads([w], [[2.0, 3.0]])
    opt.step()
    # elementwise: alpha_i = 0.1 + 0.01 * g2_i * g1_i = [0.12, 0.07]
    assert opt.state[w]["lr"].tolist() == pytest.approx([0.12, 0.07])
    assert w.tolist() == pytest.approx([0.9 - 0.12 * 2.0, 2.1 - 0.07 * 3.0])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.095)  # the mean, for logging


def test_sgd_hd_momentum_uses_previous_update_direction() -> None:
    w = torch.nn.Parameter(torch.tensor([0.0], dtype=torch.float64))
    opt = SGDHD([w], lr=0.1, hypergrad_lr=0.5, momentum=0.9)
    _set_grads([w], [[1.0]])
    opt.step()  # buf = 1, w = -0.1
    _set_grads([w], [[2.0]])
    opt.step()  # h = 2 * 1 -> lr = 0.1 + 0.5 * 2 = 1.1; buf = 0.9 + 2 = 2.9; w = -0.1 - 3.19
    assert opt.param_groups[0]["lr"] == pytest.approx(1.1)
    assert w.item() == pytest.approx(-0.1 - 1.1 * 2.9)
    _set_grads([w], [[-1.0]])
    opt.step()  # h = -1 * 2.9 -> lr = 1.1 - 1.45 = -0.35
    assert opt.param_groups[0]["lr"] == pytest.approx(1.1 - 0.5 * 2.9)


def test_adam_hd_group_two_steps_by_hand() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    b1, b2, eps, lr, beta = 0.9, 0.999, 1e-8, 0.1, 0.01
    opt = AdamHD([w], lr=lr, hypergrad_lr=beta, betas=(b1, b2), eps=eps)
    _set_grads([w], [[2.0]])
    opt.step()
    m, v = 0.1 * 2.0, 0.001 * 4.0
    d1 = (m / (1 - b1)) / (math.sqrt(v / (1 - b2)) + eps)
    assert w.item() == pytest.approx(1.0 - lr * d1)
    assert opt.param_groups[0]["lr"] == pytest.approx(lr)
    _set_grads([w], [[1.0]])
    opt.step()
    lr2 = lr + beta * 1.0 * d1  # alpha_t = alpha_{t-1} + beta * g_t * m_hat/(sqrt(v_hat)+eps)
    m, v = b1 * m + (1 - b1) * 1.0, b2 * v + (1 - b2) * 1.0
    d2 = (m / (1 - b1**2)) / (math.sqrt(v / (1 - b2**2)) + eps)
    assert opt.param_groups[0]["lr"] == pytest.approx(lr2)
    assert w.item() == pytest.approx(1.0 - lr * d1 - lr2 * d2)


def test_adam_hd_parameter_two_steps_by_hand() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0], dtype=torch.float64))
    opt = AdamHD([w], lr=0.1, hypergrad_lr=0.01, eps=1e-8, granularity="parameter")
    _set_grads([w], [[2.0, 4.0]])
    opt.step()  # first Adam direction is g/|g| (up to eps): [1, 1]
    _set_grads([w], [[1.0, -3.0]])
    opt.step()
    assert opt.state[w]["lr"].tolist() == pytest.approx([0.1 + 0.01 * 1.0, 0.1 - 0.01 * 3.0])


# --------------------------------------------------------------------------- slow reference


def _reference_run(
    kind: str,
    granularity: str,
    groups: list[dict],
    grads_per_step: list[list[np.ndarray]],
) -> list[np.ndarray]:
    """Paper equations written out on flat float64 numpy vectors, one group at a time."""
    out = []
    for gi, group in enumerate(groups):
        theta = np.concatenate([np.ravel(x) for x in group["init"]]).astype(np.float64)
        n = theta.size
        alpha = np.full(n, group["lr"]) if granularity == "parameter" else group["lr"]
        prev_dir = None
        buf = np.zeros(n)
        m, v = np.zeros(n), np.zeros(n)
        beta = group["hypergrad_lr"]
        for t, step_grads in enumerate(grads_per_step, start=1):
            g = np.concatenate([np.ravel(x) for x in step_grads[gi]])
            g = g + group.get("weight_decay", 0.0) * theta
            if prev_dir is not None:
                if granularity == "parameter":
                    alpha = alpha + beta * g * prev_dir
                else:
                    alpha = alpha + beta * float(np.dot(g, prev_dir))
            if kind == "sgd":
                mu = group.get("momentum", 0.0)
                if mu:
                    buf = g.copy() if t == 1 else mu * buf + g
                    d = g + mu * buf if group.get("nesterov") else buf.copy()
                else:
                    d = g.copy()
            else:
                b1, b2 = group["betas"]
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g * g
                d = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + group["eps"])
            theta = theta - alpha * d
            prev_dir = d
        out.append(theta)
    return out


@pytest.mark.parametrize("granularity", ["group", "parameter"])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_fast_matches_slow_reference_over_many_random_steps(kind: str, granularity: str) -> None:
    rng = np.random.default_rng(123)
    shapes = [[(3, 4), (4,)], [(5,)]]
    inits = [[rng.normal(size=s) for s in group] for group in shapes]
    if kind == "sgd":
        settings = [
            {"lr": 0.05, "hypergrad_lr": 1e-3, "momentum": 0.9, "nesterov": True},
            {"lr": 0.02, "hypergrad_lr": 5e-3, "momentum": 0.0, "weight_decay": 0.1},
        ]
    else:
        settings = [
            {"lr": 0.01, "hypergrad_lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8},
            {"lr": 0.03, "hypergrad_lr": 1e-4, "betas": (0.8, 0.99), "eps": 1e-6,
             "weight_decay": 0.05},
        ]
    params = [[torch.nn.Parameter(torch.tensor(x)) for x in group] for group in inits]
    cls = SGDHD if kind == "sgd" else AdamHD
    opt = cls(
        [{"params": ps, **cfg} for ps, cfg in zip(params, settings, strict=True)],
        granularity=granularity,
    )
    grads_per_step = [
        [[rng.normal(size=s) for s in group] for group in shapes] for _ in range(60)
    ]
    for step_grads in grads_per_step:
        for ps, gs in zip(params, step_grads, strict=True):
            _set_grads(ps, gs)
        opt.step()
    expected = _reference_run(
        kind,
        granularity,
        [{"init": x, **cfg} for x, cfg in zip(inits, settings, strict=True)],
        grads_per_step,
    )
    for ps, want in zip(params, expected, strict=True):
        got = torch.cat([p.detach().reshape(-1) for p in ps]).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- behaviour


def test_zero_hypergrad_lr_matches_torch_sgd_and_adam() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(32, 5), torch.randn(32, 1)
    for ours, theirs in [
        (lambda p: SGDHD(p, lr=0.05, hypergrad_lr=0.0, momentum=0.9),
         lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
        (lambda p: AdamHD(p, lr=0.01, hypergrad_lr=0.0),
         lambda p: torch.optim.Adam(p, lr=0.01)),
    ]:
        torch.manual_seed(1)
        a = torch.nn.Linear(5, 1)
        b = torch.nn.Linear(5, 1)
        b.load_state_dict(a.state_dict())
        opt_a, opt_b = ours(a.parameters()), theirs(b.parameters())
        for _ in range(20):
            for model, opt in ((a, opt_a), (b, opt_b)):
                opt.zero_grad()
                torch.nn.functional.mse_loss(model(x), y).backward()
                opt.step()
        torch.testing.assert_close(a.weight, b.weight)


def test_hd_grows_rate_on_a_too_small_initial_lr_and_trains() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    model = torch.nn.Linear(4, 1, bias=False)
    opt = SGDHD(model.parameters(), lr=1e-3, hypergrad_lr=1e-3)
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
    assert opt.param_groups[0]["lr"] > 1e-2  # consistent gradients pushed the rate up
    assert loss.item() < 0.01 * first


def test_parameter_granularity_external_lr_write_rescales_rates() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = SGDHD([w], lr=0.1, hypergrad_lr=0.01, granularity="parameter")
    _set_grads([w], [[1.0, -1.0]])
    opt.step()
    _set_grads([w], [[2.0, 3.0]])
    opt.step()  # rates [0.12, 0.07], mean 0.095
    opt.param_groups[0]["lr"] = 0.19  # e.g. a scheduler doubles it
    _set_grads([w], [[0.0, 0.0]])
    opt.step()  # zero gradient: no hypergradient change, only the rescale
    assert opt.state[w]["lr"].tolist() == pytest.approx([0.24, 0.14])


@pytest.mark.parametrize(
    ("second_grad", "rates_before"),
    [([0.25, -1.75], [0.75, -1.25]),  # mean -0.25: a ratio -2 would flip both signs
     ([0.25, -1.25], [0.75, -0.75])],  # mean 0: a ratio is undefined
)
def test_parameter_granularity_external_lr_write_over_a_non_positive_mean_sets_rates(
    second_grad: list[float], rates_before: list[float]
) -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = SGDHD([w], lr=0.5, hypergrad_lr=1.0, granularity="parameter")
    _set_grads([w], [[1.0, 1.0]])
    opt.step()
    _set_grads([w], [second_grad])
    opt.step()  # alpha_i = 0.5 + 1.0 * g2_i * g1_i
    assert opt.state[w]["lr"].tolist() == rates_before
    opt.param_groups[0]["lr"] = 0.5  # e.g. a scheduler writes a positive LR
    _set_grads([w], [[0.0, 0.0]])
    opt.step()  # zero gradient: no hypergradient change, only the external write
    assert opt.state[w]["lr"].tolist() == [0.5, 0.5]
    assert opt.param_groups[0]["lr"] == 0.5


def test_rates_created_at_the_step_of_an_external_lr_write_start_at_the_new_value() -> None:
    a = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    b = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = SGDHD([a, b], lr=0.1, hypergrad_lr=0.01, granularity="parameter")
    _set_grads([a], [[1.0]])
    opt.step()  # only a has a gradient: only a gets rates (0.1)
    opt.param_groups[0]["lr"] = 0.2
    _set_grads([a, b], [[0.0], [1.0]])
    opt.step()  # a's rate is rescaled 0.1 -> 0.2; b's is created at 0.2, not rescaled to 0.4
    assert opt.state[a]["lr"].tolist() == pytest.approx([0.2])
    assert opt.state[b]["lr"].tolist() == pytest.approx([0.2])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)


@pytest.mark.parametrize("cls", [SGDHD, AdamHD])
def test_group_hypergradient_of_a_large_fp16_parameter_does_not_overflow(cls: type) -> None:
    # 200k elements of g_t . d_{t-1} = 1 each: 2e5 overflows fp16 (max 65504) to inf.
    w = torch.nn.Parameter(torch.zeros(200_000, dtype=torch.float16))
    opt = cls([w], lr=1e-3, hypergrad_lr=1e-9)
    for _ in range(2):
        w.grad = torch.ones_like(w)  # the Adam direction of constant ones is 1 as well
        opt.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 + 1e-9 * 200_000, rel=1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_per_element_rates_of_low_precision_parameters_keep_small_changes(
    dtype: torch.dtype,
) -> None:
    # The paper's Adam-HD beta 1e-7 on rates of 1e-3: 16-bit rates round every change away.
    w = torch.nn.Parameter(torch.ones(4, dtype=dtype))
    opt = AdamHD([w], lr=1e-3, hypergrad_lr=1e-7, granularity="parameter")
    for _ in range(10):
        w.grad = torch.ones_like(w)
        opt.step()  # from the second step on, alpha += 1e-7 * 1 * d, d ~ 1 (16-bit moments)
    rates = opt.state[w]["lr"]
    assert rates.dtype == torch.float32
    # nine changes of ~1e-7 (a 16-bit rate stays at round(1e-3), off by ~4e-7)
    assert [r - 1e-3 for r in rates.tolist()] == pytest.approx([9e-7] * 4, rel=0.02)
    # a checkpoint round trip keeps them float32 (torch's loader casts state to the param dtype)
    other = AdamHD([torch.nn.Parameter(w.detach().clone())], lr=1e-3, granularity="parameter")
    other.load_state_dict(opt.state_dict())
    restored = next(iter(other.state.values()))["lr"]
    assert restored.dtype == torch.float32
    assert torch.equal(restored, rates)


@pytest.mark.parametrize("cls", [SGDHD, AdamHD])
@pytest.mark.parametrize("granularity", ["group", "parameter"])
def test_state_dict_round_trip_continues_identically(cls: type, granularity: str) -> None:
    rng = np.random.default_rng(5)
    grads = [rng.normal(size=3) for _ in range(10)]
    w1 = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt1 = cls([w1], lr=0.05, hypergrad_lr=1e-2, granularity=granularity)
    for g in grads[:5]:
        _set_grads([w1], [g])
        opt1.step()
    buffer = io.BytesIO()
    torch.save(opt1.state_dict(), buffer)
    buffer.seek(0)
    w2 = torch.nn.Parameter(w1.detach().clone())
    opt2 = cls([w2], lr=0.05, hypergrad_lr=1e-2, granularity=granularity)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    for g in grads[5:]:
        for w, opt in ((w1, opt1), (w2, opt2)):
            _set_grads([w], [g])
            opt.step()
    torch.testing.assert_close(w1, w2)
    assert opt1.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (SGDHD, {"lr": 0.0}, "lr"),
        (SGDHD, {"hypergrad_lr": -1.0}, "hypergrad_lr"),
        (SGDHD, {"momentum": 1.0}, "momentum"),
        (SGDHD, {"nesterov": True}, "nesterov"),
        (SGDHD, {"granularity": "layer"}, "granularity"),
        (AdamHD, {"betas": (0.9, 1.0)}, "betas"),
        (AdamHD, {"eps": 0.0}, "eps"),
        (AdamHD, {"weight_decay": -0.1}, "weight_decay"),
        # TypeErrors before, or accepted: not numbers, not pairs, infinite, bools
        (AdamHD, {"betas": 0.9}, "betas"),
        (AdamHD, {"betas": (0.9, "x")}, "betas"),
        (AdamHD, {"eps": float("inf")}, "eps"),
        (AdamHD, {"lr": True}, "lr"),
        (SGDHD, {"hypergrad_lr": True}, "hypergrad_lr"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(
    cls: type, kwargs: dict, name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        cls([torch.nn.Parameter(torch.ones(2))], **kwargs)


@pytest.mark.parametrize("cls", [SGDHD, AdamHD])
@pytest.mark.parametrize(
    "lr", [np.float32(0.5), torch.tensor(0.5), torch.tensor(0.5, dtype=torch.float64)]
)
def test_numpy_and_zero_dim_tensor_lr_is_accepted_as_a_float(cls: type, lr: object) -> None:
    # torch's own optimizers accept these; the group stores a plain float.
    opt = cls([torch.nn.Parameter(torch.ones(2))], lr=lr)
    assert type(opt.param_groups[0]["lr"]) is float
    assert opt.param_groups[0]["lr"] == 0.5
