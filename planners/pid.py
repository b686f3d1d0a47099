"""dt-aware PID controllers and the look-ahead lateral and speed/brake longitudinal controllers built on them.

Gains come from the strongest public CARLA agents (SimLingo and LEAD/TFv6 on Bench2Drive), whose PIDs are
written per 20 Hz tick as Kp e + Ki mean(last n errors) + Kd (e_t - e_{t-1}). ``PID`` keeps their meaning at
any tick rate by measuring time in seconds: the mean over n ticks of dt becomes the integral over a window of
n dt seconds divided by that window, so ki = Ki / (n dt) per second over ``integral_window_s`` = n dt, and
the difference becomes a derivative per second, kd = Kd dt. At 20 Hz the two forms give identical outputs;
at 10 Hz the gains mean the same physical thing.

All signs are internal: steer_norm > 0 turns left (counter-clockwise). The plan tracker that drives these
controllers is ``planners.control``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np


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
