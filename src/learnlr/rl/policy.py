"""A trained LR policy as a small torch MLP, saved as safetensors (weights) + JSON (config).

Loading never unpickles anything: ``safetensors.torch.load_file`` reads raw tensors and the
config is JSON. Stable-baselines3 is only needed to *train* (see :mod:`learnlr.rl.training`);
:func:`export_sb3_policy` copies the actor of an SB3 PPO model into :class:`PolicyNetwork`.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from learnlr.rl.features import FEATURE_NAMES, FEATURE_SETS

__all__ = ["PolicyConfig", "PolicyNetwork", "export_sb3_policy", "load_policy", "policy_files",
           "save_policy"]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
FORMAT_VERSION = 1


@dataclass
class PolicyConfig:
    """Everything needed to rebuild and run a policy; stored as JSON next to the weights."""

    hidden_sizes: list[int] = field(default_factory=lambda: [32, 32])
    """Widths of the hidden layers."""
    activation: str = "tanh"
    """``"tanh"`` or ``"relu"``."""
    steps_per_action: int = 10
    """Optimizer steps (metric calls) between two decisions."""
    max_log_change: float = math.log(2.0)
    """An action ``a`` in [-1, 1] multiplies the LR by ``exp(a * max_log_change)``."""
    min_relative_lr: float = 1e-2
    """LR floor as a fraction of the reference LR (bound or initial LR)."""
    feature_window: int = 10
    """Losses in the variance feature."""
    feature_names: list[str] = field(default_factory=lambda: list(FEATURE_NAMES))
    """Observation layout the policy was trained on (checked at load time)."""
    kind: str = "direct"
    """``"direct"``: the policy sets the LR (:data:`FEATURE_NAMES`); a residual kind (a key of
    :data:`learnlr.rl.features.FEATURE_SETS`): the policy corrects a base schedule."""
    lower_only: bool = False
    """Residual policies: the correction can only lower the base's LR (positive actions act as
    0)."""
    base: str = "greedy_step"
    """Residual policies: the benchmark schedule corrected (:data:`learnlr.rl.residual.
    RESIDUAL_BASES`; files written before this field existed correct ``greedy_step``)."""
    workload: str = "nmf"
    """Workload family the policy was trained on."""
    training: dict[str, Any] = field(default_factory=dict)
    """Provenance: seed, timesteps, command, evaluation summary."""
    format_version: int = FORMAT_VERSION
    """File format version."""

    def __post_init__(self) -> None:
        # Every field is checked, types included: a config comes from a JSON file a user may
        # have edited, and a wrong value must fail here, not as a TypeError mid-run.
        _check_int_list("hidden_sizes", self.hidden_sizes)
        self.hidden_sizes = [int(h) for h in self.hidden_sizes]  # JSON-able (numpy ints)
        _check_choice("activation", self.activation, _ACTIVATIONS)
        _check_int("steps_per_action", self.steps_per_action, 1)
        _check_real("max_log_change", self.max_log_change, 0.0, 5.0, "(0, 5]")
        # (0, 1) as the training environments: the floor is a fraction of the reference LR
        # (the bound, which is also the ceiling), so 1 would pin the LR to the bound.
        _check_real("min_relative_lr", self.min_relative_lr, 0.0, 1.0, "(0, 1)", closed=False)
        _check_int("feature_window", self.feature_window, 2)
        if not (isinstance(self.feature_names, (list, tuple))
                and all(isinstance(n, str) for n in self.feature_names)):
            raise ValueError(f"feature_names must be a list of strings, got "
                             f"{self.feature_names!r}")
        self.feature_names = list(self.feature_names)
        _check_choice("kind", self.kind, FEATURE_SETS)
        _check_type("lower_only", self.lower_only, bool, "true or false")
        _check_type("base", self.base, str, "a string")
        _check_type("workload", self.workload, str, "a string")
        _check_type("training", self.training, dict, "an object (dict)")
        _check_int("format_version", self.format_version, 1)
        if self.kind == "greedy_residual":
            from learnlr.rl.residual import check_base

            check_base(self.base)


def _check_type(name: str, value: Any, kind: type, want: str) -> None:
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be {want}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(name: str, value: Any, low: int) -> None:
    if not (_is_int(value) and value >= low):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_int_list(name: str, value: Any) -> None:
    if not (isinstance(value, (list, tuple)) and value
            and all(_is_int(v) and v >= 1 for v in value)):
        raise ValueError(f"{name} must be a non-empty list of integers >= 1, got {value!r}")


def _check_real(name: str, value: Any, low: float, high: float, interval: str, *,
                closed: bool = True) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        low < value <= high if closed else low < value < high)
    if not ok:
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


def _check_choice(name: str, value: Any, choices: Any) -> None:
    if not (isinstance(value, str) and value in choices):
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")


class PolicyNetwork(nn.Module):
    """Deterministic actor: observation -> action mean, clipped to ``[-1, 1]`` at use."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = len(config.feature_names)
        for hidden in config.hidden_sizes:
            layers += [nn.Linear(width, hidden), _ACTIVATIONS[config.activation]()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Action mean(s) for a batch of observations (unclipped)."""
        return self.head(self.body(obs))

    @torch.no_grad()
    def act(self, obs: Any) -> float:
        """Clipped action for one observation (numpy array or tensor)."""
        x = torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)
        return float(self.forward(x).clamp(-1.0, 1.0))


def policy_files(path: str | Path) -> tuple[Path, Path]:
    """``(<stem>.safetensors, <stem>.json)`` of a policy path stem; a path ending in one of the
    two suffixes names the same pair. Suffixes are appended, never substituted, so a stem with a
    dot (``run.v2``, ``out.partial``) keeps its whole name."""
    stem = Path(path)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_policy(network: PolicyNetwork, path: str | Path) -> tuple[Path, Path]:
    """Write ``<path>.safetensors`` and ``<path>.json``; returns both paths.

    Each file is written next to its place and then renamed over it, so an interrupted save
    (Ctrl-C, a full disk) leaves the previous file whole, never a truncated one.
    """
    from safetensors.torch import save_file

    weights, config = policy_files(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    text = json.dumps(asdict(network.config), indent=2, sort_keys=True) + "\n"
    _replace(weights, lambda tmp: save_file(tensors, str(tmp)))
    _replace(config, lambda tmp: tmp.write_text(text))
    return weights, config


def _replace(target: Path, write: Any) -> None:
    """``write(tmp)`` to a temporary file in ``target``'s folder, then rename it over
    ``target`` (atomic on one file system)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def load_policy(path: str | Path) -> PolicyNetwork:
    """Rebuild a :class:`PolicyNetwork` from ``<path>.safetensors`` + ``<path>.json`` (no pickle).

    Raises:
        ValueError: a missing or damaged file; the message names the file (and the field).
    """
    from safetensors.torch import load_file

    weights, config_path = policy_files(path)
    for p in (weights, config_path):
        if not p.is_file():
            raise ValueError(f"policy file {str(p)!r} does not exist")
    config = _read_config(config_path)
    network = PolicyNetwork(config)
    try:
        tensors = load_file(str(weights))
    except Exception as e:  # safetensors raises its own SafetensorError for a corrupt file
        raise ValueError(f"policy weights {str(weights)!r} are not a readable safetensors "
                         f"file: {e}") from None
    try:
        network.load_state_dict(tensors)
    except RuntimeError as e:  # missing / unexpected keys, size mismatch
        first = str(e).strip().splitlines()
        raise ValueError(f"policy weights {str(weights)!r} do not match the layers of "
                         f"{str(config_path)!r} (hidden_sizes {config.hidden_sizes}): "
                         f"{' '.join(line.strip() for line in first[:3])}") from None
    network.eval()
    return network


def _read_config(config_path: Path) -> PolicyConfig:
    """The validated :class:`PolicyConfig` of a policy's JSON file (ValueError naming it)."""
    name = repr(str(config_path))
    try:
        raw = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"policy file {name} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"policy file {name} must hold a JSON object, got {type(raw).__name__}")
    if raw.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"policy file {name}: format_version must be {FORMAT_VERSION}, got "
                         f"{raw.get('format_version')!r}")
    unknown = sorted(set(raw) - {f.name for f in fields(PolicyConfig)})
    if unknown:
        raise ValueError(f"policy file {name} has unknown keys {unknown}")
    try:
        config = PolicyConfig(**raw)
    except ValueError as e:  # the message starts with the field's name
        raise ValueError(f"policy file {name} has an invalid field: {e}") from None
    expected = list(FEATURE_SETS[config.kind])
    if config.feature_names != expected:
        raise ValueError(f"policy file {name}: feature_names {config.feature_names} do not "
                         f"match this version's {expected} for kind {config.kind!r}")
    return config


def export_sb3_policy(model: Any, config: PolicyConfig) -> PolicyNetwork:
    """Copy the actor of an SB3 ``PPO`` (``MlpPolicy``) into a :class:`PolicyNetwork`.

    The SB3 actor is ``mlp_extractor.policy_net`` (Linear + activation pairs) followed by
    ``action_net``; the layer shapes must match ``config.hidden_sizes``.
    """
    network = PolicyNetwork(config)
    sb3_linears = [m for m in model.policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
    ours = [m for m in network.body if isinstance(m, nn.Linear)]
    if len(sb3_linears) != len(ours):
        raise ValueError(
            f"hidden_sizes {config.hidden_sizes} do not match the SB3 actor's "
            f"{[m.out_features for m in sb3_linears]}"
        )
    with torch.no_grad():
        for src, dst in zip(sb3_linears, ours, strict=True):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
        network.head.weight.copy_(model.policy.action_net.weight)
        network.head.bias.copy_(model.policy.action_net.bias)
    network.eval()
    return network
