"""A PDM-style driving score of one planned trajectory on a stored scene state (numpy + shapely, no navsim).

Re-implements the structure of NAVSIM v1.1's PDM score (``navsim.planning.simulation.planner.pdm_planner.
scoring.pdm_scorer``): PDMS = NC * DAC * (5*EP + 5*TTC + 2*C) / 12 with

- NC: no at-fault collision (nuPlan's collision types: stopped-ego and rear collisions are not at fault,
  lateral ones only when the ego is off the drivable area); 0 for agents, ``static_collision_score`` for
  static objects;
- DAC: all four ego corners inside the drivable area at every step;
- EP: progress of the box centre along the route centreline, normalised by the larger of the plan's and the
  reference (expert) trajectory's progress; 1 when both are below ``progress_distance_threshold_m``;
- TTC: the ego box projected ahead at its current speed for 0, 0.3, 0.6, 0.9 s must not meet an agent that
  is ahead (or not behind while the ego is off the drivable area);
- C: longitudinal/lateral acceleration, jerk, yaw rate and yaw acceleration within nuPlan's comfort bounds
  (Savitzky-Golay derivatives as in navsim).

Differences from navsim (documented, deliberate): the plan is scored as given (navsim tracks it with an
LQR + bicycle model first; our plans come from the bicycle decoder and are feasible already), agents move at
constant velocity unless their future is stored, there is no lane-level "multiple lanes" area, and the
progress reference is the expert's driven future instead of a PDM-Closed proposal.

Frames: everything is in the ego frame of the current tick (x forward, y left, rear-axle origin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

from autovla_agent.training.schema import SceneState


@dataclass(frozen=True, kw_only=True, slots=True)
class PDMConfig:
    """Weights, horizon, ego box and thresholds of the PDM-style score (defaults = navsim v1.1)."""

    horizon_s: float = 4.0
    dt_s: float = 0.1
    ego_length_m: float = 4.9
    ego_width_m: float = 2.1
    rear_axle_to_center_m: float = 1.4  # box centre lies this far ahead of the rear axle
    progress_weight: float = 5.0
    ttc_weight: float = 5.0
    comfort_weight: float = 2.0
    progress_distance_threshold_m: float = 5.0
    stopped_speed_threshold_mps: float = 5e-3  # TTC ignores a stopped ego
    collision_stopped_speed_mps: float = 5e-2  # nuPlan's stopped threshold for collision types
    static_collision_score: float = 0.5
    ttc_lookahead_steps: tuple[int, ...] = (0, 3, 6, 9)
    agent_ahead_angle_deg: float = 30.0
    agent_behind_angle_deg: float = 150.0
    max_abs_jerk_mps3: float = 8.37
    max_abs_lat_accel_mps2: float = 4.89
    max_lon_accel_mps2: float = 2.40
    min_lon_accel_mps2: float = -4.05
    max_abs_yaw_accel_radps2: float = 1.93
    max_abs_lon_jerk_mps3: float = 4.13
    max_abs_yaw_rate_radps: float = 0.95

    def __post_init__(self) -> None:
        """Reject horizons and boxes that cannot be scored."""
        if self.horizon_s <= 0 or self.dt_s <= 0 or self.horizon_s < self.dt_s:
            raise ValueError("horizon_s and dt_s must be > 0 with horizon_s >= dt_s")
        if self.ego_length_m <= 0 or self.ego_width_m <= 0:
            raise ValueError("ego_length_m and ego_width_m must be > 0")

    @property
    def num_steps(self) -> int:
        """Number of future steps scored (the current state is step 0 on top of these)."""
        return round(self.horizon_s / self.dt_s)


@dataclass(frozen=True, slots=True)
class PDMResult:
    """Sub-scores and the aggregated PDM score of one trajectory (all in [0, 1])."""

    nc: float
    dac: float
    ep: float
    ttc: float
    comfort: float
    score: float
    progress_m: float
    collision_step: int | None = None  # first at-fault collision step (0.1 s units), None if none


def resample_plan(times_s: np.ndarray, poses_ego: np.ndarray, config: PDMConfig) -> np.ndarray:
    """Poses (num_steps + 1, 3) at 0, dt, ..., horizon from a plan given at ``times_s`` (origin prepended).

    Times past the plan's end hold the last pose (as navsim does).
    """
    t = np.concatenate([[0.0], np.asarray(times_s, dtype=np.float64)])
    p = np.vstack([np.zeros((1, 3)), np.asarray(poses_ego, dtype=np.float64)])
    yaw = np.unwrap(p[:, 2])
    grid = np.arange(config.num_steps + 1) * config.dt_s
    return np.stack([np.interp(grid, t, p[:, 0]), np.interp(grid, t, p[:, 1]), np.interp(grid, t, yaw)], axis=-1)


def _savgol_derivative(y: np.ndarray, dt_s: float, window: int, poly: int = 2, deriv: int = 1) -> np.ndarray:
    """Savitzky-Golay smoothing (deriv 0) or derivative of ``y`` (..., n) along the last axis.

    Each point uses a least-squares polynomial over ``window`` samples as centred as the ends allow (scipy's
    ``mode='interp'`` for odd windows); no scipy needed.
    """
    n = y.shape[-1]
    window = min(window, n)
    poly = min(poly, window - 1)
    out = np.empty_like(y, dtype=np.float64)
    for i in range(n):
        start = min(max(i - (window - 1) // 2, 0), n - window)
        x = (np.arange(start, start + window) - i) * dt_s
        vander = np.vander(x, poly + 1, increasing=True)  # columns x^0 .. x^poly
        coef_map = np.linalg.pinv(vander)  # (poly+1, window): y -> polynomial coefficients
        # value of the deriv-th derivative at x = 0 is deriv! * coefficient of x^deriv
        out[..., i] = math.factorial(deriv) * (y[..., start : start + window] @ coef_map[deriv])
    return out


def ego_corners(states_xyyaw: np.ndarray, config: PDMConfig) -> np.ndarray:
    """Corners (..., 4, 2) front-left, rear-left, rear-right, front-right of the ego box at rear-axle poses."""
    x, y, yaw = states_xyyaw[..., 0], states_xyyaw[..., 1], states_xyyaw[..., 2]
    c, s = np.cos(yaw), np.sin(yaw)
    cx, cy = x + config.rear_axle_to_center_m * c, y + config.rear_axle_to_center_m * s
    return _box_corners(cx, cy, c, s, config.ego_length_m, config.ego_width_m)


def _box_corners(cx, cy, c, s, length_m, width_m) -> np.ndarray:
    hl, hw = np.asarray(length_m) / 2.0, np.asarray(width_m) / 2.0
    local = [(hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw)]
    pts = [np.stack([cx + lx * c - ly * s, cy + lx * s + ly * c], axis=-1) for lx, ly in local]
    return np.stack(pts, axis=-2)


def _agent_tracks(scene: SceneState, num_steps: int, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Agent poses (A, num_steps + 1, 3) box centres and speeds (A,); constant velocity unless stored."""
    n_agents = len(scene.agents)
    poses = np.zeros((n_agents, num_steps + 1, 3))
    speeds = np.zeros(n_agents)
    t = np.arange(num_steps + 1) * dt_s
    for i, agent in enumerate(scene.agents):
        speeds[i] = agent.speed_mps
        if agent.future_poses_ego:
            fut = np.asarray(agent.future_poses_ego, dtype=np.float64)
            src_t = np.arange(len(fut) + 1) * scene.dt_s
            src = np.vstack([[agent.x_m, agent.y_m, agent.yaw_rad], fut])
            yaw = np.unwrap(src[:, 2])
            poses[i] = np.stack(
                [np.interp(t, src_t, src[:, 0]), np.interp(t, src_t, src[:, 1]), np.interp(t, src_t, yaw)], axis=-1
            )
        else:
            poses[i, :, 0] = agent.x_m + agent.speed_mps * math.cos(agent.yaw_rad) * t
            poses[i, :, 1] = agent.y_m + agent.speed_mps * math.sin(agent.yaw_rad) * t
            poses[i, :, 2] = agent.yaw_rad
    return poses, speeds


