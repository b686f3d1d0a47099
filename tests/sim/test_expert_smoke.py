"""The privileged expert completes the smoke route without infractions and stops behind a stopped vehicle."""

import json

import numpy as np
import pytest

from autovla_agent.sim.expert import idm_accel_mps2, speed_profile_mps
from autovla_agent.sim.expert_perception import ExpertConfig
from autovla_agent.sim.runner import main

EXPERT = "autovla_agent/sim/expert.py"
# The smoke route with a vehicle stopped in its lane 35 m ahead for 12 s (the route format's <obstacles> extension).
OBSTACLE_ROUTE = """<routes><route id="0" town="Town01"><waypoints>
<position x="334.7" y="271.2" z="0.0"/><position x="332.5" y="324.9" z="0.0"/><position x="310.7" y="326.6" z="0.0"/>
</waypoints><obstacles><vehicle x="334.71" y="307.2" z="0.0" yaw="90.0" hold_s="12.0"/></obstacles></route></routes>"""


def run_expert(tmp_path, routes, *extra):
    config = tmp_path / "expert.yaml"
    config.write_text("camera: none\n")
    out = tmp_path / "results.json"
    code = main(
        [
            "--routes",
            routes,
            "--agent",
            EXPERT,
            "--agent-config",
            str(config),
            "--checkpoint",
            str(out),
            "--no-progress",
            *extra,
        ]
    )
    return code, json.loads(out.read_text())


def test_expert_smoke_route_perfect_with_traffic(tmp_path):
    code, data = run_expert(tmp_path, "routes_smoke", "--seed", "0")
    assert code == 0
    (record,) = data["_checkpoint"]["records"]
    assert record["status"] == "Perfect", record["infractions"]
    assert record["scores"]["score_route"] == 100.0 and record["scores"]["score_composed"] == 100.0
    assert not record["infractions"]["collisions_vehicle"] and not record["infractions"]["collisions_layout"]


def test_expert_stops_behind_stopped_vehicle_then_completes(tmp_path):
    routes = tmp_path / "obstacle.xml"
    routes.write_text(OBSTACLE_ROUTE)
    code, data = run_expert(tmp_path, str(routes), "--traffic", "0", "--record", str(tmp_path / "rec"))
    (record,) = data["_checkpoint"]["records"]
    assert record["status"] == "Perfect", record["infractions"]
    lines = [json.loads(line) for line in (tmp_path / "rec" / "RouteScenario_0_rep0" / "steps.jsonl").open()]
    leaders = [ln["agent"]["leader"] for ln in lines if "agent" in ln and ln["agent"]["leader"]]
    assert {leader["id"] for leader in leaders} == {1}
    waiting = [ln for ln in lines if "agent" in ln and ln["time_s"] > 10.0 and ln["time_s"] < 11.5]
    assert all(ln["ego"][3] < 0.1 for ln in waiting)  # standing behind it until it drives off at 12 s
    assert all(ln["agent"]["meta_action"]["longitudinal"] == "stop" for ln in waiting)
    # The leader distance runs from the rear axle (3.85 m behind the front bumper) to the obstacle's rear.
    gap_m = min(ln["agent"]["leader"]["distance_m"] for ln in waiting) - 3.85
    assert 2.0 < gap_m < 8.0
    assert record["meta"]["duration_game"] > 12.0


def test_expert_speed_profile_slows_before_curves_and_idm_keeps_gap():
    s = np.arange(0.0, 60.0, 1.0)
    yaw = np.where(s < 40.0, 0.0, (s - 40.0) / 10.0)  # straight, then a 10 m radius curve
    v = speed_profile_mps(yaw, s, 8.0, 1.8, 1.8)
    assert v[0] == pytest.approx(8.0, abs=1e-6)
    assert v[45] == pytest.approx(np.sqrt(1.8 * 10.0), abs=0.3)  # 4.24 m/s in the curve
    assert np.all(np.diff(v[:41]) <= 1e-9)  # decelerates (never speeds up) into the curve
    cfg = ExpertConfig()
    assert idm_accel_mps2(5.0, 8.0, float("inf"), 0.0, cfg) > 0.0
    assert idm_accel_mps2(5.0, 8.0, 4.0, 0.0, cfg) < -2.0  # close to a stopped car: brake hard
    assert idm_accel_mps2(0.0, 8.0, 2.5, 0.0, cfg) <= 0.0  # standing within the minimum gap: stay
