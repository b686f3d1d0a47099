"""Thresholds of the leaderboard route criteria (``ScoringConfig``), shared by the scorer and the criteria."""

from __future__ import annotations

import math
from dataclasses import dataclass

from autovla_agent.sim.config_checks import require_at_least

__all__ = ["ScoringConfig"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ScoringConfig:
    """Thresholds of the route criteria; defaults are the leaderboard's."""

    completion_window: int = 2  # route points looked ahead per tick (RouteCompletionTest.WINDOWS_SIZE)
    completion_distance_m: float = 10.0  # the end must be this close ...
    completion_percentage: float = 99.0  # ... and this much of the route passed, to count 100 %
    collision_radius_m: float = 5.0  # two collisions this close count as one
    collision_id_time_s: float = 5.0  # two collisions with the same actor this soon count as one
    collision_min_speed_mps: float = 0.1  # a collision of a standing ego is not its fault
    layout_margin_m: float = 1.0  # how far a box corner may leave the drivable lanes before it hits the layout
    outside_lane_allowed_m: float = 0.5  # shoulder allowance beyond half the lane width
    outside_lanes_window: int = 3
    max_vehicle_angle_rad: float = math.radians(120.0)  # ego vs lane direction after a junction
    max_waypoint_angle_rad: float = math.radians(150.0)  # lane direction jump between ticks
    offroad_max_m: float = 30.0  # farther than this from the route: route deviation
    offroad_min_m: float = 15.0  # farther than this counts towards the 30 % off-route share
    max_route_out_percentage: float = 30.0
    in_route_window: int = 5
    blocked_min_speed_mps: float = 0.1
    blocked_max_time_s: float = 180.0  # leaderboard 2.0 (formerly 90 s)
    timeout_min_s: float = 300.0
    timeout_speed_fraction: float = 0.1  # the budget grows by distance / (fraction * speed limit)
    timeout_window: int = 3
    default_speed_limit_mps: float = 30.0 / 3.6
    use_min_speed: bool = False  # official 2.0 has it; Bench2Drive (and AutoVLA's numbers) do not
    min_speed_checkpoints: int = 4

    def __post_init__(self) -> None:
        """Reject thresholds that would make a criterion meaningless."""
        windows = ("completion_window", "outside_lanes_window", "in_route_window", "timeout_window")
        require_at_least(self, (*windows, "min_speed_checkpoints"), 1)
        names = ("blocked_max_time_s", "timeout_min_s", "default_speed_limit_mps", "offroad_max_m")
        require_at_least(self, (*names, "timeout_speed_fraction"), 0.0, strict=True)
        if not 0.0 < self.completion_percentage <= 100.0:
            raise ValueError("ScoringConfig.completion_percentage must be in (0, 100]")
