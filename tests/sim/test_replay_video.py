"""Route replays: the step log written during a route renders to a playable MP4 (and a GIF on request)."""

import json

import carla
import imageio.v3 as iio
import numpy as np

from autovla_agent.sim.replay.cli import main
from autovla_agent.sim.replay.log import ReplayConfig, RouteRecorder
from autovla_agent.sim.replay.video import render_video
from autovla_agent.sim.scoring.infractions import EventType, TrafficEvent
from autovla_agent.sim.world.route_files import load_routes
from autovla_agent.sim.world.simulation import World, WorldConfig

CAMERA = {
    "type": "sensor.camera.rgb",
    "id": "rgb_front",
    "x": 0.8,
    "y": 0.0,
    "z": 1.6,
    "roll": 0.0,
    "pitch": 0.0,
    "yaw": 0.0,
    "width": 320,
    "height": 180,
    "fov": 70.0,
}


def record_route(log_dir, num_ticks=30):
    world = World("Town01", load_routes("routes_smoke")[0], WorldConfig(), seed=0)
    config = ReplayConfig(camera_height_px=90, bev_size_px=160, panel_height_px=100, chunk_frames=4)
    meta = {
        "route_name": "RouteScenario_0_rep0",
        "town": "Town01",
        "camera_id": "rgb_front",
        "route_xy_world_m": world.route.xy_world_m.tolist(),
    }
    recorder = RouteRecorder(log_dir, meta, config)
    for tick in range(num_ticks):
        input_data = world.sensor_data([CAMERA])
        world.apply_control(carla.VehicleControl(throttle=0.5))
        world.tick()
        snap = world.snapshot()
        x, y = float(snap.ego.x_m[0]), float(snap.ego.y_m[0])
        plan = None
        if tick % 10 == 0:  # a replan every 0.5 s, as the hook's contract: a new dict per replan
            poses = np.stack([x + np.arange(1, 6), np.full(5, y), np.zeros(5)], axis=1)
            plan = {
                "time_s": snap.time_s,
                "poses_world": poses,
                "thinking_mode": "slow",
                "reasoning": "The road ahead is clear; keep the lane.",
                "status": "ok",
            }
        events = [TrafficEvent(EventType.COLLISION_VEHICLE, snap.frame, snap.time_s, "test")] if tick == 12 else []
        recorder.step(snap, input_data, "rgb_front", plan, {"note": np.float32(1.5)}, events, 1.0)
    recorder.close({"status": "Perfect"})
    return config


def test_replay_writes_playable_mp4_with_one_frame_per_stride(tmp_path):
    log_dir = tmp_path / "RouteScenario_0_rep0"
    config = record_route(log_dir, num_ticks=30)
    lines = [json.loads(line) for line in (log_dir / "steps.jsonl").read_text().splitlines()]
    assert sum(line["video"] for line in lines) == 15  # every 2nd of 30 ticks
    assert any(e["type"] == "COLLISION_VEHICLE" for line in lines for e in line["events"])
    assert sum("plan" in line for line in lines) == 3 and lines[0]["agent"] == {"note": 1.5}
    assert len(list(log_dir.glob("camera_*.npz"))) == 4  # 15 frames in chunks of 4
    path = render_video(log_dir, config=config)
    assert path == tmp_path / "RouteScenario_0_rep0.mp4"
    frames = iio.imread(path, index=None)
    # camera 90 px high resized to the 160 px BEV: 284 + 160 = 444 -> 448 wide; 160 + 100 = 260 -> 272 high
    assert frames.shape == (15, 272, 448, 3)
    assert frames[:, :160, :284].std() > 10.0  # the camera view has content


def test_replay_cli_rerenders_a_record_folder_as_gif(tmp_path):
    record_route(tmp_path / "rec" / "RouteScenario_0_rep0", num_ticks=8)
    assert main([str(tmp_path / "rec"), "--format", "gif", "--out", str(tmp_path / "videos")]) == 0
    gif = tmp_path / "videos" / "RouteScenario_0_rep0.gif"
    assert iio.imread(gif, index=None).shape[0] == 4
    assert main([str(tmp_path / "nothing_here")]) == 2
