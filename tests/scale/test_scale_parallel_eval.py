"""``autovla-evaluate --workers 2``: the serial run's results, a killed worker's route retried, Ctrl-C, resume."""

import json
import textwrap
import time

import pytest

from autovla_agent.scale import checkpoint as checkpoint_module
from autovla_agent.sim.runner import main

ray = pytest.importorskip("ray")

EXPERT = "autovla_agent/sim/expert.py"
ROUTE_A = (
    '<route id="{id}" town="Town01"><waypoints><position x="338.70" y="226.75" z="0.0"/>'
    '<position x="321.99" y="194.67" z="0.0"/></waypoints></route>'
)
ROUTE_B = (
    '<route id="{id}" town="Town01"><waypoints><position x="227.2" y="59.5" z="0.0"/>'
    '<position x="280.0" y="58.8" z="0.0"/></waypoints></route>'
)
UNKNOWN_TOWN = (
    '<route id="{id}" town="Town99"><waypoints><position x="0" y="0" z="0"/>'
    '<position x="10" y="0" z="0"/></waypoints></route>'
)
# A braking agent that kills its own worker process mid-route: once (the first route to get there) when
# ``once`` is set, else on every route starting at x = 227.2 (ROUTE_B).
KILLER = """
import os, signal
from pathlib import Path
import carla
from autovla_agent.adapters.carla.agent_base import AgentBase


def get_entry_point():
    return "KillerAgent"


class KillerAgent(AgentBase):
    def setup(self, path_to_conf_file):
        pass

    def sensors(self):
        return [{{"type": "sensor.speedometer", "id": "speed", "reading_frequency": 20}}]

    def run_step(self, input_data, timestamp):
        if timestamp > 0.2:
            marker = Path({marker!r})
            start_x = self._global_plan_world_coord[0][0].location.x
            if ({once} and not marker.exists()) or (not {once} and abs(start_x - 227.2) < 1.0):
                marker.write_text("killed")
                os.kill(os.getpid(), signal.SIGKILL)
        return carla.VehicleControl(throttle=0.0, steer=0.0, brake=1.0)
"""


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def wait_for(predicate, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def write_routes(path, *routes):
    path.write_text("<routes>" + "".join(r.format(id=i) for i, r in enumerate(routes)) + "</routes>")
    return str(path)


def run(out, routes, agent, *extra):
    code = main(["--routes", routes, "--agent", agent, "--checkpoint", str(out), "--no-progress", *extra])
    return code, json.loads(out.read_text())


def without_wall_time(data):
    data = json.loads(json.dumps(data))
    for record in data["_checkpoint"]["records"]:
        record["meta"].pop("duration_system")
    data["_checkpoint"]["global_record"].get("meta", {}).pop("duration_system", None)
    return data


def statuses(data):
    return [r["status"] for r in data["_checkpoint"]["records"]]


def test_two_workers_give_the_serial_results_per_route(tmp_path, ray_session):
    routes = write_routes(tmp_path / "r.xml", ROUTE_B, UNKNOWN_TOWN)
    code, serial = run(tmp_path / "serial.json", routes, EXPERT, "--repetitions", "2", "--seed", "3")
    assert code == 0
    code, parallel = run(
        tmp_path / "parallel.json", routes, EXPERT, "--repetitions", "2", "--seed", "3", "--workers", "2"
    )
    assert code == 0
    assert without_wall_time(parallel) == without_wall_time(serial)
    assert statuses(parallel) == ["Perfect"] * 2 + ["Failed - Simulation crashed"] * 2
    assert parallel["entry_status"] == "Crashed" and parallel["values"]
    logs = sorted(p.name for p in (tmp_path / "parallel_logs").iterdir())
    assert logs == ["worker-0.log", "worker-1.log"]
    assert "RouteScenario_" in (tmp_path / "parallel_logs" / "worker-0.log").read_text()


def test_killed_worker_route_is_retried_and_no_route_lost_or_duplicated(tmp_path, ray_session):
    routes = write_routes(tmp_path / "r.xml", ROUTE_A, ROUTE_A, ROUTE_A, ROUTE_A)
    agent = tmp_path / "killer_once.py"
    agent.write_text(textwrap.dedent(KILLER.format(marker=str(tmp_path / "killed"), once=True)))
    code, data = run(tmp_path / "out.json", routes, str(agent), "--workers", "2", "--sim-override", "max_ticks=20")
    assert code == 0 and (tmp_path / "killed").exists()
    assert [r["route_id"] for r in data["_checkpoint"]["records"]] == [f"RouteScenario_{i}_rep0" for i in range(4)]
    assert statuses(data) == ["Failed - TickRuntime"] * 4  # the killed route ran again to its end
    assert data["_checkpoint"]["progress"] == [4, 4] and data["entry_status"] == "Finished"
    assert len(list((tmp_path / "out_logs").iterdir())) == 3  # the dead worker's log and its replacement's


def test_route_killing_every_worker_is_recorded_crashed_after_one_retry(tmp_path, ray_session):
    routes = write_routes(tmp_path / "r.xml", ROUTE_A, ROUTE_B, ROUTE_A)
    agent = tmp_path / "killer_b.py"
    agent.write_text(textwrap.dedent(KILLER.format(marker=str(tmp_path / "killed"), once=False)))
    code, data = run(tmp_path / "out.json", routes, str(agent), "--workers", "2", "--sim-override", "max_ticks=20")
    assert code == 0
    assert statuses(data) == ["Failed - TickRuntime", "Failed - Simulation crashed", "Failed - TickRuntime"]
    assert data["entry_status"] == "Crashed" and data["values"]  # finalized, with the leaderboard's crash status
    assert len(list((tmp_path / "out_logs").iterdir())) >= 3  # route 1 killed its worker and the replacement


def test_resume_skips_every_finished_route(tmp_path, ray_session):
    routes = write_routes(tmp_path / "r.xml", ROUTE_A, ROUTE_B, ROUTE_A, ROUTE_B)
    out = tmp_path / "out.json"
    code, data = run(out, routes, EXPERT, "--workers", "2", "--sim-override", "max_ticks=10")
    assert code == 0
    # Keep routes 0 and 2 (a gap, as a parallel run leaves it), marked so that a rerun would show.
    records = data["_checkpoint"]["records"]
    for r in (records[0], records[2]):
        r["meta"]["duration_system"] = 123.0
    records[1] = {**records[1], "status": "Started"}
    data["_checkpoint"]["records"] = records[:3]
    data["_checkpoint"]["progress"] = [1, 4]
    data["entry_status"] = "Started"
    out.write_text(json.dumps(data))
    code, resumed = run(out, routes, EXPERT, "--workers", "2", "--sim-override", "max_ticks=10", "--resume")
    assert code == 0 and resumed["_checkpoint"]["progress"] == [4, 4]
    assert [r["meta"]["duration_system"] for r in resumed["_checkpoint"]["records"]][0::2] == [123.0, 123.0]
    assert resumed["_checkpoint"]["records"][1]["meta"]["duration_system"] != 123.0


TALL_SENSOR_AGENT = """
import carla
from autovla_agent.adapters.carla.agent_base import AgentBase


def get_entry_point():
    return "TallAgent"


class TallAgent(AgentBase):
    def setup(self, path_to_conf_file):
        pass

    def sensors(self):
        return [{"type": "sensor.other.gnss", "id": "gnss", "x": 0.0, "y": 0.0, "z": 50.0}]

    def run_step(self, input_data, timestamp):
        return carla.VehicleControl(throttle=0.0, steer=0.0, brake=1.0)
"""


def test_invalid_sensors_stop_the_parallel_run_as_the_serial_one(tmp_path, ray_session):
    routes = write_routes(tmp_path / "r.xml", ROUTE_A, ROUTE_A, ROUTE_A)
    agent = tmp_path / "tall_agent.py"
    agent.write_text(TALL_SENSOR_AGENT)
    code, serial = run(tmp_path / "serial.json", routes, str(agent))
    code_parallel, parallel = run(tmp_path / "parallel.json", routes, str(agent), "--workers", "2")
    assert code == code_parallel == 1
    assert without_wall_time(parallel) == without_wall_time(serial)
    assert statuses(parallel) == ["Failed - Agent's sensors were invalid"] and parallel["entry_status"] == "Rejected"


def test_ctrl_c_stops_the_workers_and_keeps_the_finished_routes(tmp_path, ray_session, monkeypatch):
    routes = write_routes(tmp_path / "r.xml", ROUTE_A, ROUTE_A, ROUTE_A, ROUTE_A)
    original = checkpoint_module.OrderedResults.add

    def add_then_interrupt(self, record, entry_status="Started"):
        original(self, record, entry_status)
        raise KeyboardInterrupt  # as Ctrl-C arriving right after the first route finished

    monkeypatch.setattr(checkpoint_module.OrderedResults, "add", add_then_interrupt)
    out = tmp_path / "out.json"
    code, data = run(out, routes, EXPERT, "--workers", "2", "--sim-override", "max_ticks=10")
    assert code == 130
    finished = [r for r in data["_checkpoint"]["records"] if r["status"] != "Started"]
    assert len(finished) == 1 and not data["values"]
    assert wait_for(lambda: ray.available_resources().get("CPU") == 2.0)  # every worker is gone


def test_two_worker_collection_writes_the_serial_dataset(tmp_path, ray_session):
    from autovla_agent.scale.engine import ScaleConfig
    from autovla_agent.training.collect import CollectConfig, Collector

    def collect(out, workers):
        config = CollectConfig(
            out=str(out),
            routes=("routes_smoke",),
            seeds=(0, 1, 2),
            num_traffic=4,
            reasoning_share=0.5,
            max_route_s=10.0,
            agent_overrides=("frame_buffer.width_px=112", "frame_buffer.height_px=56"),
            scale=ScaleConfig(workers=workers),
        )
        return Collector(config).run()

    serial = collect(tmp_path / "serial", 1)
    parallel = collect(tmp_path / "parallel", 2)
    assert [(s.route, s.seed, s.samples, s.outcome) for s in parallel] == [
        (s.route, s.seed, s.samples, s.outcome) for s in serial
    ]
    assert sum(s.samples for s in serial) > 0
    samples = (tmp_path / "serial" / "samples.jsonl").read_bytes()
    assert (tmp_path / "parallel" / "samples.jsonl").read_bytes() == samples
    images = sorted(p.relative_to(tmp_path / "serial") for p in (tmp_path / "serial" / "images").rglob("*.png"))
    assert images == sorted(
        p.relative_to(tmp_path / "parallel") for p in (tmp_path / "parallel" / "images").rglob("*.png")
    )
    assert not (tmp_path / "parallel" / ".parts").exists() and (tmp_path / "parallel_logs").is_dir()
