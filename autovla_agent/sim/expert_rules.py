"""The expert's traffic rules: lights, stop signs, pedestrians and speed limits along its route (privileged).

Built once per route from the embedded ``World``: the stop lines the route meets (a road lane of the route
ending at a junction governed by a light or a stop sign), and the speed limit at every route point. Each tick
it answers what to stop for, as an ``Obstacle`` on the route's arc-length axis (the expert keeps its IDM gap to
it, so obstacles are placed ``min_gap_m`` beyond where the front bumper should stand):

* red light: stop with the front ``light_stop_margin_m`` before the line; yellow (or a green that turns red
  before the ego could clear the line): stop when that is still possible comfortably, or when the tail could not
  clear the line before red and a hard stop still can; otherwise go;
* stop sign: stop inside the zone where ``RunningStopTest`` counts the stop (sampled with the criterion's own
  predicate), stand ``stop_sign_hold_s``, then go on (the vehicle yield rules still apply);
* pedestrians: one in the corridor ahead, or one on a crossing whose remaining way crosses the corridor ahead.

Walkers are read from ``world.walkers`` (paths, on-road state), lights from ``world.lights``, never from sensors.
World frame (x east, y north, yaw CCW rad), metres and seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autovla_agent.sim.expert_perception import Obstacle, box_points, project_on_path
from autovla_agent.sim.scoring.traffic_rules import lane_waypoints_ahead, stop_zone_affects
from autovla_agent.sim.world.signal_state import GREEN, RED

__all__ = ["ExpertRules", "RouteStop"]

_ZONE_MARGIN_M = 0.8  # stand this far inside the counted stop zone
_STOPPED_MPS = 0.05


def _travel_time_s(distance_m: float, speed_mps: float, accel_mps2: float) -> float:
    """Time to cover ``distance_m`` from ``speed_mps`` accelerating at ``accel_mps2`` (the tail clearing a line)."""
    if distance_m <= 0.0:
        return 0.0
    return (math.sqrt(speed_mps * speed_mps + 2.0 * accel_mps2 * distance_m) - speed_mps) / accel_mps2


@dataclass(frozen=True, slots=True)
class RouteStop:
    """A stop line on the route: a light's (``StopLines`` row) or a stop sign's (``StopZones`` row)."""

    kind: str  # "light" | "stop"
    index: int
    s_line_m: float  # route arc length of the line (the junction entry)
    s_centre_m: float  # stop signs: where the ego's box centre stands for the stop to count


def _route_runs(town: Any, route: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lane of each consecutive run, route arc length where that lane starts, run of each route point)."""
    lanes = np.asarray(route.lanes, np.int64)
    first = np.concatenate([[0], np.flatnonzero(np.diff(lanes)) + 1])
    start = np.array([route.s_m[k] - town.project(int(lanes[k]), route.xy_world_m[k]).s_m for k in first])
    run_of_point = np.searchsorted(first, np.arange(len(lanes)), side="right") - 1
    return lanes[first], start, run_of_point


