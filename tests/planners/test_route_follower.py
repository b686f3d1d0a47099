import numpy as np
import pytest

from autovla_agent.planners.route import RouteConfig, RouteFollower


def _straight_route(num_points: int = 101, spacing_m: float = 1.0):
    xy = np.stack([np.arange(num_points) * spacing_m, np.zeros(num_points)], axis=-1)
    commands = [f"cmd{i}" for i in range(num_points)]
    return xy, commands


def test_route_follower_targets_first_point_beyond_min_distance_with_its_command():
    xy, commands = _straight_route()
    follower = RouteFollower(xy, commands, RouteConfig(min_distance_m=7.5, max_distance_m=50.0))
    target = follower.step(np.array([0.0, 0.0]))
    assert target.index == 8 and target.command == "cmd8"  # point 7 (7 m) is the farthest within 7.5 m
    np.testing.assert_allclose(target.xy_world_m, [8.0, 0.0])
    assert target.distance_m == pytest.approx(8.0) and target.remaining_m == pytest.approx(100.0)


def test_route_follower_pops_passed_points_as_the_ego_advances_and_never_goes_back():
    xy, commands = _straight_route()
    follower = RouteFollower(xy, commands)
    indices = [follower.step(np.array([x, 0.3])).index for x in np.arange(0.0, 60.0, 0.5)]
    assert indices == sorted(indices) and indices[-1] == 67
    assert follower.step(np.array([0.0, 0.0])).index == 67  # driving back does not un-pop points
    assert follower.num_remaining == 101 - 66


def test_route_follower_keeps_the_last_two_points_at_the_end():
    xy, commands = _straight_route(num_points=20)
    follower = RouteFollower(xy, commands)
    target = follower.step(np.array([25.0, 0.0]))
    assert target.index == 19 and follower.num_remaining == 2
    assert target.remaining_m == pytest.approx(6.0)


def test_route_follower_ignores_points_farther_along_the_route_than_max_distance():
    # A loop that comes back next to the start after 60 m of path: those points must not be popped to.
    angles = np.linspace(0.0, 2 * np.pi, 61)[:-1]
    radius = 60.0 / (2 * np.pi)
    xy = np.stack([radius * np.sin(angles), radius - radius * np.cos(angles)], axis=-1)
    follower = RouteFollower(xy, list(range(60)), RouteConfig(min_distance_m=4.0, max_distance_m=20.0))
    assert follower.step(np.array([0.0, 0.0])).index < 10


def test_route_follower_accepts_one_point_routes_and_rejects_bad_input():
    target = RouteFollower(np.array([[5.0, 5.0]]), ["only"]).step(np.zeros(2))
    assert target.command == "only" and target.index == 0
    with pytest.raises(ValueError, match="one command per route point"):
        RouteFollower(np.zeros((3, 2)), ["a"])
    with pytest.raises(ValueError, match=r"\(N >= 1, 2\)"):
        RouteFollower(np.zeros((3, 3)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="min_distance_m"):
        RouteConfig(min_distance_m=60.0, max_distance_m=50.0)
