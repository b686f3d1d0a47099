"""Every coordinate-frame, angle, GNSS and sign convention of the project, stated once and converted here only.

Frames
------
CARLA world (what the simulator and the leaderboard hand us):
    left-handed, x forward/east, y RIGHT/south, z up, metres; yaw in DEGREES, positive CLOCKWISE seen from
    above; ``Rotation(yaw=90)`` faces +y_carla (south). Vehicle-frame offsets (sensor mounts) are x forward,
    y right, z up from the actor origin. Roll > 0 lowers the right side, pitch > 0 raises the nose.
Internal WORLD frame (sim, route follower, tracker):
    the CARLA world with y flipped: right-handed, x east (= x_carla), y north (= -y_carla), z up, metres;
    yaw in radians, counter-clockwise, wrapped to [-pi, pi); yaw_world = -radians(yaw_carla).
Internal EGO frame (planner, ``autovla_agent.contract``):
    right-handed, x forward, y left, z up, yaw counter-clockwise in radians, origin at the REAR-AXLE centre.
    The CARLA actor location is the vehicle origin (treated as the bounding-box centre); the rear axle lies
    ``rear_axle_offset_m`` behind it along the heading (1.4 m for vehicle.lincoln.mkz_2020).
    Mount angles: roll_ego = roll_carla, pitch_ego = -pitch_carla, yaw_ego = -yaw_carla (ROS bridge rule).

Heading sensors
---------------
IMU compass: radians in [0, 2 pi), clockwise from north, north = -y_carla. Heading +x_carla gives pi/2,
+y_carla gives pi. Hence yaw_world = pi/2 - compass. It can be NaN for a few ticks (handled by the caller
with ``compass_to_world_yaw_rad(..., last_yaw_rad)`` or ``readings.HeadingEstimator``).
IMU vectors: accelerometer (x, y, z) -> ego (x, -y, z); gyroscope (x, y, z) -> ego (-x, y, -z), the
carla-ros-bridge rule, so a left turn gives a positive ego yaw rate.

Steering
--------
Internal: steer_norm > 0 and steer_rad > 0 turn LEFT (counter-clockwise). CARLA: steer > 0 turns RIGHT.
steer_carla = -steer_norm.

GNSS
----
The leaderboard makes the route GPS with ``_location_to_gps`` (R = 6378137 m, s = cos(lat_ref)):
    mx = s * lon_ref * pi * R / 180 + x_carla
    my = s * R * ln(tan((90 + lat_ref) * pi / 360)) - y_carla
    lon = mx * 180 / (pi * R * s);  lat = 360 * atan(exp(my / (R * s))) / pi - 90
``location_to_gnss`` is that formula and ``gnss_to_carla_xy`` its exact inverse for ANY georeference
(lat_ref, lon_ref) read from the OpenDRIVE ``<geoReference>`` (``+lat_0``, ``+lon_0``; 42.0, 2.0 when
absent, as the leaderboard). The linear "lon * 111319.49" shortcut is only right for lat_ref = lon_ref = 0.

The GNSS SENSOR of carla 0.9.16 reports lat = lat_ref + y_carla * k (the route formula has -y_carla), so a
0.9.16 fix inverted with the route formula has its y mirrored. ``LatitudeSignResolver`` (module
``sensors.latitude_sign``, the one piece of GNSS handling kept out of this module) decides which sign the
running server uses from the first fix (the ego spawns at route[0]). 0.9.16 also projects with its own
transverse Mercator: after the sign fix its positions differ from the route formula by 0.04-0.06 % of the
distance from the georeference origin (measured with the 0.9.16 wheel: 0.2 m at 500 m, 1.1-1.6 m at 2.8 km).
"""

from __future__ import annotations

import logging
import math
import re

import numpy as np
from numpy.typing import ArrayLike

logger = logging.getLogger(__name__)

EARTH_RADIUS_M = 6378137.0  # the leaderboard's sphere radius (WGS84 equatorial)
DEFAULT_LAT_REF_DEG = 42.0  # the leaderboard's fallback when the xodr has no +lat_0
DEFAULT_LON_REF_DEG = 2.0  # the leaderboard's fallback when the xodr has no +lon_0

_GEOREF_RE = re.compile(r"<geoReference>(.*?)</geoReference>", re.DOTALL | re.IGNORECASE)


def _out(value: np.ndarray) -> float | np.ndarray:
    """Return a plain float for 0-d results so scalars in give scalars out (CARLA rejects numpy scalars)."""
    return float(value) if np.ndim(value) == 0 else value


# --------------------------------------------------------------------------------------------------------------
# Angles and planar CARLA <-> world conversions
# --------------------------------------------------------------------------------------------------------------


