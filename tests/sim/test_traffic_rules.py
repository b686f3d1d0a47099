import math

import numpy as np
import pytest

from autovla_agent.sensors import frames
from autovla_agent.sim.expert_perception import ExpertConfig
from autovla_agent.sim.expert_rules import ExpertRules
from autovla_agent.sim.scoring.infractions import EventType
from autovla_agent.sim.scoring.route_scorer import RouteScorer
from autovla_agent.sim.world.lane_query import CarlaMapLanes
from autovla_agent.sim.world.route_files import RouteSpec, load_routes
from autovla_agent.sim.world.signal_state import GREEN, RED
from autovla_agent.sim.world.signals import town_signals
from autovla_agent.sim.world.simulation import World, WorldConfig
from autovla_agent.sim.world.town import Town
from autovla_agent.sim.world.traffic_model import TrafficConfig
from autovla_agent.sim.world.walkers import WalkerConfig

QUIET = WorldConfig(traffic=TrafficConfig(num_vehicles=0), walkers=WalkerConfig(num_walkers=0))
HALF_LENGTH_M = 0.5 * QUIET.ego.vehicle.length_m


class _FixedLights:
    """Every head in one state until the test changes it (stands in for the world's controller)."""

    def __init__(self, num_heads, state):
        self.state = np.full(num_heads, state, np.int8)
        self.time_to_red_s = np.zeros(num_heads)
        self.time_to_green_s = np.zeros(num_heads)

    def update(self, time_s):
        pass


class _NoControl:
    steer = throttle = brake = 0.0
    hand_brake = reverse = False


def _drive(world, scorer, speed_at, on_tick=None):
    """Move the ego's box centre along the route with the scripted speed (m/s) of (s_m, t_s); return events."""
    route = world.route
    s, events = 0.0, []
    while s < route.length_m - 2.0 and world.time_s < 120.0:
        v = float(speed_at(s, world.time_s))
        s += v * world.config.dt_s
        x = np.interp(s, route.s_m, route.xy_world_m[:, 0])
        y = np.interp(s, route.s_m, route.xy_world_m[:, 1])
        yaw = float(np.interp(s, route.s_m, np.unwrap(route.yaw_world_rad)))
        world.apply_control(_NoControl())
        world.tick()
        world.ego.set_center_pose((x, y, yaw), v)
        if on_tick is not None:
            on_tick(s, world)
        events += scorer.update(world.snapshot())
    return events


def _scorer(world):
    route = world.route
    return RouteScorer(route.xy_world_m, route.yaw_world_rad, CarlaMapLanes(world.town.map), town=world.town)


def _stop_then_go(s_stop, cruise_mps, wait_s, release=None):
    """A speed profile: cruise, brake at 2 m/s2 to stand at ``s_stop``, wait, then cruise again."""
    state = {"since": None}

    def speed_at(s, t):
        if state["since"] is not None and t - state["since"] >= wait_s:
            if release is not None:
                release()
            return cruise_mps
        gap = s_stop - s
        if gap <= 0.05:
            state["since"] = t if state["since"] is None else state["since"]
            return 0.0
        return min(cruise_mps, math.sqrt(2.0 * 2.0 * gap))

    return speed_at


def _count(events, kind):
    return sum(e.event_type == kind for e in events)


def test_running_a_red_light_is_one_infraction_and_stopping_at_it_none():
    spec = load_routes("routes_smoke")[0]  # Town01: through a signalised junction
    world = World(spec.town, spec, QUIET)
    world.lights = _FixedLights(len(world.signals.heads), RED)
    stops = ExpertRules(world, ExpertConfig(), HALF_LENGTH_M).stops
    assert [s.kind for s in stops] == ["light"]
    events = _drive(world, _scorer(world), lambda s, t: 6.0)
    assert _count(events, EventType.TRAFFIC_LIGHT_INFRACTION) == 1
    red = next(e for e in events if e.event_type == EventType.TRAFFIC_LIGHT_INFRACTION)
    assert red.message.startswith("Agent ran a red light ")

    world = World(spec.town, spec, QUIET)
    lights = _FixedLights(len(world.signals.heads), RED)
    world.lights = lights

    def turn_green():
        lights.state[:] = GREEN

    s_stop = stops[0].s_line_m - 1.0 - HALF_LENGTH_M  # front bumper 1 m before the line
    events = _drive(world, _scorer(world), _stop_then_go(s_stop, 6.0, 4.0, release=turn_green))
    assert _count(events, EventType.TRAFFIC_LIGHT_INFRACTION) == 0
    assert world.ego.speed_mps > 0.0  # it went on after green


def _stop_sign_route():
    """A Town10HD route through the stop sign whose trigger box sits at its line (lane 42 -> 99 -> 36)."""
    town = Town.load("Town10HD")
    sig = town_signals(town)
    zone = next(z for z in range(len(sig.stops)) if np.hypot(*(sig.stops.box_xy_m[z] - sig.stops.stop_xy_m[z])) < 0.1)
    lane = town.lanes[int(sig.stops.lane[zone])]
    junction = next(j for j in lane.successors if town.lanes[j].is_junction)
    exit_lane = town.lanes[town.lanes[junction].successors[0]]
    a = lane.interpolate(max(lane.length_m - 25.0, 1.0))[0]
    b = exit_lane.interpolate(min(12.0, exit_lane.length_m - 1.0))[0]
    pts = tuple((*frames.world_to_carla_xy(p).tolist(), 0.0) for p in (a, b))
    return RouteSpec("stop", "Town10HD", pts), zone


def test_running_a_stop_sign_is_one_infraction_and_stopping_inside_its_zone_none():
    spec, zone = _stop_sign_route()
    world = World(spec.town, spec, QUIET)
    stops = ExpertRules(world, ExpertConfig(), HALF_LENGTH_M).stops
    assert [(s.kind, s.index) for s in stops] == [("stop", zone)]
    events = _drive(world, _scorer(world), lambda s, t: 5.0)
    assert _count(events, EventType.STOP_INFRACTION) == 1
    assert next(e for e in events if e.event_type == EventType.STOP_INFRACTION).message.startswith(
        "Agent ran a stop with id="
    )
    # a rolling stop (slowing to 1 m/s, never below the 0.1 m/s threshold) is still a run stop sign
    world = World(spec.town, spec, QUIET)
    events = _drive(world, _scorer(world), lambda s, t: max(1.0, min(5.0, abs(stops[0].s_centre_m - s))))
    assert _count(events, EventType.STOP_INFRACTION) == 1
    world = World(spec.town, spec, QUIET)
    events = _drive(world, _scorer(world), _stop_then_go(stops[0].s_centre_m, 5.0, 1.0))
    assert _count(events, EventType.STOP_INFRACTION) == 0
    assert world.ego.speed_mps > 0.0


@pytest.mark.parametrize("state", [GREEN, RED])
def test_the_red_light_test_ignores_green_lights_and_other_lanes(state):
    spec = load_routes("routes_smoke")[0]
    world = World(spec.town, spec, QUIET)
    world.lights = _FixedLights(len(world.signals.heads), state)
    # drive the route but keep every head except those of other approaches red: only ours matters
    stops = ExpertRules(world, ExpertConfig(), HALF_LENGTH_M).stops
    head = int(world.signals.lines.head[stops[0].index])
    world.lights.state[:] = RED
    world.lights.state[head] = state
    events = _drive(world, _scorer(world), lambda s, t: 6.0)
    assert _count(events, EventType.TRAFFIC_LIGHT_INFRACTION) == (1 if state == RED else 0)
