"""A stand-in for the leaderboard's ``AutonomousAgent`` used when the leaderboard is not importable.

The CARLA Leaderboard's base class (``leaderboard.autoagents.autonomous_agent``) needs the leaderboard and
scenario_runner sources on ``PYTHONPATH``. The embedded simulator and the tests run the same agent class
without them, so this module re-implements the base class's public contract: the same attributes
(``track``, ``_global_plan``, ``_global_plan_world_coord``, ``sensor_interface``, ``wallclock_t0``), the
``Track`` enum, ``set_global_plan`` with the leaderboard's 200 m route downsampling, ``__call__`` reading the
sensor interface, calling ``run_step`` and forcing ``manual_gear_shift = False``, ``get_ros_version() -> -1``
and ``destroy``. Nothing here imports ``carla``; route points only need ``.location.x/.y/.z``.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

#: Maximum distance between kept route points in the leaderboard's ``set_global_plan`` (metres).
LEADERBOARD_DOWNSAMPLE_M = 200.0

_LANE_CHANGES = ("CHANGELANELEFT", "CHANGELANERIGHT")
# RoadOption integer values of CARLA's agents package, for plans that carry plain ints.
_ROAD_OPTION_NAMES = {
    -1: "VOID",
    1: "LEFT",
    2: "RIGHT",
    3: "STRAIGHT",
    4: "LANEFOLLOW",
    5: "CHANGELANELEFT",
    6: "CHANGELANERIGHT",
}


@dataclasses.dataclass
class VehicleControl:
    """Stand-in for ``carla.VehicleControl`` where the carla client is not installed (same fields, CARLA signs)."""

    throttle: float = 0.0
    steer: float = 0.0  # CARLA sign: positive turns right
    brake: float = 0.0
    hand_brake: bool = False
    reverse: bool = False
    manual_gear_shift: bool = False
    gear: int = 0


class Track(enum.Enum):
    """The leaderboard tracks; values match ``leaderboard.autoagents.autonomous_agent.Track``."""

    SENSORS = "SENSORS"
    MAP = "MAP"
    SENSORS_QUALIFIER = "SENSORS_QUALIFIER"
    MAP_QUALIFIER = "MAP_QUALIFIER"


def road_option_name(option: Any) -> str:
    """Name of a RoadOption of any origin (CARLA agents, the embedded sim, a plain int or str) in upper case."""
    name = getattr(option, "name", None)
    if isinstance(name, str):
        return name.upper()
    if isinstance(option, int):
        return _ROAD_OPTION_NAMES.get(option, "VOID")
    if isinstance(option, str):
        return option.upper()
    return "VOID"


def _distance_m(a: Any, b: Any) -> float:
    """Euclidean distance between two transforms' locations (metres)."""
    la, lb = a.location, b.location
    return math.sqrt((la.x - lb.x) ** 2 + (la.y - lb.y) ** 2 + (la.z - lb.z) ** 2)


def downsample_route(route: Sequence[tuple[Any, Any]], max_distance_m: float) -> list[int]:
    """Indices of the route points the leaderboard keeps: its ``downsample_route`` rule, re-implemented.

    Keeps the first point, every lane-change point, every RoadOption change (unless it leaves a lane change),
    a point whenever the distance accumulated since the last kept point exceeds ``max_distance_m``, and the
    last point. ``route`` is a sequence of ``(transform, road_option)``.
    """
    kept: list[int] = []
    prev: str | None = None
    dist_m = 0.0
    for i, (transform, option) in enumerate(route):
        cur = road_option_name(option)
        at_break = prev is None or cur in _LANE_CHANGES or (cur != prev and prev not in _LANE_CHANGES)
        if at_break or dist_m > max_distance_m or i == len(route) - 1:
            kept.append(i)
            dist_m = 0.0
        else:
            dist_m += _distance_m(transform, route[i - 1][0])
        prev = cur
    return kept


