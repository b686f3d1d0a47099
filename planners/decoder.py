"""Action tokens -> feasible trajectories: the codebook's rigid composition, tracked by the kinematic bicycle model.

The tokens are first composed rigidly (AutoVLA's decoding) into a reference of rear-axle poses every
sub-step (0.1 s). Every 0.1 s step then turns the reference into bicycle controls from the current decoded
state: the constant acceleration that reaches the reference's along-track position one preview (0.5 s,
one token) ahead, and the reference's curvature (arc fit through consecutive sub-step poses) plus a
critically damped correction of the lateral and heading errors. The controls are clipped to the vehicle's
limits (acceleration, braking, jerk, steering angle and rate, lateral acceleration, speed, with braking
eased off near standstill so that stopping respects the jerk limit too) and integrated exactly. Every
decoded trajectory is therefore something the vehicle can drive; for primitives the vehicle can follow it
stays within centimetres of the rigid composition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autovla_agent.planners.bicycle import SPEED, YAW, speed_bounds_mps, steer_from_curvature, step
from autovla_agent.planners.codebook import ActionCodebook
from autovla_agent.planners.se2 import compose_poses, relative_poses
from autovla_agent.planners.vehicle import VehicleParams


@dataclass(frozen=True, kw_only=True, slots=True)
class DecoderConfig:
    """Tracking gains and extra limits of the bicycle decoder.

    ``longitudinal_preview_s``: the acceleration is the constant one that reaches the reference position this
    far ahead (equivalent to a PD on position with damping ratio 0.7; 0.5 s = one token matched the rigid
    composition best on held-out synthetic driving: 3 cm mean deviation). The lateral correction is critically
    damped over a preview length of speed x ``lateral_time_constant_s`` (at least ``min_preview_m``).
    ``stop_jerk_fraction`` is the share of the jerk limit that easing off the brakes before standstill may use.
    """

    longitudinal_preview_s: float = 0.5
    lateral_time_constant_s: float = 0.5
    min_preview_m: float = 2.0
    max_lateral_accel_mps2: float = 8.0
    stop_jerk_fraction: float = 0.5
    allow_reverse: bool = False

    def __post_init__(self) -> None:
        """Reject non-positive gains and limits."""
        for name in ("longitudinal_preview_s", "lateral_time_constant_s", "min_preview_m", "max_lateral_accel_mps2"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"DecoderConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 < self.stop_jerk_fraction <= 1.0:
            raise ValueError(f"DecoderConfig.stop_jerk_fraction must be in (0, 1], got {self.stop_jerk_fraction!r}")


@dataclass(frozen=True, slots=True)
class DecodedTrajectory:
    """A decoded trajectory in the ego frame at the observation (rear axle at the origin, heading +x at t = 0).

    ``states[i]`` is [x_m, y_m, yaw_rad, speed_mps] at ``times_s[i]`` (0.1 s, 0.2 s, ...; t = 0 excluded);
    ``accel_mps2[i]`` and ``steer_rad[i]`` are the controls applied during the step that ends at
    ``times_s[i]`` (``accel_mps2`` is the speed change over the step divided by its duration).
    ``reference_poses_ego`` is the rigid composition of the tokens at the same times.
    """

    times_s: np.ndarray
    states: np.ndarray
    accel_mps2: np.ndarray
    steer_rad: np.ndarray
    initial_speed_mps: float
    initial_accel_mps2: float
    initial_steer_rad: float
    reference_poses_ego: np.ndarray

    @property
    def poses_ego(self) -> np.ndarray:
        """(N, 3) decoded poses (x_m, y_m, yaw_rad) at ``times_s``."""
        return self.states[:, :3]

    @property
    def horizon_s(self) -> float:
        """Time of the last decoded state in seconds."""
        return float(self.times_s[-1])

    def sample_states(self, times_s: Sequence[float] | np.ndarray) -> np.ndarray:
        """States (n, 4) linearly interpolated at times in [0, horizon_s] seconds (t = 0 is the origin)."""
        times = np.asarray(times_s, dtype=np.float64)
        if times.ndim != 1:
            raise ValueError(f"times_s must be 1-D, got shape {times.shape}")
        if times.size and (times.min() < -1e-9 or times.max() > self.horizon_s + 1e-9):
            raise ValueError(
                f"sample times must lie in [0, {self.horizon_s:.2f}] s, the decoded horizon; got "
                f"[{times.min():.3f}, {times.max():.3f}]; decode more tokens for a longer horizon"
            )
        t = np.concatenate([[0.0], self.times_s])
        states = np.vstack([[0.0, 0.0, 0.0, self.initial_speed_mps], self.states])
        states[:, YAW] = np.unwrap(states[:, YAW])
        return np.stack([np.interp(times, t, states[:, j]) for j in range(4)], axis=-1)

    def sample(self, times_s: Sequence[float] | np.ndarray) -> np.ndarray:
        """Poses (n, 3) at the given times in seconds, e.g. 0.5 s steps (AutoVLA, NAVSIM) or 0.1 s (control)."""
        return self.sample_states(times_s)[:, :3]


def _arc_fit(increments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed arc length (...) in m and curvature (...) in 1/m of the arc from the origin to each increment (..., 3).

    The arc starts at the origin heading +x and passes through the increment's end point.
    """
    dx, dy = increments[..., 0], increments[..., 1]
    chord = np.hypot(dx, dy)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = 2.0 * np.arctan(np.where(dx != 0.0, dy / dx, np.sign(dy) * np.inf))  # heading change of the arc
    theta = np.nan_to_num(theta)
    sign = np.where(dx < 0.0, -1.0, 1.0)
    length = sign * chord / np.sinc(theta / (2.0 * np.pi))
    curvature = np.divide(theta, length, out=np.zeros_like(theta), where=np.abs(length) > 1e-9)
    return length, curvature


