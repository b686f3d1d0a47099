"""What each background vehicle perceives: its path ahead, leaders in that corridor and who has right of way.

``path_ahead`` samples each vehicle's lane sequence ahead of its front bumper; ``corridor_gaps`` finds, for every
(vehicle, obstacle) pair within reach, the gap to the first sample whose corridor the obstacle's box reaches into.
``junction_yield`` decides, for vehicles whose upcoming junction lanes cross or merge (``LaneArrays.conflict_in``
/ ``conflict_out``), who stops before the conflict zone: the one that gets there later (ties: lower id first);
a cycle of waiting vehicles is broken. ``EgoRouteLanes`` gives the ego the same (lanes ahead, distance to each
lane start) view a lane vehicle has, so traffic yields to it at junctions too. ``goes_first`` resolves two
vehicles whose bodies reach into each other's path: the one nearer the conflict goes first. All arrays are world
frame, metres and seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from autovla_agent.sim.world.lane_arrays import LaneArrays
from autovla_agent.sim.world.town import Town

__all__ = [
    "EGO_ID",
    "Boxes",
    "EgoRouteLanes",
    "PathAhead",
    "corridor_gaps",
    "goes_first",
    "junction_yield",
    "junction_yield_with_ego",
    "path_ahead",
]

EGO_ID = 0  # the ego's id among vehicles (traffic: 1..N)
_MAX_OFF_ROUTE_M = 3.0  # farther from its route the ego is seen by the corridor test only
_STANDING_MPS = 0.1  # vehicles waiting in a cycle at or below this speed are deadlocked


@dataclass(frozen=True, slots=True)
class Boxes:
    """Oriented boxes (M,) of vehicles: centre, heading, length, width (world frame) and ids."""

    x_m: np.ndarray
    y_m: np.ndarray
    yaw_rad: np.ndarray
    length_m: np.ndarray
    width_m: np.ndarray
    ids: np.ndarray

    def take(self, rows: np.ndarray) -> Boxes:
        """The boxes of ``rows``."""
        return Boxes(
            self.x_m[rows], self.y_m[rows], self.yaw_rad[rows], self.length_m[rows], self.width_m[rows], self.ids[rows]
        )

    def extended(self, *arrays: np.ndarray) -> Boxes:
        """These boxes and more (x, y, yaw, length, width, ids arrays) at the end."""
        return Boxes(
            *(np.concatenate([getattr(self, f), np.asarray(a)]) for f, a in zip(self.__slots__, arrays, strict=True))
        )

    def appended(self, x_m: float, y_m: float, yaw_rad: float, length_m: float, width_m: float, box_id: int) -> Boxes:
        """These boxes and one more at the end."""
        return Boxes(
            np.append(self.x_m, x_m),
            np.append(self.y_m, y_m),
            np.append(self.yaw_rad, yaw_rad),
            np.append(self.length_m, length_m),
            np.append(self.width_m, width_m),
            np.append(self.ids, box_id),
        )


@dataclass(frozen=True, slots=True)
class PathAhead:
    """Samples (n, K) of n vehicles' lane paths, from the front bumper every ``sample_spacing_m`` ahead."""

    ahead_m: np.ndarray  # (K,) distance of each sample ahead of the front bumper
    from_centre_m: np.ndarray  # (n, K) distance of each sample from the box centre along the path
    lane_start_m: np.ndarray  # (n, L) distance from the box centre to the start of each lane of the sequence
    x_m: np.ndarray
    y_m: np.ndarray
    cos_yaw: np.ndarray
    sin_yaw: np.ndarray
    curvature: np.ndarray  # |curvature| (1/m)


def path_ahead(
    la: LaneArrays, seq: np.ndarray, s_m: np.ndarray, half_len_m: np.ndarray, lookahead_m: float, spacing_m: float
) -> PathAhead:
    """Path samples of vehicles at arc length ``s_m`` (n,) of ``seq[:, 0]`` following lanes ``seq`` (n, L)."""
    n, num_lanes = seq.shape
    k = np.arange(0.0, lookahead_m + 1e-9, spacing_m)
    d = half_len_m[:, None] + k[None, :]
    lane_len = la.length[seq]  # (n, L)
    start = np.concatenate([np.zeros((n, 1)), np.cumsum(lane_len, 1)[:, :-1]], 1) - s_m[:, None]
    m = np.minimum((d[:, :, None] >= start[:, None, 1:]).sum(-1), num_lanes - 1)
    lane_k = np.take_along_axis(seq, m, 1)
    s_k = d - np.take_along_axis(start, m, 1)
    return PathAhead(k, d, start, *la.lookup(lane_k, s_k))


