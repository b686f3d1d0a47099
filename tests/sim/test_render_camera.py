import math

import numpy as np
import pytest

from autovla_agent.sim.world.bev import bev_affine, world_to_bev_px
from autovla_agent.sim.world.render import CameraRenderer, RenderConfig
from autovla_agent.sim.world.simulation import ActorArrays, WorldSnapshot
from autovla_agent.sim.world.town import Town

W, H = 320, 180


def _actors(poses, length=4.6, width=2.0):
    n = len(poses)
    poses = np.asarray(poses, dtype=np.float64).reshape(n, 3)
    return ActorArrays(
        np.arange(1, n + 1),
        poses[:, 0],
        poses[:, 1],
        poses[:, 2],
        np.zeros(n),
        np.full(n, length),
        np.full(n, width),
        np.zeros(n, bool),
        np.full(n, 1.5),
        np.full((n, 3), 30, np.uint8),
    )


def _scene(others_ego_frame):
    """A snapshot with the ego on a Town01 lane heading north and vehicles given in its frame (x fwd, y left)."""
    town = Town.load("Town01")
    lane = next(ln for ln in town.lanes if not ln.is_junction and ln.length_m > 150)
    (x, y), yaw = lane.interpolate(40.0)
    c, s = math.cos(yaw), math.sin(yaw)
    world = [(x + c * fx - s * fy, y + s * fx + c * fy, yaw) for fx, fy in others_ego_frame]
    ego = _actors([(x, y, yaw)], 4.9, 2.1)
    vehicles = _actors(world) if world else _actors(np.zeros((0, 3)))
    return town, WorldSnapshot(0, 0.0, ego, vehicles, 0.0, 0.0, 0.0, (0.0, 0.0, 0.0), (x, y))


def _camera(yaw=0.0, pitch=0.0, x=1.3, z=1.6):
    return {
        "type": "sensor.camera.rgb",
        "id": "cam",
        "x": x,
        "y": 0.0,
        "z": z,
        "roll": 0.0,
        "pitch": pitch,
        "yaw": yaw,
        "width": W,
        "height": H,
        "fov": 90.0,
    }


def _vehicle_mask(others, spec):
    """Pixels that change when the vehicles are added to the scene."""
    town, empty = _scene([])
    _, full = _scene(others)
    renderer = CameraRenderer.for_town(town, RenderConfig(draw_ego_in_camera=False))
    a = renderer.render_camera(empty, spec).astype(int)
    b = renderer.render_camera(full, spec).astype(int)
    return np.abs(a - b).sum(-1) > 30


