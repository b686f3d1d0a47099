"""Evaluator-style loading: the agent file imported by path runs 400 ticks with the tiny model, valid throughout."""

from __future__ import annotations

import sys

from conftest import AGENT_FILE, Feed, assert_valid_control, l_route, load_agent_class


def test_agent_file_by_path_400_ticks_tiny_model_valid_controls(tiny_model_dir):
    # The evaluator imports the file as a top-level module from its folder; the package must not be needed
    # on sys.path for the shim itself (only installed), so load it from a fresh module name.
    sys.modules.pop("carla_agent", None)
    cls = load_agent_class(AGENT_FILE)
    assert cls.__name__ == "AutoVLAAgent"
    gps, world = l_route(turn="right")
    agent = cls("localhost", 2000, 0)
    agent.set_global_plan(gps, world)
    agent.setup(f"autovla_tiny.yaml vla.model.path={tiny_model_dir}")
    start = world[0][0]
    feed = Feed(
        agent.sensors(), x_m=start.location.x, y_m=start.location.y, yaw_deg=start.rotation.yaw, gnss_noise_deg=5e-6
    )
    replans = 0
    for _ in range(400):
        control = agent(feed.input_data(), feed.timestamp_s)
        assert_valid_control(control)
        replans += agent.last_tick.replanned
        feed.apply(control)
    assert agent.num_step_errors == 0
    assert replans == agent.loop.num_plans == 37  # every 0.5 s from t = 1.5 s to 19.5 s
    record = agent.last_plan_record
    assert set(record) >= {"time_s", "poses_world", "thinking_mode", "reasoning", "status", "command"}
    assert len(record["poses_world"]) == 10 and record["status"] in ("ok", "repaired")
    agent.destroy()
