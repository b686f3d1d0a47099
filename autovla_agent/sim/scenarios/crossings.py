"""Pedestrians crossing the ego's way: DynamicObjectCrossing, PedestrianCrossing, VehicleTurningRoutePedestrian.

scenario_runner's ``object_crash_vehicle.py``, ``pedestrian_crossing.py`` and ``object_crash_intersection.py``:
each walker waits on the sidewalk and starts crossing (``KeepVelocity`` in a straight line) when the ego's time
to arrival at the collision point drops below the scenario's reaction time or the ego is within its trigger
distance; once across it is removed, and the scenario ends when the ego has driven 40 m more. The walkers are
rows of the world's pedestrians (``Walkers.add_scripted``), so the pedestrians' model, the criteria, the
traffic and the expert treat them as any pedestrian. World frame (x east, y north, yaw CCW rad), SI units.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autovla_agent.sim.scenarios.actors import BLUEPRINTS, CARS
from autovla_agent.sim.scenarios.base import Scenario
from autovla_agent.sim.scenarios.config import ScenarioSetupError
from autovla_agent.sim.scenarios.flows import clear_lanes, clear_route_ahead
from autovla_agent.sim.scenarios.geometry import (
    displaced,
    junction_on_route,
    lane_of,
    route_index_near,
    side_lanes_until,
    time_to_arrival_s,
    waypoint_at,
    wp_pose,
)

__all__ = ["DynamicObjectCrossing", "PedestrianCrossing", "VehicleTurningRoutePedestrian"]

_END_DISTANCE_M = 40.0


class _Crossing(Scenario):
    """Walkers released by time to arrival at a collision point (see the module docstring)."""

    reaction_time_s = 2.1
    trigger_distance_m = 6.0

    def add_walker(self, pose: tuple[float, float, float], distance_m: float, speed_mps: float) -> int:
        """A scripted walker at ``pose`` that will walk ``distance_m`` straight ahead at ``speed_mps``."""
        x, y, yaw = pose
        end = np.array([x + distance_m * math.cos(yaw), y + distance_m * math.sin(yaw)])
        path = np.stack([np.array([x, y]), end])
        t = np.linspace(0.0, 1.0, max(int(distance_m / 0.2), 2))
        on_road = self.world.town.in_driving_lane(path[0] + t[:, None] * (path[1] - path[0]))
        road_in, road_out = (
            (float(t[np.argmax(on_road)] * distance_m), float(t[len(t) - 1 - np.argmax(on_road[::-1])] * distance_m))
            if on_road.any()
            else (math.nan, math.nan)
        )
        row = self.world.walkers.add_scripted(path, speed_mps, road_in, road_out)
        self.walker_rows.append(row)
        return row

    def walker_done(self, row: int) -> bool:
        """The walker has walked its whole way."""
        w = self.world.walkers
        return bool(w.s_m[row] >= w.path_length_m[row] - 1e-6)

    def released(self) -> bool:
        """``InTimeToArrivalToLocation`` or ``InTriggerDistanceToLocation`` on the collision point."""
        tta = time_to_arrival_s(self.ego_xy, self.ego_speed, self.collision_xy)
        return tta < self.reaction_time_s or self.ego_within(self.collision_xy, self.trigger_distance_m)


def _walker_spot(wp: Any, yaw_offset_rad: float, right_m: float) -> tuple[float, float, float]:
    """``get_sidewalk_transform``: the sidewalk centre (else ``right_m`` right of ``wp``), heading turned."""
    x, y, yaw = wp_pose(wp)
    if str(wp.lane_type) != "Sidewalk":
        x, y, _ = displaced((x, y, yaw), right_m)
    return x, y, yaw + yaw_offset_rad


class DynamicObjectCrossing(_Crossing):
    """A walker steps out from behind a blocker on the sidewalk ``distance`` ahead and crosses the road at 2 m/s."""

    type_name = "DynamicObjectCrossing"

    def read_parameters(self) -> None:
        """``distance`` (12), ``direction`` ('right'), ``blocker_model``, ``crossing_angle`` (0, |.| <= 90)."""
        c = self.config
        self.distance_m = c.value("distance", float, 12.0)
        self.blocker_model = c.value("blocker_model", str, "static.prop.vendingmachine")
        self.crossing_angle_deg = c.value("crossing_angle", float, 0.0)
        if abs(self.crossing_angle_deg) > 90:
            raise ScenarioSetupError("'crossing_angle' must be between -90 and 90 degrees to cross the road")
        self.direction = c.choice("direction", ("left", "right"), "right")
        self.reaction_time_s = 2.1 + 0.1 * math.floor(self.crossing_angle_deg / 5.0)
        self.speed_mps = 2.0
        self._phase = "waiting"

    def build(self) -> None:
        """The blocker on the sidewalk beside the collision point, the walker just past it, facing the road."""
        sign = 1.0 if self.direction == "right" else -1.0
        wp, moved = self.trigger_waypoint(), 0.0
        while moved < self.distance_m:  # get_location_in_distance_from_wp(..., stop_at_junction=False)
            nxt = wp.next(1.0)
            if not nxt:
                break
            moved += nxt[-1].transform.location.distance(wp.transform.location)
            wp = nxt[-1]
        self.collision_xy = np.array(wp_pose(wp)[:2])
        _, sidewalk, _ = side_lanes_until(wp, self.direction, ("Sidewalk",))
        if sidewalk is None:
            raise ScenarioSetupError(f"no sidewalk on the {self.direction} of the collision point")
        model = self.blocker_model
        if model not in BLUEPRINTS:
            model = str(self.rng.choice(CARS)) if model.startswith("vehicle") else "static.prop.vendingmachine"
        blocker_yaw = 0.0 if "vehicle" in model else sign * math.pi / 2
        self.blocker = self.spawn(model, _walker_spot(sidewalk, -blocker_yaw, sign * 1.5))
        ahead = sidewalk.next(0.5 * BLUEPRINTS[model].length_m + 0.5)
        if not ahead:
            raise ScenarioSetupError("no place on the sidewalk for the walker")
        # CARLA yaw + (270 - angle) degrees is a turn of (90 + angle) degrees counter-clockwise here
        turn = sign * math.radians(90.0 + self.crossing_angle_deg)
        pose = _walker_spot(ahead[0], turn, sign * 1.2)
        self.collision_dist_m = float(np.hypot(*(np.array(pose[:2]) - self.collision_xy)))
        self.row = self.add_walker(pose, 2.0 * self.collision_dist_m, self.speed_mps)

    def start(self) -> None:
        """``LeaveSpaceInFront(distance + 10)``."""
        clear_route_ahead(self.world, self.distance_m + 10.0)

    def update(self) -> bool:
        """Release the walker, remove it and the blocker once across, end 40 m of ego driving later."""
        if self._phase == "waiting" and self.released():
            self.world.walkers.release(self.row)
            self._phase = "crossing"
        elif self._phase == "crossing" and self.walker_done(self.row):
            self.world.walkers.remove_scripted(self.row)
            self.blocker.alive = False
            self._phase, self._done_at_m = "clear", self.odometer_m
        return self._phase == "clear" and self.odometer_m - self._done_at_m > _END_DISTANCE_M


class PedestrianCrossing(_Crossing):
    """Three walkers cross the ego's road at the next junction's entry, from the right sidewalk to the left."""

    type_name = "PedestrianCrossing"
    reaction_time_s = 3.5
    trigger_distance_m = 12.0
    _LAYOUT = ((0.4, 1.5), (1.0, 2.5), (1.6, 0.5))  # (forward, right) metres from the sidewalk point

    def build(self) -> None:
        """Walkers on the sidewalk right of the last lane point before the junction, facing across the road."""
        wp = self.trigger_waypoint()
        for _ in range(2000):
            nxt = wp.next(1.0)
            if not nxt:
                raise ScenarioSetupError("no junction ahead of the trigger point for the pedestrians")
            if nxt[0].is_junction:
                break
            wp = nxt[0]
        self.collision_xy = np.array(wp_pose(wp)[:2])
        self.entry_lane = lane_of(self.world.town, wp)
        _, sidewalk, _ = side_lanes_until(wp, "right", ("Sidewalk",))
        if sidewalk is None:
            raise ScenarioSetupError("no sidewalk right of the junction entry")
        base = wp_pose(sidewalk)
        self.rows, self.idle_s = [], []
        for forward, right in self._LAYOUT:
            x, y, yaw = displaced(base, right, forward)
            pose = (x, y, yaw + math.pi / 2)  # CARLA yaw + 270 degrees: facing left, across the road
            distance = 2.3 * float(np.hypot(x - self.collision_xy[0], y - self.collision_xy[1]))
            self.idle_s.append(float(self.rng.uniform(0.0, 1.5)))
            self.rows.append(self.add_walker(pose, distance, float(self.rng.uniform(1.3, 2.0))))
        self._released_at: float | None = None
        self._gone: set[int] = set()
        self._walking: set[int] = set()

    def start(self) -> None:
        """``HandleJunctionScenario(clear_ego_entry=True)``: the ego's entry lane is cleared."""
        clear_lanes(self.world, {self.entry_lane})

    def update(self) -> bool:
        """Release each walker after its idle time, remove it once across; end when all are gone and 40 m driven."""
        if self._released_at is None:
            if not self.released():
                return False
            self._released_at, self._start_m = self.time_s, self.odometer_m
        w = self.world.walkers
        for row, idle in zip(self.rows, self.idle_s, strict=True):
            if row in self._gone:
                continue
            if row not in self._walking and self.time_s - self._released_at >= idle:
                w.release(row)
                self._walking.add(row)
            if self.walker_done(row):
                w.remove_scripted(row)
                self._gone.add(row)
        return len(self._gone) == len(self.rows) and self.odometer_m - self._start_m > _END_DISTANCE_M


