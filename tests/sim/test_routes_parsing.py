import math

import numpy as np
import pytest

from autovla_agent.sim.world.route_files import (
    RouteError,
    RouteSpec,
    convert_lb1_routes,
    load_routes,
    packaged_routes_dir,
    parse_routes_file,
    parse_subset,
)
from autovla_agent.sim.world.routes import RoadOption, densify_route
from autovla_agent.sim.world.town import Town, UnknownTownError, available_towns

LB1_XML = """<?xml version="1.0" encoding="UTF-8"?>
<routes>
   <route id="0" town="Town01">
      <waypoint pitch="0.0" roll="0.0" x="334.7" y="271.2" yaw="90.0" z="0.0" />
      <waypoint pitch="0.0" roll="0.0" x="332.5" y="324.9" yaw="180.0" z="0.0" />
      <waypoint pitch="0.0" roll="0.0" x="310.7" y="326.6" yaw="180.0" z="0.0" />
   </route>
   <route id="7" town="Town03">
      <waypoint pitch="0.0" roll="0.0" x="1.0" y="2.0" yaw="0.0" z="0.5" />
      <waypoint pitch="0.0" roll="0.0" x="3.0" y="4.0" yaw="0.0" z="0.5" />
   </route>
</routes>
"""


def test_parse_routes_file_lb2_format_reads_keypoints_and_obstacles():
    routes = load_routes("routes_default")
    assert [r.route_id for r in routes] == ["0", "1", "2", "3"]
    assert {r.town for r in routes} == {"Town01", "Town02"}
    first = routes[0]
    assert first.name == "RouteScenario_0"
    assert first.keypoints_carla_m[0] == (334.8, 229.2, 0.0)
    assert first.obstacles[0].hold_s == 30.0
    assert math.isinf(routes[2].obstacles[0].hold_s)


def test_parse_routes_file_lb1_format_reads_waypoints_and_subset(tmp_path):
    path = tmp_path / "lb1.xml"
    path.write_text(LB1_XML)
    routes = parse_routes_file(path)
    assert [(r.route_id, r.town, len(r.keypoints_carla_m)) for r in routes] == [("0", "Town01", 3), ("7", "Town03", 2)]
    assert routes[1].keypoints_carla_m[1] == (3.0, 4.0, 0.5)
    assert [r.route_id for r in parse_routes_file(path, subset="7")] == ["7"]
    with pytest.raises(RouteError, match="not in the file"):
        parse_routes_file(path, subset="3")


def test_parse_subset_ranges_and_lists():
    assert parse_subset("0-2,7") == ["0", "1", "2", "7"]
    assert parse_subset("") is None
    with pytest.raises(RouteError):
        parse_subset("5-2")


def test_convert_lb1_routes_keeps_only_shipped_towns_in_lb2_format(tmp_path):
    src, dst = tmp_path / "lb1.xml", tmp_path / "lb2.xml"
    src.write_text(LB1_XML)
    assert convert_lb1_routes(src, dst, ("Town01", "Town02")) == 1
    text = dst.read_text()
    assert "<waypoints>" in text and "<position" in text and "<waypoint " not in text
    (route,) = parse_routes_file(dst)
    assert route.keypoints_carla_m == ((334.7, 271.2, 0.0), (332.5, 324.9, 0.0), (310.7, 326.6, 0.0))


def test_packaged_route_files_include_converted_lb1_routes_and_licence():
    folder = packaged_routes_dir()
    names = {p.name for p in folder.iterdir()}
    assert {"routes_default.xml", "routes_smoke.xml", "LICENSE-leaderboard.txt"} <= names
    lb1 = [r for f in ("lb1_devtest_town01", "lb1_training_town01", "lb1_testing_town02") for r in load_routes(f)]
    assert len(lb1) == 17
    assert {r.town for r in lb1} <= set(available_towns())


def test_town_load_unknown_name_lists_shipped_towns():
    with pytest.raises(UnknownTownError, match="Town01.*Town02"):
        Town.load("Town99")


def test_densify_route_keypoint_off_road_raises_route_error():
    town = Town.load("Town01")
    spec = RouteSpec("bad", "Town01", ((334.7, 271.2, 0.0), (250.0, 150.0, 0.0)))
    with pytest.raises(RouteError, match="off the road network"):
        densify_route(town, spec)


def test_densify_route_wrong_town_raises_route_error():
    spec = load_routes("routes_smoke")[0]
    with pytest.raises(RouteError, match="not on Town02"):
        densify_route(Town.load("Town02"), spec)


@pytest.mark.parametrize("name", ["routes_smoke", "routes_default", "lb1_training_town01", "lb1_testing_town02"])
def test_densify_route_points_stay_in_connected_driving_lanes(name):
    for spec in load_routes(name):
        town = Town.load(spec.town)
        route = densify_route(town, spec)
        assert town.in_driving_lane(route.xy_world_m).all()
        steps = np.diff(route.s_m)
        assert steps.max() <= 1.3 and steps.min() > 0.2  # ~1 m samples, no duplicates
        for a, b in zip(route.lanes[:-1], route.lanes[1:], strict=True):  # consecutive points on linked lanes
            assert a == b or b in town.lanes[a].successors
        # every keypoint is passed within a lane's half width
        for x, y, _ in spec.keypoints_carla_m:
            assert np.hypot(route.xy_world_m[:, 0] - x, route.xy_world_m[:, 1] + y).min() < 2.0


def test_densify_route_turns_at_junctions_and_follows_lanes_elsewhere():
    town = Town.load("Town01")
    route = densify_route(town, load_routes("routes_smoke")[0])
    options = list(route.options)
    changes = [o for i, o in enumerate(options) if i == 0 or o != options[i - 1]]
    assert changes == [RoadOption.LANEFOLLOW, RoadOption.RIGHT, RoadOption.LANEFOLLOW]
    in_junction = np.array([town.lanes[i].is_junction for i in route.lanes])
    assert all((o == RoadOption.RIGHT) == j for o, j in zip(options, in_junction, strict=True))
    # the right turn turns clockwise (negative internal yaw change) by about 90 degrees
    turn = np.unwrap(route.yaw_world_rad)[-1] - route.yaw_world_rad[0]
    assert turn == pytest.approx(-math.pi / 2, abs=0.15)


def test_town_lane_queries_inside_outside_and_heading():
    town = Town.load("Town01")
    lane = next(ln for ln in town.lanes if not ln.is_junction and ln.length_m > 100)
    (x, y), yaw = lane.interpolate(50.0)
    left = np.array([-np.sin(yaw), np.cos(yaw)])
    assert town.in_driving_lane(np.array([[x, y], [x, y] + left * 30.0])).tolist() == [True, False]
    assert lane.index in town.lanes_at(np.array([x, y]))
    poly = town.lane_polygon_at(np.array([x, y]) + left * 0.5, yaw)
    assert poly is not None and poly.area == pytest.approx(town.lane_polygon(lane.index).area)
    assert town.lane_polygon_at(np.array([x, y]) + left * 30.0) is None
    hit = town.locate(np.array([x, y]) + left * 0.7, yaw)
    assert hit.lane == lane.index and hit.lateral_m == pytest.approx(0.7, abs=1e-6)
    assert hit.s_m == pytest.approx(50.0, abs=0.05)
    opposite = town.locate(np.array([x, y]) + left * 4.0, yaw + math.pi)  # the oncoming lane, 4 m to the left
    assert opposite is not None and opposite.lane != lane.index
