"""The sensor rig as frozen dataclasses, rendered to leaderboard sensor dicts and checked with its rules.

Poses are in CARLA's vehicle frame (x forward, y RIGHT, z up from the actor origin; degrees), because they
go straight into ``AutonomousAgent.sensors()``; ``frames.carla_mount_to_ego`` gives the ego-frame mount.
The checks mirror ``validate_sensor_configuration`` of the leaderboard (master = 2.0 after PR #176) plus the
keys each sensor type needs at spawn time, so a bad rig fails when the config loads, not at the server.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from autovla_agent.sensors import frames

Track = Literal["SENSORS", "MAP", "SENSORS_QUALIFIER", "MAP_QUALIFIER"]

CAMERA_RGB = "sensor.camera.rgb"
LIDAR = "sensor.lidar.ray_cast"
RADAR = "sensor.other.radar"
GNSS = "sensor.other.gnss"
IMU = "sensor.other.imu"
OPENDRIVE_MAP = "sensor.opendrive_map"
SPEEDOMETER = "sensor.speedometer"

# The leaderboard's SENSORS_LIMITS and its qualifier variant (counts per type).
SENSOR_LIMITS: Mapping[str, int] = {
    CAMERA_RGB: 8,
    LIDAR: 2,
    RADAR: 4,
    GNSS: 1,
    IMU: 1,
    OPENDRIVE_MAP: 1,
    SPEEDOMETER: 1,
}
QUALIFIER_SENSOR_LIMITS: Mapping[str, int] = {
    CAMERA_RGB: 4,
    LIDAR: 1,
    RADAR: 2,
    GNSS: 1,
    IMU: 1,
    OPENDRIVE_MAP: 1,
    SPEEDOMETER: 1,
}
MAX_MOUNT_RADIUS_M = 3.0  # sqrt(x^2 + y^2 + z^2), checked only when x, y and z are all present
TRACKS: tuple[str, ...] = ("SENSORS", "MAP", "SENSORS_QUALIFIER", "MAP_QUALIFIER")

_POSE_KEYS = ("x", "y", "z", "roll", "pitch", "yaw")
# Keys each type needs: the spawn-time requirements of AgentWrapper._preprocess_sensor_spec plus the
# portable ones (fov on cameras, six pose keys, reading_frequency that leaderboard 2.0/2.1 require).
REQUIRED_KEYS: Mapping[str, tuple[str, ...]] = {
    CAMERA_RGB: ("id", *_POSE_KEYS, "width", "height", "fov"),
    LIDAR: ("id", *_POSE_KEYS),
    RADAR: ("id", *_POSE_KEYS, "horizontal_fov", "vertical_fov"),
    GNSS: ("id", "x", "y", "z"),
    IMU: ("id", *_POSE_KEYS),
    OPENDRIVE_MAP: ("id", "reading_frequency"),
    SPEEDOMETER: ("id", "reading_frequency"),
}

# Rule names used in SensorRigError messages (stable, so tests and users can match on them).
RULE_FIELDS = "required keys"
RULE_TYPE = "allowed types"
RULE_UNIQUE_ID = "unique ids"
RULE_COUNT = "sensor count per track"
RULE_RADIUS = "mount radius <= 3.0 m"
RULE_OPENDRIVE = "no opendrive_map on the SENSORS track"
RULE_VALUE = "valid values"


class SensorRigError(ValueError):
    """A sensor configuration the leaderboard would reject; names each offending sensor id and rule."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems  # (sensor_id, rule, detail)
        self.sensor_id, self.rule = problems[0][0], problems[0][1]
        lines = [f"sensor {sid!r} breaks rule '{rule}': {detail}" for sid, rule, detail in problems]
        super().__init__("invalid sensor rig:\n  " + "\n  ".join(lines))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def validate_sensors(sensor_dicts: Iterable[Mapping[str, Any]], track: str = "SENSORS") -> None:
    """Check leaderboard sensor dicts with the evaluator's rules; raise ``SensorRigError`` listing every breach.

    Rules: known type; required keys; unique ids; opendrive_map not on SENSORS; mount radius <= 3.0 m when
    x, y, z are all present; per-type counts (qualifier tracks: camera 4, lidar 1, radar 2); finite pose
    numbers, positive integer image size, 0 < fov < 180 (the leaderboard itself does not check the last ones,
    CARLA fails on them later).
    """
    track = getattr(track, "name", track)  # also accept the leaderboard's Track enum
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}; use one of {list(TRACKS)}")
    limits = QUALIFIER_SENSOR_LIMITS if track.endswith("QUALIFIER") else SENSOR_LIMITS
    problems: list[tuple[str, str, str]] = []
    seen_ids: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for index, sensor in enumerate(sensor_dicts):
        sid = str(sensor.get("id", f"<sensor #{index} without id>"))
        kind = sensor.get("type")
        if not isinstance(kind, str) or kind not in SENSOR_LIMITS:
            problems.append((sid, RULE_TYPE, f"type {kind!r} is not one of {sorted(SENSOR_LIMITS)}"))
            continue
        missing = [key for key in REQUIRED_KEYS[kind] if key not in sensor]
        if missing:
            problems.append((sid, RULE_FIELDS, f"{kind} needs keys {missing}"))
        if "id" in sensor:
            seen_ids[sid] += 1
            if seen_ids[sid] == 2:
                problems.append((sid, RULE_UNIQUE_ID, "this id is used more than once (duplicated sensor tag)"))
        counts[kind] += 1
        if counts[kind] == limits[kind] + 1:
            problems.append((sid, RULE_COUNT, f"more than {limits[kind]} {kind} on track {track}"))
        if kind == OPENDRIVE_MAP and track == "SENSORS":
            problems.append((sid, RULE_OPENDRIVE, "sensor.opendrive_map is only allowed on the MAP tracks"))
        problems.extend(_check_values(sid, kind, sensor))
    if problems:
        raise SensorRigError(problems)


