"""Privileged scene state of the embedded world in the ego frame: drivable lanes, route centreline, agents, facts.

Reads E1's ``Town`` (lanes), ``DenseRoute`` and ``WorldSnapshot`` (world frame: x east, y north, yaw CCW) and
writes everything relative to the ego's rear axle, rounded to centimetres, polygons simplified to 0.1 m so a
row stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely

from autovla_agent.contract import NavCommand
from autovla_agent.sensors import frames
from autovla_agent.training.reasoning import SceneFacts
from autovla_agent.training.schema import AgentBox, SceneState


def _rings(geometry: Any) -> list[np.ndarray]:
    """Exterior rings (n, 2) of every polygon in a (multi)polygon or collection."""
    if geometry.is_empty:
        return []
    if geometry.geom_type == "Polygon":
        return [np.asarray(geometry.exterior.coords)[:-1]]
    return [ring for part in getattr(geometry, "geoms", []) for ring in _rings(part)]


def _rounded(points: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(round(float(v), 2) for v in p) for p in points)


class TownGeometry:
    """Driving-lane polygons of a town in an STRtree (world frame), simplified once per town."""

    def __init__(self, town: Any, simplify_m: float = 0.1) -> None:
        self.town = town
        polys = [shapely.simplify(town.lane_polygon(i), simplify_m) for i in range(len(town.lanes))]
        self.polygons = np.array(polys, dtype=object)
        self.tree = shapely.STRtree(self.polygons)

    def drivable_near(self, ego_pose_world: np.ndarray, radius_m: float) -> tuple[tuple[tuple[float, ...], ...], ...]:
        """Lane polygons within a square of half-side ``radius_m`` around the ego, clipped, in the ego frame."""
        x, y = float(ego_pose_world[0]), float(ego_pose_world[1])
        box = shapely.box(x - radius_m, y - radius_m, x + radius_m, y + radius_m)
        out = []
        for idx in self.tree.query(box, predicate="intersects"):
            for ring in _rings(shapely.intersection(self.polygons[idx], box)):
                if len(ring) >= 3:
                    out.append(_rounded(frames.world_to_ego(ring, ego_pose_world)))
        return tuple(out)


def route_index_near(route: Any, xy_world_m: np.ndarray, hint: int = 0, window: int = 200) -> int:
    """Index of the dense-route point nearest a position, searched around ``hint``."""
    lo, hi = max(hint - window, 0), min(hint + window, len(route.xy_world_m))
    d = np.linalg.norm(route.xy_world_m[lo:hi] - np.asarray(xy_world_m)[None], axis=1)
    return lo + int(np.argmin(d))


def centerline_near(
    route: Any, index: int, ego_pose_world: np.ndarray, behind_m: float = 20.0, ahead_m: float = 100.0
) -> tuple[tuple[float, ...], ...]:
    """The route's centre line from ``behind_m`` before to ``ahead_m`` after point ``index``, in the ego frame."""
    s = route.s_m
    lo = int(np.searchsorted(s, s[index] - behind_m))
    hi = int(np.searchsorted(s, s[index] + ahead_m)) + 1
    pts = route.xy_world_m[lo:hi]
    if len(pts) < 2:
        pts = route.xy_world_m[max(0, index - 1) : index + 2]
    line = shapely.simplify(shapely.LineString(pts), 0.05)
    return _rounded(frames.world_to_ego(np.asarray(line.coords), ego_pose_world))


