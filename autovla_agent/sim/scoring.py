"""Leaderboard route criteria and the driving score, computed on embedded-world snapshots.

Each criterion re-implements the behaviour of its CARLA Leaderboard 2.0 / scenario_runner counterpart
(``RouteCompletionTest``, ``CollisionTest``, ``OutsideRouteLanesTest``, ``InRouteTest``, ``ActorBlockedTest``,
``RouteTimeoutBehavior``, ``MinimumSpeedRouteTest``) on numpy arrays in the internal WORLD frame of
``autovla_agent.sensors.frames`` (x east, y north, yaw CCW radians). Positions are box centres, the CARLA actor
location. Messages quote positions in CARLA coordinates (y flipped) with the leaderboard's wording, so result
tools that parse them (the outside-lanes metres) read ours.

Embedded stand-ins, where no CARLA physics exists:
- collisions with vehicles: oriented-rectangle overlap of the ego box with every other box; one event per
  other actor until the boxes separate, plus the leaderboard's filters (5 m radius, 5 s same id, no event
  while the ego stands still). Parked vehicles count as static props (``COLLISION_STATIC``), as the
  leaderboard spawns parked cars as ``static.prop.mesh``.
- collisions with the road layout: a corner of the ego box more than ``layout_margin_m`` outside the
  drivable lanes (a kerb, a wall or a pole would be hit in CARLA); one event until the box is back inside.
- red lights and stop signs: the embedded towns have no signals, so these keys stay empty.

Route timeout (the formula chosen, scenario_runner's ``RouteTimeoutBehavior``): the budget starts at 300 s and
grows, as the ego advances along the route, by each advanced distance / (10 % of the speed limit), i.e.
``300 s + route_length / (0.1 * speed_limit)`` for a completed route; the speed limit is the map's at the ego
when a lane query provides it, else ``default_speed_limit_mps`` (30 km/h).

The driving score is the leaderboard 2.0 one: ``score_composed = completion * penalty``, penalty the product
of 0.5 per pedestrian collision, 0.6 per vehicle collision, 0.65 per static/layout collision, 0.7 per red
light, 0.8 per stop sign, 0.7 per scenario timeout or emergency-vehicle yield, ``1 - p/100`` for a share
``p`` % of the route driven outside the route lanes and, when enabled, ``1 - 0.3 * (1 - pct/100)`` per
minimum-speed checkpoint (off by default, as in Bench2Drive).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autovla_agent.sim.lane_query import (
    LaneQuery,
    LaneSample,
    boxes_overlap,
    cumulative_distance_m,
    oriented_box_corners,
)

__all__ = [
    "INFRACTION_KEYS",
    "PENALTY_FACTORS",
    "EventType",
    "RouteScorer",
    "RouteScores",
    "ScoringConfig",
    "TrafficEvent",
    "compute_scores",
]


class EventType(str, enum.Enum):
    """Traffic events, named as scenario_runner's ``TrafficEventType``."""

    COLLISION_STATIC = "COLLISION_STATIC"
    COLLISION_VEHICLE = "COLLISION_VEHICLE"
    COLLISION_PEDESTRIAN = "COLLISION_PEDESTRIAN"
    TRAFFIC_LIGHT_INFRACTION = "TRAFFIC_LIGHT_INFRACTION"
    STOP_INFRACTION = "STOP_INFRACTION"
    OUTSIDE_ROUTE_LANES_INFRACTION = "OUTSIDE_ROUTE_LANES_INFRACTION"
    MIN_SPEED_INFRACTION = "MIN_SPEED_INFRACTION"
    YIELD_TO_EMERGENCY_VEHICLE = "YIELD_TO_EMERGENCY_VEHICLE"
    SCENARIO_TIMEOUT = "SCENARIO_TIMEOUT"
    ROUTE_DEVIATION = "ROUTE_DEVIATION"
    VEHICLE_BLOCKED = "VEHICLE_BLOCKED"