class VehicleTurningRoutePedestrian(_Crossing):
    """After the ego turns at the junction, a walker crosses the road it turned into, at 1.8 m/s."""

    type_name = "VehicleTurningRoutePedestrian"
    reaction_time_s = 2.2

    def build(self) -> None:
        """The walker on the sidewalk of the exit road: near side for a left turn, far side for a right turn."""
        town, route = self.world.town, self.world.route
        start, dist = route_index_near(route, self.trigger_xy())
        _, _, exit_lane, _ = junction_on_route(town, route, start)
        after = int(np.flatnonzero(np.asarray(route.lanes)[start:] == exit_lane)[0]) + start
        x, y = route.xy_world_m[after]
        exit_wp = waypoint_at(town, float(x), float(-y)).next(0.5)[0]  # some junction points are still the junction
        self.collision_xy = np.array(wp_pose(exit_wp)[:2])
        right_wp = _outermost(exit_wp, "right")
        left_start = exit_wp.get_left_lane()
        while left_start is not None and left_start.lane_id * exit_wp.lane_id > 0:
            left_start = left_start.get_left_lane()
        if left_start is not None:  # with opposite lanes: their sidewalk, facing the road (CARLA yaw + 270)
            left_wp, turn = _outermost(left_start, "right"), math.pi / 2
        else:
            left_wp, turn = _outermost(exit_wp, "left"), -math.pi / 2
        self.distance_m = float(np.hypot(*(np.array(wp_pose(right_wp)[:2]) - np.array(wp_pose(left_wp)[:2]))))
        entry_yaw = wp_pose(self.trigger_waypoint())[2]
        left_turn = math.sin(wp_pose(exit_wp)[2] - entry_yaw) > 0.0
        spot = _walker_spot(right_wp, math.pi / 2, 1.5) if left_turn else _walker_spot(left_wp, turn, 1.5)
        self.row = self.add_walker(spot, self.distance_m, 1.8)
        self.exit_lane = exit_lane
        self._phase = "waiting"

    def update(self) -> bool:
        """Release the walker, remove it once across, end 40 m of ego driving later."""
        if self._phase == "waiting" and self.released():
            clear_lanes(self.world, {self.exit_lane}, only_ahead=False)  # LeaveCrossingSpace
            self.world.walkers.release(self.row)
            self._phase = "crossing"
        elif self._phase == "crossing" and self.walker_done(self.row):
            self.world.walkers.remove_scripted(self.row)
            self._phase, self._done_at_m = "clear", self.odometer_m
        return self._phase == "clear" and self.odometer_m - self._done_at_m > _END_DISTANCE_M


def _outermost(wp: Any, side: str) -> Any:
    """The sidewalk lane reached walking ``side`` from ``wp`` (or the last lane there when none)."""
    last, sidewalk, _ = side_lanes_until(wp, side, ("Sidewalk",))
    return sidewalk if sidewalk is not None else last
