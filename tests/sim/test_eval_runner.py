"""The embedded evaluator survives bad agents and bad routes the way the leaderboard does, and keeps results."""

import json
import textwrap

from autovla_agent.sim.runner import main

# A short Town01 route (the first leg of leaderboard-1.0 devtest route 0) and two broken ones.
GOOD = (
    '<route id="{id}" town="Town01"><waypoints><position x="338.70" y="226.75" z="0.0"/>'
    '<position x="321.99" y="194.67" z="0.0"/></waypoints></route>'
)
UNKNOWN_TOWN = (
    '<route id="{id}" town="Town99"><waypoints><position x="0" y="0" z="0"/>'
    '<position x="10" y="0" z="0"/></waypoints></route>'
)
OFF_ROAD = (
    '<route id="{id}" town="Town01"><waypoints><position x="5000" y="5000" z="0"/>'
    '<position x="5050" y="5000" z="0"/></waypoints></route>'
)

AGENT = """
import carla
from autovla_agent.adapters.carla.agent_base import AgentBase


def get_entry_point():
    return "TestAgent"


class TestAgent(AgentBase):
    def setup(self, path_to_conf_file):
        {setup}

    def sensors(self):
        return [{{"type": "sensor.speedometer", "id": "speed", "reading_frequency": 20}},
                {{"type": "sensor.other.gnss", "id": "gnss", "x": 0.0, "y": 0.0, "z": {gnss_z}}}]

    def run_step(self, input_data, timestamp):
        {run_step}
        return carla.VehicleControl(throttle=0.0, steer=0.0, brake=1.0)
"""


def write_routes(path, *routes):
    body = "".join(r.format(id=i) for i, r in enumerate(routes))
    path.write_text(f"<routes>{body}</routes>")
    return str(path)


def write_agent(path, setup="pass", run_step="pass", gnss_z=1.6):
    path.write_text(textwrap.dedent(AGENT.format(setup=setup, run_step=run_step, gnss_z=gnss_z)))
    return str(path)


def run(tmp_path, routes, agent, *extra):
    out = tmp_path / "results.json"
    code = main(
        [
            "--routes",
            routes,
            "--agent",
            agent,
            "--checkpoint",
            str(out),
            "--traffic",
            "0",
            "--no-progress",
            "--sim-override",
            "max_ticks=20",
            *extra,
        ]
    )
    return code, json.loads(out.read_text())


def statuses(data):
    return [r["status"] for r in data["_checkpoint"]["records"]]


def test_runner_agent_raising_in_run_step_recorded_crashed_and_run_goes_on(tmp_path):
    routes = write_routes(tmp_path / "r.xml", GOOD, GOOD)
    agent = write_agent(tmp_path / "raising_agent.py", run_step="if timestamp > 0.2: raise RuntimeError('boom')")
    code, data = run(tmp_path, routes, agent)
    assert code == 0
    assert statuses(data) == ["Failed - Agent crashed"] * 2
    assert data["_checkpoint"]["progress"] == [2, 2]
    assert [r["meta"]["duration_game"] for r in data["_checkpoint"]["records"]] == [0.25, 0.25]
    assert (
        data["entry_status"] == "Finished" and data["values"] and data["sensors"] == ["carla_speedometer", "carla_gnss"]
    )


def test_runner_unloadable_agent_on_resume_keeps_earlier_routes_and_crashes_the_entry(tmp_path):
    routes = write_routes(tmp_path / "r.xml", GOOD, GOOD, GOOD)
    good = write_agent(tmp_path / "braking_agent.py")
    code, data = run(tmp_path, routes, good)
    assert code == 0 and statuses(data) == ["Failed - TickRuntime"] * 3
    first = data["_checkpoint"]["records"][0]
    # Pretend the run stopped after its first route, then resume it with an agent file that does not import.
    data["_checkpoint"]["records"] = [first]
    data["_checkpoint"]["progress"] = [1, 3]
    (tmp_path / "results.json").write_text(json.dumps(data))
    broken = tmp_path / "broken_agent.py"
    broken.write_text("def get_entry_point(:\n")
    code, data = run(tmp_path, routes, str(broken), "--resume")
    assert code == 1
    assert data["_checkpoint"]["records"][0] == first
    assert statuses(data)[1:] == ["Failed - Agent couldn't be set up"]
    assert data["_checkpoint"]["progress"] == [2, 3]
    assert data["entry_status"] == "Crashed" and data["eligible"] is False
    # Fixed: the resumed run drives the route the crashed one could not, and keeps the first.
    code, data = run(tmp_path, routes, good, "--resume")
    assert code == 0 and data["_checkpoint"]["records"][0] == first
    assert statuses(data) == ["Failed - TickRuntime"] * 3 and data["entry_status"] == "Finished"
    assert data["_checkpoint"]["progress"] == [3, 3]


def test_runner_setup_failing_on_the_first_route_stops_a_fresh_run(tmp_path):
    routes = write_routes(tmp_path / "r.xml", GOOD, GOOD, GOOD)
    failing_setup = write_agent(tmp_path / "setup_agent.py", setup="raise ValueError('no config')")
    code, data = run(tmp_path, routes, failing_setup)
    assert code == 1
    assert statuses(data) == ["Failed - Agent couldn't be set up"]
    assert data["_checkpoint"]["progress"] == [1, 3]
    assert data["entry_status"] == "Crashed" and data["eligible"] is False


def test_runner_setup_failing_after_a_good_first_route_fails_that_route_only(tmp_path):
    routes = write_routes(tmp_path / "r.xml", GOOD, GOOD, GOOD)
    # The second agent instance of the run fails its setup (a module-level count of setup calls).
    setup = "global CALLS; CALLS = globals().get('CALLS', 0) + 1\n        if CALLS == 2: raise ValueError('flaky')"
    code, data = run(tmp_path, routes, write_agent(tmp_path / "flaky_agent.py", setup=setup))
    assert code == 0
    assert statuses(data) == ["Failed - TickRuntime", "Failed - Agent couldn't be set up", "Failed - TickRuntime"]
    assert data["entry_status"] == "Finished" and data["_checkpoint"]["progress"] == [3, 3]


def test_runner_unknown_town_and_off_road_route_recorded_simulation_crashed(tmp_path):
    routes = write_routes(tmp_path / "r.xml", UNKNOWN_TOWN, OFF_ROAD, GOOD)
    code, data = run(tmp_path, routes, write_agent(tmp_path / "braking_agent.py"))
    assert code == 0
    assert statuses(data) == ["Failed - Simulation crashed", "Failed - Simulation crashed", "Failed - TickRuntime"]
    assert data["entry_status"] == "Crashed"  # as the leaderboard marks a run with a simulation crash


def test_runner_invalid_sensors_reject_and_stop_the_evaluation(tmp_path):
    routes = write_routes(tmp_path / "r.xml", GOOD, GOOD)
    code, data = run(tmp_path, routes, write_agent(tmp_path / "tall_agent.py", gnss_z=50.0))
    assert code == 1
    assert statuses(data) == ["Failed - Agent's sensors were invalid"]
    assert data["entry_status"] == "Rejected" and data["eligible"] is False
