"""Route densification over the lane topology and the agent's global plan.

A ``RouteSpec`` (parsed from a route file by ``route_files.py``, CARLA coordinates) is densified: ``densify_route``
searches the town's lane graph between consecutive keypoints (Dijkstra over lane successors, as CARLA's
``GlobalRoutePlanner`` with ``hop_resolution=1.0`` used by the leaderboard's ``interpolate_trajectory``) and
returns a ``DenseRoute`` of ~1 m samples with ``RoadOption``s in the internal WORLD frame (x east, y north =
-y_carla, yaw CCW rad). ``global_plan`` turns it into the ``(gps_plan, world_plan)`` pair the leaderboard passes
to ``agent.set_global_plan``; ``downsample_route`` is the leaderboard's own down-sampling semantics.
"""

from __future__ import annotations

import enum
import heapq
import importlib.util
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autovla_agent.sensors import frames
from autovla_agent.sim.world.route_files import ObstacleSpec, RouteError, RouteSpec
from autovla_agent.sim.world.town import Town

logger = logging.getLogger(__name__)

HOP_M = 1.0  # dense route spacing (the leaderboard's GlobalRoutePlanner hop_resolution)
TURN_STRAIGHT_MAX_RAD = math.radians(35.0)  # heading change through a junction below which it is STRAIGHT
LANE_CHANGE_AHEAD_M = 5.0  # a lane change lands this far ahead on the target lane
MAX_KEYPOINT_OFFSET_M = 3.0  # a keypoint farther than this outside its nearest driving lane is off the road

__all__ = ["DenseRoute", "RoadOption", "densify_route", "downsample_route", "downsampled_plan", "global_plan"]


class _RoadOption(enum.IntEnum):
    """CARLA's ``agents.navigation.local_planner.RoadOption`` values (same names and values)."""

    VOID = -1
    LEFT = 1
    RIGHT = 2
    STRAIGHT = 3
    LANEFOLLOW = 4
    CHANGELANELEFT = 5
    CHANGELANERIGHT = 6


def _road_option_class() -> Any:
    """CARLA's own RoadOption when the ``agents`` package is importable (agents comparing by identity), else ours."""
    if importlib.util.find_spec("agents") is not None:
        try:
            from agents.navigation.local_planner import RoadOption as CarlaRoadOption

            if {m.name: m.value for m in CarlaRoadOption} == {m.name: m.value for m in _RoadOption}:
                return CarlaRoadOption
        except Exception:  # noqa: BLE001 - a broken foreign package must not break the runner
            logger.debug("agents.navigation.local_planner not usable; using the built-in RoadOption")
    return _RoadOption


RoadOption = _road_option_class()
_LANE_CHANGES = (RoadOption.CHANGELANELEFT, RoadOption.CHANGELANERIGHT)


@dataclass(frozen=True, slots=True, eq=False)
class DenseRoute:
    """A densified route (~``HOP_M`` spacing), internal world frame; all arrays have N rows.

    ``options`` holds the ``RoadOption`` of each point; ``lanes`` the town lane index it lies on; ``s_m`` the
    cumulative distance along the route.
    """

    route_id: str
    town: str
    xy_world_m: np.ndarray  # (N, 2)
    yaw_world_rad: np.ndarray  # (N,)
    z_m: np.ndarray  # (N,)
    options: tuple[Any, ...]  # RoadOption per point
    lanes: np.ndarray  # (N,) int
    s_m: np.ndarray  # (N,)
    obstacles: tuple[ObstacleSpec, ...] = ()

    @property
    def name(self) -> str:
        """The leaderboard's route name, ``RouteScenario_<id>``."""
        return f"RouteScenario_{self.route_id}"

    @property
    def length_m(self) -> float:
        """Route length in metres."""
        return float(self.s_m[-1])

    def __len__(self) -> int:
        return int(self.xy_world_m.shape[0])

    def transforms(self) -> list[Any]:
        """The points as ``carla.Transform`` (CARLA coordinates: y and yaw flipped), like the leaderboard's route."""
        import carla

        xy_c = frames.world_to_carla_xy(self.xy_world_m)
        x_c, y_c = xy_c[:, 0], xy_c[:, 1]
        yaw_c = frames.world_yaw_rad_to_carla_deg(self.yaw_world_rad)
        return [
            carla.Transform(carla.Location(float(x), float(y), float(z)), carla.Rotation(yaw=float(yaw)))
            for x, y, z, yaw in zip(np.asarray(x_c), np.asarray(y_c), self.z_m, np.asarray(yaw_c), strict=True)
        ]

    def distance_to_route(self, xy_world_m: np.ndarray, start: int = 0, stop: int | None = None) -> float:
        """Distance in metres from a point (2,) to the route polyline between points ``start`` and ``stop``."""
        pts = self.xy_world_m[start : (len(self) if stop is None else stop)]
        p = np.asarray(xy_world_m, dtype=np.float64)
        if len(pts) == 1:
            return float(np.hypot(*(p - pts[0])))
        a, ab = pts[:-1], np.diff(pts, axis=0)
        t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab**2).sum(1), 1e-12), 0.0, 1.0)
        return float(np.min(np.hypot(*(a + ab * t[:, None] - p).T)))


