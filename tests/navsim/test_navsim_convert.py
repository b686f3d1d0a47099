"""navsim-free conversions: AgentInput-shaped objects -> Observation, sensor config, Plan -> navsim poses."""

from types import SimpleNamespace

import numpy as np
import pytest

from autovla_agent.adapters.navsim.convert import (
    AUTOVLA_CAMERAS,
    NAVSIM_CAMERAS,
    NavsimAgentConfig,
    NavsimRunStats,
    command_from_one_hot,
    load_navsim_vla_config,
    model_views,
    observation_from_agent_input,
    plan_to_poses,
    sensor_config_fields,
    trajectory_times_s,
)
from autovla_agent.constant_velocity import constant_velocity_poses
from autovla_agent.contract import NavCommand, Plan, PlanStatus

VIEWS = ("front", "front_left", "front_right")


def _camera(image=None):
    # Mirrors navsim.common.dataclasses.Camera (v2 adds camera_path).
    return SimpleNamespace(
        image=image, sensor2lidar_rotation=None, sensor2lidar_translation=None, intrinsics=None, distortion=None
    )


def _cameras(frame_index, loaded=("cam_f0", "cam_l1", "cam_r1"), h=6, w=8):
    # Each loaded image is filled with a value naming camera and frame so the test can trace it.
    return SimpleNamespace(
        **{
            cam: _camera(np.full((h, w, 3), 10 * NAVSIM_CAMERAS.index(cam) + frame_index, np.uint8))
            if cam in loaded
            else _camera()
            for cam in NAVSIM_CAMERAS
        }
    )


def _agent_input(velocities=None, accels=None, command=(0, 1, 0, 0), loaded=("cam_f0", "cam_l1", "cam_r1")):
    # A car driving straight along x at 5 m/s: 2.5 m between 2 Hz frames, current frame at the origin.
    velocities = velocities or [(5.0, 0.1)] * 4
    accels = accels or [(0.5, 0.0)] * 4
    statuses = [
        SimpleNamespace(
            ego_pose=np.array([-2.5 * (3 - i), 0.1 * (3 - i), 0.02 * (3 - i)], np.float32),
            ego_velocity=np.array(velocities[i], np.float32),
            ego_acceleration=np.array(accels[i], np.float32),
            driving_command=np.array(command, np.int64),
            in_global_frame=False,
        )
        for i in range(4)
    ]
    return SimpleNamespace(ego_statuses=statuses, cameras=[_cameras(i, loaded) for i in range(4)], lidars=[None] * 4)


def test_observation_from_agent_input_four_frames_maps_views_poses_and_command():
    obs = observation_from_agent_input(_agent_input(), AUTOVLA_CAMERAS, VIEWS, num_frames=4, timestamp_s=100.0)
    assert set(obs.cameras) == set(VIEWS)
    for view, cam in (("front", "cam_f0"), ("front_left", "cam_l1"), ("front_right", "cam_r1")):
        frames = obs.cameras[view]
        assert [f.timestamp_s for f in frames] == [98.5, 99.0, 99.5, 100.0]
        assert [int(f.image_rgb[0, 0, 0]) for f in frames] == [10 * NAVSIM_CAMERAS.index(cam) + i for i in range(4)]
        assert all(f.image_rgb.dtype == np.uint8 and f.image_rgb.shape == (6, 8, 3) for f in frames)
    assert obs.timestamp_s == 100.0
    assert len(obs.ego_history) == 4
    assert obs.ego.x_m == 0.0 and obs.ego.y_m == 0.0 and obs.ego.yaw_rad == 0.0
    assert obs.ego_history[0].x_m == pytest.approx(-7.5)
    assert obs.ego_history[0].y_m == pytest.approx(0.3)
    assert obs.ego_history[0].yaw_rad == pytest.approx(0.06)
    assert obs.ego.speed_mps == pytest.approx(5.0)
    assert obs.ego.accel_mps2 == pytest.approx(0.5)
    assert obs.command is NavCommand.KEEP_FORWARD


def test_observation_from_agent_input_two_frames_takes_latest_two():
    obs = observation_from_agent_input(_agent_input(), AUTOVLA_CAMERAS, ("front",), num_frames=2)
    assert [int(f.image_rgb[0, 0, 0]) for f in obs.cameras["front"]] == [2, 3]
    assert [f.timestamp_s for f in obs.cameras["front"]] == [-0.5, 0.0]
    assert len(obs.ego_history) == 4  # the ego history is independent of the camera frames