def _relative_angle(ego_pose: np.ndarray, point_xy: np.ndarray) -> float:
    """|heading - bearing to point| in radians, wrapped to [0, pi]."""
    bearing = math.atan2(point_xy[1] - ego_pose[1], point_xy[0] - ego_pose[0])
    return abs((ego_pose[2] - bearing + math.pi) % (2.0 * math.pi) - math.pi)


def progress_along(centerline: shapely.LineString, centers_xy: np.ndarray) -> float:
    """Non-negative progress (m) of the last centre over the first one, projected on the centreline."""
    start = centerline.project(shapely.Point(*centers_xy[0]))
    end = centerline.project(shapely.Point(*centers_xy[-1]))
    return max(0.0, float(end - start))


def _comfort(states: np.ndarray, speeds: np.ndarray, config: PDMConfig) -> float:
    """1.0 when every nuPlan comfort quantity stays within its bound over the horizon, else 0.0."""
    dt = config.dt_s
    yaw = np.unwrap(states[:, 2])
    yaw_rate = _savgol_derivative(yaw, dt, window=15)
    yaw_accel = _savgol_derivative(yaw_rate, dt, window=15)
    lon_accel = _savgol_derivative(np.gradient(speeds, dt), dt, window=8, deriv=0)
    lat_accel = _savgol_derivative(speeds * yaw_rate, dt, window=8, deriv=0)
    lon_jerk = _savgol_derivative(lon_accel, dt, window=15)
    jerk = _savgol_derivative(np.hypot(lon_accel, lat_accel), dt, window=15)
    ok = (
        np.all((lon_accel > config.min_lon_accel_mps2) & (lon_accel < config.max_lon_accel_mps2))
        and np.all(np.abs(lat_accel) < config.max_abs_lat_accel_mps2)
        and np.all(np.abs(yaw_rate) < config.max_abs_yaw_rate_radps)
        and np.all(np.abs(yaw_accel) < config.max_abs_yaw_accel_radps2)
        and np.all(np.abs(lon_jerk) < config.max_abs_lon_jerk_mps3)
        and np.all(np.abs(jerk) < config.max_abs_jerk_mps3)
    )
    return float(ok)


