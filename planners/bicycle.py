"""Kinematic bicycle model about the rear-axle centre, integrated exactly over fixed steps and vectorised.

State arrays have shape (..., 4) = [x_m, y_m, yaw_rad, speed_mps] in any right-handed frame (yaw
counter-clockwise); ``speed_mps`` is signed (negative when reversing). Controls are the signed longitudinal
acceleration ``accel_mps2`` and the road-wheel angle ``steer_rad`` (> 0 turns left, counter-clockwise).

Within one step the controls are held constant, so the rear axle moves along a circular arc of curvature
tan(steer_rad) / wheelbase_m whatever the speed profile; ``step`` integrates that arc in closed form (no
Euler error), with the speed clamped to the vehicle's limits inside the step (a vehicle braking to a
standstill stops there unless ``allow_reverse``).
"""

from __future__ import annotations

import numpy as np

from autovla_agent.planners.se2 import wrap_angle_rad
from autovla_agent.planners.vehicle import VehicleParams

STATE_DIM = 4
X, Y, YAW, SPEED = range(STATE_DIM)


def curvature_from_steer(steer_rad: np.ndarray | float, wheelbase_m: float) -> np.ndarray:
    """Path curvature in 1/m (> 0 turns left) of the rear axle for a road-wheel angle in radians."""
    return np.tan(np.asarray(steer_rad, dtype=np.float64)) / wheelbase_m


def steer_from_curvature(curvature_1pm: np.ndarray | float, wheelbase_m: float) -> np.ndarray:
    """Road-wheel angle in radians that makes the rear axle follow a path of the given curvature in 1/m."""
    return np.arctan(np.asarray(curvature_1pm, dtype=np.float64) * wheelbase_m)


def speed_bounds_mps(params: VehicleParams, allow_reverse: bool) -> tuple[float, float]:
    """Lowest and highest signed speed in m/s the model allows."""
    return (-params.max_reverse_speed_mps if allow_reverse else 0.0), params.max_speed_mps


def _distance_m(
    speed_mps: np.ndarray, accel_mps2: np.ndarray, dt_s: float, v_min: float, v_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance over one step and the end speed, with the speed saturating at its bounds in the step."""
    limit = np.where(accel_mps2 > 0.0, v_max, v_min)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_limit = np.where(accel_mps2 != 0.0, (limit - speed_mps) / accel_mps2, np.inf)
    t_free = np.clip(t_limit, 0.0, dt_s)
    distance = speed_mps * t_free + 0.5 * accel_mps2 * t_free**2 + np.where(t_free < dt_s, limit, 0.0) * (dt_s - t_free)
    end_speed = np.clip(speed_mps + accel_mps2 * dt_s, v_min, v_max)
    return distance, end_speed


def arc_displacement(distance_m: np.ndarray, curvature_1pm: np.ndarray) -> np.ndarray:
    """Displacement (..., 3) = (dx_m, dy_m, dyaw_rad) along an arc, in the frame of its start pose.

    Exact for any curvature including zero: dx = s sinc(theta), dy = s (1 - cos theta) / theta, theta = k s.
    """
    distance_m = np.asarray(distance_m, dtype=np.float64)
    theta = distance_m * np.asarray(curvature_1pm, dtype=np.float64)
    dx = distance_m * np.sinc(theta / np.pi)
    dy = distance_m * (theta / 2.0) * np.sinc(theta / (2.0 * np.pi)) ** 2
    return np.stack(np.broadcast_arrays(dx, dy, theta), axis=-1)


def step(
    state: np.ndarray,
    accel_mps2: np.ndarray | float,
    steer_rad: np.ndarray | float,
    dt_s: float,
    params: VehicleParams,
    *,
    allow_reverse: bool = False,
) -> np.ndarray:
    """Advance states (..., 4) by ``dt_s`` seconds under constant controls broadcastable to state[..., 0].

    Acceleration is clipped to [-max_decel_mps2, max_accel_mps2], steering to +-max_steer_rad and the speed to
    [0 (or -max_reverse_speed_mps when ``allow_reverse``), max_speed_mps]. Yaw is wrapped to [-pi, pi).
    """
    if not dt_s > 0.0:
        raise ValueError(f"dt_s must be > 0 seconds, got {dt_s!r}")
    state = np.asarray(state, dtype=np.float64)
    if state.shape[-1] != STATE_DIM:
        raise ValueError(f"state must have shape (..., 4) = [x_m, y_m, yaw_rad, speed_mps], got {state.shape}")
    v_min, v_max = speed_bounds_mps(params, allow_reverse)
    accel = np.clip(np.asarray(accel_mps2, dtype=np.float64), -params.max_decel_mps2, params.max_accel_mps2)
    steer = np.clip(np.asarray(steer_rad, dtype=np.float64), -params.max_steer_rad, params.max_steer_rad)
    speed = np.clip(state[..., SPEED], v_min, v_max)
    distance, end_speed = _distance_m(speed, accel, dt_s, v_min, v_max)
    local = arc_displacement(distance, curvature_from_steer(steer, params.wheelbase_m))
    yaw = state[..., YAW]
    c, s = np.cos(yaw), np.sin(yaw)
    out = np.empty(np.broadcast_shapes(state.shape, local.shape[:-1] + (STATE_DIM,)), dtype=np.float64)
    out[..., X] = state[..., X] + c * local[..., 0] - s * local[..., 1]
    out[..., Y] = state[..., Y] + s * local[..., 0] + c * local[..., 1]
    out[..., YAW] = wrap_angle_rad(yaw + local[..., 2])
    out[..., SPEED] = end_speed
    return out


def rollout(
    state0: np.ndarray,
    controls: np.ndarray,
    dt_s: float,
    params: VehicleParams,
    *,
    allow_reverse: bool = False,
) -> np.ndarray:
    """States (..., T+1, 4) from initial states (..., 4) under controls (..., T, 2) = [accel_mps2, steer_rad].

    Index 0 is the (speed-clamped) initial state; index t is the state after t steps of ``dt_s`` seconds.
    """
    state0 = np.asarray(state0, dtype=np.float64)
    controls = np.asarray(controls, dtype=np.float64)
    if controls.ndim < 2 or controls.shape[-1] != 2:
        raise ValueError(f"controls must have shape (..., T, 2) = [accel_mps2, steer_rad], got {controls.shape}")
    if state0.shape[-1] != STATE_DIM:
        raise ValueError(f"state0 must have shape (..., 4) = [x_m, y_m, yaw_rad, speed_mps], got {state0.shape}")
    batch = np.broadcast_shapes(state0.shape[:-1], controls.shape[:-2])
    num_steps = controls.shape[-2]
    states = np.empty(batch + (num_steps + 1, STATE_DIM), dtype=np.float64)
    current = np.broadcast_to(state0, batch + (STATE_DIM,)).copy()
    v_min, v_max = speed_bounds_mps(params, allow_reverse)
    current[..., SPEED] = np.clip(current[..., SPEED], v_min, v_max)
    states[..., 0, :] = current
    for t in range(num_steps):
        current = step(current, controls[..., t, 0], controls[..., t, 1], dt_s, params, allow_reverse=allow_reverse)
        states[..., t + 1, :] = current
    return states
