"""Flat-shaded box objects for the camera: vehicles, pedestrians, traffic lights and stop signs, painted far to near.

Every object is up to two boxes (``FACES_PER_OBJECT`` faces: front, rear, left, right, top of each) in its own
frame (x forward, y left, z up, metres), placed at (x, y, yaw) in the internal WORLD frame. ``paint_objects``
is the painter's algorithm of the camera: objects sorted far to near (the ego's own body always last), back
faces and faces outside the frustum culled, faces crossing the near plane clipped, the rest filled with a
Lambert shade. ``paint_ground_quads`` draws flat quads lying on the ground (light-state strips) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autovla_agent.optional_deps import require_cv2

cv2 = require_cv2()

__all__ = [
    "FACES_PER_OBJECT",
    "SceneObjects",
    "box_faces",
    "concat_objects",
    "paint_ground_quads",
    "paint_objects",
    "two_box_objects",
]

FACES_PER_OBJECT = 10
FACE_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], np.float64)
LIGHT_DIR = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])


def box_faces(length: float, width: float, z0: float, z1: float, x_off: float = 0.0) -> np.ndarray:
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


_UNIT = box_faces(1.0, 1.0, 0.0, 1.0)  # x/y in [-0.5, 0.5], z in [0, 1]


@dataclass(frozen=True, slots=True)
class SceneObjects:
    """N objects of two boxes each: faces (N, 10, 4, 3) in the object frame, their RGB colours and a pose."""

    x_m: np.ndarray
    y_m: np.ndarray
    yaw_rad: np.ndarray
    faces: np.ndarray  # (N, 10, 4, 3)
    colors: np.ndarray  # (N, 10, 3) RGB float
    valid: np.ndarray  # (N, 10) bool: unused faces of one-box objects are False
    last: np.ndarray  # (N,) bool: drawn after everything else (the ego body around the camera)

    def __len__(self) -> int:
        return int(self.x_m.shape[0])


def two_box_objects(
    x_m: np.ndarray,
    y_m: np.ndarray,
    yaw_rad: np.ndarray,
    lower: tuple[np.ndarray, ...],
    upper: tuple[np.ndarray, ...] | None,
    lower_rgb: np.ndarray,
    upper_rgb: np.ndarray | None = None,
    last: np.ndarray | None = None,
) -> SceneObjects:
    """Objects of a lower box and an optional upper box, each ``(length, width, z0, z1, x_offset)`` arrays (N,)."""
    n = len(x_m)

    def scaled(box: tuple[np.ndarray, ...]) -> np.ndarray:
        length, width, z0, z1, x_off = (np.broadcast_to(np.asarray(v, np.float64), (n,)) for v in box)
        out = _UNIT[None] * np.stack([length, width, z1 - z0], -1)[:, None, None, :]
        return out + np.stack([x_off, np.zeros(n), z0], -1)[:, None, None, :]

    lower_faces = scaled(lower)
    colors = np.zeros((n, FACES_PER_OBJECT, 3))
    colors[:, :5] = np.asarray(lower_rgb, np.float64).reshape(-1, 3)[:, None, :]
    valid = np.ones((n, FACES_PER_OBJECT), bool)
    if upper is None:
        faces = np.concatenate([lower_faces, lower_faces], axis=1)
        valid[:, 5:] = False
    else:
        faces = np.concatenate([lower_faces, scaled(upper)], axis=1)
        rgb = lower_rgb if upper_rgb is None else upper_rgb
        colors[:, 5:] = np.asarray(rgb, np.float64).reshape(-1, 3)[:, None, :] if np.ndim(rgb) == 2 else rgb
    return SceneObjects(
        np.asarray(x_m, np.float64),
        np.asarray(y_m, np.float64),
        np.asarray(yaw_rad, np.float64),
        faces,
        colors,
        valid,
        np.zeros(n, bool) if last is None else np.asarray(last, bool),
    )


def concat_objects(parts: list[SceneObjects]) -> SceneObjects:
    """All objects of ``parts`` in one set (order kept)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        z = np.zeros(0)
        return SceneObjects(z, z, z, np.zeros((0, 10, 4, 3)), np.zeros((0, 10, 3)), np.zeros((0, 10), bool), z > 0)
    return SceneObjects(*(np.concatenate([getattr(p, f) for p in parts]) for f in SceneObjects.__slots__))


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


