"""The leaderboard's traffic-rule criteria: ``RunningRedLightTest`` and ``RunningStopTest`` on the embedded signals.

Both re-implement scenario_runner's criteria (``atomic_criteria.py``) on the town's signals
(``autovla_agent.sim.world.signals``), in the internal WORLD frame (x east, y north, yaw CCW radians):

* red light: each tick, the ego's tail segment (from 0.8 half-lengths to one half-length + 1 m behind its
  centre) is tested against the stop line (+-0.6 lane widths across the last waypoint before the junction) of
  every red light whose trigger volume lies within 15 m, when the waypoint of the tail's far end is on the stop
  line's road and lane and the ego heads along that lane. One event per crossing; the light last run is not
  counted again until another one is.
* stop sign: the ego's lane waypoint and the waypoints every 0.5 m up to 4 m ahead along its lane; a stop is
  "affecting" when that first waypoint is within 4 m of the sign's trigger box centre and any of them lies in
  the box (axis aligned, 1.2 times its extent). While affected, coming below 0.1 m/s completes the stop; leaving
  the box without having stopped is one infraction (the same sign is not counted twice in a row). Signs are not
  looked for while reversing or heading against the lane (more than 100 degrees off).

Messages use the leaderboard's wording with CARLA coordinates (y flipped).
"""

from __future__ import annotations

import math

import numpy as np

from autovla_agent.sim.scoring.criteria import EgoTick, carla_at
from autovla_agent.sim.scoring.infractions import EventType, TrafficEvent
from autovla_agent.sim.world.signal_state import RED
from autovla_agent.sim.world.signals import RED_LIGHT_LINE_HALF_WIDTH, TownSignals
from autovla_agent.sim.world.town import Town

__all__ = ["RunningRedLightTest", "RunningStopTest", "lane_waypoints_ahead", "stop_zone_affects"]

DISTANCE_LIGHT_M = 15.0
STOP_PROXIMITY_M = 4.0
STOP_SPEED_THRESHOLD_MPS = 0.1
STOP_WAYPOINT_STEP_M = 0.5
STOP_BOX_MULTIPLIER = 1.2
_BACKWARDS_LIMIT = -0.17  # scenario_runner's "100 degrees, just in case" (on speeds and direction cosines)


