"""The driver model of the background traffic: its parameters (``TrafficConfig``) and the IDM acceleration law.

Intelligent Driver Model (Treiber et al.): ``a = a_max * (1 - (v / v0)^4 - (s* / gap)^2)`` with the desired gap
``s* = s0 + max(0, v T + v (v - v_lead) / (2 sqrt(a_max b)))``; SI units, vectorised over vehicles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autovla_agent.sim.config_checks import require_at_least

__all__ = ["TrafficConfig", "idm_acceleration"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TrafficConfig:
    """Background traffic: count, placement and IDM parameters (SI units)."""

    num_vehicles: int = 20
    num_parked: int = 0  # vehicles parked at the kerb along the route (outside the lane)
    spawn_radius_m: float = 120.0  # spawn on lanes that come this close to the route
    spawn_spacing_m: float = 12.0  # spawn slots along a lane
    min_ego_distance_m: float = 25.0  # no spawn this close to the ego's start
    recycle_distance_m: float = 160.0  # a vehicle this far from the ego respawns near it (0: never)
    desired_speed_mps: tuple[float, float] = (6.0, 8.5)  # uniform range per vehicle at the reference limit ...
    reference_speed_limit_mps: float = 30.0 / 3.6  # ... scaled by the speed limit in force over this (0: no scaling)
    max_accel_mps2: float = 1.5  # IDM a
    comfort_decel_mps2: float = 2.0  # IDM b
    max_decel_mps2: float = 8.0  # hard clamp of IDM braking
    time_headway_s: float = 1.2  # IDM T
    min_gap_m: float = 2.5  # IDM s0
    max_lateral_accel_mps2: float = 2.0  # curve speed limit
    perception_period_ticks: int = 2  # leader search every N ticks (10 Hz at 20 Hz); gaps propagated between
    lookahead_m: float = 40.0
    sample_spacing_m: float = 2.5
    vehicle_length_m: tuple[float, float] = (4.2, 5.2)
    vehicle_width_m: tuple[float, float] = (1.8, 2.1)
    vehicle_height_m: tuple[float, float] = (1.4, 1.7)

    def __post_init__(self) -> None:
        """Validate counts and ranges."""
        require_at_least(self, ("num_vehicles", "num_parked"), 0)
        require_at_least(self, ("perception_period_ticks",), 1)
        for name in ("desired_speed_mps", "vehicle_length_m", "vehicle_width_m", "vehicle_height_m"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ValueError(
                    f"TrafficConfig.{name}={getattr(self, name)} must be (low, high) with 0 <= low <= high"
                )
        names = (
            "spawn_spacing_m",
            "max_accel_mps2",
            "comfort_decel_mps2",
            "max_decel_mps2",
            "time_headway_s",
            "lookahead_m",
            "sample_spacing_m",
            "max_lateral_accel_mps2",
        )
        require_at_least(self, names, 0.0, strict=True)
        require_at_least(self, ("reference_speed_limit_mps",), 0.0)


def idm_acceleration(
    v: np.ndarray, v0: np.ndarray, lead_v: np.ndarray, lead_gap: np.ndarray, held: np.ndarray, cfg: TrafficConfig
) -> np.ndarray:
    """IDM accelerations (n,) for speeds ``v``, desired speeds ``v0`` and leaders (gap inf: none); ``held`` brake.

    Held (parked or waiting) vehicles brake at ``max_decel_mps2``; the result is clamped to
    ``[-max_decel_mps2, max_accel_mps2]``.
    """
    a, b = cfg.max_accel_mps2, cfg.comfort_decel_mps2
    s_star = cfg.min_gap_m + np.maximum(0.0, v * cfg.time_headway_s + v * (v - lead_v) / (2 * math.sqrt(a * b)))
    interaction = np.where(np.isfinite(lead_gap), (s_star / np.maximum(lead_gap, 0.1)) ** 2, 0.0)
    free = (v / np.maximum(v0, 0.1)) ** 4
    accel = a * (1.0 - free - interaction)
    accel = np.where(held, -cfg.max_decel_mps2, accel)
    return np.minimum(np.maximum(accel, -cfg.max_decel_mps2), a)
