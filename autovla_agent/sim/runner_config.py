"""Settings of the embedded evaluation (``RunnerConfig``): world, criteria, replays and a tick cap, from YAML."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autovla_agent.config_io import ConfigError, apply_overrides, from_dict, to_dict
from autovla_agent.sim.replay.log import ReplayConfig
from autovla_agent.sim.scoring.config import ScoringConfig
from autovla_agent.sim.world.simulation import WorldConfig

__all__ = ["RunnerConfig", "load_runner_config"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RunnerConfig:
    """Embedded evaluation settings: the world, the criteria thresholds, the replays and a tick cap."""

    world: WorldConfig = field(default_factory=WorldConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    max_ticks: int = 0  # 0: no cap; Bench2Drive caps a route at 4000 ticks ("Failed - TickRuntime")

    def __post_init__(self) -> None:
        """Validate the tick cap."""
        if self.max_ticks < 0:
            raise ValueError("RunnerConfig.max_ticks must be >= 0 (0 = no cap)")


def load_runner_config(
    path: str | None, overrides: Sequence[str], num_traffic: int | None, maps_dirs: Sequence[str] = ()
) -> RunnerConfig:
    """RunnerConfig from an optional YAML (sections world, scoring, replay, max_ticks) and dotted overrides.

    ``maps_dirs`` (``--maps-dir``) go before the config's own ``world.maps_dirs``.
    """
    defaults = {
        "world": to_dict(WorldConfig()),
        "scoring": to_dict(ScoringConfig()),
        "replay": to_dict(ReplayConfig()),
        "max_ticks": 0,
    }
    if path:
        import yaml

        text = Path(path).read_text(encoding="utf-8")
        user = yaml.safe_load(text) or {}
        if not isinstance(user, dict):
            raise ConfigError(f"{path}: the top level must be a mapping (world, scoring, replay, max_ticks)")
        unknown = sorted(set(user) - set(defaults))
        if unknown:
            raise ConfigError(f"{path}: unknown section(s) {unknown}; allowed: {sorted(defaults)}")
        for key, value in user.items():
            defaults[key] = _merge(defaults[key], value, key)
    data = apply_overrides(defaults, overrides)
    world = from_dict(WorldConfig, data["world"], "world")
    if maps_dirs:
        world = dataclasses.replace(world, maps_dirs=(*(str(d) for d in maps_dirs), *world.maps_dirs))
    if num_traffic is not None:
        world = dataclasses.replace(world, traffic=dataclasses.replace(world.traffic, num_vehicles=int(num_traffic)))
    return RunnerConfig(
        world=world,
        scoring=from_dict(ScoringConfig, data["scoring"], "scoring"),
        replay=from_dict(ReplayConfig, data["replay"], "replay"),
        max_ticks=int(data["max_ticks"]),
    )


def _merge(base: Any, update: Any, path: str) -> Any:
    """Deep-merge a YAML section into the defaults; unknown keys are errors naming their dotted path."""
    if not isinstance(base, dict) or not isinstance(update, dict):
        return update
    merged = dict(base)
    for key, value in update.items():
        if key not in base:
            raise ConfigError(f"unknown key {path}.{key}; allowed: {sorted(base)}")
        merged[key] = _merge(base[key], value, f"{path}.{key}")
    return merged