def agents_near(vehicles: Any, ego_pose_world: np.ndarray, radius_m: float) -> tuple[list[AgentBox], np.ndarray]:
    """Vehicles (``ActorArrays``, box centres) within ``radius_m`` of the ego as ego-frame boxes, and their ids."""
    if len(vehicles) == 0:
        return [], np.zeros(0, dtype=np.int64)
    xy = np.stack([vehicles.x_m, vehicles.y_m], axis=-1)
    near = np.linalg.norm(xy - np.asarray(ego_pose_world[:2])[None], axis=1) <= radius_m
    poses = frames.world_to_ego(np.stack([vehicles.x_m, vehicles.y_m, vehicles.yaw_rad], -1)[near], ego_pose_world)
    boxes = []
    for k, i in enumerate(np.nonzero(near)[0]):
        boxes.append(
            AgentBox(
                id=str(int(vehicles.ids[i])),
                kind="static" if bool(vehicles.parked[i]) else "vehicle",
                x_m=round(float(poses[k, 0]), 2),
                y_m=round(float(poses[k, 1]), 2),
                yaw_rad=round(float(poses[k, 2]), 4),
                length_m=float(vehicles.length_m[i]),
                width_m=float(vehicles.width_m[i]),
                speed_mps=round(float(vehicles.speed_mps[i]), 3),
            )
        )
    return boxes, vehicles.ids[near].astype(np.int64)


def agent_futures(
    ids: np.ndarray, log: Sequence[tuple[np.ndarray, np.ndarray]], ego_pose_world: np.ndarray
) -> dict[int, tuple[tuple[float, ...], ...]]:
    """Future box-centre poses of agents in the ego frame from a log of (ids, (N, 3) world poses) per step."""
    out: dict[int, list[np.ndarray]] = {int(i): [] for i in ids}
    for step_ids, poses in log:
        index = {int(v): k for k, v in enumerate(step_ids)}
        for agent in out:
            k = index.get(agent)
            if k is not None:  # an agent that left the world keeps its last pose in the scorer
                out[agent].append(poses[k])
    result = {}
    for agent, rows in out.items():
        if rows:
            ego = frames.world_to_ego(np.asarray(rows), ego_pose_world)
            result[agent] = tuple((round(float(a), 2), round(float(b), 2), round(float(c), 4)) for a, b, c in ego)
    return result


def scene_state(
    geometry: TownGeometry,
    route: Any,
    route_index: int,
    ego_pose_world: np.ndarray,
    agents: Sequence[AgentBox],
    radius_m: float,
) -> SceneState:
    """The ``SceneState`` of one sample (drivable lanes, route centreline, agents with their futures)."""
    drivable = geometry.drivable_near(ego_pose_world, radius_m)
    if not drivable:
        # Off every lane (should not happen on a route): a tiny polygon under the ego keeps the row valid.
        drivable = (((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)),)
    return SceneState(
        drivable_area_ego_m=drivable,
        centerline_ego_m=centerline_near(route, route_index, ego_pose_world),
        agents=tuple(agents),
        dt_s=0.1,
    )


def _count_same_direction(town: Any, lane_index: int) -> int:
    lanes = town.lanes
    count, seen = 1, {lane_index}
    for side in ("left_neighbor", "right_neighbor"):
        cur = lane_index
        while True:
            nxt = getattr(lanes[cur], side)
            if nxt < 0 or nxt in seen:
                break
            seen.add(nxt)
            count += 1
            cur = nxt
    return count


def scene_facts(
    town: Any,
    route: Any,
    route_index: int,
    speed_mps: float,
    command: NavCommand,
    agents: Sequence[AgentBox],
    expert_reason: str = "",
    junction_lookahead_m: float = 40.0,
) -> SceneFacts:
    """Privileged facts for the reasoning text: junction status and distance, lanes, agents, the expert's reason."""
    lane = int(route.lanes[route_index])
    in_junction = bool(town.lanes[lane].is_junction)
    ahead = None
    if not in_junction:
        s0 = route.s_m[route_index]
        hi = int(np.searchsorted(route.s_m, s0 + junction_lookahead_m))
        for i in range(route_index, min(hi, len(route.lanes))):
            if town.lanes[int(route.lanes[i])].is_junction:
                ahead = float(route.s_m[i] - s0)
                break
    return SceneFacts(
        town=town.name,
        speed_mps=float(speed_mps),
        command=command,
        in_junction=in_junction,
        junction_ahead_m=ahead,
        lanes_same_direction=1 if in_junction else _count_same_direction(town, lane),
        agents=tuple(agents),
        expert_reason=expert_reason,
    )
