"""Scenario flows of vehicles (``ActorFlow``, ``OppositeActorFlow``) and the background-traffic requests of scenarios.

A flow spawns a vehicle at its source whenever the last one spawned is farther than a distance drawn from its
interval, drives it along the source-to-sink path and removes it at the sink, as scenario_runner's behaviours:
``ActorFlow`` vehicles hold their speed and ignore every vehicle (until one of them hits the ego: then all of
them brake for what is ahead, as ``stop_constant_velocity``), ``OppositeActorFlow`` vehicles are ``BasicAgent``s
at the speed limit that stop for what is in their lane. The background-traffic helpers stand in for the
Background Activity's scenario requests (``LeaveSpaceInFront``, ``RemoveRoadLane``, ``HandleJunctionScenario``):
they move background vehicles out of the way, to free spawn slots near the ego. World frame, SI units.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autovla_agent.sim.scenarios.actors import CARS, ScenarioActor
from autovla_agent.sim.scenarios.config import ScenarioSetupError
from autovla_agent.sim.scenarios.geometry import LanePath, wp_pose

__all__ = ["ActorFlow", "clear_lanes", "clear_route_ahead", "waypoint_path"]

_SINK_DISTANCE_M = 2.0
_MIN_REMOVE_DISTANCE_M = 12.0  # background vehicles this close to the ego are left where they are


def waypoint_path(source_wp: Any, sink_wp: Any, max_length_m: float = 400.0) -> LanePath:
    """The lane path from ``source_wp`` to ``sink_wp`` in 1 m steps of ``next(1)[0]`` (straight at junctions).

    ScenarioSetupError when the sink is not reached within ``max_length_m``.
    """
    sink = np.array(wp_pose(sink_wp)[:2])
    cur, pts = source_wp, [wp_pose(source_wp)[:2]]
    for _ in range(int(max_length_m)):
        options = cur.next(1.0)
        if not options:
            break
        yaw = cur.transform.rotation.yaw
        cur = min(options, key=lambda w: abs((w.transform.rotation.yaw - yaw + 180.0) % 360.0 - 180.0))
        pts.append(wp_pose(cur)[:2])
        if np.hypot(*(np.array(pts[-1]) - sink)) < 1.0:
            break
    else:
        raise ScenarioSetupError("the flow's sink cannot be reached from its source along the lanes")
    xy = np.array(pts, np.float64)
    if len(xy) < 2:
        raise ScenarioSetupError("the flow's source and sink coincide")
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
    return LanePath(xy, s, ())


class ActorFlow:
    """A flow of vehicles along ``path`` (see the module docstring) owned by a scenario.

    Args:
        scenario: the owning ``Scenario`` (spawns and removes the actors, seeds the draws).
        path: source (s = 0) to sink (its end).
        interval_m: (min, max) distance between spawned vehicles, drawn uniformly per vehicle.
        speed_mps: the flow's speed.
        mode: "constant" (ignore vehicles, ``ActorFlow``) or "follow" (``OppositeActorFlow``).
        detect_m: how far ahead a "follow" vehicle brakes for boxes in its lane.
    """

    def __init__(
        self,
        scenario: Any,
        path: LanePath,
        interval_m: tuple[float, float],
        speed_mps: float,
        mode: str = "constant",
        detect_m: float = 20.0,
    ) -> None:
        self.scenario = scenario
        self.path = path
        self.interval_m = interval_m
        self.speed_mps = speed_mps
        self.mode = mode
        self.detect_m = detect_m
        self.members: list[ScenarioActor] = []
        self._next_gap_m = self._draw()
        self.active = True

    def _draw(self) -> float:
        lo, hi = self.interval_m
        return float(self.scenario.rng.uniform(lo, hi))

    def update(self) -> None:
        """Remove vehicles at the sink and spawn a new one when the last is far enough from the source."""
        if not self.active:
            return
        self.members = [a for a in self.members if a.alive]
        ego_xy = self.scenario.ego_xy
        if self.mode == "constant" and any(_touches_ego(a, ego_xy, self.scenario) for a in self.members):
            for a in self.members:  # a collision: the flow stops ignoring vehicles
                a.mode = "follow"
            self.mode = "follow"
        last = self.members[-1].s_m if self.members else math.inf
        if last > self._next_gap_m:
            model = str(self.scenario.rng.choice(CARS))
            actor = self.scenario.spawn_on_path(
                model, self.path, 0.0, self.mode, self.speed_mps, end_s_m=self.path.length_m - _SINK_DISTANCE_M,
                at_end="remove", detect_m=self.detect_m,
            )  # fmt: skip
            self.members.append(actor)
            self._next_gap_m = self._draw()

    def stop(self) -> None:
        """End the flow: its vehicles are removed."""
        self.active = False
        for a in self.members:
            a.alive = False


def _touches_ego(actor: ScenarioActor, ego_xy: np.ndarray, scenario: Any) -> bool:
    """Whether an actor's box overlaps the ego's (a collision ends a flow's constant velocity)."""
    ego = scenario.world.ego
    length, width = ego.params.length_m, ego.params.width_m
    d = np.hypot(actor.x_m - ego_xy[0], actor.y_m - ego_xy[1])
    if d > 0.5 * (actor.blueprint.length_m + length) + 1.0:
        return False
    from autovla_agent.sim.world.lane_query import boxes_overlap, oriented_box_corners

    a = oriented_box_corners(actor.x_m, actor.y_m, actor.yaw_rad, actor.blueprint.length_m, actor.blueprint.width_m)
    e = oriented_box_corners(ego_xy[0], ego_xy[1], scenario.ego_yaw, length, width)
    return bool(boxes_overlap(e, a[None])[0])


# ----------------------------------------------------------------------------- background-traffic requests
def _relocate(world: Any, rows: np.ndarray) -> None:
    """Move background vehicles ``rows`` to free slots near the ego (they leave the scenario's way)."""
    traffic = world.traffic
    if len(rows) == 0:
        return
    ego_xy = np.array(world.ego.center_pose_world()[:2])
    keep = np.hypot(traffic.x_m[rows] - ego_xy[0], traffic.y_m[rows] - ego_xy[1]) >= _MIN_REMOVE_DISTANCE_M
    if keep.any():
        traffic.relocate(rows[keep], ego_xy, avoid_lanes=getattr(world, "reserved_lanes", frozenset()))


def clear_route_ahead(world: Any, distance_m: float, from_s_m: float | None = None) -> None:
    """``LeaveSpaceInFront``: background vehicles on the route lanes ahead of the ego, up to ``distance_m``, leave."""
    traffic, route = world.traffic, world.route
    if len(traffic) == 0:
        return
    ego_xy = np.array(world.ego.center_pose_world()[:2])
    if from_s_m is None:
        from_s_m = float(route.s_m[int(np.argmin(np.hypot(*(route.xy_world_m - ego_xy).T)))])
    span = (route.s_m >= from_s_m) & (route.s_m <= from_s_m + distance_m)
    lanes = np.unique(np.asarray(route.lanes)[span])
    moving = traffic.on_lane & ~traffic.parked
    on_route = moving & np.isin(traffic.lane_seq[:, 0], lanes)
    rows = np.flatnonzero(on_route)
    if len(rows):
        pts = route.xy_world_m[span]
        d = np.sqrt(((np.stack([traffic.x_m[rows], traffic.y_m[rows]], -1)[:, None] - pts[None]) ** 2).sum(-1))
        rows = rows[d.min(1) < 2.5]
    _relocate(world, rows)


def clear_lanes(world: Any, lanes: set[int] | frozenset[int], only_ahead: bool = True) -> None:
    """``RemoveRoadLane`` / ``HandleJunctionScenario``: background vehicles on ``lanes`` (ahead of the ego) leave."""
    traffic = world.traffic
    if len(traffic) == 0 or not lanes:
        return
    rows = np.flatnonzero(traffic.on_lane & ~traffic.parked & np.isin(traffic.lane_seq[:, 0], sorted(lanes)))
    if only_ahead and len(rows):
        x, y, yaw = world.ego.center_pose_world()
        along = (traffic.x_m[rows] - x) * math.cos(yaw) + (traffic.y_m[rows] - y) * math.sin(yaw)
        rows = rows[along > 0.0]
    _relocate(world, rows)