# Leaderboard 2.0 multiplicative factors of the events that cost a fixed share of the score.
PENALTY_FACTORS: dict[EventType, float] = {
    EventType.COLLISION_PEDESTRIAN: 0.5,
    EventType.COLLISION_VEHICLE: 0.6,
    EventType.COLLISION_STATIC: 0.65,
    EventType.TRAFFIC_LIGHT_INFRACTION: 0.7,
    EventType.STOP_INFRACTION: 0.8,
    EventType.SCENARIO_TIMEOUT: 0.7,
    EventType.YIELD_TO_EMERGENCY_VEHICLE: 0.7,
}
# Events whose cost scales with a percentage: (per-unit value, "increases" | "decreases").
PERCENTAGE_PENALTIES: dict[EventType, tuple[float, str]] = {
    EventType.OUTSIDE_ROUTE_LANES_INFRACTION: (0.0, "increases"),
    EventType.MIN_SPEED_INFRACTION: (0.7, "decreases"),
}
# Key of each event type in a results record's ``infractions`` (the leaderboard's names and order).
INFRACTION_KEYS: dict[EventType, str] = {
    EventType.COLLISION_STATIC: "collisions_layout",
    EventType.COLLISION_PEDESTRIAN: "collisions_pedestrian",
    EventType.COLLISION_VEHICLE: "collisions_vehicle",
    EventType.TRAFFIC_LIGHT_INFRACTION: "red_light",
    EventType.STOP_INFRACTION: "stop_infraction",
    EventType.OUTSIDE_ROUTE_LANES_INFRACTION: "outside_route_lanes",
    EventType.MIN_SPEED_INFRACTION: "min_speed_infractions",
    EventType.YIELD_TO_EMERGENCY_VEHICLE: "yield_emergency_vehicle_infractions",
    EventType.SCENARIO_TIMEOUT: "scenario_timeouts",
    EventType.ROUTE_DEVIATION: "route_dev",
    EventType.VEHICLE_BLOCKED: "vehicle_blocked",
}
ROUTE_TIMEOUT_KEY = "route_timeout"
LAYOUT_ACTOR_ID = 0  # CARLA reports collisions with the static world as actor id 0


@dataclass(frozen=True, kw_only=True, slots=True)
class ScoringConfig:
    """Thresholds of the route criteria; defaults are the leaderboard's."""

    completion_window: int = 2  # route points looked ahead per tick (RouteCompletionTest.WINDOWS_SIZE)
    completion_distance_m: float = 10.0  # the end must be this close ...
    completion_percentage: float = 99.0  # ... and this much of the route passed, to count 100 %
    collision_radius_m: float = 5.0  # two collisions this close count as one
    collision_id_time_s: float = 5.0  # two collisions with the same actor this soon count as one
    collision_min_speed_mps: float = 0.1  # a collision of a standing ego is not its fault
    layout_margin_m: float = 1.0  # how far a box corner may leave the drivable lanes before it hits the layout
    outside_lane_allowed_m: float = 0.5  # shoulder allowance beyond half the lane width
    outside_lanes_window: int = 3
    max_vehicle_angle_rad: float = math.radians(120.0)  # ego vs lane direction after a junction
    max_waypoint_angle_rad: float = math.radians(150.0)  # lane direction jump between ticks
    offroad_max_m: float = 30.0  # farther than this from the route: route deviation
    offroad_min_m: float = 15.0  # farther than this counts towards the 30 % off-route share
    max_route_out_percentage: float = 30.0
    in_route_window: int = 5
    blocked_min_speed_mps: float = 0.1
    blocked_max_time_s: float = 180.0  # leaderboard 2.0 (formerly 90 s)
    timeout_min_s: float = 300.0
    timeout_speed_fraction: float = 0.1  # the budget grows by distance / (fraction * speed limit)
    timeout_window: int = 3
    default_speed_limit_mps: float = 30.0 / 3.6
    use_min_speed: bool = False  # official 2.0 has it; Bench2Drive (and AutoVLA's numbers) do not
    min_speed_checkpoints: int = 4

    def __post_init__(self) -> None:
        """Reject thresholds that would make a criterion meaningless."""
        for name in (
            "completion_window",
            "outside_lanes_window",
            "in_route_window",
            "timeout_window",
            "min_speed_checkpoints",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"ScoringConfig.{name} must be >= 1")
        for name in (
            "blocked_max_time_s",
            "timeout_min_s",
            "default_speed_limit_mps",
            "offroad_max_m",
            "timeout_speed_fraction",
        ):
            if getattr(self, name) <= 0.0:
                raise ValueError(f"ScoringConfig.{name} must be > 0")
        if not 0.0 < self.completion_percentage <= 100.0:
            raise ValueError("ScoringConfig.completion_percentage must be in (0, 100]")


