import math

import numpy as np
import pytest

from autovla_agent.config_io import ConfigError, dump_yaml, from_dict, load_yaml, to_dict
from autovla_agent.sensors import rig
from autovla_agent.sensors.rig import (
    CameraSpec,
    GnssSpec,
    OpenDriveMapSpec,
    RigConfig,
    SensorRigError,
    default_rig,
    validate_sensors,
)


def _camera(sensor_id, **overrides):
    spec = {
        "type": "sensor.camera.rgb",
        "id": sensor_id,
        "x": 0.0,
        "y": 0.0,
        "z": 1.6,
        "roll": 0.0,
        "pitch": 0.0,
        "yaw": 0.0,
        "width": 800,
        "height": 450,
        "fov": 70.0,
    }
    spec.update(overrides)
    return spec


def _pose_sensor(kind, sensor_id, **extra):
    return {"type": kind, "id": sensor_id, "x": 0.0, "y": 0.0, "z": 0.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0} | extra


def _raises(sensors, track="SENSORS"):
    with pytest.raises(SensorRigError) as info:
        validate_sensors(sensors, track)
    return info.value


# ---------------------------------------------------------------- rendering


def test_default_rig_renders_every_required_key_with_plain_numbers():
    sensors = default_rig().to_leaderboard()
    by_type = {s["type"]: s for s in sensors}
    assert set(by_type) == {rig.CAMERA_RGB, rig.GNSS, rig.IMU, rig.SPEEDOMETER}
    for sensor in sensors:
        assert set(rig.REQUIRED_KEYS[sensor["type"]]) <= set(sensor)
        for value in sensor.values():
            assert type(value) in (str, float, int)
    camera = by_type[rig.CAMERA_RGB]
    assert set(camera) == {"type", "id", "x", "y", "z", "roll", "pitch", "yaw", "width", "height", "fov"}
    assert set(by_type[rig.GNSS]) >= {"x", "y", "z", "roll", "pitch", "yaw"}
    assert by_type[rig.SPEEDOMETER]["reading_frequency"] == 20.0
    validate_sensors(sensors, "SENSORS")


def test_default_rig_side_cameras_are_at_minus_and_plus_55_degrees():
    config = default_rig(use_side_cameras=True)
    assert config.views == {"rgb_front": "front", "rgb_front_left": "front_left", "rgb_front_right": "front_right"}
    yaws = {c.view: c.yaw_deg for c in config.cameras}
    assert yaws == {"front": 0.0, "front_left": -55.0, "front_right": 55.0}


def test_default_rig_map_track_adds_opendrive_with_reading_frequency():
    sensors = default_rig(track="MAP").to_leaderboard()
    opendrive = [s for s in sensors if s["type"] == rig.OPENDRIVE_MAP]
    assert opendrive == [{"type": rig.OPENDRIVE_MAP, "id": "opendrive", "reading_frequency": 1.0}]


def test_camera_mount_ego_left_camera_is_on_positive_y():
    left = rig.FRONT_LEFT_CAMERA.mount_ego(rear_axle_offset_m=1.4)
    np.testing.assert_allclose(left[:3], [1.67, 0.55, 1.6])
    assert left[5] == pytest.approx(math.radians(55.0))  # looks to the left: positive ego yaw


def test_rig_config_yaml_round_trip_is_identity(tmp_path):
    config = default_rig(use_side_cameras=True, track="MAP")
    path = tmp_path / "rig.yaml"
    dump_yaml(config, path)
    assert load_yaml(RigConfig, path) == config
    assert from_dict(RigConfig, to_dict(config)) == config


def test_rig_config_unknown_key_and_bad_mount_fail_at_load():
    data = to_dict(default_rig())
    data["cameras"][0]["focal_px"] = 1.0
    with pytest.raises(ConfigError, match="focal_px"):
        from_dict(RigConfig, data)
    data = to_dict(default_rig())
    data["cameras"][0]["z_m"] = 50.0
    with pytest.raises(ConfigError, match="rgb_front.*mount radius"):
        from_dict(RigConfig, data)


def test_rig_config_duplicate_view_and_no_camera_raise():
    with pytest.raises(ValueError, match="front"):
        RigConfig(cameras=(CameraSpec(), CameraSpec(id="rgb_other")))
    with pytest.raises(ValueError, match="empty"):
        RigConfig(cameras=())


def test_camera_spec_bad_fov_and_size_raise():
    with pytest.raises(ValueError, match="fov_deg"):
        CameraSpec(fov_deg=180.0)
    with pytest.raises(ValueError, match="width_px"):
        CameraSpec(width_px=0)
    with pytest.raises(ValueError, match="z_m"):
        CameraSpec(z_m=float("nan"))


# ---------------------------------------------------------------- validation rules


def test_validate_sensors_unknown_type_names_sensor_and_rule():
    error = _raises([_camera("front"), _pose_sensor("sensor.camera.depth", "depth_cam")])
    assert (error.sensor_id, error.rule) == ("depth_cam", rig.RULE_TYPE)
    assert "'depth_cam'" in str(error) and rig.RULE_TYPE in str(error)


def test_validate_sensors_semantic_lidar_rejected():
    error = _raises([_pose_sensor("sensor.lidar.ray_cast_semantic", "sem")])
    assert error.rule == rig.RULE_TYPE


