"""Where scenario actors go: scenario_runner's waypoint walks on CARLA's map, lane paths and junction topology.

Set-up geometry queries ``carla.Waypoint``s of the town's offline ``carla.Map`` exactly as scenario_runner does
(``next``/``previous`` in 1 m steps, ``get_right_lane`` until a sidewalk...); the results are converted to the
internal WORLD frame (x east, y north = -y_carla, yaw CCW radians) on arrival, as everything else in the world.
Moving actors follow ``LanePath``s: polylines through consecutive town lanes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autovla_agent.sensors import frames
from autovla_agent.sim.scenarios.config import ScenarioSetupError

__all__ = [
    "LanePath",
    "direction_of",
    "displaced",
    "junction_entries",
    "junction_on_route",
    "lane_of",
    "lane_path",
    "move_forward",
    "path_back",
    "right_of",
    "route_index_near",
    "side_lanes_until",
    "straight_through",
    "time_to_arrival_s",
    "waypoint_at",
    "wp_pose",
]


def wp_pose(wp: Any) -> tuple[float, float, float]:
    """World-frame (x_m, y_m, yaw_rad) of a ``carla.Waypoint`` (or anything with a ``transform``)."""
    loc, rot = wp.transform.location, wp.transform.rotation
    x, y = frames.carla_to_world_xy((loc.x, loc.y))
    return float(x), float(y), float(frames.carla_yaw_deg_to_world_rad(rot.yaw))


def right_of(yaw_rad: float) -> np.ndarray:
    """Unit vector (2,) to the right of a heading, world frame."""
    return np.array([math.sin(yaw_rad), -math.cos(yaw_rad)])


def displaced(pose: tuple[float, float, float], right_m: float, forward_m: float = 0.0) -> tuple[float, float, float]:
    """A pose moved ``right_m`` to its right (negative: left) and ``forward_m`` ahead, heading kept."""
    x, y, yaw = pose
    r = right_of(yaw)
    return x + right_m * r[0] + forward_m * math.cos(yaw), y + right_m * r[1] + forward_m * math.sin(yaw), yaw


def waypoint_at(town: Any, x_carla_m: float, y_carla_m: float, z_m: float = 0.0) -> Any:
    """CARLA's driving-lane waypoint nearest a CARLA location (``map.get_waypoint``); ScenarioSetupError if none."""
    import carla

    wp = town.map.get_waypoint(carla.Location(x_carla_m, y_carla_m, z_m), project_to_road=True)
    if wp is None:
        raise ScenarioSetupError(f"no driving lane near (x={x_carla_m:.1f}, y={y_carla_m:.1f})")
    return wp


def lane_of(town: Any, wp: Any) -> int:
    """Town lane index of a waypoint's lane; ScenarioSetupError when it is not a lane of the driving topology."""
    try:
        return int(town.lane_index(wp.road_id, wp.section_id, wp.lane_id))
    except KeyError:
        raise ScenarioSetupError(f"road {wp.road_id} lane {wp.lane_id} is not a driving lane of the town") from None


def move_forward(wp: Any, distance_m: float, stop_at_junction: bool = True) -> Any:
    """``_move_waypoint_forward``: 1 m steps along ``next(1)[0]``, stopping before a junction (or a dead end)."""
    moved, cur = 0.0, wp
    while moved < distance_m:
        nxt = cur.next(1.0)
        if not nxt or (stop_at_junction and nxt[0].is_junction):
            break
        cur = nxt[0]
        moved += 1.0
    return cur


def side_lanes_until(wp: Any, side: str, stop: tuple[str, ...]) -> tuple[Any, Any, bool]:
    """Walk ``get_right_lane``/``get_left_lane`` from ``wp`` while the lane type is not in ``stop``.

    Returns (the last lane walked over, the first lane whose type is in ``stop`` or None, whether a parking lane was
    crossed); a lane of another direction counts like any other, as scenario_runner walks them.
    """
    last, parking = wp, False
    while True:
        nxt = last.get_right_lane() if side == "right" else last.get_left_lane()
        if nxt is None:
            return last, None, parking
        if str(nxt.lane_type) in stop:
            return last, nxt, parking
        parking |= str(nxt.lane_type) == "Parking"
        last = nxt


@dataclass(frozen=True, slots=True, eq=False)
class LanePath:
    """A polyline (K, 2) through consecutive lanes (world frame), its arc length (K,) and the lanes it uses."""

    xy_m: np.ndarray
    s_m: np.ndarray
    lanes: tuple[int, ...]

    @property
    def length_m(self) -> float:
        """Length in metres."""
        return float(self.s_m[-1])

    def pose_at(self, s_m: float, right_m: float = 0.0) -> tuple[float, float, float]:
        """World pose at arc length ``s_m`` (clamped), moved ``right_m`` to the right of the path."""
        s = float(np.clip(s_m, 0.0, self.length_m))
        i = int(np.clip(np.searchsorted(self.s_m, s, side="right") - 1, 0, len(self.s_m) - 2))
        a, b = self.xy_m[i], self.xy_m[i + 1]
        t = (s - self.s_m[i]) / max(self.s_m[i + 1] - self.s_m[i], 1e-9)
        yaw = math.atan2(b[1] - a[1], b[0] - a[0])
        p = a + t * (b - a)
        return displaced((float(p[0]), float(p[1]), yaw), right_m)

    def points_ahead(self, s_m: float, distance_m: float, step_m: float = 1.0) -> np.ndarray:
        """Path points (K, 2) from ``s_m`` to ``s_m + distance_m`` every ``step_m`` (clamped to the path)."""
        s = np.clip(np.arange(s_m, s_m + distance_m + 1e-9, step_m), 0.0, self.length_m)
        return np.stack([np.interp(s, self.s_m, self.xy_m[:, 0]), np.interp(s, self.s_m, self.xy_m[:, 1])], -1)