def wrap_angle_rad(angle_rad: ArrayLike) -> float | np.ndarray:
    """Wrap angles in radians to [-pi, pi)."""
    a = np.asarray(angle_rad, dtype=np.float64)
    return _out(np.mod(a + np.pi, 2.0 * np.pi) - np.pi)


def carla_to_world_xy(xy_carla_m: ArrayLike) -> np.ndarray:
    """CARLA (x, y) positions or planar vectors (..., 2) in metres to the internal world frame (flip y)."""
    xy = np.array(xy_carla_m, dtype=np.float64)
    if xy.shape[-1:] != (2,):
        raise ValueError(f"xy_carla_m must have shape (..., 2); got {xy.shape}")
    xy[..., 1] = -xy[..., 1]
    return xy


def world_to_carla_xy(xy_world_m: ArrayLike) -> np.ndarray:
    """Internal world (x, y) positions or planar vectors (..., 2) to CARLA's frame (flip y; own inverse)."""
    return carla_to_world_xy(xy_world_m)


def carla_yaw_deg_to_world_rad(yaw_deg: ArrayLike) -> float | np.ndarray:
    """CARLA yaw (degrees, clockwise) to internal world yaw (radians, counter-clockwise, in [-pi, pi))."""
    return wrap_angle_rad(-np.radians(np.asarray(yaw_deg, dtype=np.float64)))


def world_yaw_rad_to_carla_deg(yaw_rad: ArrayLike) -> float | np.ndarray:
    """Internal world yaw (radians, counter-clockwise) to CARLA yaw (degrees, clockwise, in [-180, 180))."""
    return _out(np.degrees(np.asarray(wrap_angle_rad(-np.asarray(yaw_rad, dtype=np.float64)))))


def carla_pose_to_world(x_m: float, y_m: float, yaw_deg: float) -> np.ndarray:
    """A CARLA transform's (x, y, yaw) to an internal world pose (3,) = x_m, y_m, yaw_rad of the same point."""
    return np.array([float(x_m), -float(y_m), float(carla_yaw_deg_to_world_rad(yaw_deg))])


def world_pose_to_carla(pose_world: ArrayLike) -> tuple[float, float, float]:
    """An internal world pose (3,) to CARLA (x_m, y_m, yaw_deg) of the same point, as plain floats."""
    x, y, yaw = (float(v) for v in np.asarray(pose_world, dtype=np.float64).reshape(3))
    return x, -y, float(world_yaw_rad_to_carla_deg(yaw))


def compass_to_world_yaw_rad(compass_rad: float | None, last_yaw_rad: float | None = None) -> float | None:
    """IMU compass (radians clockwise from north = -y_carla) to world yaw; NaN or None gives ``last_yaw_rad``.

    ``last_yaw_rad`` defaults to None, so a caller without a previous value gets None and must fall back
    (``readings.HeadingEstimator`` does: last compass, then motion, then route heading).
    """
    if compass_rad is None or not math.isfinite(compass_rad):
        return last_yaw_rad
    return float(wrap_angle_rad(math.pi / 2.0 - float(compass_rad)))


def world_yaw_rad_to_compass(yaw_rad: float) -> float:
    """World yaw (radians, counter-clockwise from east) to an IMU compass reading in [0, 2 pi)."""
    return float(np.mod(math.pi / 2.0 - float(yaw_rad), 2.0 * math.pi))


# --------------------------------------------------------------------------------------------------------------
# Steering and vehicle-frame offsets
# --------------------------------------------------------------------------------------------------------------


def steer_norm_to_carla(steer_norm: float) -> float:
    """Internal steer (+ = left, [-1, 1]) to a CARLA ``VehicleControl.steer`` float (+ = right).

    The result is a plain Python float clipped to [-1, 1] (CARLA neither clamps nor accepts numpy
    float32); NaN becomes 0.0 (straight), because CARLA would accept and apply a NaN steer.
    """
    value = float(steer_norm)
    if not math.isfinite(value):
        logger.warning("steer_norm_to_carla got %r; sending 0.0 (straight)", steer_norm)
        return 0.0
    return float(min(1.0, max(-1.0, -value)))


def carla_steer_to_norm(steer_carla: float) -> float:
    """CARLA steer (+ = right) to internal steer_norm (+ = left), clipped to [-1, 1]; NaN gives 0.0."""
    value = float(steer_carla)
    if not math.isfinite(value):
        return 0.0
    return float(min(1.0, max(-1.0, -value)))


