"""Trajectory tracking: dt-aware PID controllers, a look-ahead lateral controller, brake rule and creep recovery.

Gains come from the strongest public CARLA agents (SimLingo and LEAD/TFv6 on Bench2Drive), whose PIDs are
written per 20 Hz tick as Kp e + Ki mean(last n errors) + Kd (e_t - e_{t-1}). ``PID`` keeps their meaning at
any tick rate by measuring time in seconds: the mean over n ticks of dt becomes the integral over a window of
n dt seconds divided by that window, so ki = Ki / (n dt) per second over ``integral_window_s`` = n dt, and
the difference becomes a derivative per second, kd = Kd dt. At 20 Hz the two forms give identical outputs;
at 10 Hz the gains mean the same physical thing.

All signs are internal: steer_norm > 0 turns left (counter-clockwise); steer_rad = steer_norm * max_steer_rad.
Poses are rear-axle poses (x_m, y_m, yaw_rad) in the internal world frame.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from autovla_agent.planners.se2 import points_to_frame
from autovla_agent.planners.vehicle import VehicleParams

logger = logging.getLogger(__name__)

_EPS_S = 1e-9  # tolerance on accumulated tick times (20 x 0.05 s is not exactly 1.0 s in floating point)


@dataclass(frozen=True, kw_only=True, slots=True)
class PIDConfig:
    """Gains of a dt-aware PID: u = kp e + ki integral(e dt) + kd de/dt, clipped to [output_min, output_max].

    ``ki`` is per second of integrated error and ``kd`` in seconds. ``integral_window_s`` integrates only the
    last that many seconds (the lineage's mean over n ticks; None integrates everything); ``integral_limit``
    bounds the integral (error x seconds; None for no bound). ``derivative_filter_s`` low-passes the
    derivative with that time constant (0 for none).
    """

    kp: float = 1.0
    ki: float = 0.0
    kd: float = 0.0
    integral_window_s: float | None = None
    integral_limit: float | None = None
    output_min: float = -1.0
    output_max: float = 1.0
    derivative_filter_s: float = 0.0

    def __post_init__(self) -> None:
        """Reject negative gains, empty output ranges and non-positive windows."""
        for name in ("kp", "ki", "kd", "derivative_filter_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0.0):
                raise ValueError(f"PIDConfig.{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if not self.output_min < self.output_max:
            raise ValueError(f"PIDConfig needs output_min < output_max, got {self.output_min} >= {self.output_max}")
        if self.integral_window_s is not None and not self.integral_window_s > 0.0:
            raise ValueError(f"PIDConfig.integral_window_s must be > 0 s or null, got {self.integral_window_s}")
        if self.integral_limit is not None and not self.integral_limit > 0.0:
            raise ValueError(f"PIDConfig.integral_limit must be > 0 or null, got {self.integral_limit}")


class PID:
    """dt-aware PID with a windowed integral, conditional-integration anti-windup and output clipping."""

    def __init__(self, config: PIDConfig):
        self.config = config
        self._entries: deque[tuple[float, float]] = deque()  # (dt_s, error * dt_s) inside the window
        self._unbounded_sum = 0.0  # used instead of the entries when there is no window
        self._previous_error: float | None = None
        self._derivative = 0.0

    def reset(self) -> None:
        """Forget the integral and the derivative history."""
        self._entries.clear()
        self._unbounded_sum = 0.0
        self._previous_error = None
        self._derivative = 0.0

    @property
    def integral(self) -> float:
        """Current integral of the error over the window, in error x seconds (after the limit)."""
        if self.config.integral_window_s is None:
            value = self._unbounded_sum
        else:
            value = sum(area for _, area in self._entries)
        limit = self.config.integral_limit
        return value if limit is None else min(max(value, -limit), limit)

    def _push(self, dt_s: float, area: float) -> None:
        window = self.config.integral_window_s
        if window is None:
            self._unbounded_sum += area
            return
        self._entries.append((dt_s, area))
        total = sum(d for d, _ in self._entries)
        while len(self._entries) > 1 and total - self._entries[0][0] >= window - 1e-9:
            total -= self._entries.popleft()[0]

    def _undo_last(self, dt_s: float, area: float) -> None:
        if self.config.integral_window_s is None:
            self._unbounded_sum -= area
        else:
            self._entries[-1] = (dt_s, 0.0)

    def step(self, error: float, dt_s: float) -> float:
        """Controller output for the current error after ``dt_s`` seconds since the previous call."""
        if not (math.isfinite(dt_s) and dt_s > 0.0):
            raise ValueError(f"dt_s must be a finite number > 0 seconds, got {dt_s!r}")
        if not math.isfinite(error):
            raise ValueError(f"PID error must be finite, got {error!r}")
        cfg = self.config
        raw = 0.0 if self._previous_error is None else (error - self._previous_error) / dt_s
        alpha = dt_s / (cfg.derivative_filter_s + dt_s)
        self._derivative += alpha * (raw - self._derivative)
        self._previous_error = error
        self._push(dt_s, error * dt_s)
        unclipped = cfg.kp * error + cfg.ki * self.integral + cfg.kd * self._derivative
        # Anti-windup: an error that pushes an already saturated output further is not integrated.
        if (unclipped > cfg.output_max and error > 0.0) or (unclipped < cfg.output_min and error < 0.0):
            self._undo_last(dt_s, error * dt_s)
            unclipped = cfg.kp * error + cfg.ki * self.integral + cfg.kd * self._derivative
        return float(min(max(unclipped, cfg.output_min), cfg.output_max))


def _simlingo_lateral_pid() -> PIDConfig:
    # SimLingo/LEAD turn PID 3.118 / 0.641 / 1.378 over n = 6 ticks at 20 Hz -> window 0.3 s.
    return PIDConfig(kp=3.118, ki=0.641 / 0.3, kd=1.378 * 0.05, integral_window_s=0.3, output_min=-1.0, output_max=1.0)


def _simlingo_speed_pid() -> PIDConfig:
    # SimLingo/LEAD speed PID 1.75 / 1.0 / 2.0 over n = 20 ticks at 20 Hz -> window 1.0 s; throttle <= 0.75.
    return PIDConfig(kp=1.75, ki=1.0 / 1.0, kd=2.0 * 0.05, integral_window_s=1.0, output_min=0.0, output_max=0.75)


@dataclass(frozen=True, kw_only=True, slots=True)
class LateralConfig:
    """Look-ahead lateral controller: PID on the angle to an aim point on the path, normalised by ``error_scale_rad``.

    Defaults are SimLingo's (also LEAD's), the best-scoring public lineage on Bench2Drive: look-ahead
    clip(0.351 m/(m/s) x speed + 0.19 m, 2.4 m, 10.5 m) (their 0.9755 index per km/h on a 0.1 m path), the angle
    divided by 90 degrees as error, PID 3.118 / 2.137 per s (0.3 s window) / 0.0689 s (converted as in the
    module docstring). Below ``min_speed_mps`` the steering is zero and the integral is reset (TF++).
    """

    pid: PIDConfig = field(default_factory=_simlingo_lateral_pid)
    lookahead_gain_s: float = 0.351
    lookahead_offset_m: float = 0.19
    min_lookahead_m: float = 2.4
    max_lookahead_m: float = 10.5
    error_scale_rad: float = math.pi / 2
    min_speed_mps: float = 0.01

    def __post_init__(self) -> None:
        """Check the look-ahead range and the error scale."""
        if not 0.0 < self.min_lookahead_m <= self.max_lookahead_m:
            raise ValueError(
                f"need 0 < min_lookahead_m <= max_lookahead_m, got {self.min_lookahead_m}, {self.max_lookahead_m}"
            )
        if not (self.error_scale_rad > 0.0 and self.lookahead_gain_s >= 0.0 and self.min_speed_mps >= 0.0):
            raise ValueError("LateralConfig needs error_scale_rad > 0, lookahead_gain_s >= 0 and min_speed_mps >= 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class LongitudinalConfig:
    """Speed PID on the error clipped to [error_min_mps, error_max_mps] and the brake rule of the TF++/SimLingo lineage.

    Defaults: SimLingo/LEAD speed PID 1.75 / 1.0 per s (1.0 s window) / 0.1 s, error clip [0, 1] m/s; throttle
    capped at 0.75 as TF++, TCP and UniAD/VAD do (SimLingo allows 1.0) to avoid launch wheel-spin lurches.
    Brake (throttle 0, brake ``brake_norm``) when the target speed is below ``brake_speed_mps`` or the speed
    exceeds ``brake_ratio`` x target, as every agent of that lineage does.
    """

    pid: PIDConfig = field(default_factory=_simlingo_speed_pid)
    error_min_mps: float = 0.0
    error_max_mps: float = 1.0
    brake_speed_mps: float = 0.4
    brake_ratio: float = 1.1
    brake_norm: float = 1.0

    def __post_init__(self) -> None:
        """Check the brake rule and the error clip."""
        if not self.error_min_mps <= self.error_max_mps:
            raise ValueError(
                f"LongitudinalConfig needs error_min_mps <= error_max_mps, got {self.error_min_mps}, "
                f"{self.error_max_mps}"
            )
        if not (self.brake_speed_mps >= 0.0 and self.brake_ratio >= 1.0 and 0.0 < self.brake_norm <= 1.0):
            raise ValueError("LongitudinalConfig needs brake_speed_mps >= 0, brake_ratio >= 1 and brake_norm in (0, 1]")


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


class LateralController:
    """Steers towards an aim point at a speed-scaled look-ahead (see ``LateralConfig``)."""

    def __init__(self, config: LateralConfig | None = None):
        self.config = config or LateralConfig()
        self.pid = PID(self.config.pid)

    def reset(self) -> None:
        """Clear the PID state (call after a discontinuity such as a teleport)."""
        self.pid.reset()

    def lookahead_m(self, speed_mps: float) -> float:
        """Look-ahead distance in metres along the path for the current speed."""
        cfg = self.config
        distance = cfg.lookahead_gain_s * abs(speed_mps) + cfg.lookahead_offset_m
        return float(min(max(distance, cfg.min_lookahead_m), cfg.max_lookahead_m))

    def step(self, aim_point_ego_m: np.ndarray | None, speed_mps: float, dt_s: float) -> float:
        """steer_norm in [-1, 1] towards an aim point (x_m, y_m) in the rear-axle ego frame (None: no path)."""
        if aim_point_ego_m is None or abs(speed_mps) < self.config.min_speed_mps:
            self.pid.reset()
            return 0.0
        angle_rad = math.atan2(float(aim_point_ego_m[1]), float(aim_point_ego_m[0]))
        return self.pid.step(angle_rad / self.config.error_scale_rad, dt_s)


class LongitudinalController:
    """Throttle from a speed PID and brake from the brake rule (see ``LongitudinalConfig``)."""

    def __init__(self, config: LongitudinalConfig | None = None):
        self.config = config or LongitudinalConfig()
        self.pid = PID(self.config.pid)

    def reset(self) -> None:
        """Clear the PID state."""
        self.pid.reset()

    def should_brake(self, target_speed_mps: float, speed_mps: float) -> bool:
        """The brake rule: target below brake_speed_mps, or speed above brake_ratio x target."""
        cfg = self.config
        return target_speed_mps < cfg.brake_speed_mps or speed_mps > cfg.brake_ratio * target_speed_mps

    def step(self, target_speed_mps: float, speed_mps: float, dt_s: float) -> tuple[float, float]:
        """(throttle_norm, brake_norm) for a target and a measured speed in m/s."""
        low, high = self.config.error_min_mps, self.config.error_max_mps
        throttle = self.pid.step(min(max(target_speed_mps - speed_mps, low), high), dt_s)
        if self.should_brake(target_speed_mps, speed_mps):
            return 0.0, self.config.brake_norm
        return throttle, 0.0


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
        if self._times_s is None:
            raise RuntimeError("no plan set; call set_plan first")
        return np.array([np.interp(t_s, self._times_s, self._poses_world[:, j]) for j in range(3)])

    def target_speed_mps(self, t_s: float) -> float:
        """Plan speed in m/s at time t_s: path length covered over the configured window divided by its length."""
        if self._times_s is None:
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
        if self._times_s is None:
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
