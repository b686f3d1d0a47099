"""Geometry for the route criteria: oriented boxes, polylines and lane queries (hand-made lanes or CARLA's map).

Everything is in the internal WORLD frame of ``autovla_agent.sensors.frames`` (x east, y north, yaw CCW rad).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from autovla_agent.sensors import frames

__all__ = [
    "CarlaMapLanes",
    "LaneGeometry",
    "LaneQuery",
    "LaneSample",
    "PolylineLanes",
    "boxes_overlap",
    "cumulative_distance_m",
    "oriented_box_corners",
]


def oriented_box_corners(x_m: Any, y_m: Any, yaw_rad: Any, length_m: Any, width_m: Any) -> np.ndarray:
    """Corners (..., 4, 2) of boxes centred at (x, y) with heading ``yaw_rad``; front-left first, CCW."""
    x, y, yaw, hl, hw = np.broadcast_arrays(*(np.asarray(v, float) for v in (x_m, y_m, yaw_rad, length_m, width_m)))
    hl, hw = 0.5 * hl, 0.5 * hw
    local = np.stack(
        [np.stack([hl, hw], -1), np.stack([-hl, hw], -1), np.stack([-hl, -hw], -1), np.stack([hl, -hw], -1)], axis=-2
    )
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    return np.stack(
        [local[..., 0] * c - local[..., 1] * s + x[..., None], local[..., 0] * s + local[..., 1] * c + y[..., None]],
        axis=-1,
    )


def _edge_axes(corners: np.ndarray) -> np.ndarray:
    """The two edge directions (..., 2, 2) of rectangles (..., 4, 2): the separating-axis candidates."""
    e = np.stack([corners[..., 1, :] - corners[..., 0, :], corners[..., 2, :] - corners[..., 1, :]], axis=-2)
    return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


def boxes_overlap(corners_a: np.ndarray, corners_b: np.ndarray) -> np.ndarray:
    """Whether rectangle ``corners_a`` (4, 2) overlaps each of ``corners_b`` (M, 4, 2): (M,) bool (SAT test)."""
    corners_b = np.asarray(corners_b, float).reshape(-1, 4, 2)
    if corners_b.shape[0] == 0:
        return np.zeros(0, bool)
    a = np.broadcast_to(np.asarray(corners_a, float), corners_b.shape)
    axes = np.concatenate([_edge_axes(a), _edge_axes(corners_b)], axis=-2)  # (M, 4, 2)
    pa = np.einsum("mkd,mcd->mkc", axes, a)  # projections (M, axes, corners)
    pb = np.einsum("mkd,mcd->mkc", axes, corners_b)
    separated = (pa.max(-1) < pb.min(-1)) | (pb.max(-1) < pa.min(-1))
    return ~separated.any(-1)


def cumulative_distance_m(xy_m: np.ndarray) -> np.ndarray:
    """Distance along a polyline (N, 2) at each of its points: (N,), starting at 0."""
    xy_m = np.asarray(xy_m, float)
    if len(xy_m) == 0:
        return np.zeros(0)
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy_m, axis=0), axis=1))])


# ----------------------------------------------------------------------------------------------- lanes
@dataclass(frozen=True, slots=True)
class LaneSample:
    """The nearest lane-centre point of a query location (CARLA's ``map.get_waypoint`` result, reduced)."""

    distance_m: float  # from the query point to the lane-centre point
    lane_width_m: float
    yaw_rad: float  # lane driving direction at that point, world frame
    road_id: int
    lane_id: int
    is_junction: bool
    speed_limit_mps: float | None = None


class LaneQuery(Protocol):
    """What the criteria need from a map: nearest driving lane, and how far points lie off the drivable area."""

    def nearest_driving_lane(self, x_m: float, y_m: float) -> LaneSample | None:
        """The nearest driving (or parking) lane-centre point of a world-frame location, or None."""
        ...

    def outside_drivable_m(self, xy_world_m: np.ndarray) -> np.ndarray:
        """For points (K, 2): how far each lies outside the drivable lanes, 0 inside: (K,) metres."""
        ...


@dataclass(frozen=True, slots=True)
class LaneGeometry:
    """One lane as a centreline polyline (K, 2) in the world frame, in its driving direction."""

    centre_xy_m: np.ndarray
    width_m: float
    road_id: int = 0
    lane_id: int = -1
    is_junction: bool = False
    speed_limit_mps: float | None = None


class PolylineLanes:
    """A ``LaneQuery`` over explicit lane centrelines (hand-made scenes, or a town's lanes as polylines)."""

    def __init__(self, lanes: Sequence[LaneGeometry]) -> None:
        if not lanes:
            raise ValueError("PolylineLanes needs at least one lane")
        starts, ends, owner = [], [], []
        for i, lane in enumerate(lanes):
            c = np.asarray(lane.centre_xy_m, float)
            if c.ndim != 2 or c.shape[0] < 2 or c.shape[1] != 2:
                raise ValueError(f"lane {i}: centre_xy_m must be (K >= 2, 2), got {c.shape}")
            starts.append(c[:-1])
            ends.append(c[1:])
            owner.append(np.full(len(c) - 1, i))
        self.lanes = tuple(lanes)
        self._a = np.concatenate(starts)
        self._b = np.concatenate(ends)
        self._owner = np.concatenate(owner)
        self._half_w = np.array([lane.width_m / 2.0 for lane in lanes])[self._owner]

    def _distances(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances (K, S) from points (K, 2) to every segment, and the segment parameters t (K, S)."""
        ab = self._b - self._a
        ap = xy[:, None, :] - self._a[None]
        t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
        foot = self._a[None] + t[..., None] * ab[None]
        return np.linalg.norm(xy[:, None, :] - foot, axis=-1), t

    def nearest_driving_lane(self, x_m: float, y_m: float) -> LaneSample | None:
        """The nearest lane-centre point (see ``LaneQuery``)."""
        d, _ = self._distances(np.array([[x_m, y_m]], float))
        k = int(np.argmin(d[0]))
        lane = self.lanes[self._owner[k]]
        ab = self._b[k] - self._a[k]
        return LaneSample(
            float(d[0, k]),
            lane.width_m,
            float(math.atan2(ab[1], ab[0])),
            lane.road_id,
            lane.lane_id,
            lane.is_junction,
            lane.speed_limit_mps,
        )

    def outside_drivable_m(self, xy_world_m: np.ndarray) -> np.ndarray:
        """Distance outside the union of the lane strips (see ``LaneQuery``)."""
        d, _ = self._distances(np.asarray(xy_world_m, float).reshape(-1, 2))
        return np.maximum((d - self._half_w[None]).min(axis=1), 0.0)


class CarlaMapLanes:
    """A ``LaneQuery`` on CARLA's own map engine (``carla.Map`` built offline), as the leaderboard queries it.

    The nearest lane is the nearer of the nearest driving and parking lane centre (``OutsideRouteLanesTest``);
    the drivable surface for layout collisions is every driving, parking, shoulder, biking and bidirectional
    lane (sidewalks and everything beyond are layout).
    """

    def __init__(self, carla_map: Any) -> None:
        import carla  # only the sim modules import carla

        self._carla = carla
        self.map = carla_map
        lt = carla.LaneType
        self._drivable = (lt.Driving, lt.Parking, lt.Shoulder, lt.Biking, lt.Bidirectional)

    def _loc(self, x_m: float, y_m: float) -> Any:
        return self._carla.Location(x=float(x_m), y=-float(y_m), z=0.0)

    def nearest_driving_lane(self, x_m: float, y_m: float) -> LaneSample | None:
        """The nearest driving or parking lane-centre point (see ``LaneQuery``)."""
        loc = self._loc(x_m, y_m)
        best = None
        for lane_type in (self._carla.LaneType.Driving, self._carla.LaneType.Parking):
            wp = self.map.get_waypoint(loc, project_to_road=True, lane_type=lane_type)
            if wp is None:
                continue
            d = loc.distance(wp.transform.location)
            if best is None or d < best[0]:
                best = (d, wp)
        if best is None:
            return None
        d, wp = best
        return LaneSample(
            float(d),
            float(wp.lane_width),
            float(frames.carla_yaw_deg_to_world_rad(wp.transform.rotation.yaw)),
            int(wp.road_id),
            int(wp.lane_id),
            bool(wp.is_junction),
        )

    def outside_drivable_m(self, xy_world_m: np.ndarray) -> np.ndarray:
        """Distance of each point beyond the half width of its nearest drivable lane (see ``LaneQuery``).

        Each lane type is queried on its own: with several types in one query CARLA may return a narrow
        shoulder although the point lies inside the driving lane next to it.
        """
        pts = np.asarray(xy_world_m, float).reshape(-1, 2)
        out = np.full(len(pts), math.inf)
        for k, (x, y) in enumerate(pts):
            loc = self._loc(x, y)
            for lane_type in self._drivable:
                wp = self.map.get_waypoint(loc, project_to_road=True, lane_type=lane_type)
                if wp is None:
                    continue
                out[k] = min(out[k], max(loc.distance(wp.transform.location) - 0.5 * float(wp.lane_width), 0.0))
                if out[k] == 0.0:
                    break  # inside a lane: no need to look at the other types
        return out