def test_observation_from_agent_input_braking_reversing_keeps_signs():
    agent_input = _agent_input(velocities=[(-1.5, 0.4)] * 4, accels=[(-3.0, 0.9)] * 4)
    obs = observation_from_agent_input(agent_input, AUTOVLA_CAMERAS, VIEWS, num_frames=4)
    # Projection on the body x axis keeps the sign a vector norm would lose.
    assert obs.ego.speed_mps == pytest.approx(-1.5)
    assert obs.ego.accel_mps2 == pytest.approx(-3.0)


@pytest.mark.parametrize(
    ("one_hot", "expected"),
    [
        ((1, 0, 0, 0), NavCommand.TURN_LEFT),
        ((0, 1, 0, 0), NavCommand.KEEP_FORWARD),
        ((0, 0, 1, 0), NavCommand.TURN_RIGHT),
        ((0, 0, 0, 1), NavCommand.UNKNOWN),
        ((0, 0, 0, 0), NavCommand.UNKNOWN),
        ((1, 0, 0), NavCommand.UNKNOWN),
    ],
)
def test_command_from_one_hot_navsim_order_maps_to_command(one_hot, expected):
    assert command_from_one_hot(np.array(one_hot)) is expected


def test_observation_from_agent_input_uses_current_frame_command():
    agent_input = _agent_input()
    agent_input.ego_statuses[-1].driving_command = np.array([0, 0, 1, 0])
    obs = observation_from_agent_input(agent_input, AUTOVLA_CAMERAS, VIEWS, num_frames=4)
    assert obs.command is NavCommand.TURN_RIGHT


def test_observation_from_agent_input_unloaded_camera_raises_naming_it():
    agent_input = _agent_input(loaded=("cam_f0", "cam_l0", "cam_r0"))
    with pytest.raises(ValueError, match="cam_l1 has no image"):
        observation_from_agent_input(agent_input, AUTOVLA_CAMERAS, VIEWS, num_frames=4)


def test_observation_from_agent_input_float_image_raises():
    agent_input = _agent_input()
    agent_input.cameras[3].cam_f0.image = np.zeros((6, 8, 3), np.float32)
    with pytest.raises(ValueError, match="uint8"):
        observation_from_agent_input(agent_input, AUTOVLA_CAMERAS, VIEWS, num_frames=4)


def test_observation_from_agent_input_global_frame_status_raises():
    agent_input = _agent_input()
    agent_input.ego_statuses[0].in_global_frame = True
    with pytest.raises(ValueError, match="in_global_frame"):
        observation_from_agent_input(agent_input, AUTOVLA_CAMERAS, VIEWS, num_frames=4)


def test_sensor_config_fields_requests_only_model_cameras_and_frames():
    fields = sensor_config_fields(AUTOVLA_CAMERAS, VIEWS, num_frames=4)
    assert set(fields) == {*NAVSIM_CAMERAS, "lidar_pc"}
    assert fields["cam_f0"] == fields["cam_l1"] == fields["cam_r1"] == [0, 1, 2, 3]
    assert all(fields[k] is False for k in ("cam_l0", "cam_r0", "cam_l2", "cam_r2", "cam_b0", "lidar_pc"))


def test_sensor_config_fields_front_only_current_frame():
    fields = sensor_config_fields({"front": "cam_f0"}, ("front",), num_frames=1)
    assert fields["cam_f0"] == [3]
    assert sum(1 for v in fields.values() if v) == 1


def test_sensor_config_fields_true_front_cameras_switch_to_l0_r0():
    cams = {"front": "cam_f0", "front_left": "cam_l0", "front_right": "cam_r0"}
    fields = sensor_config_fields(cams, VIEWS, num_frames=4)
    assert fields["cam_l0"] == fields["cam_r0"] == [0, 1, 2, 3]
    assert fields["cam_l1"] is False and fields["cam_r1"] is False


def test_sensor_config_fields_unmapped_view_raises():
    with pytest.raises(ValueError, match="front_left"):
        sensor_config_fields({"front": "cam_f0"}, VIEWS, num_frames=4)


def test_sensor_config_fields_too_many_frames_raises():
    with pytest.raises(ValueError, match="history frames"):
        sensor_config_fields(AUTOVLA_CAMERAS, VIEWS, num_frames=5)


def test_navsim_agent_config_unknown_camera_raises():
    with pytest.raises(ValueError, match="cam_front"):
        NavsimAgentConfig(cameras={"front": "cam_front"})


def test_navsim_agent_config_bad_thinking_mode_raises():
    with pytest.raises(ValueError, match="thinking_mode"):
        NavsimAgentConfig(thinking_mode="medium")


def _plan(num_poses=10, dt_s=0.5, speed_mps=4.0, yaw_rate_radps=0.0, status=PlanStatus.OK):
    times = dt_s * np.arange(1, num_poses + 1)
    poses = np.stack([speed_mps * times, np.zeros_like(times), yaw_rate_radps * times], axis=-1)
    return Plan(times_s=times, poses_ego=poses, status=status)


