"""Leaderboard-format fixtures for the CARLA agent tests: routes, a kinematic feed and evaluator-style loading.

No CARLA server: routes are ``carla.Transform`` lists with GPS made by the leaderboard's formula
(``frames.location_to_gnss``), sensor data is produced in the leaderboard's layouts (BGRA camera, [lat, lon,
alt] GNSS, 7-number IMU with a compass clockwise from north, ``{'speed': v}``), and the ego moves by a
kinematic bicycle in CARLA's own left-handed frame, so every sign conversion of the agent is exercised.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import carla
import numpy as np
import pytest

from autovla_agent.sensors import frames
from autovla_agent.sim.world.routes import RoadOption

REPO = Path(__file__).resolve().parents[2]
AGENT_FILE = REPO / "autovla_agent" / "carla_agent.py"
LAT_REF_DEG, LON_REF_DEG = 41.50159462977912, 2.103768410783638  # Town15's georeference (not the 0/0 shortcut)


def load_agent_class(agent_path: Path = AGENT_FILE) -> type:
    """Import an agent file exactly as leaderboard_evaluator.py does and return its entry-point class."""
    module_name = os.path.basename(str(agent_path)).split(".")[0]
    sys.path.insert(0, os.path.dirname(str(agent_path)))
    try:
        module = importlib.import_module(module_name)
    finally:
        sys.path.pop(0)
    return getattr(module, module.get_entry_point())


def l_route(
    start_xy: tuple[float, float] = (10.0, 20.0),
    straight_m: float = 40.0,
    radius_m: float = 15.0,
    exit_m: float = 40.0,
    turn: str = "left",
    rotate_deg: float = 0.0,
) -> tuple[list, list]:
    """A dense (1 m) CARLA route: east, a 90 degree turn, then straight; returns (gps_plan, world_plan).

    CARLA is left-handed: heading east is yaw 0, a LEFT turn ends heading north = -y_carla = yaw -90.
    ``rotate_deg`` turns the whole route about its start by that CARLA yaw (clockwise seen from above).
    """
    sign = -1.0 if turn == "left" else 1.0
    pts: list[tuple[float, float, float, object]] = []
    x0, y0 = start_xy
    for s in np.arange(0.0, straight_m, 1.0):
        pts.append((x0 + s, y0, 0.0, RoadOption.LANEFOLLOW))
    cx, cy = x0 + straight_m, y0 + sign * radius_m
    option = RoadOption.LEFT if turn == "left" else RoadOption.RIGHT
    n_arc = int(math.ceil(0.5 * math.pi * radius_m))
    for k in range(n_arc):
        a = 0.5 * math.pi * k / n_arc
        pts.append((cx + radius_m * math.sin(a), cy - sign * radius_m * math.cos(a), sign * math.degrees(a), option))
    ex, ey = cx + radius_m, cy
    for s in np.arange(0.0, exit_m, 1.0):
        pts.append((ex, ey + sign * s, sign * 90.0, RoadOption.LANEFOLLOW))
    world, gps = [], []
    c, s_ = math.cos(math.radians(rotate_deg)), math.sin(math.radians(rotate_deg))
    pts = [
        (x0 + c * (x - x0) - s_ * (y - y0), y0 + s_ * (x - x0) + c * (y - y0), yaw + rotate_deg, opt)
        for x, y, yaw, opt in pts
    ]
    for x, y, yaw, opt in pts:
        world.append((carla.Transform(carla.Location(x=x, y=y, z=0.0), carla.Rotation(yaw=yaw)), opt))
        lat, lon = frames.location_to_gnss(x, y, LAT_REF_DEG, LON_REF_DEG)
        gps.append(({"lat": lat, "lon": lon, "z": 0.0}, opt))
    return gps, world


@dataclass
class Feed:
    """The ego in CARLA coordinates and the leaderboard ``input_data`` its sensors would give each tick.

    Trap switches: ``flip_latitude`` (carla 0.9.16's sign), ``nan_compass_ticks`` (first N ticks NaN),
    ``speed_none_ticks`` (ticks with ``{'speed': None}``), ``drop_camera_ticks`` (camera missing on them).
    """

    sensors: list[dict]
    x_m: float
    y_m: float
    yaw_deg: float
    speed_mps: float = 0.0
    dt_s: float = 0.05
    flip_latitude: bool = False
    gnss_noise_deg: float = 0.0
    nan_compass_ticks: int = 0
    speed_none_ticks: frozenset[int] = frozenset()
    drop_camera_ticks: frozenset[int] = frozenset()
    seed: int = 0
    frame: int = 0
    rng: np.random.Generator = field(init=False)
    images: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.images = {}
        for s in self.sensors:
            if s["type"] == "sensor.camera.rgb":
                self.images[s["id"]] = self.rng.integers(0, 255, (s["height"], s["width"], 4), dtype=np.uint8)

    @property
    def timestamp_s(self) -> float:
        return self.frame * self.dt_s

    @property
    def world_xy(self) -> np.ndarray:
        return frames.carla_to_world_xy([self.x_m, self.y_m])

    def input_data(self) -> dict:
        """This tick's ``{id: (frame, data)}`` in the leaderboard's layouts."""
        tick = self.frame
        data = {}
        for s in self.sensors:
            sid, kind = s["id"], s["type"]
            if kind == "sensor.camera.rgb":
                if tick not in self.drop_camera_ticks:
                    data[sid] = (tick, self.images[sid])
            elif kind == "sensor.other.gnss":
                y = -self.y_m if self.flip_latitude else self.y_m
                lat, lon = frames.location_to_gnss(self.x_m, y, LAT_REF_DEG, LON_REF_DEG)
                noise = self.rng.normal(0.0, self.gnss_noise_deg, 2) if self.gnss_noise_deg else (0.0, 0.0)
                data[sid] = (tick, np.array([lat + noise[0], lon + noise[1], 0.0], dtype=np.float64))
            elif kind == "sensor.other.imu":
                compass = (math.radians(self.yaw_deg) + math.pi / 2.0) % (2.0 * math.pi)
                if tick < self.nan_compass_ticks:
                    compass = float("nan")
                data[sid] = (tick, np.array([0.0, 0.0, 9.81, 0.0, 0.0, 0.0, compass], dtype=np.float64))
            elif kind == "sensor.speedometer":
                data[sid] = (tick, {"speed": None if tick in self.speed_none_ticks else self.speed_mps})
        return data

    def apply(self, control: carla.VehicleControl, wheelbase_m: float = 2.875, max_steer_rad: float = 0.6) -> None:
        """Advance one tick with a kinematic bicycle in CARLA's frame (positive steer turns right = clockwise)."""
        accel = 3.5 * control.throttle - 8.0 * control.brake - 0.05 * self.speed_mps
        self.speed_mps = max(0.0, self.speed_mps + accel * self.dt_s)
        yaw_rate = self.speed_mps * math.tan(control.steer * max_steer_rad) / wheelbase_m
        self.yaw_deg += math.degrees(yaw_rate * self.dt_s)
        self.x_m += self.speed_mps * math.cos(math.radians(self.yaw_deg)) * self.dt_s
        self.y_m += self.speed_mps * math.sin(math.radians(self.yaw_deg)) * self.dt_s
        self.frame += 1


def assert_valid_control(control: object) -> None:
    """A carla.VehicleControl of plain Python floats in range, finite, no gear games."""
    assert isinstance(control, carla.VehicleControl), type(control)
    for name, low in (("steer", -1.0), ("throttle", 0.0), ("brake", 0.0)):
        value = getattr(control, name)
        assert type(value) is float, (name, type(value))
        assert math.isfinite(value) and low <= value <= 1.0, (name, value)
    assert control.manual_gear_shift is False and control.reverse is False and control.hand_brake is False


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random action model folder, built once per test session (~1 s)."""
    from autovla_agent.policy.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("carla_tiny_model") / "model")
