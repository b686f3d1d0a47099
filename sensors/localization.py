"""A small extended Kalman filter for the rear-axle pose and speed from GNSS, compass, gyroscope and speedometer.

State (4,): x_m, y_m, yaw_rad, speed_mps of the REAR AXLE in the internal world frame (see ``frames``). The
prediction is the kinematic bicycle at the rear axle (velocity along the heading) driven by the measured
yaw rate and longitudinal acceleration; GNSS measures the antenna ``gnss_offset_m`` ahead of the rear axle
along the heading, so the filter turns the ~0.55 m-sigma fixes of the leaderboard GNSS into a smooth
rear-axle pose. Invalid readings (None, NaN) are skipped, never fused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from autovla_agent.sensors import frames


@dataclass(frozen=True, kw_only=True, slots=True)
class LocalizationConfig:
    """Noise levels (1 sigma) and the antenna lever arm of the pose filter."""

    gnss_std_m: float = 0.6  # leaderboard GNSS noise: 0.000005 deg lat/lon, about 0.56 m
    compass_std_rad: float = 0.02  # the compass is noise-free in CARLA; this only bounds model error
    speed_std_mps: float = 0.1
    accel_process_std_mps2: float = 3.0  # unmeasured longitudinal acceleration (braking, bumps)
    yaw_rate_process_std_radps: float = 0.05  # gyroscope noise (0.001) plus slip the model ignores
    position_process_std_mps: float = 0.1  # lateral slip and discretisation, per second
    gnss_offset_m: float = 1.4  # rear axle -> GNSS antenna along the heading (GNSS at the actor origin)
    initial_position_std_m: float = 1.0
    initial_yaw_std_rad: float = 0.1
    initial_speed_std_mps: float = 0.5

    def __post_init__(self) -> None:
        """Every noise level must be a positive number."""
        for name in (
            "gnss_std_m",
            "compass_std_rad",
            "speed_std_mps",
            "accel_process_std_mps2",
            "yaw_rate_process_std_radps",
            "position_process_std_mps",
            "initial_position_std_m",
            "initial_yaw_std_rad",
            "initial_speed_std_mps",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"LocalizationConfig.{name}={value!r} must be a positive number")


def _finite_or_zero(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else 0.0


class PoseFilter:
    """EKF over [x_m, y_m, yaw_rad, speed_mps] of the rear axle in the world frame; starts on the first fix."""

    def __init__(self, config: LocalizationConfig | None = None) -> None:
        self.config = config or LocalizationConfig()
        self._x: np.ndarray | None = None
        self._p = np.zeros((4, 4))
        self.num_skipped = 0  # readings that were None or NaN

    @property
    def is_initialized(self) -> bool:
        """Whether the filter has a state (after ``reset`` or the first GNSS fix with a heading)."""
        return self._x is not None

    @property
    def state(self) -> np.ndarray:
        """A copy of the state (4,) x_m, y_m, yaw_rad, speed_mps (rear axle, world frame)."""
        if self._x is None:
            raise RuntimeError("PoseFilter has no state yet; call reset() or step() with a GNSS fix and heading")
        return self._x.copy()

    @property
    def pose_world(self) -> np.ndarray:
        """The rear-axle pose (3,) x_m, y_m, yaw_rad in the world frame."""
        return self.state[:3]

    @property
    def covariance(self) -> np.ndarray:
        """A copy of the state covariance (4, 4)."""
        return self._p.copy()

    def reset(self, pose_world: ArrayLike, speed_mps: float = 0.0) -> None:
        """Start from a known rear-axle pose (3,) and speed, with the configured initial uncertainty."""
        pose = np.asarray(pose_world, dtype=np.float64).reshape(3)
        self._x = np.array([pose[0], pose[1], float(frames.wrap_angle_rad(pose[2])), float(speed_mps)])
        c = self.config
        self._p = np.diag(
            [
                c.initial_position_std_m**2,
                c.initial_position_std_m**2,
                c.initial_yaw_std_rad**2,
                c.initial_speed_std_mps**2,
            ]
        )

    def predict(self, dt_s: float, yaw_rate_radps: float | None = 0.0, accel_mps2: float | None = 0.0) -> None:
        """Propagate the state ``dt_s`` seconds with the measured yaw rate and acceleration."""
        if self._x is None or not dt_s > 0.0:
            return
        rate = _finite_or_zero(yaw_rate_radps)
        accel = _finite_or_zero(accel_mps2)
        x, y, yaw, v = self._x
        c, s = math.cos(yaw), math.sin(yaw)
        self._x = np.array(
            [x + v * c * dt_s, y + v * s * dt_s, float(frames.wrap_angle_rad(yaw + rate * dt_s)), v + accel * dt_s]
        )
        jac = np.eye(4)
        jac[0, 2], jac[0, 3] = -v * s * dt_s, c * dt_s
        jac[1, 2], jac[1, 3] = v * c * dt_s, s * dt_s
        cfg = self.config
        q_pos = (cfg.position_process_std_mps**2) * dt_s
        q = np.diag(
            [q_pos, q_pos, (cfg.yaw_rate_process_std_radps * dt_s) ** 2, (cfg.accel_process_std_mps2 * dt_s) ** 2]
        )
        self._p = jac @ self._p @ jac.T + q

    def _update(self, residual: np.ndarray, h: np.ndarray, r: np.ndarray) -> None:
        assert self._x is not None
        s = h @ self._p @ h.T + r
        gain = self._p @ h.T @ np.linalg.inv(s)
        self._x = self._x + gain @ residual
        self._x[2] = float(frames.wrap_angle_rad(self._x[2]))
        # Joseph form keeps the covariance symmetric and positive definite.
        i_kh = np.eye(4) - gain @ h
        self._p = i_kh @ self._p @ i_kh.T + gain @ r @ gain.T

    def update_gnss(self, xy_world_m: ArrayLike) -> None:
        """Fuse a GNSS position (2,) in the world frame (the antenna, ``gnss_offset_m`` ahead of the rear axle)."""
        xy = np.asarray(xy_world_m, dtype=np.float64).reshape(2)
        if self._x is None:
            return
        if not np.all(np.isfinite(xy)):
            self.num_skipped += 1
            return
        _, _, yaw, _ = self._x
        lever = self.config.gnss_offset_m
        predicted = self._x[:2] + lever * np.array([math.cos(yaw), math.sin(yaw)])
        h = np.zeros((2, 4))
        h[0, 0] = h[1, 1] = 1.0
        h[0, 2], h[1, 2] = -lever * math.sin(yaw), lever * math.cos(yaw)
        self._update(xy - predicted, h, np.eye(2) * self.config.gnss_std_m**2)

    def update_yaw(self, yaw_rad: float | None) -> None:
        """Fuse a world yaw (e.g. from the compass); None or NaN is skipped."""
        if self._x is None:
            return
        if yaw_rad is None or not math.isfinite(yaw_rad):
            self.num_skipped += 1
            return
        residual = np.array([float(frames.wrap_angle_rad(yaw_rad - self._x[2]))])
        h = np.array([[0.0, 0.0, 1.0, 0.0]])
        self._update(residual, h, np.array([[self.config.compass_std_rad**2]]))

    def update_speed(self, speed_mps: float | None) -> None:
        """Fuse a signed speed; None or NaN is skipped."""
        if self._x is None:
            return
        if speed_mps is None or not math.isfinite(speed_mps):
            self.num_skipped += 1
            return
        h = np.array([[0.0, 0.0, 0.0, 1.0]])
        self._update(np.array([speed_mps - self._x[3]]), h, np.array([[self.config.speed_std_mps**2]]))

    def step(
        self,
        dt_s: float,
        *,
        xy_world_m: ArrayLike | None,
        yaw_rad: float | None,
        speed_mps: float | None,
        yaw_rate_radps: float | None = None,
        accel_mps2: float | None = None,
    ) -> np.ndarray:
        """One tick: predict, then fuse whatever is valid; the first fix with a heading initialises the filter.

        Returns the state (4,) x_m, y_m, yaw_rad, speed_mps of the rear axle; raises RuntimeError while no
        valid fix and heading have been seen yet.
        """
        if self._x is None:
            xy = None if xy_world_m is None else np.asarray(xy_world_m, dtype=np.float64).reshape(2)
            if xy is not None and np.all(np.isfinite(xy)) and yaw_rad is not None and math.isfinite(yaw_rad):
                antenna = np.array([xy[0], xy[1], yaw_rad])
                start = frames.origin_to_rear_axle(antenna, self.config.gnss_offset_m)
                speed = speed_mps if speed_mps is not None and math.isfinite(speed_mps) else 0.0
                self.reset(start, speed)
            return self.state
        self.predict(dt_s, _finite_or_zero(yaw_rate_radps), _finite_or_zero(accel_mps2))
        if xy_world_m is not None:
            self.update_gnss(xy_world_m)
        self.update_yaw(yaw_rad)
        self.update_speed(speed_mps)
        return self.state