def _segments_intersect(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    """Whether segments p1-p2 and q1-q2 share a point (shapely's ``intersection`` is not empty)."""

    def orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    def on_segment(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> bool:
        return min(a[0], b[0]) - 1e-12 <= c[0] <= max(a[0], b[0]) + 1e-12 and (
            min(a[1], b[1]) - 1e-12 <= c[1] <= max(a[1], b[1]) + 1e-12
        )

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and d1 != 0 and d2 != 0 and d3 != 0 and d4 != 0:
        return True
    return (
        (d1 == 0 and on_segment(q1, q2, p1))
        or (d2 == 0 and on_segment(q1, q2, p2))
        or (d3 == 0 and on_segment(p1, p2, q1))
        or (d4 == 0 and on_segment(p1, p2, q2))
    )


def _half_length_m(ego: EgoTick) -> float:
    """Half the ego box length (the actor's bounding-box extent x) from its corners (front-left, rear-left...)."""
    return 0.5 * float(np.hypot(*(ego.corners[0] - ego.corners[1])))


class RunningRedLightTest:
    """Red-light infractions of the ego (see the module docstring).

    Args:
        town: the town (its ``carla.Map`` answers the waypoint of the ego's tail, as the leaderboard's).
        signals: the town's signals.
    """

    def __init__(self, town: Town, signals: TownSignals) -> None:
        self.town = town
        self.signals = signals
        self._last_head: int | None = None

    def _tail_lane(self, xy: np.ndarray, z_m: float) -> tuple[int, int]:
        """(road_id, lane_id) of the driving-lane waypoint nearest a point (CARLA's ``map.get_waypoint``)."""
        import carla  # only the sim imports carla

        wp = self.town.map.get_waypoint(carla.Location(float(xy[0]), -float(xy[1]), float(z_m)))
        return (int(wp.road_id), int(wp.lane_id)) if wp is not None else (-1, 0)

    def update(self, ego: EgoTick, head_state: np.ndarray | None) -> list[TrafficEvent]:
        """The red-light events of this tick; ``head_state`` (H,) is every light head's state (None: no lights)."""
        lines = self.signals.lines
        if head_state is None or len(lines) == 0:
            return []
        fwd = np.array([math.cos(ego.yaw_rad), math.sin(ego.yaw_rad)])
        ext = _half_length_m(ego)
        tail_close = ego.xy - 0.8 * ext * fwd
        tail_far = ego.xy - (ext + 1.0) * fwd
        near = np.hypot(*(lines.trigger_xy_m - ego.xy).T) <= DISTANCE_LIGHT_M
        red = np.asarray(head_state)[lines.head] == RED
        events: list[TrafficEvent] = []
        tail_lane: tuple[int, int] | None = None
        for k in np.flatnonzero(near & red):
            head = int(lines.head[k])
            if self._last_head is not None and self._last_head == head:
                continue
            line_dir = np.array([math.cos(lines.yaw_rad[k]), math.sin(lines.yaw_rad[k])])
            if float(fwd @ line_dir) <= 0.0:
                continue
            if tail_lane is None:
                tail_lane = self._tail_lane(tail_far, float(lines.z_m[k]))
            if tail_lane != (int(lines.road_id[k]), int(lines.lane_id[k])):
                continue
            left = np.array([-line_dir[1], line_dir[0]]) * RED_LIGHT_LINE_HALF_WIDTH * float(lines.lane_width_m[k])
            if _segments_intersect(tail_close, tail_far, lines.xy_m[k] + left, lines.xy_m[k] - left):
                pole = self.signals.heads.xy_m[head]
                head_id = self.signals.heads.ids[head]
                message = f"Agent ran a red light {head_id} at {carla_at(pole[0], pole[1])}"
                events.append(ego.event(EventType.TRAFFIC_LIGHT_INFRACTION, message))
                self._last_head = head
        return events


def lane_waypoints_ahead(town: Town, xy_world_m: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The lane-centre point nearest ``xy`` and the points every 0.5 m up to 4 m ahead (9, 2), with its heading.

    Past a lane's end the first successor is followed, as ``waypoint.next(0.5)[0]``. None off the road.
    """
    lp = town.locate(xy_world_m)
    if lp is None:
        return None
    steps = int(STOP_PROXIMITY_M / STOP_WAYPOINT_STEP_M)
    pts = []
    lane, s = lp.lane, lp.s_m
    for k in range(steps + 1):
        ln = town.lanes[lane]
        target = s + (k and STOP_WAYPOINT_STEP_M)
        while target > ln.length_m and ln.successors:
            target -= ln.length_m
            lane = ln.successors[0]
            ln = town.lanes[lane]
        s = min(target, ln.length_m)
        pts.append(ln.interpolate(s)[0])
    return np.array(pts), lp.yaw_rad


def stop_zone_affects(signals: TownSignals, zone: int, points_xy_m: np.ndarray) -> bool:
    """``RunningStopTest.is_actor_affected_by_stop``: the first point near the box and any point inside it."""
    stops = signals.stops
    center = stops.box_xy_m[zone]
    if float(np.hypot(*(points_xy_m[0] - center))) > STOP_PROXIMITY_M:
        return False
    half = STOP_BOX_MULTIPLIER * float(stops.box_half_m[zone])
    rel = np.abs(points_xy_m - center)
    return bool(((rel[:, 0] < half) & (rel[:, 1] < half)).any())


class RunningStopTest:
    """Stop-sign infractions of the ego (see the module docstring)."""

    def __init__(self, town: Town, signals: TownSignals) -> None:
        self.town = town
        self.signals = signals
        self._target: int | None = None
        self._stop_completed = False
        self._last_failed: str | None = None

    def update(self, ego: EgoTick, signed_speed_mps: float) -> list[TrafficEvent]:
        """The stop-sign events of this tick (``signed_speed_mps``: negative when reversing)."""
        stops = self.signals.stops
        if len(stops) == 0:
            return []
        if self._target is None:
            near = np.hypot(*(stops.box_xy_m - ego.xy).T) < STOP_PROXIMITY_M + 6.0
            if not near.any():
                return []  # no sign within reach: skip the lane queries
        found = lane_waypoints_ahead(self.town, ego.xy)
        if found is None:
            return []
        points, lane_yaw = found
        if self._target is None:
            self._target = self._scan(ego, signed_speed_mps, points, lane_yaw)
            return []
        if not self._stop_completed and ego.speed_mps < STOP_SPEED_THRESHOLD_MPS:
            self._stop_completed = True
        events = []
        if not stop_zone_affects(self.signals, self._target, points):
            sign_id = stops.sign_ids[self._target]
            if not self._stop_completed and self._last_failed != sign_id:
                pole = stops.pole_xy_m[self._target]
                message = f"Agent ran a stop with id={sign_id} at {carla_at(pole[0], pole[1])}"
                events.append(ego.event(EventType.STOP_INFRACTION, message))
                self._last_failed = sign_id
            self._target = None
            self._stop_completed = False
        return events

    def _scan(self, ego: EgoTick, signed_speed_mps: float, points: np.ndarray, lane_yaw: float) -> int | None:
        """The first stop zone affecting the ego, unless it reverses or heads against its lane."""
        if signed_speed_mps < _BACKWARDS_LIMIT:  # velocity . forward < -0.17 m/s
            return None
        if math.cos(ego.yaw_rad - lane_yaw) < _BACKWARDS_LIMIT:
            return None
        for zone in range(len(self.signals.stops)):
            if stop_zone_affects(self.signals, zone, points):
                return zone
        return None

    @property
    def target(self) -> int | None:
        """The stop zone the ego is dealing with now (None: none)."""
        return self._target

    @property
    def stop_completed(self) -> bool:
        """Whether the ego already stopped for the current target."""
        return self._stop_completed
