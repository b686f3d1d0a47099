"""Headless, deterministic CPU renderer: a perspective RGB camera and a bird's-eye view of an embedded town.

The ground (grass, roads, junctions, shoulders, sidewalks, lane markings) is painted once per town into a
top-down raster pyramid in the internal WORLD frame (x east, y north; ``raster.py``). A camera frame is then:

1. sky: a vertical gradient where the pixel ray does not hit the ground (horizon from the camera rotation);
2. ground: ``cv2.warpPerspective`` of the raster through the ground-plane homography, in horizontal bands
   that read coarser pyramid levels with distance (cheap anti-aliasing), distance haze near the horizon;
3. light-state strips on the ground before the stop lines (``render_signals.py``);
4. objects (``render_boxes.py``): painter's algorithm, far to near, over vehicles (a lower body box and a cabin
   box), pedestrians, traffic lights (lamp in the state colour) and stop signs, flat-shaded, back faces culled,
   faces clipped at the near plane, then projected.

Camera model as CARLA's ``sensor.camera.rgb``: pinhole, horizontal ``fov``, principal point at the image centre,
mounted at (x, y, z, roll, pitch, yaw) in the CARLA vehicle frame (x forward, y right, z up, degrees; yaw > 0
looks right, pitch > 0 looks up) relative to the actor origin (box centre, on the ground). Output is BGRA
uint8 (H, W, 4) like the leaderboard's camera data. The ground is drawn flat (z = 0) in every town.
The bird's-eye view (``CameraRenderer.render_bev``) is drawn by ``bev.py`` from the same raster.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autovla_agent.optional_deps import require_cv2
from autovla_agent.sensors import frames
from autovla_agent.sim.world import bev
from autovla_agent.sim.world.raster import GRASS, town_raster
from autovla_agent.sim.world.render_boxes import (
    SceneObjects,
    concat_objects,
    paint_ground_quads,
    paint_objects,
    two_box_objects,
)
from autovla_agent.sim.world.render_signals import light_strips, signal_objects, walker_objects
from autovla_agent.sim.world.signals import town_signals
from autovla_agent.sim.world.town import Town

cv2 = require_cv2()

logger = logging.getLogger(__name__)

__all__ = ["CameraPose", "CameraRenderer", "RenderConfig"]

# colours, RGB (the ground's are in raster.py)
SKY_TOP = (110, 150, 205)
SKY_HORIZON = (200, 214, 232)
HAZE = (190, 200, 210)
EGO_BODY = (58, 60, 66)  # the ego's own body seen by its cameras
GLASS = (45, 55, 68)


@dataclass(frozen=True, kw_only=True, slots=True)
class RenderConfig:
    """Renderer settings: raster resolution, haze, culling distances."""

    raster_m_per_px: float = 0.1  # finest ground raster level
    raster_levels: int = 5  # pyramid levels (each halves the resolution)
    haze_start_m: float = 70.0
    haze_end_m: float = 250.0
    max_vehicle_distance_m: float = 150.0
    near_clip_m: float = 0.05
    draw_ego_in_camera: bool = True  # the ego's body (hood/roof) is seen by cameras mounted above/behind it

    def __post_init__(self) -> None:
        """Validate ranges."""
        if not 0.02 <= self.raster_m_per_px <= 1.0:
            raise ValueError(f"RenderConfig.raster_m_per_px={self.raster_m_per_px} must be in [0.02, 1.0] m")
        if not 1 <= self.raster_levels <= 8:
            raise ValueError("RenderConfig.raster_levels must be in [1, 8]")
        if not 0.0 < self.haze_start_m < self.haze_end_m:
            raise ValueError("RenderConfig needs 0 < haze_start_m < haze_end_m")


@dataclass(frozen=True, slots=True)
class CameraPose:
    """A camera in the world frame: centre (3,) metres and rotation (3, 3) body->world (x fwd, y left, z up)."""

    center_m: np.ndarray
    rotation: np.ndarray

    @staticmethod
    def from_mount(ego_center_pose_world: tuple[float, float, float], spec: Any) -> CameraPose:
        """Pose of a camera mounted on a vehicle from a leaderboard sensor dict (CARLA vehicle-frame mount)."""
        ex, ey, eyaw = ego_center_pose_world
        # Offset 0: the mount is taken from the actor origin, which is where the ego pose is given.
        x, y, z, roll, pitch, yaw = (
            float(v)
            for v in frames.carla_mount_to_ego(
                spec["x"], spec["y"], spec["z"], spec.get("roll", 0.0), spec.get("pitch", 0.0),
                spec.get("yaw", 0.0), rear_axle_offset_m=0.0,
            )
        )  # fmt: skip
        c, s = math.cos(eyaw), math.sin(eyaw)
        center = np.array([ex + c * x - s * y, ey + s * x + c * y, z])
        rotation = _rot_z(eyaw + yaw) @ _rot_y(pitch) @ _rot_x(roll)
        return CameraPose(center, rotation)


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@functools.cache
def _unit_rays(width: int, height: int, fov_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Unit ray components (x fwd, y left, z up), each (H, W) float32, for a pinhole camera; and the focal px."""
    f = width / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    u = np.arange(width, dtype=np.float32) + 0.5 - width / 2.0
    v = np.arange(height, dtype=np.float32) + 0.5 - height / 2.0
    uu, vv = np.meshgrid(u, v)
    x = np.full_like(uu, f)
    y, z = -uu, -vv
    norm = np.sqrt(x * x + y * y + z * z)
    return x / norm, y / norm, z / norm, f


