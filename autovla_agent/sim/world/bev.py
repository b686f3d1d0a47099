"""Bird's-eye view of an embedded town: the ground raster warped around the ego, route, traffic and a plan.

Heading up, the ego ``ego_offset_frac`` of the image below the centre, in the internal WORLD frame (x east,
y north); ``bev_affine`` / ``world_to_bev_px`` map world points to the image for overlays drawn elsewhere.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autovla_agent.optional_deps import require_cv2
from autovla_agent.sim.world.raster import GRASS, TownRaster
from autovla_agent.sim.world.render_signals import draw_bev_overlay

cv2 = require_cv2()

__all__ = ["EGO_COLOR", "bev_affine", "render_bev", "world_to_bev_px"]

EGO_COLOR = (200, 40, 40)  # RGB, the ego in the BEV


def render_bev(
    raster: TownRaster,
    snapshot: Any,
    route_xy_world_m: np.ndarray | None = None,
    *,
    size_px: int = 512,
    meters_per_px: float = 0.2,
    planned_xy_world_m: np.ndarray | None = None,
    ego_offset_frac: float = 0.25,
    signals: Any = None,
    markers: list[tuple[float, float, str]] | None = None,
) -> np.ndarray:
    """RGB (size_px, size_px, 3) top-down view, ego heading up and ``ego_offset_frac`` below the centre.

    Shows the ground raster, the route (blue), traffic (own colours; parked grey), pedestrians (dots), the stop
    lines of ``signals`` in their light's colour (``snapshot.light_state``) and stop signs (red), the ego (red),
    an optional planned trajectory (orange) and ``markers`` (x_m, y_m, label): infractions, as red crosses.
    """
    ego = snapshot.ego
    center = (float(ego.x_m[0]), float(ego.y_m[0]), float(ego.yaw_rad[0]))
    affine = bev_affine(center, size_px, meters_per_px, ego_offset_frac)  # world -> bev px
    level = int(np.clip(np.floor(np.log2(meters_per_px / raster.m_per_px)), 0, len(raster.levels) - 1))
    to_world = raster.px_to_world(level)
    m = np.vstack([affine, [0.0, 0.0, 1.0]]) @ to_world
    bgr = cv2.warpAffine(
        raster.levels[level],
        m[:2],
        (size_px, size_px),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=GRASS[::-1],
    )
    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if route_xy_world_m is not None and len(route_xy_world_m) > 1:
        pts = np.round(world_to_bev_px(route_xy_world_m, affine) * 16).astype(np.int32)
        cv2.polylines(img, [pts], False, (40, 110, 255), thickness=3, lineType=cv2.LINE_AA, shift=4)
    veh = snapshot.vehicles
    if len(veh):
        corners = world_to_bev_px(veh.corners_xy_m(), affine)
        for i in range(len(veh)):
            color = (130, 130, 130) if veh.parked[i] else tuple(int(c) for c in veh.color_rgb[i])
            pts = np.round(corners[i] * 16).astype(np.int32)
            cv2.fillConvexPoly(img, pts, color, lineType=cv2.LINE_AA, shift=4)
            cv2.polylines(img, [pts], True, (20, 20, 20), 1, lineType=cv2.LINE_AA, shift=4)
    draw_bev_overlay(
        img,
        lambda xy: world_to_bev_px(xy, affine),
        signals,
        getattr(snapshot, "light_state", None),
        getattr(snapshot, "walkers", None),
        None,
    )
    if planned_xy_world_m is not None and len(planned_xy_world_m) > 0:
        pts = world_to_bev_px(np.asarray(planned_xy_world_m)[:, :2], affine)
        cv2.polylines(img, [np.round(pts * 16).astype(np.int32)], False, (255, 150, 0), 2, cv2.LINE_AA, shift=4)
        for p in pts:
            cv2.circle(
                img, (int(round(p[0] * 16)), int(round(p[1] * 16))), 3 * 16, (255, 150, 0), -1, cv2.LINE_AA, shift=4
            )
    ego_pts = np.round(world_to_bev_px(ego.corners_xy_m()[0], affine) * 16).astype(np.int32)
    cv2.fillConvexPoly(img, ego_pts, EGO_COLOR, lineType=cv2.LINE_AA, shift=4)
    nose = world_to_bev_px(
        np.array([[center[0] + math.cos(center[2]) * 2.45, center[1] + math.sin(center[2]) * 2.45]]), affine
    )[0]
    cv2.circle(img, (int(nose[0]), int(nose[1])), 2, (255, 255, 255), -1)
    if markers:
        draw_bev_overlay(img, lambda xy: world_to_bev_px(xy, affine), None, None, None, markers)
    return img


def bev_affine(
    center_pose_world: tuple[float, float, float], size_px: int, meters_per_px: float, ego_offset_frac: float = 0.25
) -> np.ndarray:
    """(2, 3) affine world (x, y, 1) -> BEV pixels, heading up, the pose ``ego_offset_frac`` below the centre."""
    x, y, yaw = center_pose_world
    fwd = np.array([math.cos(yaw), math.sin(yaw)])
    right = np.array([math.sin(yaw), -math.cos(yaw)])
    cu, cv = size_px / 2.0, size_px / 2.0 + ego_offset_frac * size_px
    a = np.vstack([right, -fwd]) / meters_per_px  # (2, 2): world delta -> (u, v)
    t = np.array([cu, cv]) - a @ np.array([x, y])
    return np.column_stack([a, t])


def world_to_bev_px(xy_world_m: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World points (..., 2) -> BEV pixel coordinates (..., 2) with the affine of ``bev_affine``."""
    xy = np.asarray(xy_world_m, dtype=np.float64)
    return xy @ affine[:, :2].T + affine[:, 2]
