import numpy as np

from autovla_agent.sim.world.route_files import load_routes
from autovla_agent.sim.world.routes import densify_route
from autovla_agent.sim.world.town import Town
from autovla_agent.sim.world.walker_paths import walker_paths
from autovla_agent.sim.world.walkers import WALKER_ID_BASE, WalkerConfig, Walkers


def _walkers(num=20, seed=0, **kw):
    town = Town.load("Town01")
    route = densify_route(town, load_routes("routes_default")[0])
    return town, route, Walkers.spawn(town, route.xy_world_m, WalkerConfig(num_walkers=num, **kw), seed=seed)


def _no_vehicles():
    z = np.zeros(0)
    return (z, z, z, z, z, z, np.zeros(0, bool))


def test_crossings_of_every_town_span_the_road_kerb_to_kerb():
    for name in ("Town01", "Town04", "Town10HD"):
        town = Town.load(name)
        paths = walker_paths(town)
        assert paths.crossings and paths.sidewalks
        for c in paths.crossings:
            assert 0.0 < c.road_in_m < c.road_out_m < c.length_m
            assert not town.in_driving_lane(np.stack([c.a_xy_m, c.b_xy_m])).any()  # both ends off the road
        assert any(c.marked for c in paths.crossings) == (name != "Town01")  # Town01 has no crosswalks


def test_walkers_stay_off_the_road_except_on_their_crossing_and_repeat_per_seed():
    town, _, walkers = _walkers(30)
    assert len(walkers) == 30 and walkers.crossing.any() and (~walkers.crossing).any()
    assert (walkers.ids > WALKER_ID_BASE).all() and len(set(walkers.ids.tolist())) == 30
    crossed = np.zeros(len(walkers), bool)
    for _ in range(1200):  # 60 s
        walkers.step(0.05, _no_vehicles())
        on_road = town.in_driving_lane(np.stack([walkers.x_m, walkers.y_m], -1))
        assert not (on_road & ~walkers.crossing).any()  # sidewalk walkers never step onto a lane
        crossed |= walkers.on_road
    assert crossed[walkers.crossing].all()  # with no traffic every crossing walker crosses within a minute
    _, _, again = _walkers(30)
    for _ in range(1200):
        again.step(0.05, _no_vehicles())
    np.testing.assert_array_equal(again.x_m, walkers.x_m)


def test_a_crossing_walker_waits_for_an_approaching_vehicle_and_stops_before_a_body():
    _, _, walkers = _walkers(1, crossing_fraction=1.0, kerb_wait_s=(0.0, 0.0))
    w = walkers
    w.wait_until_s[:] = 0.0
    centre = w._crossing_centre(np.array([0]))[0]
    heading = np.arctan2(*(np.array([w._paths[0][1] - w._paths[0][0]])[0][::-1]))
    along_road = heading + np.pi / 2
    # a vehicle 30 m before the crossing at 8 m/s is due in < 5 s: the walker waits on the kerb
    start = centre - 30.0 * np.array([np.cos(along_road), np.sin(along_road)])
    veh = (np.array([start[0]]), np.array([start[1]]), np.array([along_road]), np.array([8.0]),
           np.array([4.5]), np.array([1.9]), np.array([False]))  # fmt: skip
    for _ in range(60):
        w.step(0.05, veh)
        assert not w.on_road[0]
    # the same vehicle parked there (static) does not keep it from crossing
    parked = (*veh[:6], np.array([True]))
    for _ in range(200):
        w.step(0.05, parked)
    assert w.on_road[0] or w.s_m[0] > w.road_out_m[0] or w.s_m[0] < w.road_in_m[0]
    # a body across its way stops it
    w.s_m[:] = 0.5 * (w.road_in_m + w.road_out_m)
    w._update_poses()
    ahead = np.array([w.x_m[0], w.y_m[0]]) + 0.9 * np.array([np.cos(w.yaw_rad[0]), np.sin(w.yaw_rad[0])])
    body = (np.array([ahead[0]]), np.array([ahead[1]]), np.array([along_road]), np.array([0.0]),
            np.array([4.5]), np.array([1.9]), np.array([False]))  # fmt: skip
    s_before, d_before = w.s_m.copy(), w.direction.copy()
    for _ in range(30):
        w.step(0.05, body)
    np.testing.assert_allclose(w.s_m, s_before)
    for _ in range(20):  # blocked for more than 2 s: it turns back
        w.step(0.05, body)
    assert w.direction[0] == -d_before[0] and w.s_m[0] != s_before[0]