# ----- densification -----
LaneGraph = dict[int, dict[int, tuple[float, str]]]  # lane -> {next lane: (cost m, "follow"|"left"|"right")}


def _lane_graph(town: Town) -> LaneGraph:
    """Directed lane graph: successor edges (cost = successor length) and lane-change edges (a little more)."""
    graph = getattr(town, "_route_graph", None)
    if graph is not None:
        return graph
    graph = {}
    for ln in town.lanes:
        edges = {nxt: (town.lanes[nxt].length_m, "follow") for nxt in ln.successors}
        for nb, kind in ((ln.left_neighbor, "left"), (ln.right_neighbor, "right")):
            if nb >= 0:
                edges[nb] = (LANE_CHANGE_AHEAD_M + town.lanes[nb].length_m, kind)
        graph[ln.index] = edges
    town._route_graph = graph  # cached on the town: the graph is a pure function of it
    return graph


def _dijkstra(graph: LaneGraph, source: int, target: int) -> tuple[float, list[int]] | None:
    """Cheapest lane path ``source`` -> ``target`` (cost in metres, lanes) or None; ties broken by lane index."""
    best = {source: 0.0}
    previous: dict[int, int] = {}
    heap = [(0.0, source)]
    while heap:
        cost, lane = heapq.heappop(heap)
        if lane == target:
            path = [lane]
            while path[-1] != source:
                path.append(previous[path[-1]])
            return cost, path[::-1]
        if cost > best.get(lane, math.inf):
            continue
        for nxt, (weight, _) in sorted(graph[lane].items()):
            c = cost + weight
            if c < best.get(nxt, math.inf):
                best[nxt] = c
                previous[nxt] = lane
                heapq.heappush(heap, (c, nxt))
    return None


def _localize(town: Town, spec: RouteSpec, i: int) -> tuple[int, float]:
    """Lane index and arc length of keypoint ``i`` (CARLA's get_waypoint picks the lane, as the leaderboard)."""
    import carla

    x, y, z = spec.keypoints_carla_m[i]
    wp = town.map.get_waypoint(carla.Location(x, y, z), project_to_road=True, lane_type=carla.LaneType.Driving)
    xy = frames.carla_to_world_xy((x, y))
    where = f"route {spec.route_id} keypoint {i} (carla x={x:.1f}, y={y:.1f})"
    if wp is None:
        raise RouteError(f"{where} is off the road network of {town.name}: no driving lane")
    try:
        lane = town.lane_index(wp.road_id, wp.section_id, wp.lane_id)
    except KeyError:
        raise RouteError(f"{where} projects onto a lane outside {town.name}'s driving topology") from None
    lp = town.project(lane, xy)
    off = lp.distance_m - 0.5 * float(wp.lane_width)
    if off > MAX_KEYPOINT_OFFSET_M:
        raise RouteError(f"{where} is off the road network of {town.name}: {off:.1f} m outside the nearest lane")
    return lane, lp.s_m


