"""Where background vehicles are placed: free spawn slots on road lanes and kerb-parking poses along a route.

Pure functions of the town, the route and a seeded ``numpy.random.Generator`` (runs repeat exactly); world frame
(x east, y north, yaw CCW rad), metres.
"""

from __future__ import annotations

import math

import numpy as np

from autovla_agent.sim.world.lane_arrays import LaneArrays
from autovla_agent.sim.world.town import Town

__all__ = ["free_slots", "kerb_parking_poses"]

_MIN_SLOT_CLEARANCE_M = 10.0  # a slot this close to a vehicle is taken


def free_slots(
    la: LaneArrays,
    rng: np.random.Generator,
    spacing_m: float,
    ego_xy: np.ndarray,
    near_xy: np.ndarray,
    radius_m: float,
    min_ego_m: float,
    occupied_xy: np.ndarray,
) -> list[tuple[int, float]]:
    """Shuffled spawn slots (lane, s_m) on road lanes within ``radius_m`` of ``near_xy`` (P, 2).

    Slots lie every ``spacing_m`` (``LaneArrays.slots``), at least ``min_ego_m`` from the ego and 10 m from every
    ``occupied_xy`` (V, 2) position.
    """
    lane, s, xy = la.slots(spacing_m)
    sub = near_xy[:: max(1, len(near_xy) // 200)]
    d_near = np.full(len(xy), np.inf)
    for chunk in np.array_split(sub, max(1, len(sub) // 50)):  # bounded memory for long routes
        d_near = np.minimum(d_near, np.sqrt(((xy[:, None, :] - chunk[None]) ** 2).sum(-1)).min(1))
    d_ego = np.hypot(xy[:, 0] - ego_xy[0], xy[:, 1] - ego_xy[1])
    ok = (d_near <= radius_m) & (d_ego >= min_ego_m)
    if len(occupied_xy):
        cand = np.nonzero(ok)[0]
        if len(cand):
            d_occ = np.sqrt(((xy[cand, None, :] - occupied_xy[None]) ** 2).sum(-1)).min(1)
            ok[cand[d_occ < _MIN_SLOT_CLEARANCE_M]] = False
    cand = np.nonzero(ok)[0]
    order = rng.permutation(len(cand))
    return [(int(lane[cand[i]]), float(s[cand[i]])) for i in order]


def kerb_parking_poses(
    town: Town, route_xy: np.ndarray, count: int, rng: np.random.Generator, vehicle_width_m: float
) -> list[tuple[float, float, float]]:
    """Up to ``count`` box-centre poses (x_m, y_m, yaw_rad) at the kerb right of the route's road lanes.

    Candidates every 15 route points (from the 30th to 10 before the end) on road lanes at least 6 m from both
    lane ends; a random subset is taken in route order. The box stands 0.15 m outside the lane edge.
    """
    if count <= 0:
        return []
    cands = []
    for i in range(30, len(route_xy) - 10, 15):
        lp = town.locate(route_xy[i])
        if lp is None or town.lanes[lp.lane].is_junction or lp.s_m < 6.0:
            continue
        if town.lanes[lp.lane].length_m - lp.s_m < 6.0:
            continue
        cands.append((lp.lane, lp.s_m))
    poses = []
    for k in sorted(rng.permutation(len(cands))[:count]):
        lane, s = cands[k]
        ln = town.lanes[lane]
        xy, yaw = ln.interpolate(s)
        off = 0.5 * float(np.interp(s, ln.s_m, ln.width_m)) + 0.15 + 0.5 * vehicle_width_m
        poses.append((float(xy[0] + math.sin(yaw) * off), float(xy[1] - math.cos(yaw) * off), float(yaw)))
    return poses