class SceneGeometry:
    """Shapely geometry of one scene, built once and reused for every completion of a GRPO group."""

    def __init__(self, scene: SceneState, config: PDMConfig) -> None:
        self.scene = scene
        self.config = config
        polys = [shapely.Polygon(p) for p in scene.drivable_area_ego_m]
        self.drivable = shapely.union_all([p if p.is_valid else p.buffer(0) for p in polys])
        shapely.prepare(self.drivable)
        self.centerline = shapely.LineString(scene.centerline_ego_m)
        horizon = config.num_steps + max(config.ttc_lookahead_steps, default=0)
        self.agent_poses, self.agent_speeds = _agent_tracks(scene, horizon, config.dt_s)
        if len(scene.agents):
            lengths = np.array([a.length_m for a in scene.agents])[:, None]
            widths = np.array([a.width_m for a in scene.agents])[:, None]
            p = self.agent_poses
            corners = _box_corners(p[..., 0], p[..., 1], np.cos(p[..., 2]), np.sin(p[..., 2]), lengths, widths)
            self.agent_polys = shapely.polygons(corners)  # (A, horizon + 1)
        else:
            self.agent_polys = np.empty((0, horizon + 1), dtype=object)
        self.agent_is_static = np.array([a.kind == "static" for a in scene.agents], dtype=bool)

    def in_drivable(self, corners: np.ndarray) -> np.ndarray:
        """Boolean (...,) that all 4 corners of each box (..., 4, 2) lie in the drivable area."""
        inside = shapely.contains_xy(self.drivable, corners[..., 0], corners[..., 1])
        inside |= shapely.intersects_xy(self.drivable.boundary, corners[..., 0], corners[..., 1])
        return inside.all(axis=-1)

    def progress(self, states_xyyaw: np.ndarray) -> float:
        """Progress (m) of the ego box centre along the centreline over a pose sequence (n, 3)."""
        c = self.config.rear_axle_to_center_m
        centers = states_xyyaw[:, :2] + c * np.stack([np.cos(states_xyyaw[:, 2]), np.sin(states_xyyaw[:, 2])], -1)
        return progress_along(self.centerline, centers)


