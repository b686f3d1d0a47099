"""Where background vehicles are placed: free spawn slots, kerb-parking poses along a route, route obstacles.

Pure functions of the town, the route and a seeded ``numpy.random.Generator`` (runs repeat exactly); world frame
(x east, y north, yaw CCW rad), metres.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autovla_agent.sensors import frames
from autovla_agent.sim.world.lane_arrays import LaneArrays
from autovla_agent.sim.world.town import Town

__all__ = ["free_slots", "kerb_parking_poses", "obstacle_placement"]

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


def obstacle_placement(town: Town, obstacle: Any) -> tuple[tuple[int, float] | None, tuple[float, float, float]]:
    """Where a route's ``ObstacleSpec`` stands: ``(lane, s)`` when it is in a lane (1.5 m, heading kept), and its pose.

    The pose (x_m, y_m, yaw_rad) is the world-frame box centre converted from the route's CARLA coordinates; an
    obstacle outside every lane is placed there, off the lanes.
    """
    xy = frames.carla_to_world_xy((obstacle.x, obstacle.y))
    yaw = float(frames.carla_yaw_deg_to_world_rad(obstacle.yaw_deg))
    lp = town.locate(xy, yaw, max_distance_m=1.5)
    pose = (float(xy[0]), float(xy[1]), yaw)
    return (None if lp is None else (lp.lane, lp.s_m)), pose
