"""Rigid SE(2) helpers for poses (x_m, y_m, yaw_rad) within one right-handed frame (no CARLA conventions here).

A pose array has shape (..., 3) = [x_m, y_m, yaw_rad] and is broadcast over its leading axes. Conversions
between CARLA's left-handed frame and the internal frames live in ``autovla_agent.sensors.frames`` only.
"""

from __future__ import annotations

import numpy as np


def wrap_angle_rad(angle_rad: np.ndarray | float) -> np.ndarray:
    """Wrap angles in radians to [-pi, pi)."""
    return (np.asarray(angle_rad, dtype=np.float64) + np.pi) % (2.0 * np.pi) - np.pi


def compose_poses(base: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Pose (..., 3) of ``delta`` (expressed in the frame of ``base``) expressed in the frame ``base`` lives in."""
    base = np.asarray(base, dtype=np.float64)
    delta = np.asarray(delta, dtype=np.float64)
    c, s = np.cos(base[..., 2]), np.sin(base[..., 2])
    x = base[..., 0] + c * delta[..., 0] - s * delta[..., 1]
    y = base[..., 1] + s * delta[..., 0] + c * delta[..., 1]
    return np.stack([x, y, wrap_angle_rad(base[..., 2] + delta[..., 2])], axis=-1)


def relative_poses(base: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Pose (..., 3) of ``pose`` expressed in the frame of ``base`` (both given in the same frame)."""
    base = np.asarray(base, dtype=np.float64)
    pose = np.asarray(pose, dtype=np.float64)
    c, s = np.cos(base[..., 2]), np.sin(base[..., 2])
    dx = pose[..., 0] - base[..., 0]
    dy = pose[..., 1] - base[..., 1]
    return np.stack([c * dx + s * dy, -s * dx + c * dy, wrap_angle_rad(pose[..., 2] - base[..., 2])], axis=-1)


def points_to_frame(points_xy_m: np.ndarray, frame_pose: np.ndarray) -> np.ndarray:
    """Points (..., 2) given in the outer frame, expressed in the frame of ``frame_pose`` (3,) or broadcastable."""
    points = np.asarray(points_xy_m, dtype=np.float64)
    frame_pose = np.asarray(frame_pose, dtype=np.float64)
    c, s = np.cos(frame_pose[..., 2]), np.sin(frame_pose[..., 2])
    dx = points[..., 0] - frame_pose[..., 0]
    dy = points[..., 1] - frame_pose[..., 1]
    return np.stack([c * dx + s * dy, -s * dx + c * dy], axis=-1)


def points_from_frame(points_xy_m: np.ndarray, frame_pose: np.ndarray) -> np.ndarray:
    """Points (..., 2) given in the frame of ``frame_pose``, expressed in the outer frame."""
    points = np.asarray(points_xy_m, dtype=np.float64)
    frame_pose = np.asarray(frame_pose, dtype=np.float64)
    c, s = np.cos(frame_pose[..., 2]), np.sin(frame_pose[..., 2])
    x = frame_pose[..., 0] + c * points[..., 0] - s * points[..., 1]
    y = frame_pose[..., 1] + s * points[..., 0] + c * points[..., 1]
    return np.stack([x, y], axis=-1)


def box_corners(poses: np.ndarray, length_m: float, width_m: float, center_offset_m: float = 0.0) -> np.ndarray:
    """Corners (..., 4, 2) of a length_m x width_m box on each pose (..., 3).

    Corner order is front-left, front-right, rear-right, rear-left (x forward, y left), so corner 0 minus
    corner 3 points along the heading. ``center_offset_m`` places the box centre that far ahead of the pose.
    """
    half_l, half_w = length_m / 2.0, width_m / 2.0
    local = np.array(
        [
            [center_offset_m + half_l, half_w],
            [center_offset_m + half_l, -half_w],
            [center_offset_m - half_l, -half_w],
            [center_offset_m - half_l, half_w],
        ]
    )
    poses = np.asarray(poses, dtype=np.float64)
    return points_from_frame(local, poses[..., None, :])
