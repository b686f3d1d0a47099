"""CARLA towns built offline with ``carla.Map(name, xodr)``, lane geometry precomputed as numpy arrays.

A ``Town`` wraps CARLA's own map engine (waypoints, topology, lane widths, markings, geolocation) and
precomputes, once per process and town, every driving lane of the topology as polylines in the internal WORLD
frame (x east, y north = -y_carla, yaw CCW radians): centre line, left/right borders, width, arc length,
markings, successors and same-direction neighbours. The arrays serve rendering, traffic, route search and
scoring queries (point in a driving lane, lane polygon of a position) without touching carla in hot loops.
Six towns ship with the package (Town01, 02, 04, 06, 07, 10HD); any other CARLA town loads from a folder of
``<name>.xodr`` files (a CARLA release's ``CarlaUE4/Content/Carla/Maps/OpenDrive``). Elevation is ignored: the
towns are treated as flat (Town04's bridges and Town07's hills included).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from autovla_agent.paths import MAPS_DIR
from autovla_agent.sensors import frames

logger = logging.getLogger(__name__)

LANE_STEP_M = 1.0  # sampling step of lane centre lines (the leaderboard's hop resolution)
_EPS_M = 1e-3  # points on a shared lane edge count as inside despite float rounding

__all__ = ["LANE_STEP_M", "Lane", "LanePoint", "Town", "UnknownTownError", "available_towns", "find_map"]


class UnknownTownError(ValueError):
    """A town name with no OpenDRIVE file in the given map folders nor among the shipped ones."""


CARLA_MAPS_HINT = "CARLA_ROOT/CarlaUE4/Content/Carla/Maps/OpenDrive"  # where a CARLA release keeps its towns' xodr


def available_towns(maps_dirs: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Names of the towns in ``maps_dirs`` and shipped with the package (``maps/<name>.xodr``), sorted."""
    folders = [Path(d).expanduser() for d in maps_dirs] + [MAPS_DIR]
    return tuple(sorted({p.stem for d in folders for p in d.glob("*.xodr")}))


def find_map(name: str, maps_dirs: tuple[str, ...] = ()) -> Path:
    """The ``<name>.xodr`` of the first of ``maps_dirs`` that has it, else the shipped one.

    Raises:
        UnknownTownError: naming every folder looked in and the towns found there.
    """
    folders = [Path(d).expanduser() for d in maps_dirs] + [MAPS_DIR]
    for folder in folders:
        path = folder / f"{name}.xodr"
        if path.is_file():
            return path
    looked = ", ".join(str(f) for f in folders)
    raise UnknownTownError(
        f"unknown town {name!r}: no {name}.xodr in {looked}; the embedded runner ships "
        f"{list(available_towns())}; with CARLA installed, pass --maps-dir {CARLA_MAPS_HINT} for its other towns"
    )


