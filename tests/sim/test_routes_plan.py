import carla
import numpy as np
import pytest

from autovla_agent.sensors import frames
from autovla_agent.sim.world.route_files import load_routes
from autovla_agent.sim.world.routes import RoadOption, densify_route, downsample_route, downsampled_plan, global_plan
from autovla_agent.sim.world.town import Town


def _straight(options):
    """A route along +x, 1 m apart, with the given options."""
    return [(carla.Transform(carla.Location(float(i), 0.0, 0.0)), o) for i, o in enumerate(options)]


def test_downsample_route_keeps_first_last_and_option_changes():
    F, L = RoadOption.LANEFOLLOW, RoadOption.LEFT
    route = _straight([F] * 10 + [L] * 5 + [F] * 10)
    assert downsample_route(route, 200) == [0, 10, 15, 24]


def test_downsample_route_distance_accumulates_over_skipped_points_only():
    route = _straight([RoadOption.LANEFOLLOW] * 30)
    # kept 0; skipped 1..6 accumulate 6 m; point 7 is kept because the sum (6 m) exceeds 5 m; then again
    assert downsample_route(route, 5) == [0, 7, 14, 21, 28, 29]


def test_downsample_route_lane_changes_kept_and_no_switch_point_right_after():
    F, CL = RoadOption.LANEFOLLOW, RoadOption.CHANGELANELEFT
    route = _straight([F] * 5 + [CL, CL] + [F] * 5)
    # both lane-change points are kept; the LANEFOLLOW right after a lane change is not a switch point
    assert downsample_route(route, 200) == [0, 5, 6, 11]


def test_downsample_route_town01_route_keeps_turn_boundaries():
    town = Town.load("Town01")
    route = densify_route(town, load_routes("routes_smoke")[0])
    _, world = global_plan(town, route)
    ids = downsample_route(world, 200)
    options = [o for _, o in world]
    switches = [i for i in range(1, len(options)) if options[i] != options[i - 1]]
    assert ids == [0, *switches, len(world) - 1]
    gps_ds, world_ds = downsampled_plan(town, route, 200)
    assert len(gps_ds) == len(world_ds) == len(ids)


def test_global_plan_matches_dense_route_in_carla_coordinates():
    town = Town.load("Town01")
    route = densify_route(town, load_routes("routes_smoke")[0])
    gps, world = global_plan(town, route)
    assert len(gps) == len(world) == len(route)
    t0, opt0 = world[0]
    assert isinstance(t0, carla.Transform) and opt0 == RoadOption.LANEFOLLOW
    assert t0.location.x == pytest.approx(route.xy_world_m[0, 0])
    assert t0.location.y == pytest.approx(-route.xy_world_m[0, 1])  # CARLA y is south
    assert t0.rotation.yaw == pytest.approx(-np.degrees(route.yaw_world_rad[0]), abs=1e-6)
    assert set(gps[0][0]) == {"lat", "lon", "z"}
    assert [o for _, o in gps] == [o for _, o in world]


def test_global_plan_gps_round_trips_with_the_town_georeference():
    text = Town.load("Town01").opendrive_text.replace("+lat_0=0 +lon_0=0", "+lat_0=42.5 +lon_0=2.25")
    town = Town("Town01", text)
    assert (town.lat_ref, town.lon_ref) == (42.5, 2.25)
    route = densify_route(town, load_routes("routes_smoke")[0])
    gps, world = global_plan(town, route)
    for (fix, _), (transform, _) in zip(gps[::10], world[::10], strict=True):
        x, y = frames.gnss_to_carla_xy(fix["lat"], fix["lon"], town.lat_ref, town.lon_ref)
        assert x == pytest.approx(transform.location.x, abs=1e-6)
        assert y == pytest.approx(transform.location.y, abs=1e-6)
    # the leaderboard formula: latitude falls as CARLA y grows (southwards)
    ys = np.array([t.location.y for t, _ in world])
    lats = np.array([f["lat"] for f, _ in gps])
    assert np.corrcoef(ys, lats)[0, 1] < -0.99