def test_render_camera_output_is_bgra_uint8_of_declared_size():
    town, snap = _scene([(20.0, 0.0)])
    img = CameraRenderer.for_town(town, RenderConfig()).render_camera(snap, _camera())
    assert img.shape == (H, W, 4) and img.dtype == np.uint8
    assert (img[..., 3] == 255).all()
    assert img[0, W // 2, 0] > img[0, W // 2, 2]  # sky at the top: blue channel (BGRA index 0) dominates


def test_render_camera_vehicle_ahead_left_appears_in_left_half():
    mask = _vehicle_mask([(20.0, 3.0)], _camera())
    cols = np.nonzero(mask)[1]
    assert len(cols) > 50 and cols.max() < W / 2


def test_render_camera_vehicle_ahead_right_appears_in_right_half():
    cols = np.nonzero(_vehicle_mask([(20.0, -3.0)], _camera()))[1]
    assert len(cols) > 50 and cols.min() > W / 2


def test_render_camera_positive_yaw_looks_right():
    right = [(0.0, -15.0)]  # 15 m to the right of the ego
    cols = np.nonzero(_vehicle_mask(right, _camera(yaw=90.0, x=0.0)))[1]
    assert len(cols) > 50 and abs(cols.mean() - W / 2) < W / 8
    assert not _vehicle_mask(right, _camera(yaw=-90.0, x=0.0)).any()
    assert not _vehicle_mask(right, _camera(yaw=0.0)).any()


def test_render_camera_horizon_at_centre_and_moves_down_when_pitched_up():
    town, snap = _scene([])
    renderer = CameraRenderer.for_town(town, RenderConfig(draw_ego_in_camera=False))

    def horizon_row(spec):
        img = renderer.render_camera(snap, spec).astype(int)
        sky = (img[..., 0] > img[..., 2] + 20).all(axis=1)  # blue-dominated rows
        return int(np.nonzero(~sky)[0][0])

    assert horizon_row(_camera()) == pytest.approx(H / 2, abs=2)
    f = W / 2 / math.tan(math.radians(45.0))
    assert horizon_row(_camera(pitch=10.0)) == pytest.approx(H / 2 + f * math.tan(math.radians(10.0)), abs=3)


def test_render_camera_mount_height_changes_apparent_size():
    low = _vehicle_mask([(12.0, 0.0)], _camera(z=1.0)).sum()
    high = _vehicle_mask([(12.0, 0.0)], _camera(z=2.5)).sum()
    assert low > 0 and high > 0 and low != high


def test_render_camera_is_deterministic_and_shows_the_ego_body_from_a_roof_camera():
    town, snap = _scene([(15.0, 0.0), (30.0, 3.5)])
    a = CameraRenderer(town, RenderConfig()).render_camera(snap, _camera(x=-1.5, z=2.0))
    b = CameraRenderer(town, RenderConfig()).render_camera(snap, _camera(x=-1.5, z=2.0))
    np.testing.assert_array_equal(a, b)
    no_ego = CameraRenderer(town, RenderConfig(draw_ego_in_camera=False)).render_camera(snap, _camera(x=-1.5, z=2.0))
    diff = np.abs(a.astype(int) - no_ego.astype(int)).sum(-1) > 30
    assert diff[H // 2 :].mean() > 0.1 and not diff[: H // 3].any()  # the roof/hood fills the bottom only


def test_render_bev_heading_up_left_vehicle_on_the_left():
    town, snap = _scene([(10.0, 4.0)])
    renderer = CameraRenderer.for_town(town, RenderConfig())
    img = renderer.render_bev(snap, None, size_px=200, meters_per_px=0.25)
    assert img.shape == (200, 200, 3) and img.dtype == np.uint8
    pose = (float(snap.ego.x_m[0]), float(snap.ego.y_m[0]), float(snap.ego.yaw_rad[0]))
    affine = bev_affine(pose, 200, 0.25)
    u, v = world_to_bev_px(np.array([snap.vehicles.x_m[0], snap.vehicles.y_m[0]]), affine)
    eu, ev = world_to_bev_px(np.array(pose[:2]), affine)
    assert u < eu - 10 and v < ev - 30  # ahead = up, left = left
    assert tuple(img[int(v), int(u)]) == (30, 30, 30)  # the vehicle's colour is drawn there


def test_render_bev_draws_the_planned_trajectory_overlay():
    town, snap = _scene([])
    renderer = CameraRenderer.for_town(town, RenderConfig())
    plain = renderer.render_bev(snap, None, size_px=200, meters_per_px=0.25)
    x, y, yaw = float(snap.ego.x_m[0]), float(snap.ego.y_m[0]), float(snap.ego.yaw_rad[0])
    plan = np.array([[x + math.cos(yaw) * d, y + math.sin(yaw) * d] for d in np.linspace(3, 20, 8)])
    over = renderer.render_bev(snap, None, size_px=200, meters_per_px=0.25, planned_xy_world_m=plan)
    changed = np.abs(over.astype(int) - plain.astype(int)).sum(-1) > 30
    rows = np.nonzero(changed)[0]
    assert changed.sum() > 100 and rows.max() < 150  # drawn ahead of (above) the ego at row 150
