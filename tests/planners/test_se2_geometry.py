import math

import numpy as np

from autovla_agent.planners.se2 import (
    box_corners,
    compose_poses,
    points_from_frame,
    points_to_frame,
    relative_poses,
    wrap_angle_rad,
)


def test_wrap_angle_maps_into_minus_pi_to_pi():
    wrapped = wrap_angle_rad(np.array([0.0, math.pi, -math.pi, 3 * math.pi / 2, -7.0]))
    assert np.all(wrapped >= -math.pi) and np.all(wrapped < math.pi)
    np.testing.assert_allclose(np.cos(wrapped), np.cos([0.0, math.pi, -math.pi, 3 * math.pi / 2, -7.0]), atol=1e-12)


def test_relative_then_compose_is_identity():
    rng = np.random.default_rng(1)
    base = np.column_stack([rng.normal(size=(50, 2)) * 10, rng.uniform(-3, 3, 50)])
    pose = np.column_stack([rng.normal(size=(50, 2)) * 10, rng.uniform(-3, 3, 50)])
    back = compose_poses(base, relative_poses(base, pose))
    np.testing.assert_allclose(back[:, :2], pose[:, :2], atol=1e-9)
    np.testing.assert_allclose(np.cos(back[:, 2] - pose[:, 2]), 1.0)


def test_compose_moves_forward_along_base_heading():
    out = compose_poses(np.array([1.0, 1.0, math.pi / 2]), np.array([2.0, 0.0, 0.1]))
    np.testing.assert_allclose(out, [1.0, 3.0, math.pi / 2 + 0.1], atol=1e-12)


def test_points_to_and_from_frame_round_trip_and_left_is_plus_y():
    frame = np.array([5.0, -2.0, 0.7])
    points = np.array([[1.0, 2.0], [-3.0, 4.0]])
    np.testing.assert_allclose(points_from_frame(points_to_frame(points, frame), frame), points)
    left = points_from_frame(np.array([0.0, 1.0]), np.array([0.0, 0.0, 0.0]))
    np.testing.assert_allclose(left, [0.0, 1.0])


def test_box_corners_order_front_left_front_right_rear_right_rear_left():
    corners = box_corners(np.array([0.0, 0.0, 0.0]), 4.8, 2.0)
    np.testing.assert_allclose(corners, [[2.4, 1.0], [2.4, -1.0], [-2.4, -1.0], [-2.4, 1.0]])
    turned = box_corners(np.array([0.0, 0.0, math.pi / 2]), 4.8, 2.0)
    np.testing.assert_allclose(turned[0] - turned[3], [0.0, 4.8], atol=1e-12)  # corner0 - corner3 = heading