class BicycleDecoder:
    """Decodes action tokens of an ActionCodebook into bicycle-feasible trajectories (see the module docstring)."""

    def __init__(
        self, codebook: ActionCodebook, vehicle: VehicleParams | None = None, config: DecoderConfig | None = None
    ):
        self.codebook = codebook
        self.vehicle = vehicle or VehicleParams()
        self.config = config or DecoderConfig()
        self.dt_s = codebook.substep_s
        previous = np.concatenate([np.zeros((codebook.num_tokens, 1, 3)), codebook.poses[:, :-1]], axis=1)
        self._increment_length_m, self._increment_curvature_1pm = _arc_fit(relative_poses(previous, codebook.poses))

    def decode(
        self,
        tokens: Sequence[int] | np.ndarray,
        speed_mps: float,
        accel_mps2: float = 0.0,
        steer_rad: float | None = None,
    ) -> DecodedTrajectory:
        """Decode one token sequence (T,) from the current speed, acceleration and (if known) steering angle.

        ``steer_rad`` None lets the first step pick its steering freely; otherwise the steering-rate limit
        applies from it. Returns T * S states at the codebook's sub-step (0.1 s).
        """
        tokens = self.codebook.check_tokens(tokens)
        if tokens.ndim != 1 or tokens.size == 0:
            raise ValueError(f"tokens must be a non-empty 1-D sequence, got shape {tokens.shape}")
        steer = None if steer_rad is None else np.array([steer_rad], dtype=np.float64)
        return self.decode_batch(tokens[None], np.array([speed_mps]), np.array([accel_mps2]), steer)[0]

    def decode_batch(
        self,
        tokens: np.ndarray,
        speed_mps: np.ndarray,
        accel_mps2: np.ndarray | None = None,
        steer_rad: np.ndarray | None = None,
    ) -> list[DecodedTrajectory]:
        """Decode token arrays (B, T) from speeds (B,), accelerations (B,) and optional steering angles (B,).

        An initial acceleration or steering angle outside the limits at the initial speed (braking harder than
        a jerk-limited stop allows, steering beyond the lateral-acceleration budget) is first clipped into
        them, so that every bound holds from the first step on.
        """
        veh, cfg, dt = self.vehicle, self.config, self.dt_s
        tokens = self.codebook.check_tokens(tokens)
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise ValueError(f"tokens must have shape (B, T >= 1), got {tokens.shape}")
        batch, num_substeps = tokens.shape[0], tokens.shape[1] * self.codebook.num_substeps
        speed0 = np.broadcast_to(np.asarray(speed_mps, dtype=np.float64), (batch,))
        accel0 = np.zeros(batch) if accel_mps2 is None else np.broadcast_to(np.asarray(accel_mps2, float), (batch,))
        if not (np.all(np.isfinite(speed0)) and np.all(np.isfinite(accel0))):
            raise ValueError("speed_mps and accel_mps2 must be finite")
        reference, curvature_ff = self._reference(tokens)
        state, accel, steer = self._initial_controls(speed0, accel0, steer_rad)
        initial_accel = accel.copy()
        initial_steer = None if steer is None else steer.copy()
        states = np.empty((batch, num_substeps, 4))
        accels = np.empty((batch, num_substeps))
        steers = np.empty((batch, num_substeps))
        steer_step = veh.max_steer_rate_radps * dt
        for i in range(num_substeps):
            speed = state[:, SPEED]
            accel, steer_cmd = self._commands(state, accel, reference, curvature_ff, i)
            if steer is None:  # unknown wheel angle: the first step may start from any angle
                steer = steer_cmd
            steer = np.clip(steer_cmd, steer - steer_step, steer + steer_step)
            new_state = step(state, accel, steer, dt, veh, allow_reverse=cfg.allow_reverse)
            accel = (new_state[:, SPEED] - speed) / dt  # what the vehicle really did at a speed bound
            states[:, i], accels[:, i], steers[:, i] = new_state, accel, steer
            state = new_state

        if initial_steer is None:  # the wheel angle was unknown: the first step's angle is where it started
            initial_steer = steers[:, 0].copy()
        v_min, v_max = speed_bounds_mps(veh, cfg.allow_reverse)
        times = np.arange(1, num_substeps + 1) * dt
        return [
            DecodedTrajectory(
                times_s=times.copy(),
                states=states[b],
                accel_mps2=accels[b],
                steer_rad=steers[b],
                initial_speed_mps=float(np.clip(speed0[b], v_min, v_max)),
                initial_accel_mps2=float(initial_accel[b]),
                initial_steer_rad=float(initial_steer[b]),
                reference_poses_ego=reference[b, 1:],
            )
            for b in range(batch)
        ]

    def _reference(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rigid composition of the tokens at every sub-step and its feed-forward curvature.

        Returns poses (B, T * S + 1, 3) from the origin (index i = time i * dt) and the curvature (B, T * S) of
        each sub-step's arc.
        """
        batch = tokens.shape[0]
        starts = np.concatenate([np.zeros((batch, 1, 3)), self.codebook.detokenize_batch(tokens)[:, :-1]], axis=1)
        reference = compose_poses(starts[:, :, None, :], self.codebook.poses[tokens]).reshape(batch, -1, 3)
        reference = np.concatenate([np.zeros((batch, 1, 3)), reference], axis=1)
        return reference, self._increment_curvature_1pm[tokens].reshape(batch, -1)

    def _stop_bound(self, headroom_mps: np.ndarray) -> np.ndarray:
        """Largest acceleration magnitude from which easing off at the stop jerk still stops within the headroom.

        The bound on a speed headroom h (m/s to the speed bound) is a^2 / (2 J) + |a| dt <= h.
        """
        stop_jerk, dt = self.config.stop_jerk_fraction * self.vehicle.max_jerk_mps3, self.dt_s
        headroom = np.maximum(headroom_mps, 0.0)
        return np.sqrt((stop_jerk * dt) ** 2 + 2.0 * stop_jerk * headroom) - stop_jerk * dt

    def _initial_controls(
        self, speed0: np.ndarray, accel0: np.ndarray, steer_rad: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Initial state (B, 4) at the origin, acceleration and steering angle (None: unknown) within the limits."""
        veh, cfg = self.vehicle, self.config
        v_min, v_max = speed_bounds_mps(veh, cfg.allow_reverse)
        state = np.zeros((speed0.shape[0], 4))
        state[:, SPEED] = np.clip(speed0, v_min, v_max)
        accel = np.clip(accel0, -veh.max_decel_mps2, veh.max_accel_mps2)
        accel = np.clip(accel, -self._stop_bound(state[:, SPEED] - v_min), self._stop_bound(v_max - state[:, SPEED]))
        if steer_rad is None:
            return state, accel, None
        steer = np.broadcast_to(np.asarray(steer_rad, dtype=np.float64), (speed0.shape[0],))
        initial_cap = cfg.max_lateral_accel_mps2 / np.maximum(state[:, SPEED] ** 2, 1e-6)
        steer_cap = np.minimum(steer_from_curvature(initial_cap, veh.wheelbase_m), veh.max_steer_rad)
        return state, accel, np.clip(steer, -steer_cap, steer_cap)

    def _commands(
        self, state: np.ndarray, accel: np.ndarray, reference: np.ndarray, curvature_ff: np.ndarray, i: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sub-step i's acceleration (jerk-limited from ``accel``) and steering command (before its rate limit)."""
        veh, cfg, dt = self.vehicle, self.config, self.dt_s
        v_min, v_max = speed_bounds_mps(veh, cfg.allow_reverse)
        speed = state[:, SPEED]
        err = relative_poses(state[:, :3], reference[:, i])  # reference pose now, in the vehicle frame
        # Constant acceleration that reaches the reference's along-track position one preview ahead.
        ahead = min(i + max(1, int(round(cfg.longitudinal_preview_s / dt))), curvature_ff.shape[1])
        horizon_s = (ahead - i) * dt
        target = relative_poses(state[:, :3], reference[:, ahead])
        accel_cmd = 2.0 * (target[:, 0] - speed * horizon_s) / horizon_s**2
        accel_cmd = np.clip(accel_cmd, -veh.max_decel_mps2, veh.max_accel_mps2)
        accel_cmd = np.clip(accel_cmd, -self._stop_bound(speed - v_min), self._stop_bound(v_max - speed))
        jerk_step = veh.max_jerk_mps3 * dt
        accel = np.clip(accel_cmd, accel - jerk_step, accel + jerk_step)

        next_speed = np.clip(speed + accel * dt, v_min, v_max)
        preview = np.maximum(np.abs(next_speed) * cfg.lateral_time_constant_s, cfg.min_preview_m)
        direction = np.where(next_speed < 0.0, -1.0, 1.0)
        curvature = curvature_ff[:, i] + err[:, 1] / preview**2 + direction * 2.0 * err[:, 2] / preview
        # The lateral acceleration peaks at the faster end of the step.
        kappa_cap = cfg.max_lateral_accel_mps2 / np.maximum(np.maximum(speed**2, next_speed**2), 1e-6)
        steer_cmd = steer_from_curvature(np.clip(curvature, -kappa_cap, kappa_cap), veh.wheelbase_m)
        return accel, np.clip(steer_cmd, -veh.max_steer_rad, veh.max_steer_rad)