class ExpertRules:
    """Stop lines, stop-sign state and speed limits of one route (see the module docstring).

    Args:
        world: the embedded ``World`` (town, route, signals, lights, walkers).
        config: the ``ExpertConfig``.
        half_length_m: half the ego box length (centre to front bumper).
    """

    def __init__(self, world: Any, config: Any, half_length_m: float) -> None:
        self.world = world
        self.config = config
        self.half_length_m = half_length_m
        town, route = world.town, world.route
        self.signals = getattr(world, "signals", None)
        run_lane, run_start, run_of_point = _route_runs(town, route)
        self.stops: list[RouteStop] = []
        if self.signals is not None:
            for r in range(len(run_lane) - 1):
                a, b = int(run_lane[r]), int(run_lane[r + 1])
                if town.lanes[a].is_junction or not town.lanes[b].is_junction:
                    continue
                s_line = float(run_start[r + 1])
                if self.signals.lane_light[a] >= 0:
                    self.stops.append(RouteStop("light", int(self.signals.lane_light[a]), s_line, s_line))
                elif self.signals.lane_stop[a] >= 0:
                    zone = int(self.signals.lane_stop[a])
                    self.stops.append(RouteStop("stop", zone, s_line, self._stop_centre(zone, s_line)))
            s_on_lane = np.asarray(route.s_m) - run_start[run_of_point]
            self.limit_mps = self.signals.speed_limits.at(np.asarray(route.lanes), s_on_lane)
        else:
            self.limit_mps = np.full(len(route.s_m), 30.0 / 3.6)
        self._done_zones: set[int] = set()
        self._standing_since_s: float | None = None

    def _stop_centre(self, zone: int, s_line: float) -> float:
        """Route arc length for the ego centre inside the zone the stop criterion counts, near the line."""
        route = self.world.route
        s = np.arange(s_line - 9.0, s_line + 3.0, 0.25)
        xy = np.stack(
            [np.interp(s, route.s_m, route.xy_world_m[:, 0]), np.interp(s, route.s_m, route.xy_world_m[:, 1])], -1
        )
        ok = np.zeros(len(s), bool)
        for i, p in enumerate(xy):
            found = lane_waypoints_ahead(self.world.town, p)
            ok[i] = found is not None and stop_zone_affects(self.signals, zone, found[0])
        wanted = s_line - self.half_length_m - self.config.light_stop_margin_m
        if not ok.any():
            return wanted
        lo = float(s[np.argmax(ok)])
        hi = float(s[len(ok) - 1 - np.argmax(ok[::-1])])
        return float(np.clip(wanted, lo + _ZONE_MARGIN_M, max(lo + _ZONE_MARGIN_M, hi - _ZONE_MARGIN_M)))

    def speed_caps(self, path_s: np.ndarray) -> np.ndarray:
        """The expert's speed cap (m/s) at path arc lengths: its share of the speed limit, at most ``max_speed``."""
        route = self.world.route
        idx = np.clip(np.searchsorted(route.s_m, path_s), 0, len(route.s_m) - 1)
        return np.minimum(self.config.speed_limit_fraction * self.limit_mps[idx], self.config.max_speed_mps)

    # ------------------------------------------------------------------ signals
    def signal_obstacle(self, time_s: float, s0_rear: float, speed_mps: float, front_m: float) -> Obstacle | None:
        """What the next light or stop sign asks for: a standing obstacle, or None (go)."""
        cfg = self.config
        lights = getattr(self.world, "lights", None)
        front = s0_rear + front_m
        centre = front - self.half_length_m
        v = max(speed_mps, 0.0)
        for stop in self.stops:
            if stop.s_line_m - front > cfg.lookahead_m + 40.0:
                break
            if stop.kind == "light":
                if lights is None or front > stop.s_line_m + 0.3:
                    continue  # no lights, or the front is over the line: committed
                head = int(self.signals.lines.head[stop.index])
                if self._must_stop_at_light(int(lights.state[head]), float(lights.time_to_red_s[head]), stop, front, v):
                    target = stop.s_line_m - cfg.light_stop_margin_m
                    return Obstacle(target + cfg.min_gap_m, 0.0, -1, "red light")
                continue
            if stop.index in self._done_zones or not self.world.config.signals.stop_signs:
                continue
            if centre > stop.s_centre_m + 2.0:
                self._done_zones.add(stop.index)  # past it (it was stood at, or it cannot be any more)
                continue
            if v < _STOPPED_MPS and abs(centre - stop.s_centre_m) < _ZONE_MARGIN_M + 0.4:
                if self._standing_since_s is None:
                    self._standing_since_s = time_s
                if time_s - self._standing_since_s >= cfg.stop_sign_hold_s:
                    self._done_zones.add(stop.index)
                    self._standing_since_s = None
                    continue
            else:
                self._standing_since_s = None
            return Obstacle(stop.s_centre_m + self.half_length_m + cfg.min_gap_m, 0.0, -1, "stop sign")
        return None

    def _must_stop_at_light(self, state: int, time_to_red_s: float, stop: RouteStop, front: float, v: float) -> bool:
        """Red: stop. Yellow, or green turning red before the tail clears the line: stop if that still works."""
        cfg = self.config
        d = stop.s_line_m - cfg.light_stop_margin_m - front
        if state == RED:
            return d > -cfg.light_stop_margin_m  # front not over the line yet
        t_clear = _travel_time_s(stop.s_line_m - front + 2.0 * self.half_length_m + 1.5, v, cfg.max_accel_mps2)
        if state == GREEN and time_to_red_s > t_clear + 0.5:
            return False
        comfortable = d > v * v / (2.0 * cfg.comfort_decel_mps2)
        if comfortable:
            return True
        can_clear = t_clear < time_to_red_s - 0.3
        return not can_clear and d > v * v / (2.0 * cfg.max_decel_mps2)

    # ------------------------------------------------------------------ pedestrians
    def walker_obstacle(
        self, path_xy: np.ndarray, path_s: np.ndarray, s0_rear: float, front_m: float
    ) -> Obstacle | None:
        """The nearest pedestrian in the corridor ahead or about to cross it."""
        walkers = getattr(self.world, "walkers", None)
        if walkers is None or len(walkers) == 0:
            return None
        cfg = self.config
        near = np.hypot(walkers.x_m - path_xy[0, 0], walkers.y_m - path_xy[0, 1]) < cfg.lookahead_m + 10.0
        pts = box_points(walkers.x_m, walkers.y_m, walkers.yaw_rad, walkers.length_m, walkers.width_m)
        best: Obstacle | None = None
        for k in np.flatnonzero(near):
            s_pts, d_pts = project_on_path(path_xy, path_s, pts[k])
            # the corridor is wider for pedestrians on the road; one waiting on the kerb is only in the way inside it
            margin = cfg.walker_margin_m if walkers.on_road[k] else 0.0
            inside = (d_pts < cfg.corridor_half_width_m + margin) & (s_pts > s0_rear + 0.5)
            s_hit = float(s_pts[inside].min()) if inside.any() else math.inf
            if walkers.crossing[k] and (walkers.on_road[k] or walkers.speed_mps[k] > 0.0):
                s_hit = min(s_hit, self._crossing_hit(walkers, int(k), path_xy, path_s, s0_rear + front_m))
            if math.isfinite(s_hit) and (best is None or s_hit - 1.0 < best.s_m):
                best = Obstacle(s_hit - 1.0, 0.0, int(walkers.ids[k]), "pedestrian")
        return best

    def _crossing_hit(self, walkers: Any, k: int, path_xy: np.ndarray, path_s: np.ndarray, front: float) -> float:
        """Path arc length where walker ``k``'s remaining way over the road meets the corridor ahead (inf: never)."""
        cfg = self.config
        d = float(walkers.direction[k])
        end = walkers.road_out_m[k] + 1.0 if d > 0 else walkers.road_in_m[k] - 1.0
        s = np.arange(float(walkers.s_m[k]), float(end), 0.5 * d)
        if len(s) == 0:
            return math.inf
        x, y, _ = walkers.lookup_row(k, s)
        s_proj, dist = project_on_path(path_xy, path_s, np.stack([x, y], -1))
        hit = (dist < cfg.corridor_half_width_m + cfg.walker_margin_m + 0.5) & (s_proj > front - 1.0)
        return float(s_proj[hit].min()) if hit.any() else math.inf
