"""Without Ray: --workers 1 runs as before, --workers 2 says how to install Ray before any route runs."""

import json
import logging
import sys

import pytest

from autovla_agent.scale import multiserver
from autovla_agent.sim.runner import main

ROUTE = (
    '<routes><route id="0" town="Town01"><waypoints><position x="338.70" y="226.75" z="0.0"/>'
    '<position x="321.99" y="194.67" z="0.0"/></waypoints></route></routes>'
)
EXPERT = "autovla_agent/sim/expert.py"


@pytest.fixture
def no_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" raises ImportError


def test_two_workers_without_ray_fail_early_with_the_install_hint(tmp_path, no_ray, caplog):
    routes = tmp_path / "r.xml"
    routes.write_text(ROUTE)
    out = tmp_path / "out.json"
    with caplog.at_level(logging.ERROR):
        code = main(["--routes", str(routes), "--agent", EXPERT, "--checkpoint", str(out), "--workers", "2"])
    assert code == 2 and not out.exists()
    assert "pip install 'autovla-agent[ray]'" in caplog.text
    with caplog.at_level(logging.ERROR):
        code = multiserver.main(
            [
                "--routes",
                str(routes),
                "--out",
                str(tmp_path / "ms"),
                "--servers",
                "localhost:2000",
                "--evaluator",
                "leaderboard_evaluator.py",
            ]
        )
    assert code == 2 and "autovla-agent[ray]" in caplog.text


def test_one_worker_without_ray_runs_serially(tmp_path, no_ray):
    routes = tmp_path / "r.xml"
    routes.write_text(ROUTE)
    out = tmp_path / "out.json"
    argv = ["--routes", str(routes), "--agent", EXPERT, "--checkpoint", str(out), "--no-progress", "--workers", "1"]
    assert main([*argv, "--sim-override", "max_ticks=10"]) == 0
    assert json.loads(out.read_text())["_checkpoint"]["progress"] == [1, 1]


def test_pipeline_and_collector_without_ray_refuse_more_workers_before_any_stage(tmp_path, no_ray):
    from autovla_agent.training import collect, pipeline

    assert pipeline.main(["--out", str(tmp_path / "p"), "scale.workers=2"]) == 2
    assert not (tmp_path / "p").exists()
    assert collect.main(["--out", str(tmp_path / "d"), "--workers", "2"]) == 2
    assert not (tmp_path / "d").exists()


def test_evaluation_stage_passes_the_workers_to_the_runner(tmp_path, monkeypatch):
    from autovla_agent.scale.engine import ScaleConfig
    from autovla_agent.sim import runner
    from autovla_agent.training.evaluate import evaluate_model

    seen = []
    monkeypatch.setattr(runner, "main", lambda argv: seen.append(list(argv)) or 1)
    with pytest.raises(RuntimeError, match="stopped"):
        evaluate_model(tmp_path, tmp_path / "a.yaml", tmp_path / "eval", "routes_default", scale=ScaleConfig(workers=2))
    assert seen and seen[0][seen[0].index("--workers") + 1] == "2"
