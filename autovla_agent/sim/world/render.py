"""Headless, deterministic CPU renderer: a perspective RGB camera and a bird's-eye view of an embedded town.

The ground (grass, roads, junctions, shoulders, sidewalks, lane markings) is painted once per town into a
top-down raster pyramid in the internal WORLD frame (x east, y north; ``raster.py``). A camera frame is then:

1. sky: a vertical gradient where the pixel ray does not hit the ground (horizon from the camera rotation);
2. ground: ``cv2.warpPerspective`` of the raster through the ground-plane homography, in horizontal bands
   that read coarser pyramid levels with distance (cheap anti-aliasing), distance haze near the horizon;
3. vehicles: painter's algorithm, far to near, each a lower body box and a cabin box with flat-shaded faces,
   back faces culled, faces clipped at the near plane, then projected.

Camera model as CARLA's ``sensor.camera.rgb``: pinhole, horizontal ``fov``, principal point at the image centre,
mounted at (x, y, z, roll, pitch, yaw) in the CARLA vehicle frame (x forward, y right, z up, degrees; yaw > 0
looks right, pitch > 0 looks up) relative to the actor origin (box centre, on the ground). Output is BGRA
uint8 (H, W, 4) like the leaderboard's camera data. Town01/Town02 are flat: the ground is z = 0.
The bird's-eye view (``CameraRenderer.render_bev``) is drawn by ``bev.py`` from the same raster.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from autovla_agent.sensors import frames
from autovla_agent.sim.world import bev
from autovla_agent.sim.world.raster import GRASS, town_raster
from autovla_agent.sim.world.town import Town

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


def _box_faces(length: float, width: float, z0: float, z1: float, x_off: float = 0.0) -> np.ndarray:
    """Five faces (5, 4, 3) of a box in its own frame (front, rear, left, right, top), outward CCW order."""
    hl, hw = 0.5 * length, 0.5 * width
    a, b = x_off + hl, x_off - hl
    return np.array(
        [
            [[a, -hw, z0], [a, hw, z0], [a, hw, z1], [a, -hw, z1]],  # front
            [[b, hw, z0], [b, -hw, z0], [b, -hw, z1], [b, hw, z1]],  # rear
            [[a, hw, z0], [b, hw, z0], [b, hw, z1], [a, hw, z1]],  # left
            [[b, -hw, z0], [a, -hw, z0], [a, -hw, z1], [b, -hw, z1]],  # right
            [[a, -hw, z1], [a, hw, z1], [b, hw, z1], [b, -hw, z1]],  # top
        ]
    )


_FACE_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], np.float64)
_LIGHT = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])


def _clip_near(poly: np.ndarray, near: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon (n, 3) in camera body coords to x >= near."""
    out = []
    n = len(poly)
    for i in range(n):
        p, q = poly[i], poly[(i + 1) % n]
        pin, qin = p[0] >= near, q[0] >= near
        if pin:
            out.append(p)
        if pin != qin:
            t = (near - p[0]) / (q[0] - p[0])
            out.append(p + t * (q - p))
    return np.array(out) if out else np.zeros((0, 3))


