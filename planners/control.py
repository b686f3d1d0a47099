"""Trajectory tracking: the latest plan between replans, its target speed and aim point, creep recovery.

``TrajectoryTracker`` interpolates the plan at the current time for the target speed, steers at an aim point
along the plan's path and adds SimLingo's stuck/creep recovery; the PID, lateral and longitudinal controllers
it drives (and where their gains come from) are in ``planners.pid``.

All signs are internal: steer_norm > 0 turns left (counter-clockwise); steer_rad = steer_norm * max_steer_rad.
Poses are rear-axle poses (x_m, y_m, yaw_rad) in the internal world frame.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from autovla_agent.planners.pid import LateralConfig, LateralController, LongitudinalConfig, LongitudinalController
from autovla_agent.planners.se2 import points_to_frame
from autovla_agent.planners.vehicle import VehicleParams

logger = logging.getLogger(__name__)

_EPS_S = 1e-9  # tolerance on accumulated tick times (20 x 0.05 s is not exactly 1.0 s in floating point)


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlConfig:
    """Trajectory tracker: controllers, how the target speed is read off the plan, and stuck/creep recovery.

    The target speed is the plan's mean speed between t + target_speed_window_start_s and
    t + target_speed_window_end_s (SimLingo reads it off the first 0.5 s of its speed waypoints).
    Creep: after ``stuck_time_s`` below ``stuck_speed_mps`` the throttle is held at >= ``creep_throttle_norm``
    for ``creep_duration_s`` (SimLingo: 800 ticks = 40 s, 15 ticks = 0.75 s, 0.4), unless the caller reports
    an obstacle ahead.
    """

    lateral: LateralConfig = field(default_factory=LateralConfig)
    longitudinal: LongitudinalConfig = field(default_factory=LongitudinalConfig)
    target_speed_window_start_s: float = 0.0
    target_speed_window_end_s: float = 0.5
    use_creep: bool = True
    stuck_speed_mps: float = 0.1
    stuck_time_s: float = 40.0
    creep_duration_s: float = 0.75
    creep_throttle_norm: float = 0.4

    def __post_init__(self) -> None:
        """Check the speed window and the creep settings."""
        low, high = self.target_speed_window_start_s, self.target_speed_window_end_s
        if not 0.0 <= low < high:
            raise ValueError(f"ControlConfig needs 0 <= target_speed_window_start_s < _end_s, got {low}, {high}")
        if not (self.stuck_time_s > 0.0 and self.creep_duration_s >= 0.0 and 0.0 <= self.creep_throttle_norm <= 1.0):
            raise ValueError("ControlConfig needs stuck_time_s > 0, creep_duration_s >= 0 and creep_throttle_norm <= 1")


@dataclass(frozen=True, slots=True)
class ControlCommand:
    """Normalised actuator command in the internal sign convention (steer_norm > 0 turns left)."""

    steer_norm: float
    throttle_norm: float
    brake_norm: float

    def __post_init__(self) -> None:
        """Check ranges: steer in [-1, 1], throttle and brake in [0, 1], all finite."""
        ok = -1.0 <= self.steer_norm <= 1.0 and 0.0 <= self.throttle_norm <= 1.0 and 0.0 <= self.brake_norm <= 1.0
        if not ok:
            raise ValueError(f"ControlCommand out of range: {self}")

    def steer_rad(self, vehicle: VehicleParams) -> float:
        """Road-wheel angle in radians (> 0 left) this command asks for: steer_norm * max_steer_rad."""
        return self.steer_norm * vehicle.max_steer_rad


def aim_point_on_path(path_xy_m: np.ndarray, position_xy_m: np.ndarray, lookahead_m: float) -> np.ndarray | None:
    """Point (2,) ``lookahead_m`` along a polyline (M, 2) past the projection of ``position_xy_m`` onto it.

    Past the end of the path the last segment is extended in a straight line. Returns None for a path
    shorter than 1 mm (a standing plan has no direction to aim at).
    """
    path = np.asarray(path_xy_m, dtype=np.float64)
    seg = np.diff(path, axis=0)
    seg_len = np.linalg.norm(seg, axis=1)
    keep = seg_len > 1e-6
    if path.shape[0] < 2 or seg_len.sum() < 1e-3:
        return None
    starts, seg, seg_len = path[:-1][keep], seg[keep], seg_len[keep]
    rel = np.asarray(position_xy_m, dtype=np.float64)[None, :2] - starts
    frac = np.clip((rel * seg).sum(axis=1) / seg_len**2, 0.0, 1.0)
    dist = np.linalg.norm(rel - frac[:, None] * seg, axis=1)
    nearest = int(np.argmin(dist))
    cumulative = np.concatenate([[0.0], np.cumsum(seg_len)])
    target_s = cumulative[nearest] + frac[nearest] * seg_len[nearest] + lookahead_m
    if target_s >= cumulative[-1]:
        return starts[-1] + seg[-1] + (target_s - cumulative[-1]) * seg[-1] / seg_len[-1]
    index = int(np.searchsorted(cumulative, target_s, side="right") - 1)
    return starts[index] + (target_s - cumulative[index]) / seg_len[index] * seg[index]


class TrajectoryTracker:
    """Tracks the latest plan (world frame, absolute times) between replans and outputs ControlCommands.

    ``set_plan`` stores the plan; ``step`` interpolates it at the current time for the target speed and
    steers along its path, so a 2 Hz plan drives a 10-20 Hz control loop. Past the plan's horizon the target
    speed is zero (the vehicle stops when plans stop coming). Without a plan the command is a full brake.
    """

    def __init__(self, config: ControlConfig | None = None, vehicle: VehicleParams | None = None):
        self.config = config or ControlConfig()
        self.vehicle = vehicle or VehicleParams()
        self.lateral = LateralController(self.config.lateral)
        self.longitudinal = LongitudinalController(self.config.longitudinal)
        self._times_s: np.ndarray | None = None
        self._poses_world: np.ndarray | None = None
        self._arc_m: np.ndarray | None = None
        self._stuck_s = 0.0
        self._creep_left_s = 0.0
        self.num_creeps = 0

    @property
    def has_plan(self) -> bool:
        """Whether a plan has been set."""
        return self._times_s is not None

    @property
    def is_creeping(self) -> bool:
        """Whether the creep recovery is driving the throttle right now."""
        return self._creep_left_s > _EPS_S

    def reset(self) -> None:
        """Drop the plan and all controller state (a new route or episode)."""
        self._times_s = self._poses_world = self._arc_m = None
        self.lateral.reset()
        self.longitudinal.reset()
        self._stuck_s = self._creep_left_s = 0.0

    def set_plan(
        self, t0_s: float, times_s: np.ndarray, poses_world: np.ndarray, *, start_pose_world: np.ndarray | None = None
    ) -> None:
        """Store a plan: poses (N, 3) rear-axle (x_m, y_m, yaw_rad) in the world frame at t0_s + times_s (N,).

        ``times_s`` are offsets in seconds from the observation time ``t0_s``, strictly increasing and >= 0
        (like ``Plan.times_s``). ``start_pose_world`` is the ego pose at ``t0_s``; pass it when the plan does not
        include t = 0 so that the first interval has a known start (otherwise the plan starts at its first pose).
        """
        times = np.asarray(times_s, dtype=np.float64).reshape(-1)
        poses = np.asarray(poses_world, dtype=np.float64)
        if poses.ndim != 2 or poses.shape[1] != 3 or poses.shape[0] != times.size or times.size == 0:
            raise ValueError(f"need times_s (N,) and poses_world (N, 3) with N >= 1; got {times.shape}, {poses.shape}")
        if not (np.all(np.isfinite(times)) and np.all(np.isfinite(poses)) and math.isfinite(t0_s)):
            raise ValueError("plan times and poses must be finite")
        if times[0] < 0.0 or np.any(np.diff(times) <= 0.0):
            raise ValueError("plan times_s must be >= 0 and strictly increasing")
        if start_pose_world is not None and times[0] > 0.0:
            times = np.concatenate([[0.0], times])
            poses = np.vstack([np.asarray(start_pose_world, dtype=np.float64).reshape(1, 3), poses])
        self._times_s = t0_s + times
        self._poses_world = poses.copy()
        self._poses_world[:, 2] = np.unwrap(poses[:, 2])
        self._arc_m = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1))])

    def reference_pose(self, t_s: float) -> np.ndarray:
        """Plan pose (3,) at absolute time t_s, linearly interpolated (held before the start and after the end)."""
        if self._times_s is None or self._poses_world is None:
            raise RuntimeError("no plan set; call set_plan first")
        return np.array([np.interp(t_s, self._times_s, self._poses_world[:, j]) for j in range(3)])

    def target_speed_mps(self, t_s: float) -> float:
        """Plan speed in m/s at time t_s: path length covered over the configured window divided by its length."""
        if self._times_s is None or self._arc_m is None:
            raise RuntimeError("no plan set; call set_plan first")
        low, high = self.config.target_speed_window_start_s, self.config.target_speed_window_end_s
        s_low, s_high = np.interp([t_s + low, t_s + high], self._times_s, self._arc_m)
        return float((s_high - s_low) / (high - low))

    def step(
        self, t_s: float, pose_world: np.ndarray, speed_mps: float, dt_s: float, *, obstacle_ahead: bool = False
    ) -> ControlCommand:
        """Command for the current rear-axle pose (x_m, y_m, yaw_rad) in the world frame and speed in m/s.

        ``obstacle_ahead`` (e.g. from a LiDAR box check in the adapter) blocks the creep recovery.
        """
        if not (math.isfinite(speed_mps) and math.isfinite(dt_s) and dt_s > 0.0):
            raise ValueError(f"speed_mps must be finite and dt_s > 0, got {speed_mps!r}, {dt_s!r}")
        if self._times_s is None or self._poses_world is None:
            self.lateral.reset()
            self.longitudinal.reset()
            return ControlCommand(0.0, 0.0, self.config.longitudinal.brake_norm)
        pose = np.asarray(pose_world, dtype=np.float64).reshape(3)
        target_speed = self.target_speed_mps(t_s)
        aim_world = aim_point_on_path(self._poses_world[:, :2], pose[:2], self.lateral.lookahead_m(speed_mps))
        aim_ego = None if aim_world is None else points_to_frame(aim_world, pose)
        steer = self.lateral.step(aim_ego, speed_mps, dt_s)
        throttle, brake = self.longitudinal.step(target_speed, speed_mps, dt_s)
        throttle, brake = self._creep(throttle, brake, speed_mps, dt_s, obstacle_ahead)
        return ControlCommand(float(np.clip(steer, -1.0, 1.0)), throttle, brake)

    def _creep(
        self, throttle: float, brake: float, speed_mps: float, dt_s: float, obstacle_ahead: bool
    ) -> tuple[float, float]:
        cfg = self.config
        self._stuck_s = self._stuck_s + dt_s if abs(speed_mps) < cfg.stuck_speed_mps else 0.0
        if self._creep_left_s > _EPS_S and obstacle_ahead:
            self._creep_left_s = 0.0
            logger.info("creep aborted: obstacle ahead")
        stuck = self._stuck_s >= cfg.stuck_time_s - _EPS_S
        if self._creep_left_s <= _EPS_S and cfg.use_creep and stuck and not obstacle_ahead:
            self._creep_left_s, self._stuck_s = cfg.creep_duration_s, 0.0
            self.num_creeps += 1
            logger.info(
                "stuck for %.1f s below %.2f m/s: creeping for %.2f s",
                cfg.stuck_time_s,
                cfg.stuck_speed_mps,
                cfg.creep_duration_s,
            )
        if self._creep_left_s > _EPS_S:
            self._creep_left_s -= dt_s
            return max(throttle, cfg.creep_throttle_norm), 0.0
        return throttle, brake
