"""Multi-server runner: shards as Ray tasks with a stand-in evaluator and stand-in servers, merged like one run."""

import json
import random
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import leaderboard_reference as lb
import pytest
from fake_leaderboard_evaluator import SENSORS, fake_record

from autovla_agent.scale.multiserver import run_multiserver
from autovla_agent.scale.sharding import MultiServerConfig, evaluator_command, plan_servers, split_routes

ray = pytest.importorskip("ray")

HERE = Path(__file__).parent
FAKE_EVALUATOR = HERE / "fake_leaderboard_evaluator.py"
FAKE_SERVER = HERE / "fake_carla_server.py"


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("localhost", port))
        except OSError:
            return False
    return True


def listening(port):
    try:
        socket.create_connection(("localhost", port), timeout=1.0).close()
    except OSError:
        return False
    return True


def free_base_port(count, stride=10):
    for _ in range(100):
        base = random.randrange(20000, 60000, 10)
        if all(port_free(base + k * stride) for k in range(count)):
            return base
    raise RuntimeError("no free ports")


def write_routes(path, n):
    body = "".join(
        f'<route id="{i}" town="Town12"><waypoints><position x="{i}" y="0" z="0"/><position x="{i + 1}" y="0" z="0"/>'
        f'</waypoints><scenarios><scenario name="S{i}" type="Accident"/></scenarios></route>'
        for i in range(n)
    )
    path.write_text(f"<routes>{body}</routes>")
    return str(path)


def expected_run(ids, reps):
    plan = [(rid, rep) for rid in ids for rep in range(reps)]
    records = [fake_record(rid, rep, i) for i, (rid, rep) in enumerate(plan)]
    return json.loads(json.dumps(lb.results_json(records, len(plan), SENSORS)))


def config(tmp_path, routes, **kw):
    return MultiServerConfig(
        routes=routes,
        out_dir=str(tmp_path / "run"),
        evaluator=str(FAKE_EVALUATOR),
        server_settle_s=0.0,
        server_start_timeout_s=20.0,
        poll_s=0.2,
        progress=False,
        **kw,
    )


def test_plan_splits_routes_and_gives_each_server_its_ports_and_gpu(tmp_path):
    routes = write_routes(tmp_path / "r.xml", 5)
    cfg = MultiServerConfig(
        routes=routes, out_dir=str(tmp_path), carla_root="/opt/carla", num_servers=3, gpus=(0, 1), base_port=3000
    )
    servers = plan_servers(cfg)
    assert [(s.port, s.tm_port, s.gpu) for s in servers] == [(3000, 8000, 0), (3010, 8010, 1), (3020, 8020, 0)]
    assert servers[1].launch == (
        "/opt/carla/CarlaUE4.sh", "-RenderOffScreen", "-nosound", "-carla-rpc-port=3010", "-graphicsadapter=1"
    )  # fmt: skip
    ids, shards = split_routes(routes, "0-3", 3, tmp_path / "shards")
    assert ids == ["0", "1", "2", "3"] and shards == [["0", "3"], ["1"], ["2"]]
    shard0 = ET.parse(tmp_path / "shards" / "shard-0.xml").getroot()
    assert [el.get("id") for el in shard0.iter("route")] == ["0", "3"]
    assert shard0.find("route/scenarios/scenario").get("type") == "Accident"  # scenarios travel with the route
    cmd = evaluator_command(
        replace_args(cfg, evaluator_args=("--gpu-rank={gpu}",)), Path("s.xml"), Path("s.json"), servers[1], 1
    )
    assert "--port=3010" in cmd and "--traffic-manager-port=8010" in cmd and cmd[-1] == "--gpu-rank=1"
    assert not any(c.startswith("--resume") for c in cmd)
    b2d = replace_args(cfg, carla_root="", evaluator_starts_server=True)  # Bench2Drive starts its own server
    assert [(s.port, s.gpu, s.external, s.launch) for s in plan_servers(b2d)][1] == (3010, 1, True, ())
    with pytest.raises(ValueError, match="either"):
        MultiServerConfig(routes=routes, out_dir=".", servers=("localhost:2000",), num_servers=2)


def replace_args(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)


def test_two_given_servers_merge_equals_one_run(tmp_path, ray_session):
    base = free_base_port(2)
    servers = [
        subprocess.Popen([sys.executable, str(FAKE_SERVER), "--port", str(base + 10 * k)], stdout=subprocess.DEVNULL)
        for k in range(2)
    ]
    try:
        routes = write_routes(tmp_path / "r.xml", 5)
        cfg = config(tmp_path, routes, servers=(f"localhost:{base}", f"localhost:{base + 10}"), repetitions=2)
        assert run_multiserver(cfg) == 0
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
    merged = json.loads((tmp_path / "run" / "results.json").read_text())
    expected = expected_run([str(i) for i in range(5)], 2)
    assert merged["_checkpoint"]["records"] == expected["_checkpoint"]["records"]
    assert merged["_checkpoint"]["global_record"] == expected["_checkpoint"]["global_record"]
    assert merged["values"] == expected["values"] and merged["entry_status"] == "Finished" and merged["eligible"]
    assert (tmp_path / "run" / "logs" / "shard-1-evaluator.log").read_text().count("Preparing") == 4


def test_crashed_server_is_restarted_and_its_shard_resumed(tmp_path, ray_session):
    base = free_base_port(2)
    routes = write_routes(tmp_path / "r.xml", 5)
    state = tmp_path / "fault_state"
    state.mkdir()
    cfg = config(
        tmp_path,
        routes,
        num_servers=2,
        base_port=base,
        base_tm_port=free_base_port(2),
        server_command=f"{sys.executable} {FAKE_SERVER} --port {{port}}",
        # Route 2 (shard 0) crashes its server once; route 3 (shard 1) kills its evaluator every time.
        evaluator_args=(
            f"--fake-state={state}",
            "--fake-crash=RouteScenario_2_rep0",
            "--fake-die=RouteScenario_3_rep0:9",
        ),
        max_retries=1,
    )
    assert run_multiserver(cfg) == 0
    merged = json.loads((tmp_path / "run" / "results.json").read_text())
    records = merged["_checkpoint"]["records"]
    expected = expected_run([str(i) for i in range(5)], 1)["_checkpoint"]["records"]
    assert [r["route_id"] for r in records] == [f"RouteScenario_{i}_rep0" for i in range(5)]
    assert records[3]["status"] == "Failed - Simulation crashed"  # died twice: recorded with the leaderboard's reason
    assert [r for i, r in enumerate(records) if i != 3] == [r for i, r in enumerate(expected) if i != 3]
    assert merged["values"] and merged["entry_status"] == "Crashed"  # as the leaderboard marks a crashed route
    server_log = (tmp_path / "run" / "logs" / "shard-0-server.log").read_text()
    assert server_log.count("listening") == 2 and "crashing" in server_log  # restarted after its crash
    assert (state / "RouteScenario_3_rep0.die.count").read_text() == "2"  # run once, retried once
    assert not listening(base) and not listening(base + 10)  # no server left behind
