"""Robust parsing of the leaderboard's speedometer, IMU and compass readings, keeping last-valid values.

The leaderboard's master branch gives ``{'speed': None}`` when a speed reading failed, and the IMU
compass can be NaN for a few ticks after spawning; neither may crash ``run_step``. All frame conversions
are delegated to ``autovla_agent.sensors.frames``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from autovla_agent.sensors import frames

logger = logging.getLogger(__name__)

HeadingSource = Literal["compass", "last_compass", "motion", "route", "none"]


def _finite_float(value: Any) -> float | None:
    """A finite float from a number-like value, else None (None, NaN, inf, strings, arrays of size != 1)."""
    if value is None or isinstance(value, (str, bytes, bool)):
        return None
    try:
        number = float(np.asarray(value, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class SpeedometerReader:
    """Signed forward speed in m/s from ``input_data[speed_id][1]``; a failed reading keeps the last valid one."""

    def __init__(self, initial_speed_mps: float = 0.0) -> None:
        self._speed_mps = float(initial_speed_mps)
        self.num_invalid = 0  # readings that were None, NaN or malformed
        self.is_last_valid = False

    @property
    def speed_mps(self) -> float:
        """The last valid speed (``initial_speed_mps`` before the first one)."""
        return self._speed_mps

    def update(self, data: Mapping[str, Any] | float | None) -> float:
        """Read ``{'speed': v}`` (or a bare number); None, NaN or a missing key keeps the last valid speed."""
        raw = data.get("speed") if isinstance(data, Mapping) else data
        speed = _finite_float(raw)
        if speed is None:
            if self.num_invalid == 0:
                logger.warning(
                    "speedometer reading %r is invalid; keeping %.3f m/s (logged once)", data, self._speed_mps
                )
            self.num_invalid += 1
            self.is_last_valid = False
            return self._speed_mps
        self._speed_mps = speed
        self.is_last_valid = True
        return speed


@dataclass(frozen=True, slots=True)
class ImuSample:
    """One IMU reading in the ego axes: accelerations (3,) m/s^2 with gravity, rates (3,) rad/s, compass rad."""

    accel_ego_mps2: np.ndarray
    gyro_ego_radps: np.ndarray
    compass_rad: float  # NaN when the sensor gave none: see HeadingEstimator

    @property
    def yaw_rate_radps(self) -> float:
        """Counter-clockwise yaw rate (positive turning left)."""
        return float(self.gyro_ego_radps[2])


def parse_imu(data: ArrayLike) -> ImuSample:
    """The leaderboard IMU array (7,) [acc xyz, gyro xyz, compass] (CARLA axes) to an ``ImuSample``.

    Non-finite accelerations or rates become 0.0 (a NaN must not reach a filter); a non-finite compass stays
    NaN so that the heading fallback can see it. Raises ValueError when the array is not 7 numbers.
    """
    values = np.asarray(data, dtype=np.float64).reshape(-1)
    if values.shape != (7,):
        raise ValueError(f"IMU data must be 7 numbers [acc xyz, gyro xyz, compass]; got shape {values.shape}")
    accel, gyro = frames.carla_imu_to_ego(np.nan_to_num(values[0:3]), np.nan_to_num(values[3:6]))
    return ImuSample(accel_ego_mps2=accel, gyro_ego_radps=gyro, compass_rad=float(values[6]))


@dataclass(frozen=True, slots=True)
class HeadingEstimate:
    """A world yaw (radians, counter-clockwise) and where it came from."""

    yaw_rad: float
    source: HeadingSource


class HeadingEstimator:
    """World yaw from the compass, with fallbacks when it is NaN: last compass (gyro-propagated), motion, route.

    Order: a finite compass; else the last valid compass yaw, propagated with the yaw rate when given; else
    the direction of travel once the position moved ``min_motion_m`` from where the estimator first saw it;
    else ``route_yaw_rad`` (the ego spawns on route[0] facing along the route); else 0.0 with source "none".
    """

    def __init__(self, *, route_yaw_rad: float | None = None, min_motion_m: float = 2.0) -> None:
        if min_motion_m <= 0.0:
            raise ValueError(
                f"min_motion_m must be > 0 (GNSS noise is ~0.5 m; 2.0 is a good value); got {min_motion_m}"
            )
        self._route_yaw_rad = route_yaw_rad
        self._min_motion_m = float(min_motion_m)
        self._last_yaw_rad: float | None = None
        self._anchor_xy: np.ndarray | None = None
        self._motion_yaw_rad: float | None = None
        self._last_source: HeadingSource | None = None
        self.num_invalid = 0

    def update(
        self,
        compass_rad: float | None,
        xy_world_m: ArrayLike | None = None,
        *,
        yaw_rate_radps: float | None = None,
        dt_s: float | None = None,
    ) -> HeadingEstimate:
        """One tick: the compass (may be NaN/None), optional world position (2,), optional yaw rate and step."""
        if xy_world_m is not None:
            self._observe_motion(np.asarray(xy_world_m, dtype=np.float64).reshape(2))
        yaw = frames.compass_to_world_yaw_rad(compass_rad)
        if yaw is not None:
            estimate = HeadingEstimate(yaw, "compass")
            self._last_yaw_rad = yaw
        else:
            self.num_invalid += 1
            estimate = self._fallback(yaw_rate_radps, dt_s)
        if estimate.source != self._last_source and estimate.source != "compass":
            logger.warning("compass reading %r invalid; heading from %s", compass_rad, estimate.source)
        self._last_source = estimate.source
        return estimate

    def _observe_motion(self, xy: np.ndarray) -> None:
        if not np.all(np.isfinite(xy)):
            return
        if self._anchor_xy is None:
            self._anchor_xy = xy
            return
        delta = xy - self._anchor_xy
        if float(np.hypot(*delta)) >= self._min_motion_m:
            self._motion_yaw_rad = math.atan2(delta[1], delta[0])
            self._anchor_xy = xy

    def _fallback(self, yaw_rate_radps: float | None, dt_s: float | None) -> HeadingEstimate:
        if self._last_yaw_rad is not None:
            rate = _finite_float(yaw_rate_radps)
            step = _finite_float(dt_s)
            if rate is not None and step is not None:
                self._last_yaw_rad = float(frames.wrap_angle_rad(self._last_yaw_rad + rate * step))
            return HeadingEstimate(self._last_yaw_rad, "last_compass")
        if self._motion_yaw_rad is not None:
            return HeadingEstimate(self._motion_yaw_rad, "motion")
        if self._route_yaw_rad is not None:
            return HeadingEstimate(float(frames.wrap_angle_rad(self._route_yaw_rad)), "route")
        return HeadingEstimate(0.0, "none")
