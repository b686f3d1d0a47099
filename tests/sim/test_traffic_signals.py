import numpy as np

from autovla_agent.sim.world.route_files import load_routes
from autovla_agent.sim.world.signal_state import GREEN, RED, YELLOW
from autovla_agent.sim.world.simulation import World, WorldConfig
from autovla_agent.sim.world.traffic_model import TrafficConfig
from autovla_agent.sim.world.walkers import WalkerConfig

QUIET = WorldConfig(traffic=TrafficConfig(num_vehicles=0, recycle_distance_m=0.0), walkers=WalkerConfig(num_walkers=0))


class _FixedLights:
    def __init__(self, num_heads, state):
        self.state = np.full(num_heads, state, np.int8)
        self.time_to_red_s = np.zeros(num_heads)
        self.time_to_green_s = np.zeros(num_heads)

    def update(self, time_s):
        pass


def _world_with_vehicle_before(town_name, kind, start_back_m=40.0):
    """A quiet world on ``town_name`` with one traffic vehicle heading for a light or stop-sign line."""
    spec = next(r for r in load_routes("routes_signals") if r.town == town_name)
    world = World(spec.town, spec, QUIET)
    sig = world.signals
    lines = sig.lines if kind == "light" else sig.stops
    lane = int(lines.lane[0])
    ln = world.town.lanes[lane]
    start = max(ln.length_m - start_back_m, 0.5)
    world.traffic.add_vehicle(lane, start, speed_mps=6.0)
    world.traffic.rules.lights = world.lights = _FixedLights(len(sig.heads), RED)
    world.ego.set_center_pose((*(world.route.xy_world_m[0] + 500.0), 0.0))  # far away
    return world, ln


def _front_to_line(world, ln):
    t = world.traffic
    if t.lane_seq[0, 0] != ln.index:
        return -np.inf  # past the line, on the next lane
    return ln.length_m - (t.s_m[0] + 0.5 * t.length_m[0])


def test_traffic_stops_at_red_and_yellow_and_goes_on_green():
    for state in (RED, YELLOW):
        world, ln = _world_with_vehicle_before("Town01", "light")
        world.lights.state[:] = state
        for _ in range(400):  # 20 s
            world.tick()
        gap = _front_to_line(world, ln)
        assert 0.0 < gap < 2.5 and world.traffic.speed_mps[0] < 0.05
        world.lights.state[:] = GREEN
        for _ in range(200):
            world.tick()
        assert _front_to_line(world, ln) == -np.inf and world.traffic.speed_mps[0] > 1.0


def test_traffic_comes_to_a_halt_at_a_stop_sign_then_goes_on():
    world, ln = _world_with_vehicle_before("Town10HD", "stop")
    lowest, crossed = np.inf, False
    for _ in range(800):  # 40 s
        world.tick()
        gap = _front_to_line(world, ln)
        if np.isfinite(gap):
            lowest = min(lowest, world.traffic.speed_mps[0])
        else:
            crossed = True
            break
    assert lowest < 0.1 and crossed


def test_traffic_stops_for_a_pedestrian_crossing_in_front():
    spec = load_routes("routes_default")[0]
    config = WorldConfig(
        traffic=TrafficConfig(num_vehicles=0, recycle_distance_m=0.0),
        walkers=WalkerConfig(num_walkers=2, crossing_fraction=1.0, kerb_wait_s=(0.0, 0.0)),
    )
    world = World(spec.town, spec, config)
    world.lights = world.traffic.rules.lights = _FixedLights(len(world.signals.heads), GREEN)
    w = world.walkers
    w.s_m[0] = 0.5 * (w.road_in_m[0] + w.road_out_m[0])  # in the middle of the road, walking on
    w.wait_until_s[:] = 0.0
    w._update_poses()
    crossing = np.array([w.x_m[0], w.y_m[0]])
    lp = world.town.locate(crossing)
    ln = world.town.lanes[lp.lane]
    world.traffic.add_vehicle(lp.lane, max(lp.s_m - 25.0, 0.5), speed_mps=7.0)
    world.ego.set_center_pose((*(world.route.xy_world_m[0] + 500.0), 0.0))
    t = world.traffic
    closest = np.inf
    for _ in range(160):  # 8 s: the walker crosses, the car waits, then goes
        world.tick()
        bx, by = t.x_m[0], t.y_m[0]
        for k in range(len(w)):
            if w.on_road[k]:
                closest = min(closest, float(np.hypot(w.x_m[k] - bx, w.y_m[k] - by)))
    assert closest > 0.5 * t.length_m[0] + 0.5  # never reached a pedestrian on the road
    assert ln.length_m > 0
