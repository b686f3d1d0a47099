"""Leaderboard route criteria and the driving score, computed on embedded-world snapshots.

Each criterion re-implements the behaviour of its CARLA Leaderboard 2.0 / scenario_runner counterpart
(``RouteCompletionTest``, ``InRouteTest``, ``ActorBlockedTest`` and ``RouteTimeoutBehavior`` here;
``CollisionTest``, ``OutsideRouteLanesTest`` and ``MinimumSpeedRouteTest`` in ``autovla_agent.sim.scoring.criteria``,
``RunningRedLightTest`` and ``RunningStopTest`` in ``autovla_agent.sim.scoring.traffic_rules``) on numpy arrays in
the internal WORLD frame of ``autovla_agent.sensors.frames`` (x east, y north, yaw CCW radians). Positions are box
centres, the CARLA actor location. Messages quote positions in CARLA coordinates (y flipped) with the
leaderboard's wording. Red lights and stop signs are scored when the scorer knows the town (its signals) and the
snapshots carry the light states. Events, penalties and ``compute_scores`` live in
``autovla_agent.sim.scoring.infractions``, the thresholds (``ScoringConfig``) in ``autovla_agent.sim.scoring.config``.

Route timeout (the formula chosen, scenario_runner's ``RouteTimeoutBehavior``): the budget starts at 300 s and
grows, as the ego advances along the route, by each advanced distance / (10 % of the speed limit), i.e.
``300 s + route_length / (0.1 * speed_limit)`` for a completed route; the speed limit is the map's at the ego
when a lane query provides it, else ``default_speed_limit_mps`` (30 km/h).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autovla_agent.sim.scoring.config import ScoringConfig
from autovla_agent.sim.scoring.criteria import (
    CollisionTest,
    EgoTick,
    MinSpeedRouteTest,
    OutsideRouteLanesTest,
    RoutePath,
    carla_at,
)
from autovla_agent.sim.scoring.infractions import EventType, RouteScores, TrafficEvent, compute_scores
from autovla_agent.sim.scoring.traffic_rules import RunningRedLightTest, RunningStopTest
from autovla_agent.sim.world.lane_query import LaneQuery, LaneSample

__all__ = ["RouteScorer"]


class RouteScorer:
    """All route criteria of one route; feed it one snapshot per tick, then read scores and events.

    Args:
        route_xy_world_m: dense route (N, 2), about 1 m apart, world frame.
        route_yaw_rad: (N,) route direction; None derives it from the polyline.
        lanes: the map query for outside-lanes and layout collisions; None disables both.
        config: thresholds.
        town: the route's ``Town``: enables the red-light and stop-sign tests on its signals (None: off).
    """

    def __init__(
        self,
        route_xy_world_m: np.ndarray,
        route_yaw_rad: np.ndarray | None = None,
        lanes: LaneQuery | None = None,
        config: ScoringConfig | None = None,
        town: Any = None,
    ) -> None:
        self.config = config or ScoringConfig()
        self.route = RoutePath(route_xy_world_m, route_yaw_rad)
        self.route_xy, self.route_fwd = self.route.xy, self.route.fwd
        self.accum_m, self.route_length_m = self.route.accum_m, self.route.length_m
        self.lanes = lanes
        self.events: list[TrafficEvent] = []
        self.frame = -1
        self._time_s = 0.0  # of the last tick (the closing min-speed checkpoint is stamped with it)
        self._collisions = CollisionTest(self.config, lanes)
        self._outside_lanes = OutsideRouteLanesTest(self.config, self.route, has_lanes=lanes is not None)
        self._min_speed = MinSpeedRouteTest(self.config, self.route)
        self._red_light: RunningRedLightTest | None = None
        self._stop: RunningStopTest | None = None
        if town is not None:
            from autovla_agent.sim.world.signals import town_signals

            self._red_light = RunningRedLightTest(town, town_signals(town))
            self._stop = RunningStopTest(town, town_signals(town))
        # Route completion
        self.completion_pct = 0.0
        self.target_reached = False
        self._completion_index = 0
        self._accum_pct = self.accum_m / max(self.route_length_m, 1e-9) * 100.0
        # In route
        self._in_route_index = 0
        self._out_route_m = 0.0
        self._in_safe_route = True
        self.route_deviated = False
        # Blocked
        self._last_moving_time_s: float | None = None
        self.blocked = False
        # Timeout
        self._timeout_index = 0
        self._start_time_s: float | None = None
        self.timeout_budget_s = self.config.timeout_min_s
        self.timed_out = False

    # ------------------------------------------------------------------ public
    @property
    def done(self) -> bool:
        """Whether a criterion ended the route (target reached, deviation, blocked or timeout)."""
        return self.target_reached or self.route_deviated or self.blocked or self.timed_out

    @property
    def failure_message(self) -> str:
        """The leaderboard's failure reason for an ended route ("" if none); later checks take precedence."""
        message = ""
        if self.timed_out:
            message = "Agent timed out"
        if self.route_deviated:
            message = "Agent deviated from the route"
        if self.blocked:
            message = "Agent got blocked"
        return message

    def scores(self) -> RouteScores:
        """Scores from the events so far (call ``finish`` first at the end of a route)."""
        return compute_scores(self.completion_pct, self.events)

    def update(self, snapshot: Any) -> list[TrafficEvent]:
        """Evaluate one tick of a ``WorldSnapshot`` (ego, vehicles[, walkers]); return the new events."""
        ego = EgoTick.from_snapshot(snapshot)
        self.frame, self._time_s = ego.frame, ego.time_s
        n_before = len(self.events)
        lane = self.lanes.nearest_driving_lane(ego.x_m, ego.y_m) if self.lanes is not None else None
        self._update_completion(ego)
        self.events += self._collisions.update(ego, snapshot)
        self._outside_lanes.update(ego, lane, self.events)
        self._update_in_route(ego)
        self._update_blocked(ego)
        self._update_timeout(ego, lane)
        if self._red_light is not None:
            self.events += self._red_light.update(ego, getattr(snapshot, "light_state", None))
            self.events += self._stop.update(ego, float(snapshot.ego.speed_mps[0]))
        if self.config.use_min_speed:
            self._add(self._min_speed.update(ego, snapshot.vehicles))
        return self.events[n_before:]

    def finish(self) -> None:
        """Close the route as the criteria's ``terminate`` does (last min-speed checkpoint)."""
        if self.config.use_min_speed:
            self._add(self._min_speed.finish(self.frame, self._time_s))

    def _add(self, event: TrafficEvent | None) -> None:
        if event is not None:
            self.events.append(event)

    # ------------------------------------------------------------------ route completion
    def _update_completion(self, ego: EgoTick) -> None:
        if self.target_reached:
            return
        furthest = self.route.furthest_passed(ego.xy, self._completion_index, self.config.completion_window + 1)
        if furthest is not None:
            self._completion_index = furthest
            self.completion_pct = float(self._accum_pct[furthest])
        self.completion_pct = round(self.completion_pct, 2)
        dist_end = float(np.linalg.norm(ego.xy - self.route_xy[-1]))
        if self.completion_pct > self.config.completion_percentage and dist_end < self.config.completion_distance_m:
            self.target_reached = True
            self.completion_pct = 100.0

    # ------------------------------------------------------------------ in route (route deviation)
    def _update_in_route(self, ego: EgoTick) -> None:
        if self.route_deviated:
            return
        cfg, n = self.config, len(self.route_xy)
        window = self.route_xy[self._in_route_index : min(self._in_route_index + cfg.in_route_window + 1, n)]
        d = np.linalg.norm(window - ego.xy, axis=1)
        closest = self._in_route_index + int(len(d) - 1 - np.argmin(d[::-1]))  # last of equal minima, as `<=`
        shortest = float(d.min())
        off_route = True
        if shortest < cfg.offroad_max_m:
            off_route = False
            self._in_safe_route = shortest < cfg.offroad_min_m
        if closest != self._in_route_index:
            if not self._in_safe_route:
                self._out_route_m += float(self.accum_m[closest] - self.accum_m[self._in_route_index])
                if 100.0 * self._out_route_m / max(self.route_length_m, 1e-9) > cfg.max_route_out_percentage:
                    off_route = True
            self._in_route_index = closest
        if off_route:
            self.route_deviated = True
            self.events.append(
                ego.event(EventType.ROUTE_DEVIATION, f"Agent deviated from the route at {carla_at(ego.x_m, ego.y_m)}")
            )

    # ------------------------------------------------------------------ blocked
    def _update_blocked(self, ego: EgoTick) -> None:
        if self.blocked:
            return
        cfg = self.config
        if ego.speed_mps < cfg.blocked_min_speed_mps and self._last_moving_time_s is not None:
            if ego.time_s - self._last_moving_time_s > cfg.blocked_max_time_s:
                self.blocked = True
                message = f"Agent got blocked at {carla_at(ego.x_m, ego.y_m)}"
                self.events.append(ego.event(EventType.VEHICLE_BLOCKED, message))
        else:
            self._last_moving_time_s = ego.time_s

    # ------------------------------------------------------------------ timeout
    def _update_timeout(self, ego: EgoTick, lane: LaneSample | None) -> None:
        if self.timed_out:
            return
        cfg = self.config
        if self._start_time_s is None:
            self._start_time_s = ego.time_s
        new_index = self.route.furthest_passed(ego.xy, self._timeout_index, cfg.timeout_window + 1)
        if new_index is not None and new_index > self._timeout_index:
            limit = lane.speed_limit_mps if lane is not None and lane.speed_limit_mps else cfg.default_speed_limit_mps
            dist = float(self.accum_m[new_index] - self.accum_m[self._timeout_index])
            self.timeout_budget_s += dist / (limit * cfg.timeout_speed_fraction)
            self._timeout_index = new_index
        if ego.time_s - self._start_time_s > self.timeout_budget_s:
            self.timed_out = True
