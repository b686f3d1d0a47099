"""Kinematic ego vehicle (``vehicle.lincoln.mkz_2020``-like) driven by ``carla.VehicleControl``.

Response model, applied every fixed step ``dt_s`` (20 Hz in the world) before the kinematic bicycle model of
``autovla_agent.planners.bicycle`` integrates the rear-axle state [x_m, y_m, yaw_rad, speed_mps] (world frame):

* steering: target road-wheel angle = ``carla_steer_to_norm(steer) * max_steer_rad`` (CARLA +steer = right =
  negative internal angle); first-order lag with ``steer_time_constant_s`` and a rate limit of
  ``max_steer_rate_radps``.
* drive: ``throttle * max_accel_mps2 * max(0, 1 - |v| / top_speed_mps)`` (power fades with speed), pushing
  backwards in reverse gear (``reverse=True``; speed limited to ``max_reverse_speed_mps``).
* resistance: ``rolling_resistance_mps2 + drag_coefficient_1pm * v^2`` against the motion.
* brakes: ``brake * max_decel_mps2`` against the motion; ``hand_brake`` at least ``hand_brake_decel_mps2``.
  Brakes and resistance never reverse the motion: they stop the car and hold it (static friction).
* the net acceleration follows its target with a first-order lag ``accel_time_constant_s`` (drivetrain).

Control values are sanitised as CARLA's server would see them: clipped to their ranges; NaN steer -> 0, NaN
throttle -> 0, NaN brake -> 0 (each logged once).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autovla_agent.planners import bicycle
from autovla_agent.planners.vehicle import VehicleParams
from autovla_agent.sensors import frames
from autovla_agent.sim.config_checks import require_at_least

logger = logging.getLogger(__name__)

__all__ = ["AppliedControl", "EgoConfig", "EgoVehicle"]

_STOP_EPS_MPS = 1e-3


@dataclass(frozen=True, kw_only=True, slots=True)
class EgoConfig:
    """The ego vehicle and its response to steer/throttle/brake (see the module docstring for the model)."""

    vehicle: VehicleParams = field(default_factory=VehicleParams)
    height_m: float = 1.5  # box height for rendering
    steer_time_constant_s: float = 0.1
    accel_time_constant_s: float = 0.15
    top_speed_mps: float = 50.0  # throttle authority fades linearly to zero at this speed
    rolling_resistance_mps2: float = 0.15
    drag_coefficient_1pm: float = 0.0012  # aerodynamic drag: decel = c * v^2
    hand_brake_decel_mps2: float = 6.0

    def __post_init__(self) -> None:
        """Validate time constants and coefficients."""
        names = ("steer_time_constant_s", "accel_time_constant_s", "rolling_resistance_mps2", "drag_coefficient_1pm")
        require_at_least(self, names, 0.0, finite=True)
        require_at_least(self, ("top_speed_mps", "hand_brake_decel_mps2", "height_m"), 0.0, strict=True, finite=True)


@dataclass(frozen=True, slots=True)
class AppliedControl:
    """A sanitised ``VehicleControl`` in CARLA's convention (+steer = right), as plain Python values."""

    steer: float = 0.0
    throttle: float = 0.0
    brake: float = 0.0
    hand_brake: bool = False
    reverse: bool = False


