"""The expert's configuration and its privileged perception: the leader in its corridor and vehicles to yield to.

Reads the embedded ``World``'s vehicles (and the lanes each will take) directly, never sensors. Internal WORLD
frame (x east, y north, yaw CCW rad), metres; the ego's path is the dense route ahead of its rear axle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from autovla_agent.planners.control import ControlConfig
from autovla_agent.planners.vehicle import VehicleParams
from autovla_agent.sim.config_checks import require_at_least

__all__ = ["ExpertConfig", "ExpertPerception", "Obstacle", "box_points", "project_on_path"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ExpertConfig:
    """Driving style, perception margins and declared sensors of the expert."""

    max_speed_mps: float = 25.0  # absolute cap; below it the expert drives ...
    speed_limit_fraction: float = 0.96  # ... this share of the speed limit in force (8.0 m/s at 30 km/h)
    max_lateral_accel_mps2: float = 1.8
    plan_decel_mps2: float = 1.8  # how early it slows for curves
    max_accel_mps2: float = 1.5
    comfort_decel_mps2: float = 2.5  # IDM b
    max_decel_mps2: float = 6.0
    speed_gain_1ps: float = 1.2  # free-road speed tracking gain
    time_headway_s: float = 1.3  # IDM T
    min_gap_m: float = 3.0  # IDM s0, bumper to bumper
    lookahead_m: float = 60.0
    horizon_s: float = 4.0
    plan_dt_s: float = 0.1
    corridor_half_width_m: float = 1.5  # a box corner this close to the path blocks it
    walker_margin_m: float = 0.5  # pedestrians: the corridor is this much wider
    light_stop_margin_m: float = 1.0  # the front stops this far before a red light's stop line
    stop_sign_hold_s: float = 1.0  # how long it stands at a stop sign before going on
    yield_horizon_s: float = 4.0
    yield_margin_s: float = 2.0  # yield when a crossing vehicle arrives less than this after the ego
    merge_margin_s: float = 1.0  # the same for a vehicle joining the ego's lane in its direction
    plan_record_every_s: float = 0.5
    camera: Literal["none", "front"] = "front"  # declared sensors: front camera + GNSS, IMU, speedometer
    camera_width_px: int = 640
    camera_height_px: int = 360
    camera_fov_deg: float = 70.0
    control: ControlConfig = field(
        # Speed read 0.3-0.8 s ahead: a launch from standstill (1.5 m/s2) clears the 0.4 m/s brake threshold of the
        # first 0.5 s window; no creep recovery, the expert knows why it stands.
        default_factory=lambda: ControlConfig(
            target_speed_window_start_s=0.3, target_speed_window_end_s=0.8, use_creep=False
        )
    )

    def __post_init__(self) -> None:
        """Reject non-positive limits and horizons."""
        names = (
            "max_speed_mps",
            "speed_limit_fraction",
            "max_lateral_accel_mps2",
            "plan_decel_mps2",
            "max_accel_mps2",
            "comfort_decel_mps2",
            "max_decel_mps2",
            "lookahead_m",
            "horizon_s",
            "plan_dt_s",
        )
        require_at_least(self, names, 0.0, strict=True)


def project_on_path(path_xy: np.ndarray, path_s: np.ndarray, points_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arc length (P,) of the closest path point and the distance (P,) to the path for points (P, 2)."""
    a, b = path_xy[:-1], path_xy[1:]
    ab = b - a
    ap = points_xy[:, None, :] - a[None]
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    d = np.linalg.norm(ap - t[..., None] * ab[None], axis=-1)
    k = np.argmin(d, axis=1)
    rows = np.arange(len(points_xy))
    return path_s[k] + t[rows, k] * (path_s[k + 1] - path_s[k]), d[rows, k]


