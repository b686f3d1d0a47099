import dataclasses

import numpy as np
from test_traffic_rules import HALF_LENGTH_M, QUIET, _FixedLights  # tests/sim is on sys.path

from autovla_agent.sim.expert_perception import ExpertConfig
from autovla_agent.sim.expert_rules import ExpertRules
from autovla_agent.sim.world.bev import bev_affine, world_to_bev_px
from autovla_agent.sim.world.render_signals import LIGHT_RGB
from autovla_agent.sim.world.route_files import load_routes
from autovla_agent.sim.world.signal_state import GREEN, RED
from autovla_agent.sim.world.simulation import World, WorldConfig
from autovla_agent.sim.world.walkers import WalkerConfig

CAMERA = {
    "type": "sensor.camera.rgb", "id": "cam", "x": 1.3, "y": 0.0, "z": 1.6, "roll": 0.0, "pitch": 0.0, "yaw": 0.0,
    "width": 320, "height": 180, "fov": 90.0,
}  # fmt: skip


def _near_color(img_rgb, uv, rgb, radius=6, tol=40):
    u, v = int(round(uv[0])), int(round(uv[1]))
    patch = img_rgb[max(v - radius, 0) : v + radius + 1, max(u - radius, 0) : u + radius + 1].astype(int)
    return (np.abs(patch - np.array(rgb)).sum(-1) < tol).any()


def test_stop_line_light_state_shows_in_the_camera_and_the_bird_eye_view():
    spec = load_routes("routes_smoke")[0]
    world = World(spec.town, spec, QUIET)
    lights = world.lights = _FixedLights(len(world.signals.heads), RED)
    stop = ExpertRules(world, ExpertConfig(), HALF_LENGTH_M).stops[0]
    route = world.route
    s = stop.s_line_m - 12.0  # the ego 12 m before the line, facing it
    pose = (
        float(np.interp(s, route.s_m, route.xy_world_m[:, 0])),
        float(np.interp(s, route.s_m, route.xy_world_m[:, 1])),
        float(np.interp(s, route.s_m, route.yaw_world_rad)),
    )
    world.ego.set_center_pose(pose)
    line_xy = world.signals.lines.xy_m[stop.index]
    for state in (RED, GREEN):
        lights.state[:] = state
        snap = world.snapshot()
        bev = world.renderer.render_bev(snap, size_px=256, meters_per_px=0.2)
        uv = world_to_bev_px(line_xy[None], bev_affine(pose, 256, 0.2))[0]
        assert _near_color(bev, uv, LIGHT_RGB[state])
        cam = world.renderer.render_camera(snap, CAMERA)[..., 2::-1]  # BGRA -> RGB
        assert (np.abs(cam.astype(int) - np.array(LIGHT_RGB[state])).sum(-1) < 40).sum() > 30  # strip and lamp


def test_walkers_appear_in_the_camera_and_infractions_are_marked_on_the_map():
    spec = load_routes("routes_default")[0]
    config = WorldConfig(walkers=WalkerConfig(num_walkers=30))
    world = World(spec.town, spec, config)
    snap = world.snapshot()
    without = dataclasses.replace(snap, walkers=None)
    a = world.renderer.render_camera(snap, CAMERA)
    b = world.renderer.render_camera(without, CAMERA)
    assert (a != b).any()
    ego = snap.ego
    pose = (float(ego.x_m[0]), float(ego.y_m[0]), float(ego.yaw_rad[0]))
    mark = (pose[0] + 10.0 * np.cos(pose[2]), pose[1] + 10.0 * np.sin(pose[2]))
    bev = world.renderer.render_bev(snap, size_px=256, meters_per_px=0.2, markers=[(*mark, "red light")])
    uv = world_to_bev_px(np.array([mark]), bev_affine(pose, 256, 0.2))[0]
    assert _near_color(bev, uv, (255, 40, 40), radius=3)