def test_plan_to_poses_ten_by_half_second_to_eight():
    poses = plan_to_poses(_plan(), num_poses=8, interval_s=0.5)
    assert poses.shape == (8, 3) and poses.dtype == np.float32
    np.testing.assert_allclose(poses[:, 0], 4.0 * 0.5 * np.arange(1, 9), atol=1e-5)


def test_plan_to_poses_finer_sampling_interpolates():
    poses = plan_to_poses(_plan(), num_poses=40, interval_s=0.1)
    assert poses.shape == (40, 3)
    np.testing.assert_allclose(poses[:, 0], 4.0 * 0.1 * np.arange(1, 41), atol=1e-5)


def test_plan_to_poses_short_plan_holds_last_pose():
    poses = plan_to_poses(_plan(num_poses=4), num_poses=8, interval_s=0.5)
    np.testing.assert_allclose(poses[4:, 0], 8.0, atol=1e-5)


def test_plan_to_poses_wraps_heading():
    # 0.9 rad/s for 5 s turns past pi; navsim expects headings in (-pi, pi].
    poses = plan_to_poses(_plan(yaw_rate_radps=0.9), num_poses=8, interval_s=0.5)
    assert np.all(np.abs(poses[:, 2]) <= np.pi)
    assert poses[-1, 2] == pytest.approx(3.6 - 2 * np.pi, abs=1e-5)


def test_constant_velocity_poses_at_navsim_times_reverse_speed_stands_still():
    # What the agent returns for a scene whose planner raised: navsim's times, never reversing.
    times_s = trajectory_times_s(8, 0.5)
    np.testing.assert_allclose(constant_velocity_poses(3.0, times_s, min_speed_mps=0.0)[:, 0], 1.5 * np.arange(1, 9))
    assert not constant_velocity_poses(-2.0, times_s, min_speed_mps=0.0).any()
    assert not constant_velocity_poses(float("nan"), times_s, min_speed_mps=0.0).any()


def test_navsim_run_stats_counts_fallbacks_and_errors():
    stats = NavsimRunStats()
    stats.record(PlanStatus.OK, 0.1)
    stats.record(PlanStatus.FALLBACK, 0.1)
    stats.record(None, 0.1)
    assert stats.scenes == 3 and stats.errors == 1 and stats.fallbacks == 2
    assert "fallback 2" in stats.summary() and "exceptions 1" in stats.summary()


def test_load_navsim_vla_config_packaged_default_reads_three_views():
    vla = load_navsim_vla_config(NavsimAgentConfig(checkpoint_path="/models/autovla-3b"))
    assert model_views(vla) == (("front", "front_left", "front_right"), 4)
    assert vla.model.path == "/models/autovla-3b"
    assert vla.prompt.frame_rate_hz == 2.0
    assert vla.thinking.policy == "fast"
    fields = sensor_config_fields(NavsimAgentConfig().cameras, *model_views(vla))  # defaults map every view
    assert [cam for cam, v in fields.items() if v] == ["cam_f0", "cam_l1", "cam_r1"]


def test_load_navsim_vla_config_overrides_thinking_and_keys():
    config = NavsimAgentConfig(
        checkpoint_path="1e3", thinking_mode="slow", overrides=("thinking.max_reasoning_tokens=64",)
    )
    vla = load_navsim_vla_config(config)
    assert vla.model.path == "1e3"  # a path is never re-parsed as YAML
    assert vla.thinking.policy == "slow"
    assert vla.thinking.max_reasoning_tokens == 64


def test_load_navsim_vla_config_without_model_folder_raises():
    with pytest.raises(ValueError, match="agent.checkpoint_path"):
        load_navsim_vla_config(NavsimAgentConfig())


def test_load_navsim_vla_config_wrong_frame_rate_raises(tmp_path):
    path = tmp_path / "vla.yaml"
    path.write_text("model:\n  path: /m\nprompt:\n  frame_rate_hz: 10.0\n")
    with pytest.raises(ValueError, match="2 Hz"):
        load_navsim_vla_config(NavsimAgentConfig(config_path=str(path)))


def test_load_navsim_vla_config_unknown_key_raises(tmp_path):
    path = tmp_path / "vla.yaml"
    path.write_text("model:\n  path: /m\nprompt:\n  camera: front\n")
    with pytest.raises(ValueError, match="camera"):
        load_navsim_vla_config(NavsimAgentConfig(config_path=str(path)))


def test_load_navsim_vla_config_override_typo_raises():
    with pytest.raises(ValueError, match="thinking.max_reasoning_tokenz"):
        load_navsim_vla_config(NavsimAgentConfig(checkpoint_path="/m", overrides=("thinking.max_reasoning_tokenz=3",)))
