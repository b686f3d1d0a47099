"""The leaderboard's global plan -> the route of the core loop: CARLA xy points, prompt commands, georeference.

``_global_plan_world_coord`` (CARLA transforms) is preferred; the GPS plan gives the georeference that matches
it. Without a world plan the GPS plan alone is followed, in a local georeference at its first point.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autovla_agent.adapters.carla.agent_base import road_option_name
from autovla_agent.contract import NavCommand
from autovla_agent.sensors import frames

logger = logging.getLogger(__name__)

#: CARLA RoadOption name -> prompt command (VOID: follow the lane, as public agents do).
ROAD_OPTION_TO_COMMAND = {
    "LEFT": NavCommand.TURN_LEFT,
    "RIGHT": NavCommand.TURN_RIGHT,
    "STRAIGHT": NavCommand.GO_STRAIGHT,
    "LANEFOLLOW": NavCommand.KEEP_FORWARD,
    "CHANGELANELEFT": NavCommand.CHANGE_LANE_LEFT,
    "CHANGELANERIGHT": NavCommand.CHANGE_LANE_RIGHT,
    "VOID": NavCommand.KEEP_FORWARD,
}


@dataclass(frozen=True)
class GlobalRoute:
    """A route as the loop and the localiser need it (CARLA frame points; the loop converts them once)."""

    xy_carla_m: np.ndarray  # (N, 2) route points in CARLA's x, y
    commands: tuple[NavCommand, ...]  # one prompt command per point
    lat_ref_deg: float
    lon_ref_deg: float
    route_yaw_world_rad: float | None  # initial heading hint for the localiser; None when unknown


def route_from_global_plan(world_plan: Sequence[Any], gps_plan: Sequence[Any]) -> GlobalRoute:
    """The route of ``set_global_plan``'s two plans; raises RuntimeError when both are empty."""
    if world_plan:
        xy_carla = np.array([[t.location.x, t.location.y] for t, _ in world_plan], dtype=np.float64)
        options = [opt for _, opt in world_plan]
        route_yaw = float(frames.carla_yaw_deg_to_world_rad(world_plan[0][0].rotation.yaw))
        if gps_plan:
            lat_ref, lon_ref = frames.georeference_from_route(
                gps_plan[0][0]["lat"], gps_plan[0][0]["lon"], xy_carla[0, 0], xy_carla[0, 1]
            )
        else:
            lat_ref, lon_ref = frames.DEFAULT_LAT_REF_DEG, frames.DEFAULT_LON_REF_DEG
            logger.warning("no GPS plan: assuming the leaderboard's default georeference %s, %s", lat_ref, lon_ref)
    elif gps_plan:
        # GPS fall-back: a local georeference at route[0] (x, y are then relative to the route start).
        lat_ref, lon_ref = float(gps_plan[0][0]["lat"]), float(gps_plan[0][0]["lon"])
        xs, ys = frames.gnss_to_carla_xy(
            np.array([g["lat"] for g, _ in gps_plan]), np.array([g["lon"] for g, _ in gps_plan]), lat_ref, lon_ref
        )
        xy_carla = np.stack([np.atleast_1d(xs), np.atleast_1d(ys)], axis=-1)
        options = [opt for _, opt in gps_plan]
        d = frames.carla_to_world_xy(xy_carla[min(1, len(xy_carla) - 1)] - xy_carla[0])
        route_yaw = math.atan2(d[1], d[0]) if np.hypot(*d) > 0.1 else None
        logger.warning("no world-coordinate plan: following the GPS plan (%d points)", len(gps_plan))
    else:
        raise RuntimeError("no global plan: the evaluator calls set_global_plan() before the first tick")
    commands = tuple(ROAD_OPTION_TO_COMMAND.get(road_option_name(opt), NavCommand.KEEP_FORWARD) for opt in options)
    return GlobalRoute(xy_carla, commands, float(lat_ref), float(lon_ref), route_yaw)