def origin_to_rear_axle(pose_world: ArrayLike, offset_m: float) -> np.ndarray:
    """Poses (..., 3) of the vehicle origin to poses of the rear-axle centre, ``offset_m`` behind it."""
    pose = np.array(pose_world, dtype=np.float64)
    if pose.shape[-1:] != (3,):
        raise ValueError(f"pose_world must have shape (..., 3) x_m, y_m, yaw_rad; got {pose.shape}")
    pose[..., 0] -= offset_m * np.cos(pose[..., 2])
    pose[..., 1] -= offset_m * np.sin(pose[..., 2])
    return pose


def rear_axle_to_origin(pose_world: ArrayLike, offset_m: float) -> np.ndarray:
    """Poses (..., 3) of the rear-axle centre to poses of the vehicle origin; inverse of origin_to_rear_axle."""
    return origin_to_rear_axle(pose_world, -offset_m)


def carla_offset_to_ego(x_m: float, y_m: float, z_m: float, rear_axle_offset_m: float) -> np.ndarray:
    """A CARLA vehicle-frame offset from the actor origin (x fwd, y right) to ego-frame (3,) from the rear axle."""
    return np.array([float(x_m) + rear_axle_offset_m, -float(y_m), float(z_m)])


def carla_mount_to_ego(
    x_m: float,
    y_m: float,
    z_m: float,
    roll_deg: float,
    pitch_deg: float,
    yaw_deg: float,
    rear_axle_offset_m: float,
) -> np.ndarray:
    """A CARLA sensor mount to the ego frame: (6,) x_m, y_m, z_m from the rear axle, roll, pitch, yaw in rad."""
    xyz = carla_offset_to_ego(x_m, y_m, z_m, rear_axle_offset_m)
    angles = np.radians([float(roll_deg), -float(pitch_deg), -float(yaw_deg)])
    return np.concatenate([xyz, np.asarray(wrap_angle_rad(angles))])