def _clean(value: Any, lo: float, hi: float, name: str) -> float:
    """``value`` as a float clipped to [lo, hi]; NaN/inf/unreadable -> 0.0 with a warning."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        logger.warning("VehicleControl.%s=%r is not a number; using 0.0", name, value)
        return 0.0
    if not math.isfinite(v):
        logger.warning("VehicleControl.%s=%r is not finite; using 0.0", name, value)
        return 0.0
    return min(hi, max(lo, v))


def sanitize_control(control: Any) -> AppliedControl:
    """Read steer/throttle/brake/hand_brake/reverse from any ``VehicleControl``-like object (missing -> default)."""
    return AppliedControl(
        steer=_clean(getattr(control, "steer", 0.0), -1.0, 1.0, "steer"),
        throttle=_clean(getattr(control, "throttle", 0.0), 0.0, 1.0, "throttle"),
        brake=_clean(getattr(control, "brake", 0.0), 0.0, 1.0, "brake"),
        hand_brake=bool(getattr(control, "hand_brake", False)),
        reverse=bool(getattr(control, "reverse", False)),
    )


class EgoVehicle:
    """The ego: rear-axle bicycle state in the world frame plus steering and drivetrain lag states.

    Attributes:
        params: ``VehicleParams`` (size, wheelbase, limits).
        state: (4,) rear-axle [x_m, y_m, yaw_rad, speed_mps], world frame, speed signed.
        steer_rad: actual road-wheel angle (internal sign, + = left).
        accel_mps2: longitudinal acceleration over the last step (signed, from the speed change).
        yaw_rate_radps: yaw rate over the last step (CCW +).
        control: the ``AppliedControl`` in use.
    """

    def __init__(
        self, center_pose_world: tuple[float, float, float], config: EgoConfig | None = None, speed_mps: float = 0.0
    ) -> None:
        self.config = config or EgoConfig()
        self.params = self.config.vehicle
        rear = frames.origin_to_rear_axle(
            np.asarray(center_pose_world, dtype=np.float64), self.params.rear_axle_offset_m
        )
        self.state = np.array([rear[0], rear[1], rear[2], float(speed_mps)], dtype=np.float64)
        self.steer_rad = 0.0
        self.accel_mps2 = 0.0
        self._accel_state_mps2 = 0.0
        self.yaw_rate_radps = 0.0
        self.control = AppliedControl()

    @classmethod
    def spawn_on_route(cls, route: Any, config: EgoConfig | None = None) -> EgoVehicle:
        """Ego at rest on the first point of a ``DenseRoute``, facing along it (the leaderboard spawns at route[0])."""
        x, y = route.xy_world_m[0]
        return cls((float(x), float(y), float(route.yaw_world_rad[0])), config)

    def set_center_pose(self, center_pose_world: tuple[float, float, float], speed_mps: float = 0.0) -> None:
        """Place the ego (box-centre pose, world frame) at ``speed_mps``; resets steering and drivetrain lags."""
        rear = frames.origin_to_rear_axle(
            np.asarray(center_pose_world, dtype=np.float64), self.params.rear_axle_offset_m
        )
        self.state = np.array([rear[0], rear[1], rear[2], float(speed_mps)], dtype=np.float64)
        self.steer_rad = self.accel_mps2 = self._accel_state_mps2 = self.yaw_rate_radps = 0.0

    @property
    def speed_mps(self) -> float:
        """Signed speed along the heading in m/s."""
        return float(self.state[3])

    def center_pose_world(self) -> tuple[float, float, float]:
        """Bounding-box centre (the CARLA actor location) pose (x_m, y_m, yaw_rad), world frame."""
        c = frames.rear_axle_to_origin(self.state[:3], self.params.rear_axle_offset_m)
        return float(c[0]), float(c[1]), float(c[2])

    def box_state(self) -> tuple[float, float, float, float, float, float]:
        """(x_m, y_m, yaw_rad, speed_mps, length_m, width_m) of the box centre, for traffic reactions."""
        x, y, yaw = self.center_pose_world()
        return x, y, yaw, self.speed_mps, self.params.length_m, self.params.width_m

    def apply_control(self, control: Any) -> None:
        """Set the control used by the following steps (sanitised; see ``sanitize_control``)."""
        self.control = sanitize_control(control)

    def _target_accel(self, v: float) -> float:
        """Net acceleration the drivetrain, resistance and brakes aim at for speed ``v`` (signed, m/s^2)."""
        cfg, p, c = self.config, self.params, self.control
        direction = -1.0 if c.reverse else 1.0
        drive = direction * c.throttle * p.max_accel_mps2 * max(0.0, 1.0 - abs(v) / cfg.top_speed_mps)
        brake = c.brake * p.max_decel_mps2
        if c.hand_brake:
            brake = max(brake, cfg.hand_brake_decel_mps2)
        resist = cfg.rolling_resistance_mps2 + cfg.drag_coefficient_1pm * v * v
        if abs(v) < _STOP_EPS_MPS:  # at rest: static friction holds the car unless the drive overcomes it
            return drive if abs(drive) > brake + cfg.rolling_resistance_mps2 else 0.0
        return drive - math.copysign(brake + resist, v)

    def step(self, dt_s: float) -> None:
        """Advance the ego by ``dt_s`` seconds under the current control."""
        cfg, p = self.config, self.params
        v = self.speed_mps
        # steering: first-order lag, rate limited
        target = frames.carla_steer_to_norm(self.control.steer) * p.max_steer_rad
        alpha = 1.0 - math.exp(-dt_s / cfg.steer_time_constant_s) if cfg.steer_time_constant_s > 0 else 1.0
        delta = alpha * (target - self.steer_rad)
        max_delta = p.max_steer_rate_radps * dt_s
        self.steer_rad = float(
            np.clip(self.steer_rad + np.clip(delta, -max_delta, max_delta), -p.max_steer_rad, p.max_steer_rad)
        )
        # longitudinal: lagged net acceleration that never reverses the motion by braking
        a_target = self._target_accel(v)
        beta = 1.0 - math.exp(-dt_s / cfg.accel_time_constant_s) if cfg.accel_time_constant_s > 0 else 1.0
        self._accel_state_mps2 += beta * (a_target - self._accel_state_mps2)
        a = self._accel_state_mps2
        if a_target == 0.0 and abs(v) < _STOP_EPS_MPS:
            a = self._accel_state_mps2 = 0.0
        drive_sign = -1.0 if self.control.reverse else 1.0
        driving = self.control.throttle > 0.0 and a * drive_sign > 0.0
        if abs(v) >= _STOP_EPS_MPS and (v + a * dt_s) * v < 0.0 and not driving:
            a = -v / dt_s  # brakes/resistance stop the car exactly, never push it the other way
        allow_reverse = v < -_STOP_EPS_MPS or self.control.reverse
        new = bicycle.step(self.state, a, self.steer_rad, dt_s, p, allow_reverse=allow_reverse)
        if abs(new[3]) < _STOP_EPS_MPS:
            new[3] = 0.0
        self.accel_mps2 = float((new[3] - v) / dt_s)
        self.yaw_rate_radps = float(frames.wrap_angle_rad(new[2] - self.state[2]) / dt_s)
        self.state = new
