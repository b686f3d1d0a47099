import numpy as np
from test_traffic_rules import _FixedLights, _stop_sign_route  # tests/sim is on sys.path

from autovla_agent.sim.expert import ExpertAgent
from autovla_agent.sim.scoring.infractions import EventType
from autovla_agent.sim.scoring.route_scorer import RouteScorer
from autovla_agent.sim.world.lane_query import CarlaMapLanes
from autovla_agent.sim.world.route_files import load_routes
from autovla_agent.sim.world.signal_state import GREEN, RED
from autovla_agent.sim.world.simulation import World, WorldConfig
from autovla_agent.sim.world.traffic_model import TrafficConfig
from autovla_agent.sim.world.walkers import WalkerConfig

QUIET = WorldConfig(traffic=TrafficConfig(num_vehicles=0), walkers=WalkerConfig(num_walkers=0))
RULES = (EventType.TRAFFIC_LIGHT_INFRACTION, EventType.STOP_INFRACTION, EventType.COLLISION_PEDESTRIAN)


def _run(world, max_s=90.0, on_tick=None):
    agent = ExpertAgent()
    agent.set_global_plan(*world.global_plan())
    agent.set_privileged_world(world)
    agent.setup("")
    route = world.route
    scorer = RouteScorer(route.xy_world_m, route.yaw_world_rad, CarlaMapLanes(world.town.map), town=world.town)
    speeds, kinds = [], set()
    while not scorer.done and world.time_s < max_s:
        world.apply_control(agent.run_step({}, world.time_s))
        leader = agent.last_step_record["leader"]
        kinds.add(leader["kind"] if leader else None)
        world.tick()
        if on_tick is not None:
            on_tick(world)
        scorer.update(world.snapshot())
        speeds.append(world.ego.speed_mps)
    return scorer, np.array(speeds), kinds


def test_expert_waits_at_a_red_light_then_drives_on_green():
    spec = load_routes("routes_smoke")[0]
    world = World(spec.town, spec, QUIET)
    lights = world.lights = _FixedLights(len(world.signals.heads), RED)

    def green_after_20_s(w):
        if w.time_s > 20.0:
            lights.state[:] = GREEN
            lights.time_to_red_s[:] = 60.0

    scorer, speeds, kinds = _run(world, on_tick=green_after_20_s)
    assert scorer.target_reached and not [e for e in scorer.events if e.event_type in RULES]
    assert "red light" in kinds
    stood = np.flatnonzero(speeds < 0.05)
    assert len(stood) and stood.min() * 0.05 < 20.0 < stood.max() * 0.05 + 1.0  # it stood until the green


def test_expert_stops_at_a_stop_sign_among_traffic_and_walkers():
    spec, _ = _stop_sign_route()
    config = WorldConfig(traffic=TrafficConfig(num_vehicles=8), walkers=WalkerConfig(num_walkers=10))
    world = World(spec.town, spec, config, seed=1)
    scorer, speeds, kinds = _run(world)
    assert scorer.target_reached
    assert not [e for e in scorer.events if e.event_type in RULES]
    assert (speeds < 0.1).any() and "stop sign" in kinds


def test_expert_yields_to_a_pedestrian_crossing_its_route():
    spec = load_routes("routes_default")[0]
    config = WorldConfig(
        traffic=TrafficConfig(num_vehicles=0), walkers=WalkerConfig(num_walkers=2, crossing_fraction=1.0)
    )
    world = World(spec.town, spec, config)
    world.lights = _FixedLights(len(world.signals.heads), GREEN)
    world.lights.time_to_red_s[:] = 1e9
    w = world.walkers
    d = [w._paths[k] for k in range(len(w))]
    assert len(d) == 2
    w.wait_until_s[:] = 1e9  # both stand on the kerb until the ego is close ...
    near = {"done": False}

    def release(wd):
        ego = np.array([wd.ego.center_pose_world()[:2]])
        gaps = np.hypot(w.x_m - ego[0, 0], w.y_m - ego[0, 1])
        if not near["done"] and gaps.min() < 25.0:  # ... then step out in front of it
            k = int(np.argmin(gaps))
            w.s_m[k] = w.road_in_m[k] if w.direction[k] > 0 else w.road_out_m[k]
            w.wait_until_s[k] = 0.0
            w._update_poses()
            near["done"] = True

    scorer, _, kinds = _run(world, max_s=120.0, on_tick=release)
    assert near["done"] and scorer.target_reached and "pedestrian" in kinds
    assert not [e for e in scorer.events if e.event_type == EventType.COLLISION_PEDESTRIAN]
