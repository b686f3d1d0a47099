import math

import carla
import numpy as np
import pytest

from autovla_agent.sim.world.ego import EgoConfig, EgoVehicle
from autovla_agent.sim.world.route_files import load_routes
from autovla_agent.sim.world.simulation import World, WorldConfig

DT = 0.05


def _drive(ego, control, seconds):
    ego.apply_control(control)
    for _ in range(round(seconds / DT)):
        ego.step(DT)


def test_ego_full_throttle_accelerates_forward():
    ego = EgoVehicle((0.0, 0.0, 0.0))
    _drive(ego, carla.VehicleControl(throttle=1.0), 3.0)
    assert 6.0 < ego.speed_mps < 12.0  # CARLA-like mkz: roughly 0-100 km/h in 10 s
    x, y, yaw = ego.center_pose_world()
    assert x > 8.0 and abs(y) < 1e-9 and yaw == 0.0


def test_ego_throttle_speed_saturates_with_drag_and_power_fade():
    ego = EgoVehicle((0.0, 0.0, 0.0))
    _drive(ego, carla.VehicleControl(throttle=0.3), 60.0)
    v1 = ego.speed_mps
    _drive(ego, carla.VehicleControl(throttle=0.3), 10.0)
    assert abs(ego.speed_mps - v1) < 0.3  # steady state reached: drive = drag + rolling resistance


def test_ego_full_brake_stops_without_reversing():
    ego = EgoVehicle((0.0, 0.0, 0.0), speed_mps=10.0)
    _drive(ego, carla.VehicleControl(brake=1.0), 3.0)
    assert ego.speed_mps == 0.0
    x, _, _ = ego.center_pose_world()
    assert 5.0 < x < 10.0**2 / (2 * 8.0) + 3.0  # ~v^2/2a plus the brake lag
    _drive(ego, carla.VehicleControl(brake=1.0), 1.0)
    assert ego.speed_mps == 0.0 and ego.center_pose_world()[0] == pytest.approx(x)


def test_ego_positive_carla_steer_turns_right_negative_yaw_rate():
    ego = EgoVehicle((0.0, 0.0, 0.0), speed_mps=5.0)
    _drive(ego, carla.VehicleControl(throttle=0.3, steer=0.5), 2.0)
    assert ego.steer_rad < 0.0 and ego.yaw_rate_radps < 0.0
    _, y, yaw = ego.center_pose_world()
    assert y < -1.0 and yaw < -0.3  # clockwise, to the right of the start heading


def test_ego_steering_follows_first_order_lag_and_rate_limit():
    ego = EgoVehicle((0.0, 0.0, 0.0), speed_mps=5.0)
    ego.apply_control(carla.VehicleControl(steer=-1.0))
    ego.step(DT)
    max_rate = ego.params.max_steer_rate_radps
    assert 0.0 < ego.steer_rad <= max_rate * DT + 1e-12  # rate limited in the first step
    _drive(ego, carla.VehicleControl(steer=-1.0), 2.0)
    assert ego.steer_rad == pytest.approx(ego.params.max_steer_rad, rel=1e-3)


def test_ego_reverse_gear_drives_backwards_up_to_reverse_limit():
    ego = EgoVehicle((0.0, 0.0, 0.0))
    _drive(ego, carla.VehicleControl(throttle=1.0, reverse=True), 5.0)
    assert ego.speed_mps == pytest.approx(-ego.params.max_reverse_speed_mps)
    assert ego.center_pose_world()[0] < -5.0


def test_ego_hand_brake_stops_the_car():
    ego = EgoVehicle((0.0, 0.0, 0.0), speed_mps=8.0)
    _drive(ego, carla.VehicleControl(hand_brake=True), 3.0)
    assert ego.speed_mps == 0.0


def test_ego_nan_and_out_of_range_controls_are_sanitised():
    ego = EgoVehicle((0.0, 0.0, 0.0), speed_mps=5.0)
    ego.apply_control(carla.VehicleControl(steer=float("nan"), throttle=0.5))
    assert ego.control.steer == 0.0
    ego.step(DT)
    assert np.isfinite(ego.state).all()

    class Raw:  # VehicleControl does not clamp; the world must
        steer, throttle, brake, hand_brake, reverse = 3.0, 2.0, -1.0, False, False

    ego.apply_control(Raw())
    assert (ego.control.steer, ego.control.throttle, ego.control.brake) == (1.0, 1.0, 0.0)


def test_ego_config_rejects_negative_time_constant():
    with pytest.raises(ValueError, match="steer_time_constant_s"):
        EgoConfig(steer_time_constant_s=-0.1)


def test_world_ticks_at_20_hz_and_spawns_ego_on_route_start():
    spec = load_routes("routes_smoke")[0]
    world = World(spec.town, spec, WorldConfig(), seed=0)
    snap = world.snapshot()
    assert snap.frame == 0 and snap.time_s == 0.0
    assert (snap.ego.x_m[0], snap.ego.y_m[0]) == pytest.approx(tuple(world.route.xy_world_m[0]))
    assert snap.ego.yaw_rad[0] == pytest.approx(world.route.yaw_world_rad[0])
    world.apply_control(carla.VehicleControl(throttle=0.6))
    for _ in range(20):
        world.tick()
    assert world.frame == 20 and world.time_s == pytest.approx(1.0)
    snap = world.snapshot()
    assert snap.ego.speed_mps[0] > 0.5 and snap.control == (0.0, pytest.approx(0.6), 0.0)
    rear = np.array(snap.ego_rear_axle_xy_m)
    center = np.array([snap.ego.x_m[0], snap.ego.y_m[0]])
    assert np.linalg.norm(center - rear) == pytest.approx(world.ego.params.rear_axle_offset_m)
    assert math.isclose(snap.ego.length_m[0], 4.9) and math.isclose(snap.ego.width_m[0], 2.1)
