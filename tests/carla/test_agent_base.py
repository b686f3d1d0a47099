"""The compatible base class: the leaderboard's route downsampling, plan layout, call protocol and recording."""

from __future__ import annotations

import json

import carla
import numpy as np
from conftest import Feed, assert_valid_control, l_route, load_agent_class

from autovla_agent.adapters.carla.agent_base import AgentBase, Track, downsample_route
from autovla_agent.sim.world import routes as sim_routes
from autovla_agent.sim.world.routes import RoadOption


def _straight(n: int, option=RoadOption.LANEFOLLOW) -> list:
    return [(carla.Transform(carla.Location(x=float(i), y=0.0, z=0.0)), option) for i in range(n)]


def test_downsample_route_straight_450m_keeps_every_200m_and_last():
    # The leaderboard keeps a point once the distance accumulated since the last kept one exceeds 200 m.
    assert downsample_route(_straight(450), 200.0) == [0, 202, 404, 449]


def test_downsample_route_keeps_option_changes_and_lane_changes():
    route = _straight(10)
    options = [RoadOption.LANEFOLLOW] * 3 + [RoadOption.LEFT] * 3 + [RoadOption.CHANGELANELEFT] * 2
    options += [RoadOption.LANEFOLLOW] * 2
    route = [(t, o) for (t, _), o in zip(route, options, strict=True)]
    # 0 start, 3 LEFT begins, 6 and 7 lane change (every lane-change point), 8 not kept (right after a lane
    # change), 9 the last point.
    assert downsample_route(route, 200.0) == [0, 3, 6, 7, 9]


def test_downsample_route_matches_embedded_sim_implementation():
    rng = np.random.default_rng(3)
    names = [
        RoadOption.LANEFOLLOW,
        RoadOption.LEFT,
        RoadOption.RIGHT,
        RoadOption.STRAIGHT,
        RoadOption.CHANGELANELEFT,
        RoadOption.CHANGELANERIGHT,
    ]
    route, option = [], RoadOption.LANEFOLLOW
    for i in range(600):
        if rng.random() < 0.03:
            option = names[int(rng.integers(len(names)))]
        route.append((carla.Transform(carla.Location(x=float(i) * 1.3, y=float(np.sin(i / 20.0)), z=0.0)), option))
    for distance in (50.0, 200.0):
        assert downsample_route(route, distance) == sim_routes.downsample_route(route, distance)


def test_agent_base_set_global_plan_layout_and_protocol():
    gps, world = l_route()
    agent = AgentBase()
    assert agent.track is Track.SENSORS and agent.get_ros_version() == -1
    agent.set_global_plan(gps, world)
    assert len(agent._global_plan) == len(agent._global_plan_world_coord) == 4
    assert set(agent._global_plan[0][0]) == {"lat", "lon", "z"}
    assert agent._global_plan_world_coord[1][1] == RoadOption.LEFT


def test_agent_records_replay_log_readable_by_sim_replay(tmp_path):
    gps, world = l_route()
    agent = load_agent_class()("localhost", 2000, 0)
    agent.set_global_plan(gps, world)
    agent.setup(f"autovla_tiny.yaml planner=constant_velocity baseline_min_speed_mps=3.0 record_dir={tmp_path}+r1")
    start = world[0][0]
    feed = Feed(agent.sensors(), x_m=start.location.x, y_m=start.location.y, yaw_deg=start.rotation.yaw)
    for _ in range(50):
        control = agent.run_step(feed.input_data(), feed.timestamp_s)
        assert_valid_control(control)
        feed.apply(control)
    assert agent.num_step_errors == 0
    agent.destroy()
    log = tmp_path / "r1"
    steps = [json.loads(line) for line in (log / "steps.jsonl").read_text().splitlines()]
    plans = [s["plan"] for s in steps if "plan" in s]
    assert len(plans) == 2  # t = 1.5 and 2.0 s (the last tick is t = 2.45 s)
    assert {"poses_world", "reasoning", "status", "thinking_mode"} <= set(plans[0])
    assert steps[-1]["agent"]["state"] == "tracking" and len(steps[-1]["control"]) == 3
    assert list(log.glob("camera_*.npz")) and (log / "meta.json").is_file()