def _check_values(sid: str, kind: str, sensor: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    problems = []
    for key in (*_POSE_KEYS, "fov", "reading_frequency", "horizontal_fov", "vertical_fov"):
        if key in sensor and _number(sensor[key]) is None:
            problems.append((sid, RULE_VALUE, f"{key}={sensor[key]!r} is not a finite number"))
    xyz = [_number(sensor.get(key)) for key in ("x", "y", "z")]
    if all(value is not None for value in xyz):
        radius_m = math.sqrt(sum(value * value for value in xyz if value is not None))
        if radius_m > MAX_MOUNT_RADIUS_M:
            problems.append((sid, RULE_RADIUS, f"mount radius {radius_m:.2f} m > {MAX_MOUNT_RADIUS_M} m"))
    if kind == CAMERA_RGB:
        for key in ("width", "height"):
            value = sensor.get(key)
            if key in sensor and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                problems.append((sid, RULE_VALUE, f"{key}={value!r} must be a positive integer (pixels)"))
        fov = _number(sensor.get("fov"))
        if "fov" in sensor and fov is not None and not 0.0 < fov < 180.0:
            problems.append((sid, RULE_VALUE, f"fov={fov} must be in (0, 180) degrees"))
    return problems


def _check_finite(owner: str, **values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{owner}.{name}={value!r} must be a finite number")


@dataclass(frozen=True, kw_only=True, slots=True)
class CameraSpec:
    """One RGB camera: leaderboard id, prompt ``view`` name, CARLA mount (m, deg) and image size (px, deg)."""

    id: str = "rgb_front"
    view: str = "front"  # the name the prompt uses ("front", "front_left", ...)
    x_m: float = 0.80
    y_m: float = 0.0
    z_m: float = 1.60
    roll_deg: float = 0.0
    pitch_deg: float = 0.0
    yaw_deg: float = 0.0
    width_px: int = 1024
    height_px: int = 576
    fov_deg: float = 70.0

    def __post_init__(self) -> None:
        """Check ids, finite pose numbers, positive size and 0 < fov < 180."""
        if not self.id or not self.view:
            raise ValueError(f"CameraSpec needs a non-empty id and view; got id={self.id!r} view={self.view!r}")
        _check_finite(
            f"camera {self.id!r}",
            x_m=self.x_m,
            y_m=self.y_m,
            z_m=self.z_m,
            roll_deg=self.roll_deg,
            pitch_deg=self.pitch_deg,
            yaw_deg=self.yaw_deg,
        )
        if self.width_px <= 0 or self.height_px <= 0:
            raise ValueError(f"camera {self.id!r}: width_px and height_px must be > 0")
        if not 0.0 < self.fov_deg < 180.0:
            raise ValueError(f"camera {self.id!r}: fov_deg={self.fov_deg} must be in (0, 180) degrees")

    def to_leaderboard(self) -> dict[str, Any]:
        """The leaderboard sensor dict with all ten keys a camera needs (plain Python numbers)."""
        return {
            "type": CAMERA_RGB,
            "id": self.id,
            "x": float(self.x_m),
            "y": float(self.y_m),
            "z": float(self.z_m),
            "roll": float(self.roll_deg),
            "pitch": float(self.pitch_deg),
            "yaw": float(self.yaw_deg),
            "width": int(self.width_px),
            "height": int(self.height_px),
            "fov": float(self.fov_deg),
        }

    def mount_ego(self, rear_axle_offset_m: float) -> np.ndarray:
        """The mount in the ego frame (6,): x_m, y_m, z_m from the rear axle, roll, pitch, yaw in radians."""
        return frames.carla_mount_to_ego(
            self.x_m, self.y_m, self.z_m, self.roll_deg, self.pitch_deg, self.yaw_deg, rear_axle_offset_m
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class _PosedSensorSpec:
    """A sensor with a six-key CARLA mount (GNSS, IMU); subclasses give ``id``, the type and the label."""

    x_m: float = 0.0
    y_m: float = 0.0
    z_m: float = 0.0
    roll_deg: float = 0.0
    pitch_deg: float = 0.0
    yaw_deg: float = 0.0

    _SENSOR_TYPE: ClassVar[str] = ""
    _LABEL: ClassVar[str] = ""

    def __post_init__(self) -> None:
        """Check the id and finite pose numbers."""
        if not self.id:  # type: ignore[attr-defined]
            raise ValueError(f"{type(self).__name__}.id must be non-empty")
        _check_finite(f"{self._LABEL} {self.id!r}", x_m=self.x_m, y_m=self.y_m, z_m=self.z_m)  # type: ignore[attr-defined]

    def to_leaderboard(self) -> dict[str, Any]:
        """The leaderboard sensor dict (all six pose keys, for portability)."""
        return {"type": self._SENSOR_TYPE, "id": self.id, **_pose(self)}  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True, slots=True)
class GnssSpec(_PosedSensorSpec):
    """The GNSS receiver; at the actor origin by default so the tick-0 fix equals route[0]."""

    id: str = "gnss"
    _SENSOR_TYPE: ClassVar[str] = GNSS
    _LABEL: ClassVar[str] = "gnss"


@dataclass(frozen=True, kw_only=True, slots=True)
class ImuSpec(_PosedSensorSpec):
    """The IMU (accelerometer, gyroscope, compass); at the actor origin by default."""

    id: str = "imu"
    _SENSOR_TYPE: ClassVar[str] = IMU
    _LABEL: ClassVar[str] = "imu"


@dataclass(frozen=True, kw_only=True, slots=True)
class SpeedometerSpec:
    """The pseudo-sensor giving ``{'speed': v}`` (m/s, signed); the leaderboard reads it every tick."""

    id: str = "speed"
    reading_frequency_hz: float = 20.0

    def __post_init__(self) -> None:
        """Check the id and a positive reading frequency."""
        if not self.id or not self.reading_frequency_hz > 0.0:
            raise ValueError("SpeedometerSpec needs a non-empty id and reading_frequency_hz > 0 (e.g. 20.0)")

    def to_leaderboard(self) -> dict[str, Any]:
        """The leaderboard sensor dict (reading_frequency is ignored by master, required for portability)."""
        return {"type": SPEEDOMETER, "id": self.id, "reading_frequency": float(self.reading_frequency_hz)}


@dataclass(frozen=True, kw_only=True, slots=True)
class OpenDriveMapSpec:
    """The MAP-track pseudo-sensor giving ``{'opendrive': xodr_text}`` (source of the georeference)."""

    id: str = "opendrive"
    reading_frequency_hz: float = 1.0

    def __post_init__(self) -> None:
        """Check the id and a positive reading frequency."""
        if not self.id or not self.reading_frequency_hz > 0.0:
            raise ValueError("OpenDriveMapSpec needs a non-empty id and reading_frequency_hz > 0 (e.g. 1.0)")

    def to_leaderboard(self) -> dict[str, Any]:
        """The leaderboard sensor dict (reading_frequency is required by leaderboard 2.0/2.1)."""
        return {"type": OPENDRIVE_MAP, "id": self.id, "reading_frequency": float(self.reading_frequency_hz)}


def _pose(spec: _PosedSensorSpec) -> dict[str, float]:
    return {
        "x": float(spec.x_m),
        "y": float(spec.y_m),
        "z": float(spec.z_m),
        "roll": float(spec.roll_deg),
        "pitch": float(spec.pitch_deg),
        "yaw": float(spec.yaw_deg),
    }


# AutoVLA's CARLA results come from a model fine-tuned on Bench2Drive data, whose front camera is 1600x900,
# FOV 70 at (0.80, 0.0, 1.60); the views below keep that mount, FOV and 16:9 aspect so the geometry the model
# sees matches training. 1024x576 instead of 1600x900 saves render and conversion time and is still larger
# than the model input (AutoVLA's CARLA budget 28*28*384 px gives ~728x392), so frames are only downscaled.
FRONT_CAMERA = CameraSpec()
FRONT_LEFT_CAMERA = CameraSpec(id="rgb_front_left", view="front_left", x_m=0.27, y_m=-0.55, yaw_deg=-55.0)
FRONT_RIGHT_CAMERA = CameraSpec(id="rgb_front_right", view="front_right", x_m=0.27, y_m=0.55, yaw_deg=55.0)


@dataclass(frozen=True, kw_only=True, slots=True)
class RigConfig:
    """The whole rig; validated with the leaderboard's rules for ``track`` when constructed."""

    cameras: tuple[CameraSpec, ...] = (FRONT_CAMERA,)
    gnss: GnssSpec | None = field(default_factory=GnssSpec)
    imu: ImuSpec | None = field(default_factory=ImuSpec)
    speedometer: SpeedometerSpec | None = field(default_factory=SpeedometerSpec)
    opendrive_map: OpenDriveMapSpec | None = None
    track: Track = "SENSORS"
    rear_axle_offset_m: float = 1.4  # actor origin -> rear axle of vehicle.lincoln.mkz_2020

    def __post_init__(self) -> None:
        """Reject an empty camera list, duplicate view names and anything ``validate_sensors`` rejects."""
        if not self.cameras:
            raise ValueError("RigConfig.cameras is empty; the VLA needs at least one camera (e.g. FRONT_CAMERA)")
        views = Counter(camera.view for camera in self.cameras)
        duplicated = sorted(view for view, count in views.items() if count > 1)
        if duplicated:
            raise ValueError(f"RigConfig.cameras: view names {duplicated} are used twice; each view needs one camera")
        if not 0.0 <= self.rear_axle_offset_m < 5.0:
            raise ValueError(f"RigConfig.rear_axle_offset_m={self.rear_axle_offset_m} must be in [0, 5) metres")
        validate_sensors(self.to_leaderboard(), self.track)

    def to_leaderboard(self) -> list[dict[str, Any]]:
        """The list ``AutonomousAgent.sensors()`` returns: cameras first, then gnss, imu, speedometer, map."""
        others = (self.gnss, self.imu, self.speedometer, self.opendrive_map)
        return [camera.to_leaderboard() for camera in self.cameras] + [
            spec.to_leaderboard() for spec in others if spec is not None
        ]

    @property
    def camera_ids(self) -> tuple[str, ...]:
        """Camera ids in rig order (the keys of ``input_data`` and of ``FrameBuffer``)."""
        return tuple(camera.id for camera in self.cameras)

    @property
    def views(self) -> dict[str, str]:
        """Camera id -> prompt view name."""
        return {camera.id: camera.view for camera in self.cameras}


def default_rig(*, use_side_cameras: bool = False, track: Track = "SENSORS") -> RigConfig:
    """AutoVLA's CARLA rig: the front camera (plus Bench2Drive's +/-55 deg side views), GNSS, IMU, speed."""
    cameras = (FRONT_CAMERA, FRONT_LEFT_CAMERA, FRONT_RIGHT_CAMERA) if use_side_cameras else (FRONT_CAMERA,)
    opendrive = OpenDriveMapSpec() if track.startswith("MAP") else None
    return RigConfig(cameras=cameras, opendrive_map=opendrive, track=track)