@dataclass(frozen=True, slots=True, eq=False)
class _GroundGeometry:
    """Per-mount camera geometry: sky image, ground bands (start, end, level, mask or None), haze rows."""

    focal_px: float
    sky: np.ndarray
    bands: tuple[tuple[int, int, int, np.ndarray | None], ...]
    haze: tuple[int, int, np.ndarray] | None


@functools.cache
def _ground_geometry(
    width: int, height: int, fov_deg: float, tilt: tuple[float, float, float], h_cam: float, config: RenderConfig
) -> _GroundGeometry:
    """Ground mask, slant ranges, pyramid level bands and haze weights for a camera whose rotation's z row is tilt."""
    rx, ry, rz, f = _unit_rays(width, height, fov_deg)
    dz = rx * tilt[0] + ry * tilt[1] + rz * tilt[2]  # world-z of each unit ray
    ground = (dz < -1e-6) if h_cam > 0.0 else np.zeros_like(dz, dtype=bool)
    slant = np.where(ground, h_cam / np.maximum(-dz, 1e-9), np.inf).astype(np.float32)
    sky = _sky(width, height).copy()
    bands: list[tuple[int, int, int, np.ndarray | None]] = []
    rows = np.nonzero(ground.any(axis=1))[0]
    haze = None
    if len(rows):
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        nearest = np.where(ground[r0:r1], slant[r0:r1], np.inf).min(axis=1)
        # ground footprint of a pixel ~ slant^2 / (h f) lengthwise and slant / f across: take the geometric mean
        foot = np.sqrt(nearest.astype(np.float64) ** 3 / (max(h_cam, 0.1) * f * f))
        levels = np.floor(np.log2(np.maximum(foot, 1e-9) / config.raster_m_per_px))
        levels = np.clip(
            np.nan_to_num(levels, nan=config.raster_levels - 1, posinf=config.raster_levels - 1),
            0,
            config.raster_levels - 1,
        ).astype(int)
        start = r0
        while start < r1:
            end = start + 1
            while end < r1 and levels[end - r0] == levels[start - r0]:
                end += 1
            mask = ground[start:end]
            bands.append((start, end, int(levels[start - r0]), None if mask.all() else mask[:, :, None].copy()))
            start = end
        far = np.nonzero((ground & (slant > config.haze_start_m)).any(axis=1))[0]
        if len(far):
            a, b = int(far[0]), int(far[-1]) + 1
            t = np.clip((slant[a:b] - config.haze_start_m) / (config.haze_end_m - config.haze_start_m), 0.0, 1.0)
            haze = (a, b, np.where(ground[a:b], t, 0.0).astype(np.float32)[:, :, None])
    return _GroundGeometry(f, sky, tuple(bands), haze)


@functools.cache
def _sky(width: int, height: int) -> np.ndarray:
    """A vertical sky gradient (H, W, 3) BGR uint8, horizon colour at the bottom."""
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    col = np.array(SKY_TOP[::-1], np.float32) * (1 - t) + np.array(SKY_HORIZON[::-1], np.float32) * t
    return np.repeat(col[:, None, :], width, axis=1).astype(np.uint8)


def _vehicle_objects(actors: Any, is_ego: bool) -> SceneObjects:
    """Vehicles (``ActorArrays``) as a lower body box and a cabin box (shorter, set back, glass sides)."""
    n = len(actors)
    hgt = actors.height_m if actors.height_m is not None else np.full(n, 1.5)
    if is_ego:
        color = np.tile(np.array(EGO_BODY, np.float64), (n, 1))
    elif actors.color_rgb is not None:
        color = actors.color_rgb.astype(np.float64)
    else:
        color = np.tile(np.array([90.0, 110.0, 160.0]), (n, 1))
    length, wid, zero = actors.length_m, actors.width_m, np.zeros(n)
    objects = two_box_objects(
        actors.x_m, actors.y_m, actors.yaw_rad,
        (length, wid, zero, 0.55 * hgt, zero),
        (0.55 * length, 0.92 * wid, 0.55 * hgt, hgt, -0.08 * length),
        color, color, last=np.full(n, is_ego),
    )  # fmt: skip
    objects.colors[:, 5:9] = GLASS  # cabin sides are glass, the cabin roof keeps the body colour
    return objects


