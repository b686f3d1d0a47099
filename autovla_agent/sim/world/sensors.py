"""The agent's declared sensors produced from the embedded world in the leaderboard's ``input_data`` format.

``input_data[id] = (frame, data)`` with, per type (see the leaderboard's sensor interface):

* ``sensor.camera.rgb``: ``np.uint8`` (height, width, 4) BGRA, rendered at the declared mount, size and fov;
* ``sensor.other.gnss``: ``np.float64`` [lat_deg, lon_deg, alt_m] at the mount position through the town's
  georeference with the leaderboard's ``_location_to_gps`` (the convention of the route GPS and of CARLA
  <= 0.9.15); ``gnss_convention="carla_0916"`` reports ``carla.Map.transform_to_geolocation`` instead, as a
  0.9.16 server does (latitude sign flipped, CARLA's own projection); Gaussian noise as the leaderboard sets;
* ``sensor.other.imu``: ``np.float64`` [acc x, y, z (m/s^2), gyro x, y, z (rad/s), compass (rad)] in CARLA's
  vehicle axes (x forward, y right, z up; gravity on z), compass clockwise from north in [0, 2 pi);
* ``sensor.speedometer``: ``{'speed': v}`` m/s, signed along the heading;
* ``sensor.opendrive_map`` (MAP track only): ``{'opendrive': xodr_text}``.

LiDAR, radar and any other type are refused before the route starts (``SensorUnsupportedError``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from autovla_agent.sensors import frames
from autovla_agent.sensors import rig as rig_mod
from autovla_agent.sim.world.town import Town

logger = logging.getLogger(__name__)

__all__ = ["REQUIRED_KEYS", "SUPPORTED_TYPES", "SensorSimConfig", "SensorSimulator", "SensorUnsupportedError"]

GRAVITY_MPS2 = 9.81
SUPPORTED_TYPES = (rig_mod.CAMERA_RGB, rig_mod.GNSS, rig_mod.IMU, rig_mod.SPEEDOMETER, rig_mod.OPENDRIVE_MAP)
REQUIRED_KEYS = {  # what the leaderboard's AgentWrapper reads at spawn (a missing key is a KeyError there)
    rig_mod.CAMERA_RGB: ("id", "x", "y", "z", "roll", "pitch", "yaw", "width", "height", "fov"),
    rig_mod.GNSS: ("id", "x", "y", "z"),
    rig_mod.IMU: ("id", "x", "y", "z", "roll", "pitch", "yaw"),
    rig_mod.SPEEDOMETER: ("id",),
    rig_mod.OPENDRIVE_MAP: ("id",),
}


class SensorUnsupportedError(ValueError):
    """A declared sensor the embedded world cannot produce, or a sensor dict it cannot read."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SensorSimConfig:
    """Sensor noise and conventions (defaults: the leaderboard's GNSS/IMU noise, leaderboard GNSS sign)."""

    gnss_convention: Literal["leaderboard", "carla_0916"] = "leaderboard"
    gnss_noise_std_deg: float = 0.000005  # leaderboard: noise_lat/lon_stddev
    gnss_alt_noise_std_m: float = 0.000005
    imu_accel_noise_std_mps2: tuple[float, float, float] = (0.001, 0.001, 0.015)
    imu_gyro_noise_std_radps: float = 0.001
    compass_nan_frames: int = 0  # report a NaN compass for the first frames, as CARLA sometimes does

    def __post_init__(self) -> None:
        """Validate noise levels."""
        values = (
            self.gnss_noise_std_deg,
            self.gnss_alt_noise_std_m,
            self.imu_gyro_noise_std_radps,
            *self.imu_accel_noise_std_mps2,
        )
        if any(not (math.isfinite(v) and v >= 0.0) for v in values):
            raise ValueError("SensorSimConfig noise standard deviations must be finite and >= 0")
        if self.compass_nan_frames < 0:
            raise ValueError("SensorSimConfig.compass_nan_frames must be >= 0")


