"""The AutoVLA agent file (tiny random model) drives the smoke route through the embedded evaluator end to end."""

import json
from pathlib import Path

import imageio.v3 as iio

from autovla_agent.sim.runner import main

AGENT_FILE = Path(__file__).resolve().parents[2] / "autovla_agent" / "carla_agent.py"
MAX_TICKS = 80  # 4 s at 20 Hz: 1.5 s of frame-buffer warm-up (4 frames at 2 Hz), then replans at 1.5, 2, ..., 3.5 s


def test_eval_autovla_agent_tiny_model_plans_records_and_renders(tmp_path, tiny_model_dir):
    results = tmp_path / "r.json"
    code = main(
        [
            "--routes",
            "routes_smoke",
            "--agent",
            str(AGENT_FILE),
            "--agent-config",
            f"autovla_tiny.yaml vla.model.path={tiny_model_dir}",
            "--record",
            str(tmp_path),
            "--checkpoint",
            str(results),
            "--traffic",
            "0",
            "--no-progress",
            "--sim-override",
            f"max_ticks={MAX_TICKS}",
        ]
    )
    assert code == 0
    data = json.loads(results.read_text())
    assert data["entry_status"] == "Finished" and data["_checkpoint"]["progress"] == [1, 1]
    assert data["sensors"] == ["carla_camera", "carla_gnss", "carla_imu", "carla_speedometer"]
    (record,) = data["_checkpoint"]["records"]
    assert record["route_id"] == "RouteScenario_0_rep0"
    assert record["status"] == "Failed - TickRuntime", record  # ran to the tick cap: set up and never crashed
    assert record["meta"]["duration_game"] == MAX_TICKS * 0.05
    assert set(record["scores"]) == {"score_route", "score_penalty", "score_composed"}
    assert "route_timeout" in record["infractions"] and record["num_infractions"] == 0

    lines = [json.loads(line) for line in (tmp_path / "RouteScenario_0_rep0" / "steps.jsonl").open()]
    plans = [line["plan"] for line in lines if "plan" in line]
    assert len(plans) >= 4  # warmed up, then replanned at 2 Hz
    assert [p["time_s"] for p in plans] == [1.5 + 0.5 * k for k in range(len(plans))]
    for plan in plans:
        assert plan["thinking_mode"] in {"fast", "slow"} and plan["status"] in {"ok", "repaired", "fallback"}
        assert len(plan["poses_world"]) == 10 and all(len(pose) == 3 for pose in plan["poses_world"])
    states = [line["agent"]["state"] for line in lines]
    assert states[0] == "warmup" and states[-1] != "warmup"
    assert all(line["control"][2] == 1.0 for line in lines if line["agent"]["state"] == "warmup")  # brakes

    frames = iio.imread(tmp_path / "RouteScenario_0_rep0.mp4", index=None)
    # 1024 x 576 camera at the replay's 360 px height (640 wide) beside the 360 px BEV, over a 120 px panel:
    # 1000 x 480, padded to 16-pixel blocks -> 1008 x 480; one frame every 2nd tick.
    assert frames.shape == (MAX_TICKS // 2, 480, 1008, 3)
    assert frames[:, :360, :640].std() > 5.0  # the camera view has content