def test_validate_sensors_duplicate_id_names_sensor_and_rule():
    error = _raises([_camera("cam"), _pose_sensor(rig.IMU, "cam")])
    assert (error.sensor_id, error.rule) == ("cam", rig.RULE_UNIQUE_ID)


def test_validate_sensors_opendrive_on_sensors_track_rejected_but_map_allowed():
    sensors = [_camera("front"), OpenDriveMapSpec().to_leaderboard()]
    error = _raises(sensors, "SENSORS")
    assert (error.sensor_id, error.rule) == ("opendrive", rig.RULE_OPENDRIVE)
    validate_sensors(sensors, "MAP")
    validate_sensors(sensors, "SENSORS_QUALIFIER")  # the leaderboard does not reject it there either


@pytest.mark.parametrize(
    ("xyz", "accepted"), [((-2.0, 0.0, 1.6), True), ((3.0, 0.0, 0.0), True), ((0.0, 0.0, 3.01), False)]
)
def test_validate_sensors_mount_radius_limit_3_m(xyz, accepted):
    sensors = [_camera("cam", x=xyz[0], y=xyz[1], z=xyz[2])]
    if accepted:
        validate_sensors(sensors)
    else:
        error = _raises(sensors)
        assert (error.sensor_id, error.rule) == ("cam", rig.RULE_RADIUS)
        assert "3.01" in str(error)


def test_validate_sensors_radius_not_checked_without_all_of_xyz():
    # The leaderboard only checks the radius when x, y and z are all present (gnss needs them anyway).
    validate_sensors([{"type": rig.SPEEDOMETER, "id": "speed", "reading_frequency": 20.0, "x": 50.0}])


@pytest.mark.parametrize(
    ("kind", "full", "qualifier"),
    [(rig.CAMERA_RGB, 8, 4), (rig.LIDAR, 2, 1), (rig.RADAR, 4, 2), (rig.GNSS, 1, 1), (rig.IMU, 1, 1)],
)
def test_validate_sensors_count_limits_per_track(kind, full, qualifier):
    def make(n):
        extra = {"horizontal_fov": 30.0, "vertical_fov": 10.0} if kind == rig.RADAR else {}
        if kind == rig.CAMERA_RGB:
            return [_camera(f"s{i}") for i in range(n)]
        return [_pose_sensor(kind, f"s{i}", **extra) for i in range(n)]

    validate_sensors(make(full), "SENSORS")
    validate_sensors(make(qualifier), "SENSORS_QUALIFIER")
    error = _raises(make(full + 1), "MAP")
    assert (error.sensor_id, error.rule) == (f"s{full}", rig.RULE_COUNT)
    error = _raises(make(qualifier + 1), "MAP_QUALIFIER")
    assert (error.sensor_id, error.rule) == (f"s{qualifier}", rig.RULE_COUNT)


def test_validate_sensors_speedometer_and_opendrive_limited_to_one():
    speed = {"type": rig.SPEEDOMETER, "reading_frequency": 20.0}
    error = _raises([speed | {"id": "a"}, speed | {"id": "b"}])
    assert (error.sensor_id, error.rule) == ("b", rig.RULE_COUNT)
    opendrive = {"type": rig.OPENDRIVE_MAP, "reading_frequency": 1.0}
    error = _raises([opendrive | {"id": "m1"}, opendrive | {"id": "m2"}], "MAP")
    assert (error.sensor_id, error.rule) == ("m2", rig.RULE_COUNT)


@pytest.mark.parametrize(
    ("sensor", "missing"),
    [
        ({k: v for k, v in _camera("cam").items() if k != "fov"}, "fov"),
        ({k: v for k, v in _pose_sensor(rig.IMU, "imu").items() if k != "roll"}, "roll"),
        (_pose_sensor(rig.RADAR, "radar"), "horizontal_fov"),
        ({"type": rig.SPEEDOMETER, "id": "speed"}, "reading_frequency"),
        ({"type": rig.GNSS, "id": "gps", "x": 0.0, "y": 0.0}, "z"),
    ],
)
def test_validate_sensors_missing_required_key_names_sensor_key_and_rule(sensor, missing):
    error = _raises([sensor])
    assert error.rule == rig.RULE_FIELDS
    assert error.sensor_id == sensor["id"]
    assert missing in str(error)


def test_validate_sensors_bad_values_rejected():
    error = _raises([_camera("cam", width=0, fov=200.0, yaw=float("nan"))])
    assert error.rule == rig.RULE_VALUE
    assert len(error.problems) == 3


def test_validate_sensors_lists_every_problem_and_unknown_track_raises():
    error = _raises([_camera("a", z=10.0), _camera("a")])
    assert [(sid, rule) for sid, rule, _ in error.problems] == [("a", rig.RULE_RADIUS), ("a", rig.RULE_UNIQUE_ID)]
    with pytest.raises(ValueError, match="unknown track"):
        validate_sensors([], "sensors")


def test_gnss_spec_to_leaderboard_has_pose():
    spec = GnssSpec(x_m=-1.4).to_leaderboard()
    assert spec == {
        "type": rig.GNSS,
        "id": "gnss",
        "x": -1.4,
        "y": 0.0,
        "z": 0.0,
        "roll": 0.0,
        "pitch": 0.0,
        "yaw": 0.0,
    }
