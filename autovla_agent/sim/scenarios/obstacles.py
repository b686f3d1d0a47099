"""Obstacles that block the ego's lane: ParkedObstacle(TwoWays), Accident, ConstructionObstacle, HazardAtSideLane.

scenario_runner's ``route_obstacles.py`` and ``construction_crash_vehicle.py`` on the embedded world, with their
parameters and defaults (``distance``, ``direction``, ``speed`` km/h the background traffic's cap, ``frequency``
of the opposite flow, ``bicycle_speed`` km/h, ``bicycle_drive_distance``): the obstacle stands ``distance`` metres
ahead of the trigger point along its lane (stopping before a junction), displaced towards ``direction``; a
warning prop stands beside the road at the trigger point. After the ego comes within the trigger distance and
the wait, the background speed cap applies; the TwoWays variants switch off the wrong-direction test and start
the opposite flow so that the ego must find a gap to go round on the opposite lane. The scenario ends when the
ego is ``end_distance`` past the obstacle, or after its 240 s ``ScenarioTimeout``. World frame, SI units.
"""

from __future__ import annotations

import math
from typing import Any

from autovla_agent.sim.scenarios.actors import BICYCLES, CARS
from autovla_agent.sim.scenarios.base import Scenario
from autovla_agent.sim.scenarios.config import ScenarioSetupError
from autovla_agent.sim.scenarios.flows import ActorFlow, clear_lanes, clear_route_ahead, waypoint_path
from autovla_agent.sim.scenarios.geometry import displaced, lane_of, move_forward, side_lanes_until, wp_pose

__all__ = ["Accident", "ConstructionObstacle", "HazardAtSideLane", "ParkedObstacle", "ParkedObstacleTwoWays"]

_SIDE_STOP = ("Sidewalk", "Shoulder", "Border", "Restricted", "Median", "NONE", "Biking", "Bidirectional")


class _LaneObstacle(Scenario):
    """Shared life of the lane-blocking obstacles (see the module docstring)."""

    timeout_s = 240.0
    trigger_distance_m = 50.0
    wait_s = 5.0
    end_distance_m = 50.0
    default_distance_m = 120.0
    two_ways = False
    side_prop = "static.prop.warningaccident"

    def read_parameters(self) -> None:
        """``distance``, ``direction``, ``speed`` (and ``frequency`` for TwoWays)."""
        c = self.config
        self.distance_m = c.value("distance", float, self.default_distance_m)
        self.direction = c.choice("direction", ("left", "right"), "right")
        self.max_speed_kmh = c.value("speed", float, 60.0)
        self.frequency_m = c.interval("frequency", float, (20.0, 100.0)) if self.two_ways else (20.0, 100.0)
        if self.distance_m <= 0 or self.max_speed_kmh <= 0 or self.frequency_m[0] <= 0:
            raise ScenarioSetupError("'distance', 'speed' and 'frequency' must be positive")
        self._stage = "idle"
        self._stage_t = 0.0
        self._next_clear_s = 0.0
        self._flow: ActorFlow | None = None
        self._speed_backup: Any = None

    @property
    def side_sign(self) -> float:
        """+1 when obstacles are displaced to the right of their lane, -1 to the left."""
        return 1.0 if self.direction == "right" else -1.0

    def spawn_side_prop(self, wp: Any) -> None:
        """The warning sign beside the road at ``wp``: beyond the last driving/parking lane on ``direction``'s side."""
        last, beyond, _ = side_lanes_until(wp, self.direction, _SIDE_STOP)
        base = beyond if beyond is not None else last
        offset = 0.3 * float(last.lane_width) + (0.0 if beyond is not None else 0.5 * float(last.lane_width) + 1.0)
        x, y, yaw = displaced(wp_pose(base), self.side_sign * offset)
        self.spawn(self.side_prop, (x, y, yaw + math.pi / 2))  # facing the traffic (yaw + 90 degrees in CARLA)

    def spawn_vehicle(self, wp: Any, type_id: str, offset_frac: float) -> Any:
        """A hand-braked vehicle on ``wp``'s lane, displaced ``offset_frac`` half lane widths towards ``direction``."""
        pose = displaced(wp_pose(wp), self.side_sign * offset_frac * 0.5 * float(wp.lane_width))
        return self.spawn(type_id, pose, blocks_route=True)

    def car_model(self) -> str:
        """A random car blueprint (``vehicle.*`` of generation 2, base type car)."""
        return str(self.rng.choice(CARS))

    # behaviour ---------------------------------------------------------------------------------
    def start(self) -> None:
        """``LeaveSpaceInFront``: the way to the obstacle is cleared of background vehicles."""
        clear_route_ahead(self.world, self.leave_space_m())
        self._stage = "approach"

    def leave_space_m(self) -> float:
        """Distance kept free in front of the ego at the start."""
        return self.distance_m + 20.0

    def end_reached(self) -> bool:
        """``WaitUntilInFrontPosition``: the ego is past the end point."""
        return self.ego_in_front_of(self.end_pose)

    def update(self) -> bool:
        """Approach, wait, then the speed cap (and the opposite flow); done once the end condition holds."""
        if self.end_reached():
            return True
        if self._stage == "approach" and self.ego_within(self.reference_xy, self.trigger_distance_m):
            self._stage, self._stage_t = "wait", self.time_s
        elif self._stage == "wait" and self.time_s - self._stage_t > self.wait_s:
            self._stage = "active"
            self._cap_background_speed(self.max_speed_kmh / 3.6)
            if self.two_ways:
                self.wrong_direction_test = False
                self._start_opposite_flow()
        if self._flow is not None:
            self._flow.update()
        if self.time_s >= self._next_clear_s:  # background vehicles that enter the blocked lane leave it
            clear_lanes(self.world, self.blocked_lanes)
            self._next_clear_s = self.time_s + 1.0
        return False

    def finish(self) -> None:
        """Actors removed, the speed cap and the opposite flow ended."""
        if self._flow is not None:
            self._flow.stop()
        if self._speed_backup is not None:
            self.world.traffic.v0_mps[: len(self._speed_backup)] = self._speed_backup
        super().finish()

    def _cap_background_speed(self, cap_mps: float) -> None:
        """``SetMaxSpeed``: background vehicles drive at most ``cap_mps`` during the scenario."""
        traffic = self.world.traffic
        self._speed_backup = traffic.v0_mps.copy()
        traffic.v0_mps[:] = [min(v, cap_mps) for v in traffic.v0_mps]

    def _start_opposite_flow(self) -> None:
        """``OppositeActorFlow`` on the lane left of the obstacle, around it by 1.5 s/(km/h) of the limit + 30 m."""
        reference = self.obstacle_wp.get_left_lane()
        if reference is None or reference.lane_id * self.obstacle_wp.lane_id > 0:
            raise ScenarioSetupError("no opposite lane left of the obstacle for the opposite traffic")
        limit_kmh = 3.6 * self.speed_limit_mps()
        flow_m = 1.5 * limit_kmh + 30.0
        source, sink = reference, reference
        for _ in range(int(flow_m)):  # backwards along that lane (ahead of the ego), stopping at a junction
            prev = source.previous(1.0)
            if not prev or prev[0].is_junction:
                break
            source = prev[0]
        sink = move_forward(reference, flow_m)
        path = waypoint_path(source, sink, 3.0 * flow_m + 10.0)
        clear_lanes(self.world, {lane_of(self.world.town, source), lane_of(self.world.town, sink)}, only_ahead=False)
        speed = limit_kmh / 3.6
        self._flow = ActorFlow(self, path, self.frequency_m, speed, mode="follow", detect_m=10.0 + 1.6 * speed)