def corridor_gaps(
    path: PathAhead, own: Boxes, others: Boxes, lookahead_m: float, spacing_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gap (n, M) along each path to each other box reaching into its corridor (inf: none), and their heading cos.

    ``own`` (n,) are the vehicles the paths belong to, ``others`` (M,) the obstacles (own ids are skipped).
    Only pairs within reach and not behind are tested. The cosine (n, M) is the other box's heading relative
    to the path, averaged over the samples (1 where not tested).
    """
    half_len = 0.5 * own.length_m
    reach = lookahead_m + half_len + 0.5 * others.length_m.max() + 1.0
    rel_x, rel_y = others.x_m[None, :] - own.x_m[:, None], others.y_m[None, :] - own.y_m[:, None]
    ahead = rel_x * np.cos(own.yaw_rad)[:, None] + rel_y * np.sin(own.yaw_rad)[:, None]
    cand = (rel_x**2 + rel_y**2 < (reach**2)[:, None]) & (ahead > -0.5 * others.length_m[None, :] - 1.0)
    cand &= others.ids[None, :] != own.ids[:, None]
    r, c = np.nonzero(cand)
    gap = np.full((len(own.ids), len(others.ids)), np.inf)
    cos_pair = np.ones_like(gap)
    if len(r) == 0:
        return gap, cos_pair
    ol, ow = others.length_m[c][:, None], others.width_m[c][:, None]
    dx, dy = others.x_m[c][:, None] - path.x_m[r], others.y_m[c][:, None] - path.y_m[r]  # (P, K)
    pcr, psr = path.cos_yaw[r], path.sin_yaw[r]
    along = dx * pcr + dy * psr
    lat = dy * pcr - dx * psr
    cos_rel = np.cos(others.yaw_rad[c])[:, None] * pcr + np.sin(others.yaw_rad[c])[:, None] * psr
    abs_cos = np.abs(cos_rel)
    sin_rel = np.sqrt(np.maximum(1.0 - cos_rel**2, 0.0))
    lat_ext = 0.5 * (ow * abs_cos + ol * sin_rel)
    lon_ext = 0.5 * (ol * abs_cos + ow * sin_rel)
    half_w = 0.5 * own.width_m[r][:, None]
    hit = (np.abs(lat) < half_w + lat_ext + 0.2) & (np.abs(along) <= 0.5 * spacing_m + lon_ext)
    g = np.where(hit, path.from_centre_m[r] + along - lon_ext - half_len[r][:, None], np.inf).min(1)
    gap[r, c] = np.maximum(g, 0.0)
    cos_pair[r, c] = cos_rel.mean(1)
    return gap, cos_pair


class EgoRouteLanes:
    """The ego route's lane runs: for the ego's position, the next ``num_lanes`` lanes and where each starts.

    Args:
        town: the route's town (lane projections).
        route: a ``DenseRoute`` (``xy_world_m`` (N, 2), ``lanes`` (N,), ``s_m`` (N,)).
        num_lanes: lanes returned ahead (``traffic.PATH_LANES``).
    """

    def __init__(self, town: Town, route: Any, num_lanes: int) -> None:
        self.num_lanes = num_lanes
        self.xy = np.asarray(route.xy_world_m, dtype=np.float64)
        self.s_m = np.asarray(route.s_m, dtype=np.float64)
        lanes = np.asarray(route.lanes, np.int64)
        first = np.concatenate([[0], np.nonzero(np.diff(lanes))[0] + 1])
        self.run_lane = lanes[first]  # the route's lanes in order (consecutive runs)
        # route arc length where each run's lane starts (< 0 when the route starts mid-lane)
        self.run_start_s = np.array([self.s_m[k] - town.project(int(lanes[k]), self.xy[k]).s_m for k in first])
        self.run_of_point = np.cumsum(np.isin(np.arange(len(lanes)), first)) - 1  # route point -> run
        self.index = 0  # route point nearest the ego (searched in a window around the last one)

    @classmethod
    def of_route(cls, town: Town, route: Any, num_lanes: int) -> EgoRouteLanes | None:
        """The lane runs of ``route``, or None for a route without lane indices."""
        if len(getattr(route, "lanes", ())) == 0:
            return None
        return cls(town, route, num_lanes)

    def ahead(self, ego_xy: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """(lanes (num_lanes,), distance (num_lanes,) from the ego centre to each lane's start); None off route.

        Past the route's end the last lane is repeated with an infinite distance (it conflicts with nothing).
        """
        lo = max(0, self.index - 5)
        window = self.xy[lo : self.index + 60]
        d = np.hypot(window[:, 0] - ego_xy[0], window[:, 1] - ego_xy[1])
        k = int(np.argmin(d))
        if d[k] > _MAX_OFF_ROUTE_M:
            return None
        self.index = lo + k
        run = int(self.run_of_point[self.index])
        lanes = self.run_lane[run : run + self.num_lanes]
        start = self.run_start_s[run : run + self.num_lanes] - self.s_m[self.index]
        if len(lanes) < self.num_lanes:
            pad = self.num_lanes - len(lanes)
            lanes = np.concatenate([lanes, np.full(pad, lanes[-1])])
            start = np.concatenate([start, np.full(pad, np.inf)])
        return lanes, start


def junction_yield(
    la: LaneArrays,
    seq: np.ndarray,
    start: np.ndarray,
    half_len: np.ndarray,
    speed_mps: np.ndarray,
    ids: np.ndarray,
    num_yielding: int,
    *,
    lookahead_m: float,
    max_decel_mps2: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Gap to the junction conflict each of the first ``num_yielding`` rows must stop before, and to whom.

    Rows are vehicles on lanes: ``seq`` (R, L) their next lanes, ``start`` (R, L) the distance from their centre
    to each lane's start, ``half_len``, ``speed_mps`` and ``ids`` (R,). Row i yields to j when their upcoming
    junction lanes conflict, j has not cleared the conflict, i can still stop before it comfortably, and j
    arrives first (time to the pair's conflict point; ties: lower id). Rows from ``num_yielding`` on (the ego)
    take part but never yield. Each row keeps its nearest such conflict; where those waits close a cycle of
    standing vehicles (e.g. three stopped inside a junction, each before the next one's conflict point), the one
    deepest inside the junction goes (``_release_cycles``), else they would wait for ever. Returns (gap_m
    (num_yielding,), distance from the front bumper to the conflict entry less 1 m, inf: none; yield_to
    (num_yielding,) id of the row given way to, -1: none).
    """
    n = num_yielding
    gap_out, who_out = np.full(n, np.inf), np.full(n, -1, np.int64)
    near = la.is_junction[seq] & (start < lookahead_m)  # upcoming junction lanes (rows, L)
    rows, cols = np.nonzero(near)
    if len(rows) < 2:
        return gap_out, who_out
    lane = seq[rows, cols]
    s_in_ab = la.conflict_in[lane[:, None], lane[None, :]]  # (A, A)
    p, q = np.nonzero(~np.isnan(s_in_ab))
    keep = rows[p] < n  # only traffic yields; the ego's own decisions are the agent's
    p, q = p[keep], q[keep]
    if len(p) == 0:
        return gap_out, who_out
    r, j = rows[p], rows[q]
    d_i = start[r, cols[p]] + s_in_ab[p, q] - half_len[r]
    d_j = start[j, cols[q]] + la.conflict_in[lane[q], lane[p]] - half_len[j]
    cleared_j = start[j, cols[q]] + la.conflict_out[lane[q], lane[p]] - half_len[j] < -2.0 * half_len[j]
    v_i, v_j = speed_mps[r], speed_mps[j]
    t_i = d_i / np.maximum(v_i, 1.0)
    t_j = np.where(d_j < 0.0, -1.0, d_j / np.maximum(v_j, 1.0))
    j_first = (t_j < t_i) | ((t_j == t_i) & (ids[j] < ids[r]))
    can_stop = d_i > v_i**2 / (2.0 * max_decel_mps2 * 0.75)
    must = (r != j) & ~cleared_j & j_first & can_stop & (d_i < lookahead_m) & (d_j < lookahead_m)
    r_m, j_m, gap_m = r[must], j[must], np.maximum(d_i[must] - 1.0, 0.0)
    order = np.lexsort((gap_m, r_m))  # per yielding row, the nearest conflict first
    first = order[np.concatenate([[True], np.diff(r_m[order]) != 0])] if len(order) else order
    waits_for = np.full(n, -1, np.int64)
    waits_for[r_m[first]] = np.where(j_m[first] < n, j_m[first], -1)  # the ego (a row >= n) waits for nobody
    depth = np.zeros(n)
    depth[r_m[first]] = _junction_depth_m(la, seq, start, half_len)[r_m[first], cols[p[must][first]]]
    go = _release_cycles(waits_for, depth, speed_mps[:n] < _STANDING_MPS)
    first = first[~go[r_m[first]]]
    gap_out[r_m[first]] = gap_m[first]
    who_out[r_m[first]] = ids[j_m[first]]
    return gap_out, who_out


def _junction_depth_m(la: LaneArrays, seq: np.ndarray, start: np.ndarray, half_len: np.ndarray) -> np.ndarray:
    """(R, L) how far each front bumper is past the entry of the run of junction lanes each lane belongs to (m)."""
    entry = start.copy()
    for c in range(1, seq.shape[1]):  # a junction lane after a junction lane: the same junction entry
        inside = la.is_junction[seq[:, c]] & la.is_junction[seq[:, c - 1]]
        entry[inside, c] = entry[inside, c - 1]
    return half_len[:, None] - entry


def _release_cycles(waits_for: np.ndarray, depth_m: np.ndarray, standing: np.ndarray) -> np.ndarray:
    """(n,) rows that go although they yield: the deepest of each cycle of ``waits_for`` (row -> row, -1: none).

    Only cycles where all but the deepest row are ``standing`` count: moving ones may still sort themselves out
    as they approach, and the deepest keeps going (without stopping again) until the others can move.
    """
    go = np.zeros(len(waits_for), bool)
    state = np.zeros(len(waits_for), np.int8)  # 0: not seen, 1: on the walk, 2: done
    for row in np.flatnonzero(waits_for >= 0):
        walk = []
        while row >= 0 and state[row] == 0:
            state[row] = 1
            walk.append(int(row))
            row = waits_for[row]
        if row >= 0 and state[row] == 1:  # the walk came back onto itself: a cycle
            cycle = walk[walk.index(row) :]
            deepest = max(cycle, key=lambda k: (depth_m[k], -k))
            if all(standing[k] for k in cycle if k != deepest):
                go[deepest] = True
        state[walk] = 2
    return go


def goes_first(gap: np.ndarray, idx: np.ndarray, ids: np.ndarray, oid: np.ndarray) -> np.ndarray:
    """(n, M) where vehicle ``idx[r]`` and lane vehicle j block each other and r is nearer the conflict.

    ``gap`` (n, M): gap of each perceiving vehicle (rows ``idx`` of all N vehicles with ``ids``) to each obstacle
    ``oid`` (M,: the N vehicles, then possibly the ego). Both bodies reach into the other's path; the one with the
    shorter gap is further along and goes first, ties go to the lower id. The ego is never in this set: traffic
    always yields to it.
    """
    n_all = len(ids)
    full = np.full((n_all, gap.shape[1]), np.inf)
    full[idx] = gap
    mine = gap[:, :n_all]
    theirs = full[:n_all, idx].T  # gap of vehicle j to vehicle idx[r]
    mutual = np.isfinite(mine) & np.isfinite(theirs)
    diff = np.zeros_like(mine)
    diff[mutual] = mine[mutual] - theirs[mutual]
    first = (diff < -0.05) | ((np.abs(diff) <= 0.05) & (ids[idx][:, None] < oid[None, :n_all]))
    out = np.zeros_like(gap, dtype=bool)
    out[:, :n_all] = mutual & first
    return out


def junction_yield_with_ego(
    la: LaneArrays,
    seq: np.ndarray,
    start: np.ndarray,
    half_len: np.ndarray,
    speed_mps: np.ndarray,
    ids: np.ndarray,
    ego: tuple[np.ndarray, np.ndarray] | None,
    ego_box: Any,
    *,
    lookahead_m: float,
    max_decel_mps2: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``junction_yield`` for the traffic rows, with the ego taking part through its route lanes ``ego``.

    ``ego``: (lanes ahead, distance to each lane start) of ``EgoRouteLanes.ahead`` or None (off its route);
    ``ego_box``: (x, y, yaw, speed, length, width). The ego (id 0) wins ties and never yields here.
    """
    n = len(ids)
    v = speed_mps
    if ego is not None:
        seq = np.vstack([seq, ego[0][None]])
        start = np.vstack([start, ego[1][None]])
        half_len = np.append(half_len, 0.5 * ego_box[4])
        v = np.append(v, max(float(ego_box[3]), 0.0))
        ids = np.append(ids, EGO_ID)
    return junction_yield(la, seq, start, half_len, v, ids, n, lookahead_m=lookahead_m, max_decel_mps2=max_decel_mps2)
