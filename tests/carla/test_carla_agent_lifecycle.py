"""The agent through the evaluator's life cycle: load by path, plan, setup, sensors, validation, ticks, destroy."""

from __future__ import annotations

import math

import numpy as np
from conftest import Feed, assert_valid_control, l_route, load_agent_class

from autovla_agent.adapters.carla.agent_base import AgentBase, Track
from autovla_agent.sensors.rig import validate_sensors
from autovla_agent.sim.agent_loader import validate_agent_sensors


def _run_route(cls, gps, world, config_arg: str, ticks: int, **feed_kwargs):
    agent = cls("localhost", 2000, 0)
    agent.set_global_plan(gps, world)  # the evaluator's order: the plan comes before setup
    agent.setup(config_arg)
    sensors = agent.sensors()
    validate_agent_sensors(sensors, agent.track, "SENSORS")
    start = world[0][0]
    feed = Feed(sensors, x_m=start.location.x, y_m=start.location.y, yaw_deg=start.rotation.yaw, **feed_kwargs)
    states = set()
    for _ in range(ticks):
        control = agent(feed.input_data(), feed.timestamp_s)  # what the scenario manager calls each tick
        assert_valid_control(control)
        states.add(agent.last_tick.state)
        feed.apply(control)
    return agent, feed, states


def test_agent_lifecycle_two_routes_valid_controls_and_model_reused(tiny_model_dir):
    cls = load_agent_class()
    assert issubclass(cls, AgentBase)  # no leaderboard on this path: the compatible base class
    assert cls.get_ros_version() == -1
    config_arg = f"autovla_tiny.yaml vla.model.path={tiny_model_dir}"

    gps, world = l_route(turn="left")
    agent, feed, states = _run_route(cls, gps, world, config_arg, ticks=80)
    assert agent.track == Track.SENSORS
    assert {"warmup", "tracking"} <= states
    assert agent.num_step_errors == 0
    assert agent.loop.num_plans == 5  # 2 Hz from t = 1.5 s to 3.95 s
    assert feed.speed_mps > 0.1  # the controls move the car once the buffer is full
    runtime = agent.planner.runtime
    agent.destroy()
    assert agent.loop is None and agent.planner is None

    gps2, world2 = l_route(start_xy=(-50.0, 5.0), turn="right")
    agent2, _, states2 = _run_route(cls, gps2, world2, config_arg, ticks=40)
    assert agent2.planner.runtime is runtime  # the evaluator's new agent per route reuses the loaded model
    assert "tracking" in states2 and agent2.num_step_errors == 0
    agent2.destroy()


def test_agent_sensors_pass_leaderboard_rules_with_required_keys(tiny_model_dir):
    agent = load_agent_class()("localhost", 2000, 0)
    agent.setup(f"autovla_tiny.yaml vla.model.path={tiny_model_dir}")
    sensors = agent.sensors()
    validate_sensors(sensors, "SENSORS")
    types = [s["type"] for s in sensors]
    assert types.count("sensor.camera.rgb") == 1
    assert {"sensor.other.gnss", "sensor.other.imu", "sensor.speedometer"} <= set(types)
    camera = sensors[types.index("sensor.camera.rgb")]
    for key in ("id", "x", "y", "z", "roll", "pitch", "yaw", "width", "height", "fov"):
        assert key in camera
    assert math.sqrt(camera["x"] ** 2 + camera["y"] ** 2 + camera["z"] ** 2) <= 3.0


def test_agent_call_without_arguments_reads_sensor_interface():
    gps, world = l_route()
    agent = load_agent_class()("localhost", 2000, 0)
    agent.set_global_plan(gps, world)
    agent.setup("autovla_tiny.yaml planner=constant_velocity")
    start = world[0][0]
    feed = Feed(agent.sensors(), x_m=start.location.x, y_m=start.location.y, yaw_deg=start.rotation.yaw)
    for _ in range(3):
        for sid, (frame, data) in feed.input_data().items():
            agent.sensor_interface.update_sensor(sid, data, frame, timestamp_s=feed.timestamp_s)
        control = agent()
        assert_valid_control(control)
        feed.apply(control)
    assert agent.step == 3 and agent.num_step_errors == 0
    assert np.isclose(agent.last_step_record["time_s"], 0.1)