def _lane_path(town: Town, graph: LaneGraph, a: tuple[int, float], b: tuple[int, float], where: str) -> list:
    """Pieces ``(lane, s_from, s_to, kind)`` from position ``a`` to ``b`` along the shortest lane path."""
    (la, sa), (lb, sb) = a, b
    if la == lb and sb >= sa - 1e-6:
        return [(la, sa, sb, "follow")]
    best: tuple[float, list[int]] | None = None
    for nxt, (weight, _) in sorted(graph[la].items()):  # leave lane a (also when b lies behind a on it)
        found = _dijkstra(graph, nxt, lb)
        if found is None:
            continue
        cost, path = found[0] + weight, found[1]
        if best is None or cost < best[0]:
            best = (cost, [la, *path])
    if best is None:
        raise RouteError(f"{where}: no lane path in {town.name} leads from lane {la} to lane {lb}")
    nodes = best[1]
    pieces, s_cur = [], sa
    for cur, nxt in zip(nodes[:-1], nodes[1:], strict=True):
        kind = graph[cur][nxt][1]
        if kind == "follow":
            pieces.append((cur, s_cur, town.lanes[cur].length_m, "follow"))
            s_cur = 0.0
        else:  # lane change: a sample on this lane, then continue on the neighbour a little ahead
            pieces.append((cur, s_cur, s_cur, kind))
            s_cur = min(s_cur + LANE_CHANGE_AHEAD_M, town.lanes[nxt].length_m)
    pieces.append((lb, s_cur, sb, "follow"))
    return pieces


def _turn_option(town: Town, incoming_yaw: float, group: list[int]) -> Any:
    """RoadOption of a run of junction lanes: STRAIGHT under 35 degrees of heading change, else LEFT/RIGHT."""
    out_yaw = float(town.lanes[group[-1]].yaw_rad[-1])
    dev = (out_yaw - incoming_yaw + math.pi) % (2 * math.pi) - math.pi
    if abs(dev) < TURN_STRAIGHT_MAX_RAD:
        return RoadOption.STRAIGHT
    return RoadOption.LEFT if dev > 0 else RoadOption.RIGHT  # CCW (internal frame) is a left turn


def densify_route(town: Town, spec: RouteSpec, hop_m: float = HOP_M) -> DenseRoute:
    """Densify a route over the lane topology (~``hop_m`` samples, RoadOptions), as ``interpolate_trajectory``."""
    if spec.town != town.name:
        raise RouteError(f"route {spec.route_id} is on {spec.town}, not on {town.name}")
    graph = _lane_graph(town)
    located = [_localize(town, spec, i) for i in range(len(spec.keypoints_carla_m))]
    pieces: list[tuple[int, float, float, str]] = []
    for i in range(len(located) - 1):
        where = f"route {spec.route_id} keypoints {i}->{i + 1}"
        pieces.extend(_lane_path(town, graph, located[i], located[i + 1], where))
    xy_parts, yaw_parts, lane_parts, kinds = [], [], [], []
    for lane, s0, s1, kind in pieces:
        n = max(int(math.floor((s1 - s0) / hop_m + 1e-9)) + 1, 1)
        s = s0 + hop_m * np.arange(n)
        xy, yaw = town.lanes[lane].interpolate(s)
        xy_parts.append(xy)
        yaw_parts.append(yaw)
        lane_parts.append(np.full(n, lane))
        kinds.extend([kind] * n)
    lane_end, s_end = located[-1]
    xy_end, yaw_end = town.lanes[lane_end].interpolate(s_end)
    xy = np.vstack([*xy_parts, xy_end[None]])
    yaw = np.concatenate([*yaw_parts, [float(yaw_end)]])
    lanes = np.concatenate([*lane_parts, [lane_end]])
    kinds.append("follow")
    # drop duplicates where pieces meet (a lane end is its successor's start)
    keep = np.concatenate([[True], np.hypot(*np.diff(xy, axis=0).T) > 0.25 * hop_m])
    keep[-1] = True  # the exact end point stays; the sample just before it goes if it nearly coincides
    kept = np.nonzero(keep[:-1])[0]
    if len(kept) > 1 and np.hypot(*(xy[-1] - xy[kept[-1]])) <= 0.25 * hop_m:
        keep[kept[-1]] = False
    xy, yaw, lanes = xy[keep], yaw[keep], lanes[keep]
    kinds = [k for k, kk in zip(kinds, keep, strict=True) if kk]
    options = _road_options(town, yaw, lanes, kinds)
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
    z = np.zeros(len(xy))  # shipped towns are flat
    return DenseRoute(
        spec.route_id,
        spec.town,
        xy,
        np.arctan2(np.sin(yaw), np.cos(yaw)),
        z,
        tuple(options),
        lanes.astype(np.int64),
        s,
        spec.obstacles,
    )