def carla_imu_to_ego(accel_xyz: ArrayLike, gyro_xyz: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """CARLA IMU accelerometer (m/s^2) and gyroscope (rad/s) vectors (3,) to the ego axes (x fwd, y left, z up)."""
    accel = np.asarray(accel_xyz, dtype=np.float64).reshape(3) * np.array([1.0, -1.0, 1.0])
    gyro = np.asarray(gyro_xyz, dtype=np.float64).reshape(3) * np.array([-1.0, 1.0, -1.0])
    return accel, gyro


# --------------------------------------------------------------------------------------------------------------
# World <-> ego
# --------------------------------------------------------------------------------------------------------------


def _pose3(ego_pose_world: ArrayLike) -> tuple[float, float, float]:
    pose = np.asarray(ego_pose_world, dtype=np.float64)
    if pose.shape != (3,):
        raise ValueError(f"ego_pose_world must be (3,) x_m, y_m, yaw_rad; got {pose.shape}")
    return float(pose[0]), float(pose[1]), float(pose[2])


def world_to_ego(points_world: ArrayLike, ego_pose_world: ArrayLike) -> np.ndarray:
    """Points (..., 2) or poses (..., 3) in the world frame to the ego frame of ``ego_pose_world`` (3,).

    ``ego_pose_world`` is the rear-axle pose x_m, y_m, yaw_rad; pose yaws come back wrapped to [-pi, pi).
    """
    x0, y0, yaw0 = _pose3(ego_pose_world)
    pts = np.array(points_world, dtype=np.float64)
    if pts.shape[-1] not in (2, 3):
        raise ValueError(f"points_world must have shape (..., 2) or (..., 3); got {pts.shape}")
    c, s = math.cos(yaw0), math.sin(yaw0)
    dx, dy = pts[..., 0] - x0, pts[..., 1] - y0
    pts[..., 0] = c * dx + s * dy
    pts[..., 1] = -s * dx + c * dy
    if pts.shape[-1] == 3:
        pts[..., 2] = wrap_angle_rad(pts[..., 2] - yaw0)
    return pts


def ego_to_world(points_ego: ArrayLike, ego_pose_world: ArrayLike) -> np.ndarray:
    """Points (..., 2) or poses (..., 3) in the ego frame of ``ego_pose_world`` (3,) to the world frame."""
    x0, y0, yaw0 = _pose3(ego_pose_world)
    pts = np.array(points_ego, dtype=np.float64)
    if pts.shape[-1] not in (2, 3):
        raise ValueError(f"points_ego must have shape (..., 2) or (..., 3); got {pts.shape}")
    c, s = math.cos(yaw0), math.sin(yaw0)
    px, py = pts[..., 0].copy(), pts[..., 1].copy()
    pts[..., 0] = x0 + c * px - s * py
    pts[..., 1] = y0 + s * px + c * py
    if pts.shape[-1] == 3:
        pts[..., 2] = wrap_angle_rad(pts[..., 2] + yaw0)
    return pts


# --------------------------------------------------------------------------------------------------------------
# GNSS
# --------------------------------------------------------------------------------------------------------------


def location_to_gnss(
    x_carla_m: ArrayLike, y_carla_m: ArrayLike, lat_ref_deg: float, lon_ref_deg: float
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """CARLA (x, y) in metres to (lat_deg, lon_deg) by the leaderboard's ``_location_to_gps`` formula."""
    x = np.asarray(x_carla_m, dtype=np.float64)
    y = np.asarray(y_carla_m, dtype=np.float64)
    scale = math.cos(math.radians(lat_ref_deg))
    mx = scale * lon_ref_deg * math.pi * EARTH_RADIUS_M / 180.0 + x
    my = scale * EARTH_RADIUS_M * math.log(math.tan((90.0 + lat_ref_deg) * math.pi / 360.0)) - y
    lon = mx * 180.0 / (math.pi * EARTH_RADIUS_M * scale)
    lat = 360.0 * np.arctan(np.exp(my / (EARTH_RADIUS_M * scale))) / math.pi - 90.0
    return _out(lat), _out(lon)


def gnss_to_carla_xy(
    lat_deg: ArrayLike, lon_deg: ArrayLike, lat_ref_deg: float, lon_ref_deg: float
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """(lat_deg, lon_deg) to CARLA (x_m, y_m): the exact inverse of ``location_to_gnss`` for any georeference.

    Fixes of a carla 0.9.16 GNSS sensor need the y sign that ``latitude_sign.LatitudeSignResolver`` decides.
    """
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    scale = math.cos(math.radians(lat_ref_deg))
    mx = lon * math.pi * EARTH_RADIUS_M * scale / 180.0
    my = np.log(np.tan((lat + 90.0) * math.pi / 360.0)) * EARTH_RADIUS_M * scale
    x = mx - scale * lon_ref_deg * math.pi * EARTH_RADIUS_M / 180.0
    y = scale * EARTH_RADIUS_M * math.log(math.tan((90.0 + lat_ref_deg) * math.pi / 360.0)) - my
    return _out(x), _out(y)


def parse_georeference(xodr_text: str) -> tuple[float, float]:
    """(lat_ref_deg, lon_ref_deg) from an OpenDRIVE ``<geoReference>`` (``+lat_0``, ``+lon_0``).

    Mirrors the leaderboard's ``_get_latlon_ref``: each of the two values falls back to 42.0 / 2.0 when
    absent. Only the header is searched, so a 100 MB town file is not parsed as XML.
    """
    lat_ref, lon_ref = DEFAULT_LAT_REF_DEG, DEFAULT_LON_REF_DEG
    match = _GEOREF_RE.search(xodr_text)
    if match is None:
        logger.info("no <geoReference> in the OpenDRIVE text; using the leaderboard default %s, %s", lat_ref, lon_ref)
        return lat_ref, lon_ref
    text = match.group(1).replace("<![CDATA[", " ").replace("]]>", " ")
    for item in text.split():
        key, _, value = item.partition("=")
        try:
            if key == "+lat_0":
                lat_ref = float(value)
            elif key == "+lon_0":
                lon_ref = float(value)
        except ValueError:
            raise ValueError(f"cannot read {item!r} in the OpenDRIVE <geoReference> as a number") from None
    return lat_ref, lon_ref


def georeference_from_route(lat_deg: float, lon_deg: float, x_carla_m: float, y_carla_m: float) -> tuple[float, float]:
    """Solve (lat_ref_deg, lon_ref_deg) from one route point given both as GPS and as CARLA x/y.

    For the SENSORS track, where no OpenDRIVE is available: the leaderboard hands the route both ways
    (``_global_plan`` and ``_global_plan_world_coord``), made with ``location_to_gnss``. The latitude equation
    is solved by fixed-point iteration (the reference enters only through the slowly varying cos(lat_ref)),
    the longitude one in closed form. Unlike the fsolve of some public agents, lon_ref comes out exact.
    """
    lat_ref = float(lat_deg)
    target = math.tan((float(lat_deg) + 90.0) * math.pi / 360.0)
    for _ in range(100):
        scale = math.cos(math.radians(lat_ref))
        new = 360.0 * math.atan(target * math.exp(float(y_carla_m) / (EARTH_RADIUS_M * scale))) / math.pi - 90.0
        if abs(new - lat_ref) < 1e-13:
            lat_ref = new
            break
        lat_ref = new
    scale = math.cos(math.radians(lat_ref))
    lon_ref = float(lon_deg) - float(x_carla_m) * 180.0 / (math.pi * EARTH_RADIUS_M * scale)
    return lat_ref, lon_ref