class CameraRenderer:
    """Renders camera images and bird's-eye views of one town (raster shared per process and town)."""

    def __init__(self, town: Town, config: RenderConfig | None = None) -> None:
        self.town = town
        self.config = config or RenderConfig()
        self.raster = town_raster(town, self.config.raster_m_per_px, self.config.raster_levels)

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
            self._draw_vehicles(img, pose, f, snapshot)
        return img

    def _homography(self, pose: CameraPose, f: float, width: int, height: int, level: int) -> np.ndarray:
        """Raster pixels of ``level`` -> image pixels (3, 3) for the ground plane z = 0."""
        k = np.array([[width / 2.0, -f, 0.0], [height / 2.0, 0.0, -f], [1.0, 0.0, 0.0]])
        rt = pose.rotation.T
        ground_to_body = np.column_stack([rt[:, 0], rt[:, 1], -rt @ pose.center_m])
        h = k @ ground_to_body @ self.raster.px_to_world(level)
        # OpenCV pixel centres are at integers; ours at +0.5
        return np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]]) @ h

    def _draw_vehicles(self, img: np.ndarray, pose: CameraPose, f: float, snapshot: Any) -> None:
        """Painter's algorithm over the ego and traffic boxes, far to near, frustum- and back-face culled."""
        cfg = self.config
        height, width = img.shape[:2]
        parts = [snapshot.vehicles]
        if cfg.draw_ego_in_camera:
            parts.append(snapshot.ego)
        x = np.concatenate([p.x_m for p in parts])
        y = np.concatenate([p.y_m for p in parts])
        yaw = np.concatenate([p.yaw_rad for p in parts])
        length = np.concatenate([p.length_m for p in parts])
        wid = np.concatenate([p.width_m for p in parts])
        hgt = np.concatenate([p.height_m if p.height_m is not None else np.full(len(p), 1.5) for p in parts])
        colors = [
            p.color_rgb if p.color_rgb is not None else np.tile(np.array([90, 110, 160], np.uint8), (len(p), 1))
            for p in parts[:1]
        ]
        if cfg.draw_ego_in_camera:
            colors.append(np.array([EGO_BODY], np.uint8))
        color = np.concatenate(colors).astype(np.float64)
        cam = pose.center_m
        dist = np.hypot(x - cam[0], y - cam[1])
        keep = np.nonzero(dist <= cfg.max_vehicle_distance_m)[0]
        if len(keep) == 0:
            return
        x, y, yaw, length, wid, hgt, color, dist = (v[keep] for v in (x, y, yaw, length, wid, hgt, color, dist))
        n = len(keep)
        # unit-box faces scaled per vehicle: lower body (0..0.55 h) and cabin (0.55 h..h, shorter, set back)
        unit = _box_faces(1.0, 1.0, 0.0, 1.0)  # (5, 4, 3), x/y in [-0.5, 0.5], z in [0, 1]
        body = unit[None] * np.stack([length, wid, 0.55 * hgt], -1)[:, None, None, :]
        cabin = unit[None] * np.stack([0.55 * length, 0.92 * wid, 0.45 * hgt], -1)[:, None, None, :]
        cabin = cabin + np.stack([-0.08 * length, np.zeros(n), 0.55 * hgt], -1)[:, None, None, :]
        faces = np.concatenate([body, cabin], axis=1)  # (n, 10, 4, 3) vehicle frame
        c, s_ = np.cos(yaw), np.sin(yaw)
        rot = np.zeros((n, 3, 3))
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s_, s_, c, 1.0
        world = np.einsum("nij,nfkj->nfki", rot, faces) + np.stack([x, y, np.zeros(n)], -1)[:, None, None, :]
        normals = np.einsum("nij,fj->nfi", rot, np.tile(_FACE_NORMALS, (2, 1)).astype(np.float64))
        visible = ((world.mean(axis=2) - cam) * normals).sum(-1) < 0.0  # (n, 10)
        bodyc = (world - cam) @ pose.rotation  # (n, 10, 4, 3) camera body coords (x fwd, y left, z up)
        tx, ty = (width / 2.0) / f, (height / 2.0) / f
        bx, by, bz = bodyc[..., 0], bodyc[..., 1], bodyc[..., 2]
        outside = (
            (bx < cfg.near_clip_m).all(-1)
            | (by > bx * tx).all(-1)
            | (-by > bx * tx).all(-1)
            | (bz > bx * ty).all(-1)
            | (-bz > bx * ty).all(-1)
        )
        visible &= ~outside
        shade = 0.55 + 0.45 * np.clip(normals @ _LIGHT, 0.0, None)  # (n, 10)
        base = np.broadcast_to(color[:, None, :], (n, 10, 3)).copy()
        base[:, 5:9] = GLASS  # cabin sides are glass, the cabin roof keeps the body colour
        bgr = np.minimum(255.0, base * shade[..., None])[..., ::-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = width / 2.0 - 0.5 - f * by / bx  # OpenCV pixel centres at integers
            v = height / 2.0 - 0.5 - f * bz / bx
        uv = np.round(np.clip(np.stack([u, v], -1), -1e6, 1e6) * 16)
        needs_clip = (bx < cfg.near_clip_m).any(-1)
        order_key = dist.copy()
        if cfg.draw_ego_in_camera and keep[-1] == len(snapshot.vehicles):
            order_key[-1] = -1.0  # the camera sits on the ego: its body is always the nearest
        for k in np.argsort(-order_key, kind="stable"):
            for fi in np.nonzero(visible[k])[0]:
                if needs_clip[k, fi]:
                    poly = _clip_near(bodyc[k, fi], cfg.near_clip_m)
                    if len(poly) < 3:
                        continue
                    pu = width / 2.0 - 0.5 - f * poly[:, 1] / poly[:, 0]
                    pv = height / 2.0 - 0.5 - f * poly[:, 2] / poly[:, 0]
                    pts = np.round(np.clip(np.stack([pu, pv], -1), -1e6, 1e6) * 16).astype(np.int32)
                else:
                    pts = uv[k, fi].astype(np.int32)
                cv2.fillConvexPoly(img, pts, tuple(bgr[k, fi].tolist()), lineType=cv2.LINE_AA, shift=4)

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
    ) -> np.ndarray:
        """RGB (size_px, size_px, 3) top-down view of this town's raster (``bev.render_bev``), ego heading up."""
        return bev.render_bev(
            self.raster,
            snapshot,
            route_xy_world_m,
            size_px=size_px,
            meters_per_px=meters_per_px,
            planned_xy_world_m=planned_xy_world_m,
            ego_offset_frac=ego_offset_frac,
        )