class LocalSensorInterface:
    """The latest reading of every sensor, in the leaderboard's ``input_data`` layout ``{id: (frame, data)}``.

    Mirrors the method names of ``leaderboard.envs.sensor_interface.SensorInterface`` without its blocking
    queue: a simulator pushes readings with ``update_sensor`` and the agent's ``__call__`` reads them back.
    """

    def __init__(self) -> None:
        self._sensors_objects: dict[str, Any] = {}
        self._data: dict[str, tuple[int, Any]] = {}
        self.frame = 0
        self.timestamp_s = 0.0

    def register_sensor(self, tag: str, sensor_type: str, sensor: Any) -> None:
        """Register a sensor under a unique id; a duplicate id is an error, as in the leaderboard."""
        if tag in self._sensors_objects:
            raise ValueError(f"Duplicated sensor tag [{tag}]")
        self._sensors_objects[tag] = sensor

    def update_sensor(self, tag: str, data: Any, frame: int, timestamp_s: float | None = None) -> None:
        """Store the newest reading of ``tag`` taken at simulation ``frame`` (and time ``timestamp_s``)."""
        self._data[tag] = (frame, data)
        self.frame = max(self.frame, frame)
        if timestamp_s is not None:
            self.timestamp_s = float(timestamp_s)

    def get_data(self, frame: int | None = None) -> dict[str, tuple[int, Any]]:
        """All current readings ``{id: (frame, data)}``; ``frame`` is accepted for API compatibility."""
        del frame
        return dict(self._data)


class AgentBase:
    """Compatible replacement of the leaderboard's ``AutonomousAgent`` (same attributes and call protocol)."""

    def __init__(self, carla_host: str = "localhost", carla_port: int = 2000, debug: bool = False) -> None:
        self.track = Track.SENSORS
        self._global_plan: list[tuple[dict[str, float], Any]] | None = None
        self._global_plan_world_coord: list[tuple[Any, Any]] | None = None
        self.sensor_interface = LocalSensorInterface()
        self.wallclock_t0: datetime.datetime | None = None

    def setup(self, path_to_conf_file: str) -> None:
        """Initialise the agent from its configuration; subclasses override and set ``self.track``."""

    def sensors(self) -> list[dict[str, Any]]:
        """The sensor suite as leaderboard sensor dicts; none by default."""
        return []

    def run_step(self, input_data: Mapping[str, tuple[int, Any]], timestamp: float) -> Any:
        """One control step; subclasses override and return a vehicle control."""
        raise NotImplementedError("subclasses implement run_step(input_data, timestamp)")

    def destroy(self) -> None:
        """Release per-route resources; nothing to release here."""

    def __call__(self, input_data: Mapping[str, tuple[int, Any]] | None = None, timestamp: float | None = None) -> Any:
        """Run one tick as the leaderboard's ``__call__`` does; explicit data and time may be passed instead.

        Without arguments the readings and the simulation time come from ``sensor_interface``.
        """
        if input_data is None:
            input_data = self.sensor_interface.get_data()
        if timestamp is None:
            timestamp = self.sensor_interface.timestamp_s
        now = datetime.datetime.now()
        if self.wallclock_t0 is None:
            self.wallclock_t0 = now
        wall_s = (now - self.wallclock_t0).total_seconds()
        logger.debug("agent tick: game time %.3f s, wall %.3f s", timestamp, wall_s)
        control = self.run_step(input_data, timestamp)
        control.manual_gear_shift = False
        return control

    @staticmethod
    def get_ros_version() -> int:
        """-1: not a ROS agent (the evaluator checks this on the class)."""
        return -1

    def set_global_plan(
        self, global_plan_gps: Sequence[Any], global_plan_world_coord: Sequence[tuple[Any, Any]]
    ) -> None:
        """Store the route downsampled as the leaderboard does (points at most ~200 m apart).

        ``_global_plan`` gets GPS ``({'lat', 'lon', 'z'}, option)`` pairs, ``_global_plan_world_coord`` the
        ``(transform, option)`` pairs.
        """
        ids = downsample_route(global_plan_world_coord, LEADERBOARD_DOWNSAMPLE_M)
        self._global_plan_world_coord = [(global_plan_world_coord[i][0], global_plan_world_coord[i][1]) for i in ids]
        self._global_plan = [global_plan_gps[i] for i in ids]
