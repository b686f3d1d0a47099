"""Traffic-light cycles: one controller per junction group, CARLA's default stage times, vectorised over heads.

CARLA's ``TrafficLightGroup`` runs the controllers of one junction in turn; each controller steps through its
stages (``UTrafficLightController::LightStates``: green 10 s, yellow 3 s, red 2 s) and the next controller starts
when the previous one finished, so one head group is green (or yellow) at a time and the red stage is an all-red
clearance. A head is red whenever its controller is not the active one. Groups start at a seeded point of their
cycle (CARLA starts them all at once when the world loads, long before a leaderboard route begins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autovla_agent.sim.config_checks import require_at_least
from autovla_agent.sim.world.signals import LightHeads

__all__ = ["GREEN", "RED", "STATE_NAMES", "YELLOW", "SignalConfig", "TrafficLightController"]

GREEN, YELLOW, RED = 0, 1, 2
STATE_NAMES = ("Green", "Yellow", "Red")  # carla.TrafficLightState names


@dataclass(frozen=True, kw_only=True, slots=True)
class SignalConfig:
    """Traffic lights and stop signs of the embedded world (defaults: CARLA's controller stages)."""

    lights: bool = True  # False: every head stays green (no light is ever red)
    stop_signs: bool = True  # False: traffic and the expert ignore stop signs (the criterion still scores)
    green_s: float = 10.0
    yellow_s: float = 3.0
    red_s: float = 2.0  # all-red clearance after each controller's yellow
    random_phase: bool = True  # each group starts at a seeded point of its cycle (False: first controller green)

    def __post_init__(self) -> None:
        """Validate stage times."""
        require_at_least(self, ("green_s", "yellow_s"), 0.0, strict=True, finite=True)
        require_at_least(self, ("red_s",), 0.0, finite=True)


class TrafficLightController:
    """States of every head over time; call ``update(time_s)`` once per tick.

    Attributes:
        state: (H,) int8 GREEN / YELLOW / RED.
        time_to_red_s: (H,) seconds until the head turns red (0 when red).
        time_to_green_s: (H,) seconds until the head turns green (0 when green or yellow).
    """

    def __init__(self, heads: LightHeads, config: SignalConfig | None = None, seed: int = 0) -> None:
        self.heads = heads
        self.config = config or SignalConfig()
        cfg = self.config
        self._stage_s = cfg.green_s + cfg.yellow_s + cfg.red_s
        self._cycle_s = np.maximum(heads.num_phases, 1) * self._stage_s  # (G,)
        rng = np.random.default_rng([seed, 12])
        self._offset_s = rng.uniform(0.0, self._cycle_s) if cfg.random_phase else np.zeros(len(self._cycle_s))
        n = len(heads)
        self.state = np.full(n, GREEN, np.int8)
        self.time_to_red_s = np.full(n, np.inf)
        self.time_to_green_s = np.zeros(n)
        self.update(0.0)

    def update(self, time_s: float) -> None:
        """Set the head states at simulated time ``time_s``."""
        h = self.heads
        if len(h) == 0:
            return
        if not self.config.lights:
            self.state[:] = GREEN
            self.time_to_red_s[:] = np.inf
            self.time_to_green_s[:] = 0.0
            return
        cfg = self.config
        t = (time_s + self._offset_s[h.group]) % self._cycle_s[h.group]
        active = np.floor(t / self._stage_s).astype(np.int64)
        within = t - active * self._stage_s
        mine = active == h.phase
        green = mine & (within < cfg.green_s)
        yellow = mine & ~green & (within < cfg.green_s + cfg.yellow_s)
        self.state = np.where(green, GREEN, np.where(yellow, YELLOW, RED)).astype(np.int8)
        to_red = cfg.green_s + cfg.yellow_s - within
        self.time_to_red_s = np.where(green | yellow, to_red, 0.0)
        n_phase = np.maximum(h.num_phases[h.group], 1)
        stages_ahead = (h.phase - active) % n_phase  # 0: this head's stage is the active one (its red clearance)
        stages_ahead = np.where(mine & ~green & ~yellow, n_phase, stages_ahead)
        self.time_to_green_s = np.where(green | yellow, 0.0, stages_ahead * self._stage_s - within)

    def states_of(self, head_index: np.ndarray) -> np.ndarray:
        """States (same shape) of the heads ``head_index`` (-1 entries read as GREEN: no light)."""
        idx = np.asarray(head_index, np.int64)
        if len(self.state) == 0:
            return np.full(idx.shape, GREEN, np.int8)
        return np.where(idx >= 0, self.state[np.maximum(idx, 0)], GREEN).astype(np.int8)
