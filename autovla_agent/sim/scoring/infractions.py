"""Traffic events of a route, the leaderboard 2.0 penalty of each and the per-route scores they make.

The driving score is the leaderboard 2.0 one: ``score_composed = completion * penalty``, penalty the product
of 0.5 per pedestrian collision, 0.6 per vehicle collision, 0.65 per static/layout collision, 0.7 per red
light, 0.8 per stop sign, 0.7 per scenario timeout or emergency-vehicle yield, ``1 - p/100`` for a share
``p`` % of the route driven outside the route lanes and, when enabled, ``1 - 0.3 * (1 - pct/100)`` per
minimum-speed checkpoint (off by default, as in Bench2Drive).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "INFRACTION_KEYS",
    "LAYOUT_ACTOR_ID",
    "PENALTY_FACTORS",
    "PERCENTAGE_PENALTIES",
    "ROUTE_TIMEOUT_KEY",
    "EventType",
    "RouteScores",
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
