"""An agent that cannot be set up crashes the entry: exit status 1, a clear message, the leaderboard's statuses."""

import json
import logging
from pathlib import Path

import pytest

from autovla_agent.paths import ROUTES_DIR
from autovla_agent.sim import runner
from autovla_agent.sim.world import route_files

AGENT_FILE = Path(__file__).resolve().parents[2] / "autovla_agent" / "carla_agent.py"
# A short Town01 route (the first leg of leaderboard-1.0 devtest route 0), twice.
ROUTE = (
    '<route id="{id}" town="Town01"><waypoints><position x="338.70" y="226.75" z="0.0"/>'
    '<position x="321.99" y="194.67" z="0.0"/></waypoints></route>'
)


def evaluate(tmp_path, agent, agent_config):
    routes = tmp_path / "r.xml"
    routes.write_text("<routes>" + ROUTE.format(id=0) + ROUTE.format(id=1) + "</routes>")
    out = tmp_path / "results.json"
    argv = ["--routes", str(routes), "--agent", str(agent), "--agent-config", agent_config]
    argv += ["--checkpoint", str(out), "--traffic", "0", "--no-progress", "--sim-override", "max_ticks=20"]
    return runner.main(argv), json.loads(out.read_text())


@pytest.mark.parametrize(
    ("agent_name", "agent_config", "says"),
    [
        ("carla_agent.py", "autovla_tiny.yaml vla.bogus_key=1", "'vla.bogus_key': unknown key"),
        ("carla_agent.py", "autovla_tiny.yaml replan_hz=fast", "replan_hz: expected a number, got 'fast'"),
        ("no_such_agent.py", "autovla_tiny.yaml", "does not exist"),
        ("carla_agent.py", "no_such_config.yaml", "'no_such_config.yaml' is neither a file nor a packaged config"),
    ],
    ids=["unknown-key", "bad-value", "missing-agent-file", "missing-config-yaml"],
)
def test_agent_that_cannot_be_set_up_crashes_the_entry(tmp_path, caplog, agent_name, agent_config, says):
    agent = AGENT_FILE if agent_name == "carla_agent.py" else tmp_path / agent_name
    with caplog.at_level(logging.ERROR):
        code, data = evaluate(tmp_path, agent, agent_config)
    assert code != 0
    errors = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert says in errors
    assert "cannot be set up" in errors and "the entry crashed" in errors
    # Nothing was driven: one record, the setup failure; the entry crashed and is not eligible.
    assert [r["status"] for r in data["_checkpoint"]["records"]] == ["Failed - Agent couldn't be set up"]
    assert data["_checkpoint"]["progress"] == [1, 2]
    assert data["entry_status"] == "Crashed" and data["eligible"] is False


def test_agent_that_sets_up_runs_every_route_and_exits_0(tmp_path):
    code, data = evaluate(tmp_path, AGENT_FILE, "autovla_tiny.yaml planner=constant_velocity")
    assert code == 0
    assert [r["status"] for r in data["_checkpoint"]["records"]] == ["Failed - TickRuntime"] * 2
    assert data["entry_status"] == "Finished" and data["eligible"] is True


def test_routes_help_lists_every_shipped_route_file():
    shipped = sorted(p.stem for p in ROUTES_DIR.glob("*.xml"))
    assert {"routes_default", "routes_smoke"} < set(shipped)  # more than the two names the help once hard-coded
    text = " ".join(runner.build_parser().format_help().split())
    assert f"shipped name ({', '.join(shipped)})" in text


def test_routes_help_reads_the_route_folder_when_it_runs(tmp_path, monkeypatch):
    (tmp_path / "my_routes.xml").write_text("<routes/>")
    monkeypatch.setattr(route_files, "packaged_routes_dir", lambda: tmp_path)
    text = " ".join(runner.build_parser().format_help().split())
    assert "shipped name (my_routes)" in text
