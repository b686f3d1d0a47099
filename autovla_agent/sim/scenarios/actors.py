"""Scenario actors: props, parked and scripted vehicles and bicycles of the route scenarios, with their boxes.

Each actor has a blueprint (CARLA's ``type_id`` and a box: length, width, height in metres, as its bounding box)
and one of three behaviours, as scenario_runner drives its actors:

* ``static``: a prop or a hand-braked vehicle where it was spawned;
* ``constant``: ``ConstantVelocityAgent`` / ``KeepVelocity``: the target speed at once along its path, ignoring
  everything (the leaderboard's adversaries with ``ignore_vehicles`` and ``ignore_traffic_lights``);
* ``follow``: ``BasicAgent``-like: the target speed along its path, braking for whatever box (ego, traffic,
  scenario actors, pedestrians) stands in its lane ahead.

Moving actors follow a ``LanePath`` at a lateral offset; at its end they stop (hand brake) or are removed.
Ids start at ``ACTOR_ID_BASE + 1`` (ego 0, traffic 1..N, pedestrians from 10001). World frame, SI units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from autovla_agent.sim.scenarios.geometry import LanePath

__all__ = ["ACTOR_ID_BASE", "BLUEPRINTS", "Blueprint", "ScenarioActor", "ScenarioActors"]

ACTOR_ID_BASE = 20000
Mode = Literal["static", "constant", "follow"]
_FOLLOW_ACCEL_MPS2 = 2.0
_FOLLOW_DECEL_MPS2 = 6.0  # BasicAgent's emergency stop brakes about this hard
_FOLLOW_MIN_GAP_M = 2.5
_FOLLOW_HEADWAY_S = 1.0
_CORRIDOR_MARGIN_M = 0.2


@dataclass(frozen=True, slots=True)
class Blueprint:
    """A CARLA blueprint as the embedded world draws and scores it: type id, kind, box (m) and colour (RGB)."""

    type_id: str
    kind: Literal["vehicle", "bicycle", "prop"]
    length_m: float
    width_m: float
    height_m: float
    color_rgb: tuple[int, int, int]


BLUEPRINTS: dict[str, Blueprint] = {
    b.type_id: b
    for b in (
        Blueprint("static.prop.constructioncone", "prop", 0.4, 0.4, 0.7, (235, 110, 20)),
        Blueprint("static.prop.trafficwarning", "prop", 2.2, 1.0, 2.4, (240, 190, 30)),
        Blueprint("static.prop.warningaccident", "prop", 0.7, 0.5, 1.2, (220, 40, 40)),
        Blueprint("static.prop.warningconstruction", "prop", 0.7, 0.5, 1.2, (240, 150, 20)),
        Blueprint("static.prop.vendingmachine", "prop", 0.9, 1.0, 1.9, (180, 30, 40)),
        Blueprint("vehicle.dodge.charger_police_2020", "vehicle", 5.0, 2.1, 1.55, (30, 40, 120)),
        Blueprint("vehicle.ford.ambulance", "vehicle", 6.4, 2.4, 2.5, (235, 235, 230)),
        Blueprint("vehicle.carlamotors.firetruck", "vehicle", 8.6, 2.8, 3.2, (200, 25, 25)),
        Blueprint("vehicle.bh.crossbike", "bicycle", 1.5, 0.6, 1.6, (40, 140, 60)),
        Blueprint("vehicle.diamondback.century", "bicycle", 1.7, 0.6, 1.6, (60, 60, 170)),
        Blueprint("vehicle.gazelle.omafiets", "bicycle", 1.8, 0.6, 1.6, (150, 110, 50)),
        Blueprint("vehicle.lincoln.mkz_2020", "vehicle", 4.9, 2.1, 1.5, (90, 95, 105)),
        Blueprint("vehicle.tesla.model3", "vehicle", 4.8, 2.2, 1.5, (200, 200, 205)),
        Blueprint("vehicle.audi.tt", "vehicle", 4.2, 2.0, 1.4, (160, 30, 30)),
        Blueprint("vehicle.nissan.patrol_2021", "vehicle", 5.6, 2.2, 1.9, (50, 70, 60)),
        Blueprint("vehicle.mercedes.coupe_2020", "vehicle", 4.8, 2.1, 1.4, (25, 25, 30)),
    )
}
CARS = ("vehicle.lincoln.mkz_2020", "vehicle.tesla.model3", "vehicle.audi.tt", "vehicle.nissan.patrol_2021",
        "vehicle.mercedes.coupe_2020")  # fmt: skip
EMERGENCY = ("vehicle.ford.ambulance", "vehicle.carlamotors.firetruck", "vehicle.dodge.charger_police_2020")
BICYCLES = ("vehicle.bh.crossbike", "vehicle.diamondback.century", "vehicle.gazelle.omafiets")


@dataclass(slots=True, eq=False)
class ScenarioActor:
    """One actor: blueprint, pose (box centre, world frame), behaviour and, for moving ones, its path."""

    actor_id: int
    blueprint: Blueprint
    x_m: float
    y_m: float
    yaw_rad: float
    mode: Mode = "static"
    path: LanePath | None = None
    s_m: float = 0.0
    right_m: float = 0.0  # lateral offset from the path, + right
    speed_mps: float = 0.0
    target_speed_mps: float = 0.0
    end_s_m: float = math.inf  # past this arc length the actor stops or is removed
    at_end: Literal["stop", "remove"] = "stop"
    alive: bool = True
    blocks_route: bool = False  # an obstacle a driver has to go round (the expert may overtake it)
    detect_m: float = 20.0  # ``follow``: how far ahead it looks
    tags: set[str] = field(default_factory=set)

    def place(self) -> None:
        """Pose from the path position (moving actors)."""
        if self.path is not None:
            self.x_m, self.y_m, self.yaw_rad = self.path.pose_at(self.s_m, self.right_m)


class ScenarioActors:
    """Every scenario actor of a route run (alive or removed), in spawn order; ``step`` moves them."""

    def __init__(self) -> None:
        self.actors: list[ScenarioActor] = []

    def __len__(self) -> int:
        return sum(a.alive for a in self.actors)

    def spawn(self, type_id: str, pose: tuple[float, float, float], **kwargs: object) -> ScenarioActor:
        """Add an actor of blueprint ``type_id`` at ``pose`` (x_m, y_m, yaw_rad); ``kwargs``: its other fields."""
        actor = ScenarioActor(ACTOR_ID_BASE + len(self.actors) + 1, BLUEPRINTS[type_id], *pose, **kwargs)
        actor.place()
        self.actors.append(actor)
        return actor

    def spawn_on_path(
        self, type_id: str, path: LanePath, s_m: float, mode: Mode, speed_mps: float, **kwargs: object
    ) -> ScenarioActor:
        """A moving actor at arc length ``s_m`` of ``path`` (its box centre), heading along it."""
        actor = self.spawn(type_id, (0.0, 0.0, 0.0), path=path, s_m=s_m, mode=mode, target_speed_mps=speed_mps,
                           **kwargs)  # fmt: skip
        if mode == "constant":
            actor.speed_mps = speed_mps
        return actor

    def alive(self) -> list[ScenarioActor]:
        """The actors not removed, in spawn order."""
        return [a for a in self.actors if a.alive]

    def boxes(self) -> tuple[np.ndarray, ...]:
        """(ids, x, y, yaw, speed, length, width, height, static, colour (N, 3)) of the alive actors."""
        live = self.alive()
        ids = np.array([a.actor_id for a in live], np.int64)
        cols = [np.array([getattr(a, k) for a in live], np.float64) for k in ("x_m", "y_m", "yaw_rad", "speed_mps")]
        size = [np.array([getattr(a.blueprint, k) for a in live], np.float64) for k in ("length_m", "width_m",
                                                                                        "height_m")]  # fmt: skip
        static = np.array([a.blueprint.kind == "prop" for a in live], bool)
        color = np.array([a.blueprint.color_rgb for a in live], np.uint8).reshape(-1, 3)
        return (ids, *cols, *size, static, color)

    def step(self, dt_s: float, obstacles: tuple[np.ndarray, ...]) -> None:
        """Advance moving actors by ``dt_s``; ``obstacles``: (x, y, yaw, length, width, ids) of every other box."""
        for a in self.actors:
            if not a.alive or a.mode == "static" or a.path is None:
                continue
            if a.mode == "constant":
                a.speed_mps = a.target_speed_mps
            else:
                gap = self._gap_ahead_m(a, obstacles)
                a.speed_mps = max(0.0, a.speed_mps + _follow_accel(a.speed_mps, a.target_speed_mps, gap) * dt_s)
            a.s_m += a.speed_mps * dt_s
            if a.s_m >= min(a.end_s_m, a.path.length_m):
                a.s_m = min(a.end_s_m, a.path.length_m)
                if a.at_end == "remove":
                    a.alive = False
                else:
                    a.mode, a.speed_mps = "static", 0.0
            a.place()

    def _gap_ahead_m(self, a: ScenarioActor, obstacles: tuple[np.ndarray, ...]) -> float:
        """Distance from the front of ``a`` to the first box reaching into its lane corridor ahead (inf: none)."""
        ox, oy, oyaw, olen, owid, oid = obstacles
        mine = [b for b in self.alive() if b is not a]
        if mine:
            ox = np.concatenate([ox, [b.x_m for b in mine]])
            oy = np.concatenate([oy, [b.y_m for b in mine]])
            oyaw = np.concatenate([oyaw, [b.yaw_rad for b in mine]])
            olen = np.concatenate([olen, [b.blueprint.length_m for b in mine]])
            owid = np.concatenate([owid, [b.blueprint.width_m for b in mine]])
        if len(ox) == 0:
            return math.inf
        near = np.hypot(ox - a.x_m, oy - a.y_m) < a.detect_m + a.blueprint.length_m + 10.0
        if not near.any():
            return math.inf
        half_len = 0.5 * a.blueprint.length_m
        pts = a.path.points_ahead(a.s_m + half_len, a.detect_m, 1.0)
        # the corridor follows the path at the actor's lateral offset
        ahead = np.arange(len(pts), dtype=np.float64)
        heading = np.arctan2(*np.gradient(pts, axis=0)[:, ::-1].T) if len(pts) > 1 else np.array([a.yaw_rad])
        pts = pts + a.right_m * np.stack([np.sin(heading), -np.cos(heading)], -1)
        x, y, yaw, ln, wd = (v[near] for v in (ox, oy, oyaw, olen, owid))
        dx, dy = pts[:, None, 0] - x[None], pts[:, None, 1] - y[None]
        c, s = np.cos(yaw)[None], np.sin(yaw)[None]
        lon, lat = np.abs(dx * c + dy * s), np.abs(dy * c - dx * s)
        reach = 0.5 * a.blueprint.width_m + _CORRIDOR_MARGIN_M
        hit = ((lon < 0.5 * ln[None] + reach) & (lat < 0.5 * wd[None] + reach)).any(axis=1)
        return float(ahead[np.argmax(hit)]) if hit.any() else math.inf


def _follow_accel(v: float, v0: float, gap_m: float) -> float:
    """IDM acceleration towards ``v0`` behind a standing obstacle ``gap_m`` ahead (inf: free road), clamped."""
    free = 1.0 - (v / max(v0, 0.1)) ** 4
    inter = 0.0
    if math.isfinite(gap_m):
        s_star = _FOLLOW_MIN_GAP_M + v * _FOLLOW_HEADWAY_S + v * v / (2.0 * math.sqrt(_FOLLOW_ACCEL_MPS2 * 3.0))
        inter = (s_star / max(gap_m, 0.1)) ** 2
    return float(np.clip(_FOLLOW_ACCEL_MPS2 * (free - inter), -_FOLLOW_DECEL_MPS2, _FOLLOW_ACCEL_MPS2))