def lane_path(town: Any, lanes: list[int], s_start_m: float = 0.0, extra_m: float = 0.0) -> LanePath:
    """The path along ``lanes`` from ``s_start_m`` on the first, ending ``extra_m`` into the last (all of it: inf)."""
    pts = []
    for k, lane in enumerate(lanes):
        ln = town.lanes[lane]
        lo = s_start_m if k == 0 else 0.0
        hi = min(extra_m, ln.length_m) if k == len(lanes) - 1 and math.isfinite(extra_m) else ln.length_m
        s = np.append(np.arange(lo, hi, 1.0), hi)
        pts.append(ln.interpolate(s)[0])
    xy = np.concatenate(pts)
    keep = np.concatenate([[True], np.hypot(*np.diff(xy, axis=0).T) > 0.05])
    xy = xy[keep]
    if len(xy) < 2:
        raise ScenarioSetupError(f"the lane path through lanes {lanes} is too short")
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
    return LanePath(xy, s, tuple(lanes))


def path_back(town: Any, lane: int, s_m: float, distance_m: float) -> tuple[list[int], float]:
    """Lanes and start arc length ``distance_m`` behind (lane, s) along predecessors, stopping at a junction."""
    lanes, s, left = [lane], s_m, distance_m
    while left > s:
        preds = [p for p in town.lanes[lanes[0]].predecessors if not town.lanes[p].is_junction]
        if not preds:
            return lanes, 0.0
        left -= s
        lanes.insert(0, preds[0])
        s = town.lanes[preds[0]].length_m
    return lanes, s - left


def route_index_near(route: Any, xy_world_m: np.ndarray) -> tuple[int, float]:
    """Index of the dense route point nearest a world point, and the distance to it (m)."""
    d = np.hypot(*(np.asarray(route.xy_world_m) - np.asarray(xy_world_m)).T)
    k = int(np.argmin(d))
    return k, float(d[k])


def junction_on_route(town: Any, route: Any, start_index: int) -> tuple[int, list[int], int, int]:
    """The first junction the route enters after ``start_index``: (entry lane, its junction lanes, exit lane, id).

    ScenarioSetupError when the route meets no junction after that point.
    """
    lanes = [int(v) for v in np.asarray(route.lanes)[start_index:]]
    runs = [v for k, v in enumerate(lanes) if k == 0 or v != lanes[k - 1]]
    for k, lane in enumerate(runs):
        if town.lanes[lane].is_junction and k > 0:
            inside = []
            j = k
            while j < len(runs) and town.lanes[runs[j]].is_junction:
                inside.append(runs[j])
                j += 1
            if j >= len(runs):
                break
            return runs[k - 1], inside, runs[j], town.lanes[lane].junction_id
    raise ScenarioSetupError("the route meets no junction after the trigger point")


def junction_entries(town: Any, junction_id: int) -> list[int]:
    """Road lanes leading into the junction (``get_junction_topology``'s entries), sorted by index."""
    entries = set()
    for ln in town.lanes:
        if ln.is_junction and ln.junction_id == junction_id:
            entries.update(p for p in ln.predecessors if not town.lanes[p].is_junction)
    return sorted(entries)


def direction_of(reference_yaw_rad: float, other_yaw_rad: float) -> str:
    """``filter_junction_wp_direction``: 'ref', 'right', 'opposite' or 'left' of a lane heading vs the reference.

    scenario_runner compares CARLA yaws (clockwise degrees), so the world-frame difference is negated first.
    """
    diff = (-math.degrees(other_yaw_rad - reference_yaw_rad)) % 360.0
    if diff > 330.0:
        return "ref"
    if diff > 225.0:
        return "right"
    if diff > 135.0:
        return "opposite"
    if diff > 30.0:
        return "left"
    return "ref"


def straight_through(town: Any, entry_lane: int) -> list[int]:
    """The junction lanes straight ahead of a road lane (``generate_target_waypoint(turn=0)``) and the exit lane."""
    options = [k for k in town.lanes[entry_lane].successors if town.lanes[k].is_junction]
    if not options:
        raise ScenarioSetupError(f"lane {entry_lane} does not lead into a junction")
    yaw0 = float(town.lanes[entry_lane].yaw_rad[-1])

    def chain(k: int) -> list[int]:
        out = [k]
        while town.lanes[out[-1]].is_junction and town.lanes[out[-1]].successors and len(out) < 6:
            out.append(town.lanes[out[-1]].successors[0])
        return out

    def turn(c: list[int]) -> float:
        return abs(float(frames.wrap_angle_rad(town.lanes[c[-1]].yaw_rad[0] - yaw0)))

    best = min((chain(k) for k in options), key=turn)
    if town.lanes[best[-1]].is_junction:
        raise ScenarioSetupError(f"no road lane after the junction ahead of lane {entry_lane}")
    return best


def time_to_arrival_s(ego_xy: np.ndarray, speed_mps: float, target_xy: np.ndarray) -> float:
    """``InTimeToArrivalToLocation``'s time: straight-line distance over the current speed (inf when standing)."""
    distance = float(np.hypot(*(np.asarray(ego_xy) - np.asarray(target_xy))))
    return distance / speed_mps if speed_mps > 1e-3 else math.inf