@dataclass(frozen=True, slots=True)
class TrafficEvent:
    """One infraction or route event; ``message`` uses the leaderboard's wording."""

    event_type: EventType
    frame: int
    time_s: float
    message: str
    percentage: float | None = None  # outside-lanes share or min-speed checkpoint value, %
    distance_m: float | None = None  # outside-lanes distance
    xy_world_m: tuple[float, float] | None = None
    other_id: int | None = None


@dataclass(frozen=True, slots=True)
class RouteScores:
    """The three per-route scores of a results record, in percent (penalty as a factor)."""

    score_route: float
    score_penalty: float
    score_composed: float


# ----------------------------------------------------------------------------------------------- helpers
def _route_forward(xy_m: np.ndarray, yaw_rad: np.ndarray | None) -> np.ndarray:
    """Unit forward vectors (N, 2) of the route points: from their yaw, else from the polyline direction."""
    if yaw_rad is not None:
        yaw = np.asarray(yaw_rad, float)
        return np.stack([np.cos(yaw), np.sin(yaw)], axis=-1)
    d = np.gradient(xy_m, axis=0) if len(xy_m) > 1 else np.array([[1.0, 0.0]])
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def _carla_at(x_m: float, y_m: float) -> str:
    """The leaderboard's ``(x=..., y=..., z=...)`` text of a world-frame point, in CARLA coordinates."""
    return f"(x={round(float(x_m), 3)}, y={round(-float(y_m), 3)}, z=0.0)"


def _angle_between_rad(a_rad: float, b_rad: float) -> float:
    """Unsigned angle between two headings, in [0, pi]."""
    return abs((a_rad - b_rad + math.pi) % (2.0 * math.pi) - math.pi)


# ----------------------------------------------------------------------------------------------- scores
def compute_scores(completion_pct: float, events: Sequence[TrafficEvent]) -> RouteScores:
    """Leaderboard 2.0 route scores: completion, multiplicative penalty and their product (6 decimals)."""
    penalty = 1.0
    for event in events:
        if event.event_type in PENALTY_FACTORS:
            penalty *= PENALTY_FACTORS[event.event_type]
        elif event.event_type in PERCENTAGE_PENALTIES:
            value, kind = PERCENTAGE_PENALTIES[event.event_type]
            pct = float(event.percentage or 0.0)
            if kind == "decreases":
                penalty *= 1.0 - (1.0 - value) * (1.0 - pct / 100.0)
            else:
                penalty *= 1.0 - (1.0 - value) * pct / 100.0
    route = float(completion_pct)
    return RouteScores(round(route, 6), round(penalty, 6), round(max(route * penalty, 0.0), 6))


# ----------------------------------------------------------------------------------------------- criteria
@dataclass(slots=True)
class _Ego:
    """The ego at one tick, as the criteria read it."""

    frame: int
    time_s: float
    x_m: float
    y_m: float
    yaw_rad: float
    speed_mps: float  # absolute, as CarlaDataProvider.get_velocity
    corners: np.ndarray  # (4, 2)

    @property
    def xy(self) -> np.ndarray:
        """Centre (2,)."""
        return np.array([self.x_m, self.y_m])


@dataclass(slots=True)
class _ContactState:
    """Collision bookkeeping shared by vehicle, pedestrian and layout contacts."""

    in_contact_counted: set[int] = field(default_factory=set)
    last_id: int | None = None
    last_time_s: float | None = None
    last_xy: np.ndarray | None = None


