"""A trained LR policy as a small torch MLP, saved as safetensors (weights) + JSON (config).

Loading never unpickles anything: ``safetensors.torch.load_file`` reads raw tensors and the
config is JSON. Stable-baselines3 is only needed to *train* (see :mod:`learnlr.rl.training`);
:func:`export_sb3_policy` copies the actor of an SB3 PPO model into :class:`PolicyNetwork`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from learnlr.rl.features import FEATURE_NAMES, FEATURE_SETS

__all__ = ["PolicyConfig", "PolicyNetwork", "export_sb3_policy", "load_policy", "save_policy"]

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
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.kind not in FEATURE_SETS:
            raise ValueError(f"kind must be one of {sorted(FEATURE_SETS)}, got {self.kind!r}")
        if not self.hidden_sizes or any(int(h) < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive integers, got {self.hidden_sizes}")
        if self.steps_per_action < 1:
            raise ValueError(f"steps_per_action must be >= 1, got {self.steps_per_action}")
        if not (0 < self.max_log_change <= 5):
            raise ValueError(f"max_log_change must be in (0, 5], got {self.max_log_change}")
        if self.kind == "greedy_residual":
            from learnlr.rl.residual import check_base

            check_base(self.base)


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


def save_policy(network: PolicyNetwork, path: str | Path) -> tuple[Path, Path]:
    """Write ``<path>.safetensors`` and ``<path>.json``; returns both paths."""
    from safetensors.torch import save_file

    stem = Path(path)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights, config = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    save_file(tensors, str(weights))
    config.write_text(json.dumps(asdict(network.config), indent=2, sort_keys=True) + "\n")
    return weights, config


def load_policy(path: str | Path) -> PolicyNetwork:
    """Rebuild a :class:`PolicyNetwork` from ``<path>.safetensors`` + ``<path>.json`` (no pickle)."""
    from safetensors.torch import load_file

    stem = Path(path)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    weights, config_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for p in (weights, config_path):
        if not p.is_file():
            raise ValueError(f"policy file {str(p)!r} does not exist")
    try:
        raw = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"policy file {str(config_path)!r} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"policy file {str(config_path)!r} must hold a JSON object, "
                         f"got {type(raw).__name__}")
    if raw.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"policy format_version must be {FORMAT_VERSION}, got {raw.get('format_version')!r}"
        )
    kind = raw.get("kind", "direct")
    if kind not in FEATURE_SETS:
        raise ValueError(f"policy kind must be one of {sorted(FEATURE_SETS)}, got {kind!r}")
    expected = list(FEATURE_SETS[kind])
    if list(raw.get("feature_names", [])) != expected:
        raise ValueError(
            f"policy feature_names {raw.get('feature_names')} do not match this version's "
            f"{expected} for kind {kind!r}"
        )
    unknown = sorted(set(raw) - {f.name for f in fields(PolicyConfig)})
    if unknown:
        raise ValueError(f"policy file {str(config_path)!r} has unknown keys {unknown}")
    try:
        network = PolicyNetwork(PolicyConfig(**raw))
    except TypeError as e:  # a field of the wrong type (e.g. hidden_sizes not a list of ints)
        raise ValueError(f"policy file {str(config_path)!r} has an invalid field: {e}") from None
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
                         f"{str(config_path)!r} (hidden_sizes {raw.get('hidden_sizes')}): "
                         f"{' '.join(line.strip() for line in first[:3])}") from None
    network.eval()
    return network


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