@dataclass(frozen=True, slots=True, eq=False)
class Lane:
    """One driving lane of the topology (a road-section lane or a junction connection), world frame.

    Arrays have M >= 2 rows sampled about every ``LANE_STEP_M`` along the direction of travel.
    Markings are CARLA ``LaneMarkingType`` names ("Broken", "Solid", "NONE"...) and colour names.
    """

    index: int
    road_id: int
    section_id: int
    lane_id: int
    is_junction: bool
    junction_id: int
    xy_m: np.ndarray  # (M, 2) centre line
    yaw_rad: np.ndarray  # (M,) heading of travel
    s_m: np.ndarray  # (M,) arc length from the lane start
    width_m: np.ndarray  # (M,)
    left_xy_m: np.ndarray  # (M, 2) left border (seen in the direction of travel)
    right_xy_m: np.ndarray  # (M, 2)
    left_marking: str
    left_color: str
    right_marking: str
    right_color: str
    successors: tuple[int, ...]
    predecessors: tuple[int, ...]
    left_neighbor: int  # same-direction lane to the left a lane change may enter, -1 if none
    right_neighbor: int
    outer_sides: tuple[tuple[str, float, float], ...]  # (lane type, inner m, outer m) right of the right border

    @property
    def length_m(self) -> float:
        """Length of the centre line in metres."""
        return float(self.s_m[-1])

    def polygon_xy_m(self) -> np.ndarray:
        """Closed border polygon (2M, 2): left border forward, right border backward."""
        return np.concatenate([self.left_xy_m, self.right_xy_m[::-1]], axis=0)

    def interpolate(self, s_m: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Centre-line points (..., 2) and headings (...) at arc lengths ``s_m`` (clamped to the lane)."""
        s = np.clip(np.asarray(s_m, dtype=np.float64), 0.0, self.length_m)
        x = np.interp(s, self.s_m, self.xy_m[:, 0])
        y = np.interp(s, self.s_m, self.xy_m[:, 1])
        yaw = np.interp(s, self.s_m, np.unwrap(self.yaw_rad))
        return np.stack([x, y], axis=-1), yaw


@dataclass(frozen=True, slots=True)
class LanePoint:
    """A position projected onto a lane: lane index, arc length, signed lateral offset (+ left) and heading."""

    lane: int
    s_m: float
    lateral_m: float
    yaw_rad: float
    distance_m: float  # |lateral| to the centre line, or to the nearest centre point past the lane's ends


def _wp_xy_yaw(wp) -> tuple[float, float, float]:
    """World-frame (x, y, yaw_rad) of a carla waypoint."""
    loc, rot = wp.transform.location, wp.transform.rotation
    x, y = frames.carla_to_world_xy((loc.x, loc.y))
    return float(x), float(y), float(frames.carla_yaw_deg_to_world_rad(rot.yaw))


def _own_samples(key: tuple[int, int, int], wps: list) -> list:
    """Samples of one lane up to the first that belongs to another lane section (kept: it is where this one ends).

    ``next_until_lane_end`` runs on through a road's next section when the lane keeps its road (Town04/06/07
    junction roads): without the cut such a lane would overlap its own successor.
    """
    for i, w in enumerate(wps[:-1]):
        if (w.road_id, w.section_id, w.lane_id) != key:
            return wps[: i + 1]
    return wps


def _outer_sides(wp) -> tuple[tuple[str, float, float], ...]:
    """Non-driving lanes (shoulder, sidewalk...) right of a driving lane: (type, inner, outer) beyond its border."""
    sides: list[tuple[str, float, float]] = []
    offset = 0.0
    cur = wp.get_right_lane()
    while cur is not None and len(sides) < 4 and str(cur.lane_type) != "Driving":
        width = float(cur.lane_width)
        if width > 0.01:
            sides.append((str(cur.lane_type), offset, offset + width))
        offset += width
        cur = cur.get_right_lane()
    return tuple(sides)


class Town:
    """A shipped CARLA town: ``carla.Map`` built offline plus precomputed lane arrays and spatial queries.

    Use ``Town.load(name)`` (cached per process). Attributes: ``name``, ``opendrive_text``, ``map`` (the
    ``carla.Map``), ``lat_ref``/``lon_ref`` (georeference, leaderboard default 42.0/2.0 when absent), ``lanes``
    (tuple of ``Lane``), ``bounds_xy_m`` (xmin, ymin, xmax, ymax of every lane border, world frame).
    """

    def __init__(self, name: str, opendrive_text: str) -> None:
        import carla  # only the sim and the adapters import carla

        self.name = name
        self.opendrive_text = opendrive_text
        self.map = carla.Map(name, opendrive_text)
        self.lat_ref, self.lon_ref = frames.parse_georeference(opendrive_text)
        self.lanes = self._build_lanes()
        self._lane_by_key = {(ln.road_id, ln.section_id, ln.lane_id): ln.index for ln in self.lanes}
        self._build_index()
        borders = np.concatenate([np.concatenate([ln.left_xy_m, ln.right_xy_m]) for ln in self.lanes])
        self.bounds_xy_m = (*borders.min(axis=0).tolist(), *borders.max(axis=0).tolist())
        logger.info("town %s: %d driving lanes, %.0f m of lanes", name, len(self.lanes), self.total_length_m)

    # ----- construction -----
    @staticmethod
    @functools.cache
    def load(name: str, maps_dirs: tuple[str, ...] = ()) -> Town:
        """Return town ``name`` from ``maps_dirs`` or the shipped maps (cached); ``UnknownTownError`` if none has it."""
        return Town(name, find_map(name, tuple(maps_dirs)).read_text(encoding="utf-8"))

    def _build_lanes(self) -> tuple[Lane, ...]:
        """Sample every topology lane at ``LANE_STEP_M`` and link successors and same-direction neighbours."""
        entries: dict[tuple[int, int, int], object] = {}
        succ_keys: dict[tuple[int, int, int], list[tuple[int, int, int]]] = {}
        for a, b in self.map.get_topology():
            ka, kb = (a.road_id, a.section_id, a.lane_id), (b.road_id, b.section_id, b.lane_id)
            entries.setdefault(ka, a)
            succ_keys.setdefault(ka, [])
            if kb not in succ_keys[ka]:
                succ_keys[ka].append(kb)
        keys = sorted(entries)  # sorted keys make lane indices independent of carla's topology order
        index = {k: i for i, k in enumerate(keys)}
        raw = []
        for k in keys:
            wp0 = entries[k]
            wps = _own_samples(k, [wp0, *wp0.next_until_lane_end(LANE_STEP_M)])
            pts = np.array([_wp_xy_yaw(w) for w in wps])
            keep = np.concatenate([[True], np.hypot(*np.diff(pts[:, :2], axis=0).T) > 0.05])
            wps = [w for w, kk in zip(wps, keep, strict=True) if kk]
            pts = pts[keep]
            if len(wps) < 2:  # a lane shorter than the step: extend to its successor's start
                nxt = wp0.next(0.5)
                if nxt:
                    wps.append(nxt[0])
                    pts = np.vstack([pts, _wp_xy_yaw(nxt[0])])
            width = np.array([w.lane_width for w in wps], dtype=np.float64)
            raw.append((k, wp0, wps, pts, width))
        lanes = []
        preds: dict[int, list[int]] = {i: [] for i in range(len(keys))}
        for k in keys:
            for kb in succ_keys[k]:
                if kb in index:
                    preds[index[kb]].append(index[k])
        for i, (k, wp0, wps, pts, width) in enumerate(raw):
            xy, yaw = pts[:, :2], pts[:, 2]
            s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
            normal = np.stack([-np.sin(yaw), np.cos(yaw)], axis=-1)  # left of travel in a right-handed frame
            left = xy + normal * (0.5 * width)[:, None]
            right = xy - normal * (0.5 * width)[:, None]
            mid = wps[len(wps) // 2]
            lanes.append(
                Lane(
                    index=i,
                    road_id=k[0],
                    section_id=k[1],
                    lane_id=k[2],
                    is_junction=bool(wp0.is_junction),
                    junction_id=int(wp0.junction_id) if wp0.is_junction else -1,
                    xy_m=xy,
                    yaw_rad=yaw,
                    s_m=s,
                    width_m=width,
                    left_xy_m=left,
                    right_xy_m=right,
                    left_marking=str(mid.left_lane_marking.type),
                    left_color=str(mid.left_lane_marking.color),
                    right_marking=str(mid.right_lane_marking.type),
                    right_color=str(mid.right_lane_marking.color),
                    successors=tuple(index[kb] for kb in succ_keys[k] if kb in index),
                    predecessors=tuple(preds[i]),
                    left_neighbor=self._neighbor(mid, index, left=True),
                    right_neighbor=self._neighbor(mid, index, left=False),
                    outer_sides=() if wp0.is_junction else _outer_sides(mid),
                )
            )
        return tuple(lanes)

    @staticmethod
    def _neighbor(wp, index: dict, *, left: bool) -> int:
        """Index of the same-direction driving lane a lane change may enter from ``wp``, or -1."""
        allowed = str(wp.lane_change)
        if allowed not in ("Both", "Left" if left else "Right"):
            return -1
        other = wp.get_left_lane() if left else wp.get_right_lane()
        if other is None or str(other.lane_type) != "Driving" or other.lane_id * wp.lane_id <= 0:
            return -1
        return index.get((other.road_id, other.section_id, other.lane_id), -1)

    def _build_index(self) -> None:
        """Quads between consecutive border samples in an STRtree, and all centre points for nearest queries."""
        quads, owner = [], []
        for ln in self.lanes:
            left, right = ln.left_xy_m, ln.right_xy_m
            q = np.stack([left[:-1], left[1:], right[1:], right[:-1]], axis=1)  # (M-1, 4, 2)
            quads.append(q)
            owner.append(np.full(len(q), ln.index))
        self._quads = np.concatenate(quads)
        self._quad_lane = np.concatenate(owner)
        self._quad_geoms = shapely.polygons(self._quads)
        self._tree = shapely.STRtree(self._quad_geoms)
        self._pts = np.concatenate([ln.xy_m for ln in self.lanes])
        self._pts_lane = np.concatenate([np.full(len(ln.xy_m), ln.index) for ln in self.lanes])
        self.total_length_m = float(sum(ln.length_m for ln in self.lanes))

    # ----- queries (world frame) -----
    def lane_key(self, index: int) -> tuple[int, int, int]:
        """(road_id, section_id, lane_id) of lane ``index``."""
        ln = self.lanes[index]
        return ln.road_id, ln.section_id, ln.lane_id

    def lane_index(self, road_id: int, section_id: int, lane_id: int) -> int:
        """Index of the lane with this CARLA key; KeyError if it is not a driving lane of the topology."""
        return self._lane_by_key[(road_id, section_id, lane_id)]

    def in_driving_lane(self, xy_world_m: np.ndarray) -> np.ndarray:
        """Whether each point (N, 2) lies on a driving lane (junctions included); returns (N,) bool."""
        xy = np.atleast_2d(np.asarray(xy_world_m, dtype=np.float64))
        hits = self._tree.query(shapely.points(xy), predicate="dwithin", distance=_EPS_M)
        inside = np.zeros(len(xy), dtype=bool)
        inside[hits[0]] = True
        return inside

    def lanes_at(self, xy_world_m: np.ndarray) -> list[int]:
        """Indices of the driving lanes whose polygon contains the point (2,), sorted; empty off the road."""
        point = shapely.points(np.asarray(xy_world_m, dtype=np.float64))
        hits = self._tree.query(point, predicate="dwithin", distance=_EPS_M)
        return sorted({int(self._quad_lane[h]) for h in np.atleast_1d(hits)})

    def lane_polygon(self, index: int) -> shapely.Polygon:
        """The shapely polygon of lane ``index`` in the world frame (for scoring footprints)."""
        return shapely.make_valid(shapely.Polygon(self.lanes[index].polygon_xy_m()))

    def lane_polygon_at(self, xy_world_m: np.ndarray, yaw_rad: float | None = None) -> shapely.Polygon | None:
        """Polygon of the driving lane containing a point (2,), None off the lanes.

        With ``yaw_rad`` the lane whose direction is closest wins (overlapping junction lanes, wrong-way checks).
        """
        hits = self.lanes_at(xy_world_m)
        if not hits:
            return None
        if yaw_rad is not None:
            hits.sort(key=lambda i: abs(frames.wrap_angle_rad(self.project(i, xy_world_m).yaw_rad - yaw_rad)))
        return self.lane_polygon(hits[0])

    def project(self, index: int, xy_world_m: np.ndarray) -> LanePoint:
        """Project a point (2,) onto lane ``index``'s centre line."""
        ln = self.lanes[index]
        p = np.asarray(xy_world_m, dtype=np.float64)
        a, b = ln.xy_m[:-1], ln.xy_m[1:]
        ab = b - a
        seg_len2 = np.maximum((ab**2).sum(axis=1), 1e-12)
        t = np.clip(((p - a) * ab).sum(axis=1) / seg_len2, 0.0, 1.0)
        foot = a + ab * t[:, None]
        d = np.hypot(*(p - foot).T)
        k = int(np.argmin(d))
        seg = np.sqrt(seg_len2[k])
        s = float(ln.s_m[k] + t[k] * seg)
        heading = float(np.arctan2(ab[k, 1], ab[k, 0]))
        rel = p - foot[k]
        lateral = float(-np.sin(heading) * rel[0] + np.cos(heading) * rel[1])
        return LanePoint(lane=index, s_m=s, lateral_m=lateral, yaw_rad=heading, distance_m=float(d[k]))

    def locate(
        self,
        xy_world_m: np.ndarray,
        yaw_rad: float | None = None,
        max_distance_m: float = 5.0,
        max_heading_error_rad: float = np.pi / 2,
    ) -> LanePoint | None:
        """Best lane for a position (and optionally a heading): inside lanes first, else the nearest centre line.

        Among candidate lanes within ``max_distance_m`` the one with the smallest lateral distance wins, after
        dropping lanes whose heading differs from ``yaw_rad`` by more than ``max_heading_error_rad``.
        Returns None when no lane qualifies (a position off the road network).
        """
        p = np.asarray(xy_world_m, dtype=np.float64)
        d2 = ((self._pts - p) ** 2).sum(axis=1)
        near = np.unique(self._pts_lane[d2 <= (max_distance_m + LANE_STEP_M) ** 2])
        best: LanePoint | None = None
        for idx in near:
            lp = self.project(int(idx), p)
            if lp.distance_m > max_distance_m:
                continue
            if yaw_rad is not None:
                err = abs((lp.yaw_rad - yaw_rad + np.pi) % (2 * np.pi) - np.pi)
                if err > max_heading_error_rad:
                    continue
            if best is None or lp.distance_m < best.distance_m - 1e-9:
                best = lp
        return best