class ParkedObstacle(_LaneObstacle):
    """A vehicle parked in the ego's lane ``distance`` ahead (offset 0.7 of the half width), hazard lights on."""

    type_name = "ParkedObstacle"

    def build(self) -> None:
        """Side prop at the trigger point, the parked vehicle, the end point 50 m past it."""
        start = self.trigger_waypoint()
        self.spawn_side_prop(start)
        self.obstacle_wp = move_forward(start, self.distance_m)
        self.spawn_vehicle(self.obstacle_wp, self.car_model(), 0.7)
        self.reference_xy = wp_pose(self.obstacle_wp)[:2]
        self.end_pose = wp_pose(move_forward(self.obstacle_wp, self.end_distance_m))
        self.blocked_lanes = {lane_of(self.world.town, self.obstacle_wp)}


class ParkedObstacleTwoWays(ParkedObstacle):
    """ParkedObstacle where the ego has to use the opposite lane, with the opposite flow at ``frequency``."""

    type_name = "ParkedObstacleTwoWays"
    two_ways = True


class Accident(_LaneObstacle):
    """A police car, then two crashed vehicles 10 m and 16 m beyond it (offset 0.6 of the half width)."""

    type_name = "Accident"

    def build(self) -> None:
        """Side prop, police car at ``distance``, the two accident vehicles; the end 50 m past the last."""
        start = self.trigger_waypoint()
        self.spawn_side_prop(start)
        police_wp = move_forward(start, self.distance_m)
        self.spawn_vehicle(police_wp, "vehicle.dodge.charger_police_2020", 0.6)
        first_wp = move_forward(police_wp, 10.0)
        self.spawn_vehicle(first_wp, self.car_model(), 0.6)
        self.obstacle_wp = move_forward(first_wp, 6.0)
        self.spawn_vehicle(self.obstacle_wp, self.car_model(), 0.6)
        self.reference_xy = wp_pose(first_wp)[:2]
        self.end_pose = wp_pose(move_forward(self.obstacle_wp, self.end_distance_m))
        town = self.world.town
        self.blocked_lanes = {lane_of(town, police_wp), lane_of(town, self.obstacle_wp)}

    def leave_space_m(self) -> float:
        """Up to 20 m past the second accident vehicle."""
        return self.distance_m + 10.0 + 6.0 + 20.0