def _project(poly_cam: np.ndarray, f: float, width: int, height: int) -> np.ndarray:
    """Camera-body points (K, 3) -> OpenCV fixed-point pixel coordinates (K, 2) int32 (shift 4)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        u = width / 2.0 - 0.5 - f * poly_cam[..., 1] / poly_cam[..., 0]  # OpenCV pixel centres at integers
        v = height / 2.0 - 0.5 - f * poly_cam[..., 2] / poly_cam[..., 0]
    return np.round(np.clip(np.stack([u, v], -1), -1e6, 1e6) * 16).astype(np.int32)


def paint_objects(
    img: np.ndarray,
    cam_center_m: np.ndarray,
    cam_rotation: np.ndarray,
    f: float,
    objects: SceneObjects,
    *,
    max_distance_m: float,
    near_clip_m: float,
) -> None:
    """Painter's algorithm over ``objects`` into BGR ``img`` seen from a camera (centre, body->world rotation)."""
    height, width = img.shape[:2]
    cam = np.asarray(cam_center_m, np.float64)
    dist = np.hypot(objects.x_m - cam[0], objects.y_m - cam[1])
    keep = np.flatnonzero(dist <= max_distance_m)
    if len(keep) == 0:
        return
    n = len(keep)
    yaw, x, y = objects.yaw_rad[keep], objects.x_m[keep], objects.y_m[keep]
    c, s_ = np.cos(yaw), np.sin(yaw)
    rot = np.zeros((n, 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s_, s_, c, 1.0
    world = np.einsum("nij,nfkj->nfki", rot, objects.faces[keep]) + np.stack([x, y, np.zeros(n)], -1)[:, None, None]
    normals = np.einsum("nij,fj->nfi", rot, np.tile(FACE_NORMALS, (2, 1)))
    visible = objects.valid[keep] & (((world.mean(axis=2) - cam) * normals).sum(-1) < 0.0)
    body = (world - cam) @ cam_rotation  # (n, 10, 4, 3) camera body coords (x fwd, y left, z up)
    tx, ty = (width / 2.0) / f, (height / 2.0) / f
    bx, by, bz = body[..., 0], body[..., 1], body[..., 2]
    outside = (
        (bx < near_clip_m).all(-1)
        | (by > bx * tx).all(-1)
        | (-by > bx * tx).all(-1)
        | (bz > bx * ty).all(-1)
        | (-bz > bx * ty).all(-1)
    )
    visible &= ~outside
    shade = 0.55 + 0.45 * np.clip(normals @ LIGHT_DIR, 0.0, None)
    bgr = np.minimum(255.0, objects.colors[keep] * shade[..., None])[..., ::-1]
    uv = _project(body, f, width, height)
    needs_clip = (bx < near_clip_m).any(-1)
    order_key = np.where(objects.last[keep], -1.0, dist[keep])
    for k in np.argsort(-order_key, kind="stable"):
        for fi in np.flatnonzero(visible[k]):
            if needs_clip[k, fi]:
                poly = _clip_near(body[k, fi], near_clip_m)
                if len(poly) < 3:
                    continue
                pts = _project(poly, f, width, height)
            else:
                pts = uv[k, fi]
            cv2.fillConvexPoly(img, pts, tuple(bgr[k, fi].tolist()), lineType=cv2.LINE_AA, shift=4)


def paint_ground_quads(
    img: np.ndarray,
    cam_center_m: np.ndarray,
    cam_rotation: np.ndarray,
    f: float,
    quads_world_m: np.ndarray,
    colors_rgb: np.ndarray,
    *,
    near_clip_m: float,
) -> None:
    """Fill flat world quads (Q, 4, 3) with their RGB colours (Q, 3), clipped at the near plane."""
    if len(quads_world_m) == 0:
        return
    height, width = img.shape[:2]
    body = (np.asarray(quads_world_m, np.float64) - np.asarray(cam_center_m)) @ cam_rotation
    tx = (width / 2.0) / f
    ahead = ~(body[..., 0] < near_clip_m).all(-1) & ~(body[..., 1] > body[..., 0] * tx).all(-1)
    ahead &= ~(-body[..., 1] > body[..., 0] * tx).all(-1)
    for q in np.flatnonzero(ahead):
        poly = _clip_near(body[q], near_clip_m)
        if len(poly) >= 3:
            color = tuple(float(c) for c in np.asarray(colors_rgb[q], np.float64)[::-1])
            cv2.fillConvexPoly(img, _project(poly, f, width, height), color, lineType=cv2.LINE_AA, shift=4)
