"""Synthetic but realistic ego trajectories from kinematic bicycle rollouts, for building and testing codebooks.

Each trajectory mixes a longitudinal schedule (cruise at 0-20 m/s, gentle speed changes, stops and holds,
occasional firm braking) with lateral events (intersection turns, long curves, lane-change S-curves and
lane-keeping wiggle). Curvature is capped by a lateral-acceleration budget at the current speed and the
steering is rate limited, so every trajectory is what a calm human driver could do; the logged headings
get a little estimation noise. All trajectories are generated at once, vectorised over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autovla_agent.planners.bicycle import SPEED, YAW, steer_from_curvature, step
from autovla_agent.planners.se2 import wrap_angle_rad
from autovla_agent.planners.vehicle import VehicleParams


@dataclass(frozen=True, kw_only=True, slots=True)
class SyntheticDrivingConfig:
    """Distribution of the synthetic driving trajectories (all ranges are uniform (low, high))."""

    duration_s: float = 10.0
    dt_s: float = 0.1
    max_speed_mps: float = 20.0
    start_stopped_fraction: float = 0.1
    stop_fraction: float = 0.2  # share of speed-schedule segments whose target is a standstill
    speed_hold_s: tuple[float, float] = (2.0, 6.0)
    speed_gain_per_s: float = 0.8  # driver's proportional speed-error response
    accel_mps2: tuple[float, float] = (0.8, 2.5)
    decel_mps2: tuple[float, float] = (1.0, 4.0)
    hard_brake_fraction: float = 0.05
    hard_brake_mps2: float = 6.0
    jerk_mps3: tuple[float, float] = (1.5, 5.0)
    max_lateral_accel_mps2: float = 3.5
    steer_rate_radps: float = 0.5
    num_lateral_events: int = 3
    turn_radius_m: tuple[float, float] = (6.0, 40.0)
    curve_radius_m: tuple[float, float] = (50.0, 500.0)
    lane_change_offset_m: tuple[float, float] = (2.8, 3.8)
    lane_change_duration_s: tuple[float, float] = (3.0, 7.0)
    wiggle_curvature_1pm: float = 0.002
    # Logged headings carry estimation noise (~0.3 deg); it also gives the codebook the small heading
    # corrections that anchored tokenization needs. Applied to the output only, never to the rollout.
    heading_noise_rad: float = 0.005

    def __post_init__(self) -> None:
        """Check the ranges so a bad distribution fails before generation."""
        if not (self.duration_s > 0 and self.dt_s > 0 and self.duration_s >= self.dt_s):
            raise ValueError(f"need duration_s >= dt_s > 0, got duration_s={self.duration_s}, dt_s={self.dt_s}")
        for name in ("speed_hold_s", "accel_mps2", "decel_mps2", "jerk_mps3", "turn_radius_m", "curve_radius_m"):
            low, high = getattr(self, name)
            if not (0 < low <= high):
                raise ValueError(f"SyntheticDrivingConfig.{name} must satisfy 0 < low <= high, got {(low, high)}")
        if self.heading_noise_rad < 0.0:
            raise ValueError(f"SyntheticDrivingConfig.heading_noise_rad must be >= 0, got {self.heading_noise_rad}")
        for name in ("start_stopped_fraction", "stop_fraction", "hard_brake_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SyntheticDrivingConfig.{name} must be in [0, 1], got {getattr(self, name)}")

    @property
    def num_steps(self) -> int:
        """Number of integration steps per trajectory."""
        return int(round(self.duration_s / self.dt_s))


def _speed_targets(rng: np.random.Generator, n: int, t_s: np.ndarray, cfg: SyntheticDrivingConfig) -> np.ndarray:
    """Piecewise-constant target speeds (n, T) with random hold times; some segments are stops."""
    max_segments = int(np.ceil(t_s[-1] / cfg.speed_hold_s[0])) + 2
    holds = rng.uniform(*cfg.speed_hold_s, size=(n, max_segments))
    # Segment j + 1 starts at the j-th boundary; the random shift puts t = 0 somewhere inside the first hold.
    starts = np.cumsum(holds, axis=1) - holds[:, :1] * rng.uniform(0.0, 1.0, size=(n, 1))
    targets = rng.uniform(0.0, cfg.max_speed_mps, size=(n, max_segments))
    targets[rng.uniform(size=(n, max_segments)) < cfg.stop_fraction] = 0.0
    index = np.clip((t_s[None, :, None] >= starts[:, None, :]).sum(axis=-1), 0, max_segments - 1)
    return np.take_along_axis(targets, index, axis=1)


def _ramp(t_s: np.ndarray, start_s: np.ndarray, hold_s: np.ndarray, ramp_s: float) -> np.ndarray:
    """Smooth 0 -> 1 -> 0 window (cosine ramps of ``ramp_s``) starting at ``start_s``, flat for ``hold_s``."""
    rise = np.clip((t_s - start_s) / ramp_s, 0.0, 1.0)
    fall = np.clip((start_s + ramp_s + hold_s + ramp_s - t_s) / ramp_s, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall))


def _lateral_profiles(
    rng: np.random.Generator, n: int, t_s: np.ndarray, cfg: SyntheticDrivingConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Desired curvature (n, T) of turns and curves, and desired lateral acceleration (n, T) of lane changes."""
    curvature = np.zeros((n, t_s.size))
    lat_accel = np.zeros((n, t_s.size))
    tt = t_s[None, :]
    for _ in range(cfg.num_lateral_events):
        kind = rng.choice(4, size=(n, 1), p=(0.3, 0.25, 0.25, 0.2))  # turn, curve, lane change, none
        start = rng.uniform(-4.0, t_s[-1], size=(n, 1))  # events may already be under way at t = 0
        sign = rng.choice((-1.0, 1.0), size=(n, 1))
        turn_k = sign / rng.uniform(*cfg.turn_radius_m, size=(n, 1))
        turn = turn_k * _ramp(tt, start, rng.uniform(0.5, 5.0, size=(n, 1)), 1.0)
        curve_k = sign / rng.uniform(*cfg.curve_radius_m, size=(n, 1))
        curve = curve_k * _ramp(tt, start, rng.uniform(2.0, 8.0, size=(n, 1)), 2.0)
        # A lane change is a full sine of lateral acceleration: offset d over duration T needs amplitude 2 pi d / T^2.
        duration = rng.uniform(*cfg.lane_change_duration_s, size=(n, 1))
        offset = sign * rng.uniform(*cfg.lane_change_offset_m, size=(n, 1))
        phase = np.clip((tt - start) / duration, 0.0, 1.0)
        lane = 2.0 * np.pi * offset / duration**2 * np.sin(2.0 * np.pi * phase)
        curvature += np.where(kind == 0, turn, 0.0) + np.where(kind == 1, curve, 0.0)
        lat_accel += np.where(kind == 2, lane, 0.0)
    # Lane keeping: a slow random walk of small curvature.
    wiggle = np.cumsum(rng.normal(0.0, 1.0, size=(n, t_s.size)), axis=1)
    wiggle = wiggle - wiggle.mean(axis=1, keepdims=True)
    wiggle *= cfg.wiggle_curvature_1pm / np.maximum(np.abs(wiggle).max(axis=1, keepdims=True), 1e-9)
    return curvature + wiggle * rng.uniform(0.0, 1.0, size=(n, 1)), lat_accel