def box_points(x: np.ndarray, y: np.ndarray, yaw: np.ndarray, length: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Corners, edge midpoints and centre (N, 9, 2) of boxes: the points tested against the corridor."""
    u = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1], [1, 0], [-1, 0], [0, 1], [0, -1], [0, 0]], float)
    lx, ly = u[:, 0] * 0.5 * length[:, None], u[:, 1] * 0.5 * width[:, None]
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    return np.stack([x[:, None] + lx * c - ly * s, y[:, None] + lx * s + ly * c], axis=-1)


@dataclass(slots=True)
class Obstacle:
    """Something the ego keeps a gap to: arc length along the path where it starts, and its speed along it."""

    s_m: float
    speed_mps: float
    actor_id: int
    kind: Literal["vehicle", "stopped", "crossing", "red light", "stop sign", "pedestrian"]


class ExpertPerception:
    """Finds what the expert keeps a gap to on its path: a leader, a stopped vehicle or a crossing one."""

    def __init__(self, config: ExpertConfig, vehicle: VehicleParams, world: Any) -> None:
        self.config = config
        self.vehicle = vehicle
        self.world = world

    def nearest_obstacle(
        self, snap: Any, path_xy: np.ndarray, path_s: np.ndarray, s0: float, plan: tuple[np.ndarray, np.ndarray]
    ) -> Obstacle | None:
        """The closest vehicle in the corridor ahead, or a crossing vehicle to yield to.

        ``plan``: the ego's previous plan ``(times_s, s_m)``, to tell when it reaches a crossing point.
        """
        cfg, veh = self.config, snap.vehicles
        if len(veh) == 0:
            return None
        front_m = self.vehicle.rear_axle_offset_m + 0.5 * self.vehicle.length_m
        near = np.hypot(veh.x_m - path_xy[0, 0], veh.y_m - path_xy[0, 1]) < cfg.lookahead_m + 10.0
        best: Obstacle | None = None
        pts = box_points(veh.x_m, veh.y_m, veh.yaw_rad, veh.length_m, veh.width_m)
        in_corridor: set[int] = set()
        for k in np.flatnonzero(near):
            s_pts, d_pts = project_on_path(path_xy, path_s, pts[k])
            inside = (d_pts < cfg.corridor_half_width_m) & (s_pts > s0 + 0.5)
            if not inside.any():
                continue
            in_corridor.add(int(k))
            s_hit = float(s_pts[inside].min())
            i = min(int(np.searchsorted(path_s, s_hit)), len(path_s) - 1)
            heading = math.atan2(
                path_xy[min(i + 1, len(path_xy) - 1), 1] - path_xy[max(i - 1, 0), 1],
                path_xy[min(i + 1, len(path_xy) - 1), 0] - path_xy[max(i - 1, 0), 0],
            )
            along = float(veh.speed_mps[k]) * math.cos(float(veh.yaw_rad[k]) - heading)
            kind = "stopped" if bool(veh.parked[k]) or abs(float(veh.speed_mps[k])) < 0.3 else "vehicle"
            if best is None or s_hit < best.s_m:
                best = Obstacle(s_hit, max(along, 0.0), int(veh.ids[k]), kind)
        crossing = self._crossing_conflict(snap, path_xy, path_s, s0, front_m, in_corridor, plan)
        if crossing is not None and (best is None or crossing.s_m < best.s_m):
            best = crossing
        return best

    def _crossing_conflict(
        self,
        snap: Any,
        path_xy: np.ndarray,
        path_s: np.ndarray,
        s0: float,
        front_m: float,
        skip: set[int],
        plan: tuple[np.ndarray, np.ndarray],
    ) -> Obstacle | None:
        """A vehicle whose predicted path crosses or joins the corridor before (or just after) the ego gets there.

        Vehicles already in the corridor ahead (leaders, in ``skip``) or behind the ego (followers) are skipped.
        """
        cfg, veh = self.config, snap.vehicles
        moving = (np.abs(veh.speed_mps) > 0.5) & ~np.asarray(veh.parked, bool)
        moving &= np.hypot(veh.x_m - path_xy[0, 0], veh.y_m - path_xy[0, 1]) < 40.0
        plan_t, plan_s = plan
        if not moving.any() or len(plan_t) == 0:
            return None
        times = np.arange(0.25, cfg.yield_horizon_s + 1e-9, 0.25)
        best: Obstacle | None = None
        for k in np.flatnonzero(moving):
            if int(k) in skip:
                continue
            s_now, d_now = project_on_path(path_xy, path_s, np.array([[veh.x_m[k], veh.y_m[k]]]))
            if d_now[0] < cfg.corridor_half_width_m + 0.5 * float(veh.width_m[k]) and s_now[0] <= s0 + front_m:
                continue  # a follower in the ego's lane
            future = self._predict(k, veh, times)  # (T, 2) box centres
            s_c, d_c = project_on_path(path_xy, path_s, future)
            enters = (d_c < cfg.corridor_half_width_m + 0.5 * float(veh.width_m[k])) & (s_c > s0 + front_m)
            if not enters.any():
                continue
            j = int(np.argmax(enters))
            t_other, s_conflict = float(times[j]), float(s_c[j])
            step = future[min(j + 1, len(future) - 1)] - future[max(j - 1, 0)]
            i = min(int(np.searchsorted(path_s, s_conflict)), len(path_s) - 2)
            along = path_xy[i + 1] - path_xy[i]
            cos_angle = float(np.dot(step, along)) / max(float(np.linalg.norm(step) * np.linalg.norm(along)), 1e-9)
            margin = cfg.merge_margin_s if cos_angle > math.cos(math.radians(30.0)) else cfg.yield_margin_s
            # When does the ego's front reach the conflict point on its current plan?
            reach = np.flatnonzero(plan_s + front_m >= s_conflict - 0.5 * float(veh.length_m[k]))
            t_ego = float(plan_t[reach[0]]) if len(reach) else math.inf
            if t_other <= t_ego + margin:
                obstacle = Obstacle(s_conflict - 0.5 * float(veh.length_m[k]) - 1.0, 0.0, int(veh.ids[k]), "crossing")
                if t_ego < 0.5 and s_conflict - (s0 + front_m) < 2.0:
                    continue  # already committed in front of it: braking here would stop in its way
                if best is None or obstacle.s_m < best.s_m:
                    best = obstacle
        return best

    def _predict(self, k: int, veh: Any, times: np.ndarray) -> np.ndarray:
        """Predicted box centres (T, 2) of vehicle ``k``: along the lanes it will take, else straight ahead."""
        traffic = getattr(self.world, "traffic", None)
        speed = abs(float(veh.speed_mps[k]))
        try:
            row = int(np.flatnonzero(traffic.ids == veh.ids[k])[0])
            if traffic.on_lane[row]:
                lanes = [self.world.town.lanes[int(i)] for i in traffic.lane_seq[row]]
                xy = np.concatenate([ln.xy_m for ln in lanes])
                s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
                target = float(traffic.s_m[row]) + speed * times
                return np.stack([np.interp(target, s, xy[:, 0]), np.interp(target, s, xy[:, 1])], -1)
        except (AttributeError, IndexError, TypeError):
            pass
        heading = np.array([math.cos(float(veh.yaw_rad[k])), math.sin(float(veh.yaw_rad[k]))])
        return np.array([veh.x_m[k], veh.y_m[k]]) + (speed * times)[:, None] * heading