class SensorSimulator:
    """Produces ``input_data`` for a world; noise is drawn from a generator seeded with the world's seed."""

    def __init__(
        self, town: Town, config: SensorSimConfig | None = None, track: str = "SENSORS", seed: int = 0
    ) -> None:
        self.town = town
        self.config = config or SensorSimConfig()
        self.track = track
        self.rng = np.random.default_rng([seed, 7])

    def validate(self, sensor_specs: Sequence[Mapping[str, Any]]) -> None:
        """Refuse sensors the world cannot produce or read (naming id and type).

        The leaderboard's own rules (counts, mount radius, ids) are ``autovla_agent.sensors.rig.validate_sensors``.
        """
        problems = []
        for i, spec in enumerate(sensor_specs):
            kind, sid = spec.get("type"), spec.get("id", f"#{i}")
            if kind not in SUPPORTED_TYPES:
                problems.append(
                    f"sensor {sid!r} of type {kind!r} cannot be produced by the embedded runner "
                    f"(supported: {', '.join(SUPPORTED_TYPES)}); run it in CARLA or remove it"
                )
                continue
            missing = [k for k in REQUIRED_KEYS[kind] if k not in spec]
            if missing:
                problems.append(f"sensor {sid!r} ({kind}) lacks the keys {missing} the leaderboard requires")
            if kind == rig_mod.OPENDRIVE_MAP and self.track != "MAP":
                problems.append(
                    f"sensor {sid!r} (sensor.opendrive_map) needs the MAP track; the world runs {self.track}"
                )
        if problems:
            raise SensorUnsupportedError("; ".join(problems))

    def read(self, world: Any, sensor_specs: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, Any]]:
        """``{id: (frame, data)}`` for every declared sensor at the world's current frame."""
        snapshot = world.snapshot()
        frame = int(world.frame)
        out: dict[str, tuple[int, Any]] = {}
        for spec in sensor_specs:
            kind, sid = spec["type"], spec["id"]
            if kind == rig_mod.CAMERA_RGB:
                data: Any = world.renderer.render_camera(snapshot, spec)
            elif kind == rig_mod.GNSS:
                data = self._gnss(snapshot, spec)
            elif kind == rig_mod.IMU:
                data = self._imu(snapshot, frame)
            elif kind == rig_mod.SPEEDOMETER:
                data = {"speed": float(snapshot.ego.speed_mps[0])}
            elif kind == rig_mod.OPENDRIVE_MAP:
                data = {"opendrive": self.town.opendrive_text}
            else:
                raise SensorUnsupportedError(
                    f"sensor {sid!r} of type {kind!r} cannot be produced by the embedded runner"
                )
            out[sid] = (frame, data)
        return out

    def _gnss(self, snapshot: Any, spec: Mapping[str, Any]) -> np.ndarray:
        """[lat_deg, lon_deg, alt_m] of the mount point."""
        cfg = self.config
        ego = snapshot.ego
        x, y, yaw = float(ego.x_m[0]), float(ego.y_m[0]), float(ego.yaw_rad[0])
        mx, my_right, mz = float(spec.get("x", 0.0)), float(spec.get("y", 0.0)), float(spec.get("z", 0.0))
        px = x + math.cos(yaw) * mx + math.sin(yaw) * my_right  # CARLA +y (right) is -left in the world frame
        py = y + math.sin(yaw) * mx - math.cos(yaw) * my_right
        x_c, y_c = (float(v) for v in frames.world_to_carla_xy((px, py)))
        if cfg.gnss_convention == "carla_0916":
            import carla  # what a 0.9.16 server's GNSS reports: the map's own geolocation (latitude grows with +y)

            geo = self.town.map.transform_to_geolocation(carla.Location(x_c, y_c, mz))
            lat, lon = geo.latitude, geo.longitude
        else:
            lat, lon = frames.location_to_gnss(x_c, y_c, self.town.lat_ref, self.town.lon_ref)
        noise = self.rng.normal(0.0, 1.0, 3) * np.array(
            [cfg.gnss_noise_std_deg, cfg.gnss_noise_std_deg, cfg.gnss_alt_noise_std_m]
        )
        return np.array([lat, lon, mz], dtype=np.float64) + noise

    def _imu(self, snapshot: Any, frame: int) -> np.ndarray:
        """[ax, ay, az, gx, gy, gz, compass] in CARLA's vehicle axes (left-handed: y right)."""
        cfg = self.config
        v = float(snapshot.ego.speed_mps[0])
        yaw_rate = float(snapshot.ego_yaw_rate_radps)
        accel = np.array([snapshot.ego_accel_mps2, -v * yaw_rate, GRAVITY_MPS2])  # centripetal: left turn -> -y
        gyro = np.array([0.0, 0.0, -yaw_rate])  # CARLA gyro z is clockwise-positive
        accel = accel + self.rng.normal(0.0, 1.0, 3) * np.asarray(cfg.imu_accel_noise_std_mps2)
        gyro = gyro + self.rng.normal(0.0, 1.0, 3) * cfg.imu_gyro_noise_std_radps
        compass = (
            math.nan
            if frame < cfg.compass_nan_frames
            else frames.world_yaw_rad_to_compass(float(snapshot.ego.yaw_rad[0]))
        )
        return np.array([*accel, *gyro, compass], dtype=np.float64)
