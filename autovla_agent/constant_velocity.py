"""The reference planner: keep the current speed straight ahead (no model), and the poses every fallback reuses.

``constant_velocity_poses`` is the one place that writes constant-velocity poses: the ``ConstantVelocityPlanner``
below (the CARLA baseline and the per-tick benchmark's planner), the VLA planner's ``constant_velocity``
fallback and the NAVSIM agent's trajectory for a scene whose planner raised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from autovla_agent.contract import Observation, Plan, Planner, ThinkingMode


def constant_velocity_poses(
    speed_mps: float, times_s: Sequence[float] | np.ndarray, min_speed_mps: float | None = None
) -> np.ndarray:
    """Ego poses (len(times_s), 3) float64 at ``v * t`` along the ego x axis: x_m, y_m = 0, yaw_rad = 0.

    ``v`` is the signed ``speed_mps`` (negative reverses), raised to ``min_speed_mps`` when that is given (0 keeps
    a reversing ego standing still). A non-finite speed counts as 0, so a fallback never carries NaN poses.
    """
    speed = float(speed_mps) if math.isfinite(speed_mps) else 0.0
    if min_speed_mps is not None:
        speed = max(speed, float(min_speed_mps))
    times = np.asarray(times_s, dtype=np.float64)
    poses = np.zeros((times.shape[0], 3))
    poses[:, 0] = speed * times
    return poses


class ConstantVelocityPlanner(Planner):
    """Keeps the current speed straight ahead (no model): the baseline and the per-tick benchmark's planner."""

    def __init__(self, times_s: Sequence[float], min_speed_mps: float = 0.0) -> None:
        """Plan at ``times_s`` (seconds after the observation), never slower than ``min_speed_mps``."""
        self.times_s = np.asarray(times_s, dtype=np.float64)
        self.min_speed_mps = float(min_speed_mps)

    def plan(self, obs: Observation) -> Plan:
        """Poses at ``max(speed, min_speed_mps) * t`` along the ego x axis; raises ValueError on a non-finite speed."""
        speed_mps = float(obs.ego.speed_mps)
        if not math.isfinite(speed_mps):
            # A broken speed estimate must not become a cruise plan: the driving loop brakes on a raising planner.
            raise ValueError(f"ego speed {speed_mps} is not finite")
        poses = constant_velocity_poses(speed_mps, self.times_s, self.min_speed_mps)
        return Plan(times_s=self.times_s.copy(), poses_ego=poses, thinking_mode=ThinkingMode.FAST)