class ConstructionObstacle(_LaneObstacle):
    """A traffic-warning board and cones closing the ego's lane ``distance`` ahead (scenario_runner's layout)."""

    type_name = "ConstructionObstacle"
    trigger_distance_m = 30.0
    default_distance_m = 100.0
    side_prop = "static.prop.warningconstruction"

    def build(self) -> None:
        """Side prop; board 5 m before the construction point; 4 cones along one edge, 3 across the lane."""
        start = self.trigger_waypoint()
        self.spawn_side_prop(start)
        ahead = start.next(self.distance_m)
        if not ahead:
            raise ScenarioSetupError("no lane continues 'distance' ahead of the trigger point")
        self.obstacle_wp = ahead[0]
        pose = wp_pose(self.obstacle_wp)
        x, y, yaw = displaced(pose, 0.0, -5.0)
        self.spawn("static.prop.trafficwarning", (x, y, yaw + math.pi / 2), blocks_route=True)
        k = 0.85 * 0.5 * float(start.lane_width)
        edge = -self.side_sign * k  # 'right' puts the first row of cones on the lane's left edge
        for i in range(1, 5):  # 4 cones 2 m apart along the edge
            self.spawn("static.prop.constructioncone", displaced(pose, edge, 2.0 * i), blocks_route=True)
        for i in range(1, 4):  # then 3 cones 1 m apart across the lane, 8 m ahead
            self.spawn("static.prop.constructioncone", displaced(pose, edge + self.side_sign * i, 8.0),
                       blocks_route=True)  # fmt: skip
        self.reference_xy = pose[:2]
        self.end_pose = wp_pose(move_forward(self.obstacle_wp, self.end_distance_m))
        self.blocked_lanes = {lane_of(self.world.town, start), lane_of(self.world.town, self.obstacle_wp)}

    def leave_space_m(self) -> float:
        """``RemoveRoadLane``: the ego's lane up to the construction is cleared."""
        return self.distance_m + 10.0


class HazardAtSideLane(_LaneObstacle):
    """Two bicycles riding at the right side of the ego's lane ``distance`` ahead, then stopping (hand brake)."""

    type_name = "HazardAtSideLane"
    default_distance_m = 100.0

    def read_parameters(self) -> None:
        """``distance`` (100), ``speed``, ``bicycle_speed`` (10 km/h), ``bicycle_drive_distance`` (50 m)."""
        super().read_parameters()
        self.direction = "right"  # the bicycles always ride on the right
        self.bicycle_speed_mps = self.config.value("bicycle_speed", float, 10.0) / 3.6
        self.bicycle_drive_m = self.config.value("bicycle_drive_distance", float, 50.0)
        if self.bicycle_speed_mps <= 0 or self.bicycle_drive_m < 0:
            raise ScenarioSetupError("'bicycle_speed' must be positive and 'bicycle_drive_distance' not negative")
        self._passed_at_m: float | None = None

    def build(self) -> None:
        """Two bicycles 9 m apart, 0.55 of the half width right of the lane centre, waiting for the trigger."""
        start = self.trigger_waypoint()
        self._offset_m = 0.55 * 0.5 * float(start.lane_width)
        first = move_forward(start, self.distance_m)
        second = move_forward(first, 9.0)
        self.bicycles = []
        for wp in (first, second):
            target = wp.next(self.bicycle_drive_m) if self.bicycle_drive_m > 0 else [wp]
            if not target:
                raise ScenarioSetupError("no end location for the bicycles")
            path = waypoint_path(wp, target[0], self.bicycle_drive_m + 50.0) if self.bicycle_drive_m > 1 else None
            if path is None:
                self.bicycles.append(self.spawn(str(self.rng.choice(BICYCLES)), displaced(wp_pose(wp), self._offset_m),
                                                blocks_route=True))  # fmt: skip
                continue
            bike = self.spawn_on_path(str(self.rng.choice(BICYCLES)), path, 0.0, "static", self.bicycle_speed_mps,
                                      right_m=self._offset_m, blocks_route=True, at_end="stop",
                                      detect_m=10.0 + 1.6 * self.bicycle_speed_mps)  # fmt: skip
            self.bicycles.append(bike)
        self.obstacle_wp = second
        self.reference_xy = wp_pose(first)[:2]
        self.blocked_lanes = {lane_of(self.world.town, first), lane_of(self.world.town, second)}

    def leave_space_m(self) -> float:
        """Up to 20 m past the second bicycle."""
        return self.distance_m + 9.0 + 20.0

    def start(self) -> None:
        """The bicycles start riding (``BasicAgentBehavior`` at ``bicycle_speed``)."""
        super().start()
        for bike in self.bicycles:
            if bike.path is not None:
                bike.mode = "follow"

    def end_reached(self) -> bool:
        """``WaitUntilInFront`` of the last bicycle, then ``DriveDistance(end_distance)``."""
        last = self.bicycles[-1]
        if self._passed_at_m is None and self.ego_in_front_of((last.x_m, last.y_m, last.yaw_rad)):
            self._passed_at_m = self.odometer_m
        return self._passed_at_m is not None and self.odometer_m - self._passed_at_m > self.end_distance_m