class RouteScorer:
    """All route criteria of one route; feed it one snapshot per tick, then read scores and events.

    Args:
        route_xy_world_m: dense route (N, 2), about 1 m apart, world frame.
        route_yaw_rad: (N,) route direction; None derives it from the polyline.
        lanes: the map query for outside-lanes and layout collisions; None disables both.
        config: thresholds.
    """

    def __init__(
        self,
        route_xy_world_m: np.ndarray,
        route_yaw_rad: np.ndarray | None = None,
        lanes: LaneQuery | None = None,
        config: ScoringConfig | None = None,
    ) -> None:
        self.config = config or ScoringConfig()
        self.route_xy = np.asarray(route_xy_world_m, float).reshape(-1, 2)
        if len(self.route_xy) < 2:
            raise ValueError(f"a route needs at least 2 points to be scored, got {len(self.route_xy)}")
        self.route_fwd = _route_forward(self.route_xy, route_yaw_rad)
        self.accum_m = cumulative_distance_m(self.route_xy)
        self.route_length_m = float(self.accum_m[-1])
        self.lanes = lanes
        self.events: list[TrafficEvent] = []
        self.frame = -1
        # Route completion
        self.completion_pct = 0.0
        self.target_reached = False
        self._completion_index = 0
        self._accum_pct = self.accum_m / max(self.route_length_m, 1e-9) * 100.0
        # Collisions
        self._contacts = _ContactState()
        # Outside route lanes
        self._lanes_index = 0
        self._lanes_total_m = 0.0
        self._lanes_wrong_m = 0.0
        self._outside_active = False
        self._wrong_lane_active = False
        self._last_lane: LaneSample | None = None
        self._lanes_event_pos: int | None = None
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
        # Min speed
        self._ms_index = 0
        self._ms_current_m = 0.0
        self._ms_checkpoint_m = self.route_length_m / self.config.min_speed_checkpoints
        self._ms_ego_sum = 0.0
        self._ms_bg_sum = 0.0
        self._ms_points = 0
        self._ms_finished = False

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
        e = snapshot.ego
        yaw = float(e.yaw_rad[0])
        ego = _Ego(
            int(snapshot.frame),
            float(snapshot.time_s),
            float(e.x_m[0]),
            float(e.y_m[0]),
            yaw,
            abs(float(e.speed_mps[0])),
            oriented_box_corners(e.x_m[0], e.y_m[0], yaw, e.length_m[0], e.width_m[0]),
        )
        self.frame = ego.frame
        n_before = len(self.events)
        lane = self.lanes.nearest_driving_lane(ego.x_m, ego.y_m) if self.lanes is not None else None
        self._update_completion(ego)
        self._update_collisions(ego, snapshot)
        self._update_outside_lanes(ego, lane)
        self._update_in_route(ego)
        self._update_blocked(ego)
        self._update_timeout(ego, lane)
        if self.config.use_min_speed:
            self._update_min_speed(ego, snapshot.vehicles)
        return self.events[n_before:]

    def finish(self) -> None:
        """Close the route as the criteria's ``terminate`` does (last min-speed checkpoint)."""
        if self.config.use_min_speed and not self._ms_finished:
            self._ms_finished = True
            if self.accum_m[self._ms_index] / max(self.route_length_m, 1e-9) > 0.95:
                self._min_speed_checkpoint(self.frame, None)

    # ------------------------------------------------------------------ route completion
    def _passed(self, xy: np.ndarray, index: int) -> bool:
        return float(np.dot(xy - self.route_xy[index], self.route_fwd[index])) > 0.0

    def _update_completion(self, ego: _Ego) -> None:
        if self.target_reached:
            return
        xy = ego.xy
        n = len(self.route_xy)
        for i in range(self._completion_index, min(self._completion_index + self.config.completion_window + 1, n)):
            if self._passed(xy, i):
                self._completion_index = i
                self.completion_pct = float(self._accum_pct[i])
        self.completion_pct = round(self.completion_pct, 2)
        dist_end = float(np.linalg.norm(xy - self.route_xy[-1]))
        if self.completion_pct > self.config.completion_percentage and dist_end < self.config.completion_distance_m:
            self.target_reached = True
            self.completion_pct = 100.0

    # ------------------------------------------------------------------ collisions
    def _update_collisions(self, ego: _Ego, snapshot: Any) -> None:
        cfg, st = self.config, self._contacts
        # Forget the last collision once the ego moved away / enough time passed (CollisionTest.update).
        if st.last_xy is not None and float(np.linalg.norm(ego.xy - st.last_xy)) > cfg.collision_radius_m:
            st.last_xy = None
        if (
            st.last_id is not None
            and st.last_time_s is not None
            and ego.time_s - st.last_time_s > cfg.collision_id_time_s
        ):
            st.last_id = None
        contacts: list[tuple[int, EventType, str]] = []
        vehicles = snapshot.vehicles
        if len(vehicles):
            hits = boxes_overlap(
                ego.corners,
                oriented_box_corners(vehicles.x_m, vehicles.y_m, vehicles.yaw_rad, vehicles.length_m, vehicles.width_m),
            )
            for k in np.flatnonzero(hits):
                parked = bool(vehicles.parked[k])
                contacts.append(
                    (
                        int(vehicles.ids[k]),
                        EventType.COLLISION_STATIC if parked else EventType.COLLISION_VEHICLE,
                        "static.prop.mesh" if parked else "vehicle.embedded.traffic",
                    )
                )
        walkers = getattr(snapshot, "walkers", None)
        if walkers is not None and len(walkers):
            hits = boxes_overlap(
                ego.corners,
                oriented_box_corners(walkers.x_m, walkers.y_m, walkers.yaw_rad, walkers.length_m, walkers.width_m),
            )
            contacts += [
                (int(walkers.ids[k]), EventType.COLLISION_PEDESTRIAN, "walker.pedestrian.embedded")
                for k in np.flatnonzero(hits)
            ]
        if self.lanes is not None and float(self.lanes.outside_drivable_m(ego.corners).max()) > cfg.layout_margin_m:
            contacts.append((LAYOUT_ACTOR_ID, EventType.COLLISION_STATIC, "static.layout"))
        touching = {c[0] for c in contacts}
        st.in_contact_counted &= touching  # separated actors may collide again
        for other_id, event_type, type_id in contacts:
            if other_id in st.in_contact_counted:
                continue
            if st.last_id is not None and st.last_id == other_id:
                continue
            if st.last_xy is not None and float(np.linalg.norm(ego.xy - st.last_xy)) <= cfg.collision_radius_m:
                continue
            if ego.speed_mps < cfg.collision_min_speed_mps:
                continue  # re-checked next tick while the contact lasts, as CARLA's sensor fires every tick
            st.in_contact_counted.add(other_id)
            st.last_time_s, st.last_xy = ego.time_s, ego.xy
            if other_id != LAYOUT_ACTOR_ID:
                st.last_id = other_id
            where = _carla_at(ego.x_m, ego.y_m)
            self.events.append(
                TrafficEvent(
                    event_type,
                    ego.frame,
                    ego.time_s,
                    f"Agent collided against object with type={type_id} and id={other_id} at {where}",
                    xy_world_m=(ego.x_m, ego.y_m),
                    other_id=other_id,
                )
            )

    # ------------------------------------------------------------------ outside route lanes
    def _update_outside_lanes(self, ego: _Ego, lane: LaneSample | None) -> None:
        cfg = self.config
        if lane is not None:
            self._outside_active = lane.distance_m > lane.lane_width_m / 2.0 + cfg.outside_lane_allowed_m
            self._update_wrong_lane(ego, lane)
        else:
            self._outside_active = self.lanes is not None
        wrong = self._outside_active or self._wrong_lane_active
        n = len(self.route_xy)
        xy = ego.xy
        for i in range(self._lanes_index + 1, min(self._lanes_index + cfg.outside_lanes_window + 1, n)):
            if self._passed(xy, i):
                step_m = float(np.linalg.norm(self.route_xy[i] - self.route_xy[self._lanes_index]))
                self._lanes_total_m += step_m
                if wrong:
                    self._lanes_wrong_m += step_m
                if self._lanes_wrong_m:
                    self._set_outside_lanes_event(ego)
                self._lanes_index = i

    def _update_wrong_lane(self, ego: _Ego, lane: LaneSample) -> None:
        """OutsideRouteLanesTest._is_at_wrong_lane: opposite-direction lane entered (junctions ignored)."""
        cfg, last = self.config, self._last_lane
        if lane.is_junction:
            self._wrong_lane_active = False
        elif last is not None and (last.road_id != lane.road_id or last.lane_id != lane.lane_id):
            if last.is_junction:
                self._wrong_lane_active = _angle_between_rad(lane.yaw_rad, ego.yaw_rad) >= cfg.max_vehicle_angle_rad
            elif _angle_between_rad(last.yaw_rad, lane.yaw_rad) > cfg.max_waypoint_angle_rad:
                # A big jump of the lane direction: entering (or leaving) an opposite lane.
                self._wrong_lane_active = not self._wrong_lane_active
        self._last_lane = lane

    def _set_outside_lanes_event(self, ego: _Ego) -> None:
        pct = self._lanes_wrong_m / self._lanes_total_m * 100.0
        event = TrafficEvent(
            EventType.OUTSIDE_ROUTE_LANES_INFRACTION,
            ego.frame,
            ego.time_s,
            f"Agent went outside its route lanes for about {round(self._lanes_wrong_m, 3)} meters "
            f"({round(pct, 2)}% of the completed route)",
            percentage=pct,
            distance_m=self._lanes_wrong_m,
            xy_world_m=(ego.x_m, ego.y_m),
        )
        if self._lanes_event_pos is None:  # one event, updated in place as the share changes
            self._lanes_event_pos = len(self.events)
            self.events.append(event)
        else:
            self.events[self._lanes_event_pos] = event

    # ------------------------------------------------------------------ in route (route deviation)
    def _update_in_route(self, ego: _Ego) -> None:
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
                TrafficEvent(
                    EventType.ROUTE_DEVIATION,
                    ego.frame,
                    ego.time_s,
                    f"Agent deviated from the route at {_carla_at(ego.x_m, ego.y_m)}",
                    xy_world_m=(ego.x_m, ego.y_m),
                )
            )

    # ------------------------------------------------------------------ blocked
    def _update_blocked(self, ego: _Ego) -> None:
        if self.blocked:
            return
        cfg = self.config
        if ego.speed_mps < cfg.blocked_min_speed_mps and self._last_moving_time_s is not None:
            if ego.time_s - self._last_moving_time_s > cfg.blocked_max_time_s:
                self.blocked = True
                self.events.append(
                    TrafficEvent(
                        EventType.VEHICLE_BLOCKED,
                        ego.frame,
                        ego.time_s,
                        f"Agent got blocked at {_carla_at(ego.x_m, ego.y_m)}",
                        xy_world_m=(ego.x_m, ego.y_m),
                    )
                )
        else:
            self._last_moving_time_s = ego.time_s

    # ------------------------------------------------------------------ timeout
    def _update_timeout(self, ego: _Ego, lane: LaneSample | None) -> None:
        if self.timed_out:
            return
        cfg, n = self.config, len(self.route_xy)
        if self._start_time_s is None:
            self._start_time_s = ego.time_s
        new_index = self._timeout_index
        for i in range(self._timeout_index, min(self._timeout_index + cfg.timeout_window + 1, n)):
            if self._passed(ego.xy, i):
                new_index = i
        if new_index > self._timeout_index:
            limit = lane.speed_limit_mps if lane is not None and lane.speed_limit_mps else cfg.default_speed_limit_mps
            dist = float(self.accum_m[new_index] - self.accum_m[self._timeout_index])
            self.timeout_budget_s += dist / (limit * cfg.timeout_speed_fraction)
            self._timeout_index = new_index
        if ego.time_s - self._start_time_s > self.timeout_budget_s:
            self.timed_out = True

    # ------------------------------------------------------------------ min speed (optional)
    def _update_min_speed(self, ego: _Ego, vehicles: Any) -> None:
        n = len(self.route_xy)
        for i in range(self._ms_index, min(self._ms_index + 2 + 1, n)):
            if self._passed(ego.xy, i):
                self._ms_index = i
        if self.accum_m[self._ms_index] - self._ms_current_m > self._ms_checkpoint_m:
            self._min_speed_checkpoint(ego.frame, ego)
            self._ms_current_m = float(self.accum_m[self._ms_index])
            self._ms_ego_sum = self._ms_bg_sum = 0.0
            self._ms_points = 0
        moving = ~np.asarray(vehicles.parked, bool) if len(vehicles) else np.zeros(0, bool)
        if moving.any():
            self._ms_bg_sum += float(np.abs(np.asarray(vehicles.speed_mps)[moving]).mean())
            self._ms_ego_sum += ego.speed_mps
            self._ms_points += 1

    def _min_speed_checkpoint(self, frame: int, ego: _Ego | None) -> None:
        value = 100.0
        if self._ms_points > 0 and self._ms_bg_sum:
            value = round((self._ms_ego_sum / self._ms_points) / (self._ms_bg_sum / self._ms_points) * 100.0, 2)
        if value < 100.0:
            time_s = ego.time_s if ego is not None else (self.events[-1].time_s if self.events else 0.0)
            self.events.append(
                TrafficEvent(
                    EventType.MIN_SPEED_INFRACTION,
                    frame,
                    time_s,
                    f"Average speed is {value}% of the surrounding traffic's one",
                    percentage=value,
                )
            )
