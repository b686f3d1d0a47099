"""Where pedestrians can walk in a town: sidewalk strips along the roads and crossings over them.

Sidewalks come from the town's lanes (the ``Sidewalk`` lanes right of each driving lane, ``Lane.outer_sides``).
Crossings come from CARLA's crosswalk polygons (``carla.Map.get_crosswalks()``: Town04/06/07/10HD); a town
without crosswalks (Town01/02) gets mid-block crossings, one per long road, where pedestrians cross without a
marked crosswalk. A crossing is a straight segment from kerb to kerb, perpendicular to the road, with the part
over the driving lanes marked (``road_in_m`` .. ``road_out_m``). World frame (x east, y north), metres.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from autovla_agent.sensors import frames
from autovla_agent.sim.world.town import Town

__all__ = ["Crossing", "Sidewalk", "WalkerPaths", "walker_paths"]

_KERB_MARGIN_M = 1.2  # a crossing starts and ends this far beyond the road edge (on the sidewalk)
_MIN_SIDEWALK_M = 8.0
_MIDBLOCK_MIN_LANE_M = 30.0  # roads shorter than this get no mid-block crossing
_MIDBLOCK_JUNCTION_CLEARANCE_M = 12.0


@dataclass(frozen=True, slots=True, eq=False)
class Sidewalk:
    """The centre line (M, 2) of the sidewalk right of a driving lane, in that lane's direction."""

    lane: int
    xy_m: np.ndarray
    s_m: np.ndarray  # (M,) arc length


@dataclass(frozen=True, slots=True, eq=False)
class Crossing:
    """A straight crossing ``a_xy_m`` -> ``b_xy_m``; the driving lanes span ``road_in_m`` .. ``road_out_m`` of it."""

    a_xy_m: np.ndarray
    b_xy_m: np.ndarray
    road_in_m: float
    road_out_m: float
    marked: bool  # a crosswalk of the map (else a mid-block crossing)
    polygon_xy_m: np.ndarray | None = None  # the crosswalk polygon, for rendering

    @property
    def length_m(self) -> float:
        """Kerb-to-kerb length."""
        return float(np.hypot(*(self.b_xy_m - self.a_xy_m)))


@dataclass(frozen=True, slots=True, eq=False)
class WalkerPaths:
    """All sidewalks and crossings of a town."""

    sidewalks: tuple[Sidewalk, ...]
    crossings: tuple[Crossing, ...]


def _sidewalks(town: Town) -> list[Sidewalk]:
    out = []
    for ln in town.lanes:
        for kind, inner, outer in ln.outer_sides:
            if kind != "Sidewalk" or ln.length_m < _MIN_SIDEWALK_M:
                continue
            normal = np.stack([-np.sin(ln.yaw_rad), np.cos(ln.yaw_rad)], -1)  # left of travel
            xy = ln.xy_m - normal * (0.5 * ln.width_m + 0.5 * (inner + outer))[:, None]
            s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
            out.append(Sidewalk(ln.index, xy, s))
            break
    return out


def _road_span(town: Town, center: np.ndarray, direction: np.ndarray, reach_m: float) -> tuple[float, float] | None:
    """Signed extent (lo, hi) along ``direction`` of the driving lanes through ``center``; None if none there."""
    t = np.arange(-reach_m, reach_m + 1e-9, 0.2)
    inside = town.in_driving_lane(center[None, :] + t[:, None] * direction[None, :])
    if not inside.any():
        return None
    # the run of road samples around the centre (not another road further away)
    k0 = int(np.argmin(np.abs(t)))
    if not inside[k0]:
        hits = np.flatnonzero(inside)
        k0 = int(hits[np.argmin(np.abs(t[hits]))])
    lo = k0
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    hi = k0
    while hi < len(t) - 1 and inside[hi + 1]:
        hi += 1
    return float(t[lo]), float(t[hi])


def _crossing(
    town: Town, center: np.ndarray, yaw_rad: float, marked: bool, polygon: np.ndarray | None = None
) -> Crossing | None:
    """A crossing through ``center`` perpendicular to road heading ``yaw_rad``."""
    across = np.array([-np.sin(yaw_rad), np.cos(yaw_rad)])
    span = _road_span(town, center, across, 15.0)
    if span is None or span[1] - span[0] < 2.5:
        return None
    lo, hi = span
    if polygon is not None:  # a crosswalk may reach onto the sidewalk beyond the lanes
        proj = (polygon - center) @ across
        lo, hi = min(lo, float(proj.min())), max(hi, float(proj.max()))
    a = center + (lo - _KERB_MARGIN_M) * across
    b = center + (hi + _KERB_MARGIN_M) * across
    return Crossing(a, b, float(span[0] - lo + _KERB_MARGIN_M), float(span[1] - lo + _KERB_MARGIN_M), marked, polygon)


def _crosswalk_polygons(town: Town) -> list[np.ndarray]:
    """CARLA's crosswalks as closed polygons (K, 2) in the world frame (the point list repeats each first point)."""
    polys, cur = [], []
    for loc in town.map.get_crosswalks():
        cur.append(frames.carla_to_world_xy((loc.x, loc.y)))
        if len(cur) > 2 and np.hypot(*(cur[0] - cur[-1])) < 1e-3:
            polys.append(np.array(cur[:-1]))
            cur = []
    return polys


def _marked_crossings(town: Town) -> list[Crossing]:
    out = []
    for poly in _crosswalk_polygons(town):
        center = poly.mean(axis=0)
        lp = town.locate(center, max_distance_m=8.0)
        if lp is None:
            continue
        crossing = _crossing(town, center, lp.yaw_rad, True, poly)
        if crossing is not None:
            out.append(crossing)
    return out


def _midblock_crossings(town: Town) -> list[Crossing]:
    out = []
    for ln in town.lanes:
        if ln.is_junction or ln.lane_id > 0 or ln.length_m < _MIDBLOCK_MIN_LANE_M:
            continue
        if ln.length_m < 2 * _MIDBLOCK_JUNCTION_CLEARANCE_M:
            continue
        if ln.right_neighbor >= 0:
            continue  # only the outermost lane of a road seeds its crossing
        xy, yaw = ln.interpolate(0.5 * ln.length_m)
        crossing = _crossing(town, np.asarray(xy), float(yaw), False)
        if crossing is not None:
            out.append(crossing)
    return out


@functools.cache
def walker_paths(town: Town) -> WalkerPaths:
    """Sidewalks and crossings of ``town`` (built once per process and town)."""
    crossings = _marked_crossings(town)
    if not crossings:
        crossings = _midblock_crossings(town)
    return WalkerPaths(tuple(_sidewalks(town)), tuple(crossings))