class CameraRenderer:
    """Renders camera images and bird's-eye views of one town (raster shared per process and town)."""

    def __init__(self, town: Town, config: RenderConfig | None = None) -> None:
        self.town = town
        self.config = config or RenderConfig()
        self.raster = town_raster(town, self.config.raster_m_per_px, self.config.raster_levels)
        self.signals = town_signals(town)

    @staticmethod
    @functools.cache
    def for_town(town: Town, config: RenderConfig) -> CameraRenderer:
        """The renderer of ``town`` with ``config`` (cached)."""
        return CameraRenderer(town, config)

    # ----- camera -----
    def render_camera(self, snapshot: Any, spec: Any) -> np.ndarray:
        """BGRA uint8 (height, width, 4) image of a camera from a leaderboard sensor dict, mounted on the ego."""
        width, height, fov = int(spec["width"]), int(spec["height"]), float(spec["fov"])
        ego = snapshot.ego
        pose = CameraPose.from_mount((float(ego.x_m[0]), float(ego.y_m[0]), float(ego.yaw_rad[0])), spec)
        bgr = self.render_view(pose, width, height, fov, snapshot)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)

    def render_view(
        self, pose: CameraPose, width: int, height: int, fov_deg: float, snapshot: Any = None
    ) -> np.ndarray:
        """BGR uint8 (height, width, 3) image seen from ``pose`` (sky, ground, vehicles of ``snapshot``)."""
        rot = pose.rotation
        # the ground mask, distances and bands depend only on the camera's height, pitch and roll (flat ground,
        # level ego), not on the heading: cache them per mount
        tilt = tuple(round(float(v), 9) for v in rot[2])
        geo = _ground_geometry(width, height, fov_deg, tilt, round(float(pose.center_m[2]), 6), self.config)
        img = geo.sky.copy()
        f = geo.focal_px
        for start, end, level, mask in geo.bands:
            shift = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -start], [0.0, 0.0, 1.0]])
            band = cv2.warpPerspective(
                self.raster.levels[level],
                shift @ self._homography(pose, f, width, height, level),
                (width, end - start),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=GRASS[::-1],
            )
            if mask is None:
                img[start:end] = band
            else:
                np.copyto(img[start:end], band, where=mask)
        if geo.haze is not None:
            a, b, t = geo.haze
            part = img[a:b].astype(np.float32)
            img[a:b] = (part + (np.array(HAZE[::-1], np.float32) - part) * t).astype(np.uint8)
        if snapshot is not None:
            self._draw_scene(img, pose, f, snapshot)
        return img

    def _homography(self, pose: CameraPose, f: float, width: int, height: int, level: int) -> np.ndarray:
        """Raster pixels of ``level`` -> image pixels (3, 3) for the ground plane z = 0."""
        k = np.array([[width / 2.0, -f, 0.0], [height / 2.0, 0.0, -f], [1.0, 0.0, 0.0]])
        rt = pose.rotation.T
        ground_to_body = np.column_stack([rt[:, 0], rt[:, 1], -rt @ pose.center_m])
        h = k @ ground_to_body @ self.raster.px_to_world(level)
        # OpenCV pixel centres are at integers; ours at +0.5
        return np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]]) @ h

    def _draw_scene(self, img: np.ndarray, pose: CameraPose, f: float, snapshot: Any) -> None:
        """Light-state strips on the ground, then vehicles, pedestrians, lights and signs far to near."""
        cfg = self.config
        cam_xy = pose.center_m[:2]
        state = getattr(snapshot, "light_state", None)
        quads, colors = light_strips(self.signals, state, cam_xy, cfg.max_vehicle_distance_m)
        paint_ground_quads(img, pose.center_m, pose.rotation, f, quads, colors, near_clip_m=cfg.near_clip_m)
        parts = [_vehicle_objects(snapshot.vehicles, False)]
        parts.append(walker_objects(getattr(snapshot, "walkers", None)))
        if state is not None:  # a snapshot of a world with signals (hand-made scenes have none)
            parts.append(signal_objects(self.signals, state, cam_xy, cfg.max_vehicle_distance_m))
        if cfg.draw_ego_in_camera:
            parts.append(_vehicle_objects(snapshot.ego, True))
        paint_objects(
            img,
            pose.center_m,
            pose.rotation,
            f,
            concat_objects(parts),
            max_distance_m=cfg.max_vehicle_distance_m,
            near_clip_m=cfg.near_clip_m,
        )

    # ----- bird's-eye view -----
    def render_bev(
        self,
        snapshot: Any,
        route_xy_world_m: np.ndarray | None = None,
        *,
        size_px: int = 512,
        meters_per_px: float = 0.2,
        planned_xy_world_m: np.ndarray | None = None,
        ego_offset_frac: float = 0.25,
        markers: list[tuple[float, float, str]] | None = None,
    ) -> np.ndarray:
        """RGB (size_px, size_px, 3) top-down view of this town's raster (``bev.render_bev``), ego heading up.

        ``markers``: (x_m, y_m, label) of infractions to flag on the map.
        """
        return bev.render_bev(
            self.raster,
            snapshot,
            route_xy_world_m,
            size_px=size_px,
            meters_per_px=meters_per_px,
            planned_xy_world_m=planned_xy_world_m,
            ego_offset_frac=ego_offset_frac,
            signals=self.signals,
            markers=markers,
        )