def generate_driving_states(
    num_trajectories: int,
    *,
    config: SyntheticDrivingConfig | None = None,
    vehicle: VehicleParams | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Rear-axle states (N, T+1, 4) = [x_m, y_m, yaw_rad, speed_mps] at ``config.dt_s``, each starting at the origin.

    Args:
        num_trajectories: N, how many trajectories to generate.
        config: distribution of the driving; defaults to ``SyntheticDrivingConfig()``.
        vehicle: the vehicle whose limits bound the rollouts; defaults to ``VehicleParams()``.
        seed: seed of the random generator (the same seed gives the same trajectories).
    """
    if num_trajectories < 1:
        raise ValueError(f"num_trajectories must be >= 1, got {num_trajectories}")
    cfg = config or SyntheticDrivingConfig()
    veh = vehicle or VehicleParams()
    rng = np.random.default_rng(seed)
    n, dt = num_trajectories, cfg.dt_s
    t_s = np.arange(cfg.num_steps) * dt
    speed_target = _speed_targets(rng, n, t_s, cfg)
    curvature_des, lat_accel_des = _lateral_profiles(rng, n, t_s, cfg)
    accel_max = rng.uniform(*cfg.accel_mps2, size=n)
    decel_max = np.where(
        rng.uniform(size=n) < cfg.hard_brake_fraction, cfg.hard_brake_mps2, rng.uniform(*cfg.decel_mps2, size=n)
    )
    jerk = rng.uniform(*cfg.jerk_mps3, size=n)

    state = np.zeros((n, 4))
    start_speed = rng.uniform(0.0, cfg.max_speed_mps, size=n)
    state[:, SPEED] = np.where(rng.uniform(size=n) < cfg.start_stopped_fraction, 0.0, start_speed)
    accel = np.clip(cfg.speed_gain_per_s * (speed_target[:, 0] - state[:, SPEED]), -decel_max, accel_max)
    steer = None
    states = np.empty((n, cfg.num_steps + 1, 4))
    states[:, 0] = state
    for k in range(cfg.num_steps):
        speed = state[:, SPEED]
        # Driver: proportional speed response, bounded by the driver's comfort and jerk.
        accel_cmd = cfg.speed_gain_per_s * (speed_target[:, k] - speed)
        # Drivers brake through to a standstill instead of creeping up to a stop line exponentially.
        accel_cmd = np.where(speed_target[:, k] <= 0.0, np.minimum(accel_cmd, -0.8), accel_cmd)
        accel_cmd = np.clip(accel_cmd, -decel_max, accel_max)
        # ...and ease off the brake before the standstill, as drivers do, instead of stopping with a jolt.
        accel_cmd = np.maximum(accel_cmd, -np.sqrt(jerk * speed))
        accel = np.clip(accel_cmd, accel - jerk * dt, accel + jerk * dt)
        speed_sq = np.maximum(speed, 1.0) ** 2
        kappa = curvature_des[:, k] + lat_accel_des[:, k] / speed_sq
        kappa_cap = np.minimum(cfg.max_lateral_accel_mps2 / speed_sq, veh.max_curvature_1pm * 0.95)
        steer_des = steer_from_curvature(np.clip(kappa, -kappa_cap, kappa_cap), veh.wheelbase_m)
        if steer is None:
            steer = steer_des  # the wheel is already where the driver wants it at t = 0
        steer = np.clip(steer_des, steer - cfg.steer_rate_radps * dt, steer + cfg.steer_rate_radps * dt)
        state = step(state, accel, steer, dt, veh)
        states[:, k + 1] = state
    # The start pose defines the frame, so it stays exact; later samples are "measured".
    noise = rng.normal(0.0, cfg.heading_noise_rad, size=states[:, 1:, YAW].shape)
    states[:, 1:, YAW] = wrap_angle_rad(states[:, 1:, YAW] + noise)
    return states