def _road_options(town: Town, yaw: np.ndarray, lanes: np.ndarray, kinds: list[str]) -> list[Any]:
    """LANEFOLLOW on roads, the turn decision inside junctions, CHANGELANE* at lane changes."""
    options: list[Any] = [RoadOption.LANEFOLLOW] * len(lanes)
    i = 0
    while i < len(lanes):
        if kinds[i] in ("left", "right"):
            options[i] = RoadOption.CHANGELANELEFT if kinds[i] == "left" else RoadOption.CHANGELANERIGHT
            if i + 1 < len(lanes):
                options[i + 1] = options[i]  # the landing point carries the option too (two points per change)
            i += 2
            continue
        if town.lanes[int(lanes[i])].is_junction:
            j = i
            while j < len(lanes) and town.lanes[int(lanes[j])].is_junction:
                j += 1
            group = list(dict.fromkeys(int(k) for k in lanes[i:j]))
            incoming = float(yaw[i - 1]) if i > 0 else float(town.lanes[group[0]].yaw_rad[0])
            opt = _turn_option(town, incoming, group)
            options[i:j] = [opt] * (j - i)
            i = j
            continue
        i += 1
    return options


# ----- global plan -----
def downsample_route(route: list[tuple[Any, Any]], sample_factor: float) -> list[int]:
    """Indices the leaderboard keeps from a dense ``[(transform, RoadOption)]`` route (``sample_factor`` metres).

    Kept: the first point, every lane-change point, every point whose option differs from the previous one
    (unless the previous one was a lane change), a point whenever the distance accumulated over skipped points
    exceeds ``sample_factor``, and the last point. Distance accumulates only over points not kept.
    """
    kept: list[int] = []
    travelled = 0.0
    previous = None
    last = len(route) - 1
    for i, (transform, option) in enumerate(route):
        is_change = option in _LANE_CHANGES
        option_switch = option != previous and previous not in _LANE_CHANGES
        if is_change or option_switch or travelled > sample_factor or i == last:
            kept.append(i)
            travelled = 0.0
        else:
            a, b = transform.location, route[i - 1][0].location
            travelled += math.sqrt((a.x - b.x) ** 2 + (a.y - b.y) ** 2 + (a.z - b.z) ** 2)
        previous = option
    return kept


def global_plan(town: Town, route: DenseRoute) -> tuple[list[tuple[dict[str, float], Any]], list[tuple[Any, Any]]]:
    """The dense ``(gps_plan, world_plan)`` the leaderboard passes to ``agent.set_global_plan`` (it down-samples).

    ``world_plan``: ``[(carla.Transform, RoadOption)]`` in CARLA coordinates; ``gps_plan``: ``[({'lat', 'lon',
    'z'}, RoadOption)]`` through the leaderboard's ``_location_to_gps`` with the town's georeference.
    """
    transforms = route.transforms()
    gps = []
    for t, opt in zip(transforms, route.options, strict=True):
        lat, lon = frames.location_to_gnss(t.location.x, t.location.y, town.lat_ref, town.lon_ref)
        gps.append(({"lat": float(lat), "lon": float(lon), "z": float(t.location.z)}, opt))
    return gps, list(zip(transforms, route.options, strict=True))


def downsampled_plan(town: Town, route: DenseRoute, sample_factor: float = 200.0) -> tuple[list, list]:
    """What a leaderboard agent stores after ``set_global_plan``: the plan at ``downsample_route`` indices."""
    gps, world = global_plan(town, route)
    ids = downsample_route(world, sample_factor)
    return [gps[i] for i in ids], [world[i] for i in ids]