def _no_collision(geom: SceneGeometry, states, speeds, polys, corners, off_road) -> tuple[float, int | None]:
    """NC sub-score and first at-fault step, with nuPlan's collision classification."""
    cfg = geom.config
    nc, first = 1.0, None
    ignored: set[int] = set()
    if geom.agent_polys.shape[0] == 0:
        return nc, first
    for t in range(len(states)):
        hits = np.nonzero(shapely.intersects(polys[t], geom.agent_polys[:, t]))[0]
        for a in hits:
            if a in ignored:
                continue
            agent_center = geom.agent_poses[a, t, :2]
            front = shapely.LineString([corners[t, 0], corners[t, 3]])
            if abs(speeds[t]) <= cfg.collision_stopped_speed_mps:
                at_fault = False  # stopped ego
            elif abs(geom.agent_speeds[a]) <= cfg.collision_stopped_speed_mps:
                at_fault = True  # stopped track
            elif _relative_angle(states[t], agent_center) > math.radians(cfg.agent_behind_angle_deg):
                at_fault = False  # rear collision
            elif front.intersects(geom.agent_polys[a, t]):
                at_fault = True  # active front
            else:
                at_fault = bool(off_road[t])  # lateral: at fault only off the drivable area
            if at_fault:
                score = cfg.static_collision_score if geom.agent_is_static[a] else 0.0
                nc = min(nc, score)
                first = t if first is None else min(first, t)
            else:
                ignored.add(int(a))
    return nc, first


def _ttc(geom: SceneGeometry, states, speeds, corners, off_road) -> float:
    """TTC sub-score: 0 when the box projected ahead at current speed meets an agent ahead within ~1 s."""
    cfg = geom.config
    if geom.agent_polys.shape[0] == 0:
        return 1.0
    heading = np.stack([np.cos(states[:, 2]), np.sin(states[:, 2])], axis=-1)
    ignored: set[int] = set()
    for t in range(len(states)):
        if abs(speeds[t]) < cfg.stopped_speed_threshold_mps:
            continue
        for k in cfg.ttc_lookahead_steps:
            shifted = corners[t] + heading[t] * speeds[t] * k * cfg.dt_s
            poly = shapely.Polygon(shifted)
            hits = np.nonzero(shapely.intersects(poly, geom.agent_polys[:, t + k]))[0]
            for a in hits:
                if a in ignored:
                    continue
                angle = _relative_angle(states[t], geom.agent_poses[a, t + k, :2])
                ahead = angle < math.radians(cfg.agent_ahead_angle_deg)
                behind = angle > math.radians(cfg.agent_behind_angle_deg)
                if ahead or (off_road[t] and not behind):
                    return 0.0
                ignored.add(int(a))
    return 1.0


def pdm_score(
    geom: SceneGeometry,
    times_s: np.ndarray,
    poses_ego: np.ndarray,
    speed0_mps: float,
    reference_poses_ego: np.ndarray | None = None,
    reference_times_s: np.ndarray | None = None,
) -> PDMResult:
    """Score one plan (poses (n, 3) at ``times_s``, ego frame) on a scene; see the module docstring."""
    cfg = geom.config
    states = resample_plan(times_s, poses_ego, cfg)
    step = np.diff(states[:, :2], axis=0)
    along = step[:, 0] * np.cos(states[:-1, 2]) + step[:, 1] * np.sin(states[:-1, 2])
    speeds = np.concatenate([[speed0_mps], along / cfg.dt_s])
    corners = ego_corners(states, cfg)
    polys = shapely.polygons(corners)
    on_road = geom.in_drivable(corners)
    off_road = ~on_road
    dac = float(on_road.all())
    nc, first = _no_collision(geom, states, speeds, polys, corners, off_road)
    ttc = _ttc(geom, states, speeds, corners, off_road)
    comfort = _comfort(states, speeds, cfg)
    progress = geom.progress(states)
    multi = nc * dac
    raw = progress * multi
    best = raw
    if reference_poses_ego is not None and len(reference_poses_ego):
        ref_times = reference_times_s if reference_times_s is not None else None
        if ref_times is None:
            raise ValueError("reference_times_s is required with reference_poses_ego")
        best = max(best, geom.progress(resample_plan(ref_times, reference_poses_ego, cfg)))
    if best > cfg.progress_distance_threshold_m:
        ep = raw / best
    else:
        ep = 1.0 if multi > 0 else 0.0
    weights = cfg.progress_weight + cfg.ttc_weight + cfg.comfort_weight
    weighted = (cfg.progress_weight * ep + cfg.ttc_weight * ttc + cfg.comfort_weight * comfort) / weights
    return PDMResult(
        nc=nc,
        dac=dac,
        ep=float(ep),
        ttc=ttc,
        comfort=comfort,
        score=float(multi * weighted),
        progress_m=progress,
        collision_step=first,
    )
