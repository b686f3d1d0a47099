"""What the renderer draws of signals and pedestrians, on the ground, as camera objects and in the bird's-eye view.

* ground raster (painted once per town): a white stop line across each lane at a light or stop sign, zebra
  stripes on CARLA's crosswalks;
* camera: each light head a pole with a lamp box lit in its state colour, each stop sign a pole with a red plate,
  pedestrians a body box with a head; a strip in the light's colour lies just before each stop line;
* bird's-eye view: the stop lines in their light's colour, stop signs as red bars, pedestrians as dots, and
  infraction markers (a cross and a label where an infraction happened).

Everything is in the internal WORLD frame (x east, y north, yaw CCW radians), metres; colours are RGB.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autovla_agent.optional_deps import require_cv2
from autovla_agent.sim.world.render_boxes import SceneObjects, concat_objects, two_box_objects
from autovla_agent.sim.world.signal_state import GREEN, RED, YELLOW
from autovla_agent.sim.world.signals import TownSignals

cv2 = require_cv2()

__all__ = [
    "LIGHT_RGB",
    "draw_bev_overlay",
    "light_strips",
    "paint_static_signals",
    "signal_objects",
    "walker_objects",
]

LIGHT_RGB = {GREEN: (40, 210, 70), YELLOW: (250, 200, 30), RED: (230, 40, 30)}
STOP_RED = (200, 30, 30)
POLE = (85, 85, 90)
SKIN = (224, 172, 140)
MARKING = (228, 228, 228)
STOP_LINE_M = 0.4  # painted stop-line width
STRIP_M = 1.0  # depth of the light-state strip before the line
ZEBRA_M = 0.5  # crosswalk stripe width (stripes and gaps alike)
_MARKER = (255, 40, 40)


def paint_static_signals(img: np.ndarray, to_px: Any, signals: TownSignals, crossings: Any) -> None:
    """Paint stop lines and crosswalk stripes into a BGR raster (``to_px``: world -> raster pixels)."""
    color = MARKING[::-1]
    rows = [(signals.lines.xy_m, signals.lines.yaw_rad, signals.lines.lane_width_m)]
    rows.append((signals.stops.stop_xy_m, signals.stops.yaw_rad, signals.stops.lane_width_m))
    for xy, yaw, width in rows:
        for k in range(len(yaw)):
            fwd = np.array([np.cos(yaw[k]), np.sin(yaw[k])])
            left = np.array([-fwd[1], fwd[0]]) * 0.5 * width[k]
            back = xy[k] - fwd * STOP_LINE_M
            quad = np.array([xy[k] + left, xy[k] - left, back - left, back + left])
            cv2.fillPoly(img, [np.round(to_px(quad) * 16).astype(np.int32)], color, cv2.LINE_AA, shift=4)
    for c in crossings:
        if c.polygon_xy_m is None:
            continue  # a mid-block crossing has no markings
        across = (c.b_xy_m - c.a_xy_m) / max(c.length_m, 1e-9)
        along = np.array([-across[1], across[0]])
        rel = c.polygon_xy_m - c.a_xy_m
        lo, hi = float((rel @ across).min()), float((rel @ across).max())
        a_lo, a_hi = float((rel @ along).min()), float((rel @ along).max())
        base, half_w = c.a_xy_m + along * 0.5 * (a_lo + a_hi), 0.5 * (a_hi - a_lo)
        for t in np.arange(lo + 0.25, hi - 0.25, 2 * ZEBRA_M):  # stripes along the road, gaps between them
            p0, p1 = base + across * t, base + across * min(t + ZEBRA_M, hi)
            quad = np.array([p0 + along * half_w, p1 + along * half_w, p1 - along * half_w, p0 - along * half_w])
            cv2.fillPoly(img, [np.round(to_px(quad) * 16).astype(np.int32)], color, cv2.LINE_AA, shift=4)


def _near(xy: np.ndarray, center_xy: np.ndarray, radius_m: float) -> np.ndarray:
    return np.flatnonzero(np.hypot(xy[:, 0] - center_xy[0], xy[:, 1] - center_xy[1]) <= radius_m)


def signal_objects(
    signals: TownSignals, head_state: np.ndarray | None, center_xy: np.ndarray, radius_m: float
) -> SceneObjects:
    """Light heads (pole + lamp in the state colour) and stop signs (pole + red plate) within ``radius_m``."""
    parts = []
    heads = signals.heads
    k = _near(heads.xy_m, center_xy, radius_m) if len(heads) else np.zeros(0, np.int64)
    if len(k):
        state = np.full(len(heads), GREEN, np.int8) if head_state is None else np.asarray(head_state)
        lamp = np.array([LIGHT_RGB[int(s)] for s in state[k]], np.float64)
        n = len(k)
        parts.append(
            two_box_objects(
                heads.xy_m[k, 0], heads.xy_m[k, 1], np.zeros(n),
                (np.full(n, 0.18), np.full(n, 0.18), np.zeros(n), np.full(n, 3.0), np.zeros(n)),
                (np.full(n, 0.45), np.full(n, 0.45), np.full(n, 3.0), np.full(n, 4.1), np.zeros(n)),
                np.tile(POLE, (n, 1)), lamp,
            )
        )  # fmt: skip
    stops = signals.stops
    k = _near(stops.pole_xy_m, center_xy, radius_m) if len(stops) else np.zeros(0, np.int64)
    if len(k):
        n = len(k)
        parts.append(
            two_box_objects(
                stops.pole_xy_m[k, 0], stops.pole_xy_m[k, 1], stops.yaw_rad[k],
                (np.full(n, 0.08), np.full(n, 0.08), np.zeros(n), np.full(n, 2.0), np.zeros(n)),
                (np.full(n, 0.06), np.full(n, 0.75), np.full(n, 2.0), np.full(n, 2.75), np.zeros(n)),
                np.tile(POLE, (n, 1)), np.tile(STOP_RED, (n, 1)),
            )
        )  # fmt: skip
    return concat_objects(parts)


def walker_objects(walkers: Any) -> SceneObjects:
    """Pedestrians (``ActorArrays``): a body box in the clothes colour and a head box."""
    if walkers is None or not len(walkers):
        return concat_objects([])
    n = len(walkers)
    h = walkers.height_m if walkers.height_m is not None else np.full(n, 1.75)
    color = walkers.color_rgb if walkers.color_rgb is not None else np.tile((70, 70, 120), (n, 1))
    return two_box_objects(
        walkers.x_m, walkers.y_m, walkers.yaw_rad,
        (walkers.length_m, walkers.width_m, np.zeros(n), 0.84 * h, np.zeros(n)),
        (np.full(n, 0.22), np.full(n, 0.22), 0.86 * h, h, np.zeros(n)),
        np.asarray(color, np.float64), np.tile(SKIN, (n, 1)),
    )  # fmt: skip


def light_strips(
    signals: TownSignals, head_state: np.ndarray | None, center_xy: np.ndarray, radius_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Ground quads (Q, 4, 3) just before the stop lines within ``radius_m`` and their light colours (Q, 3)."""
    lines = signals.lines
    if head_state is None or len(lines) == 0:
        return np.zeros((0, 4, 3)), np.zeros((0, 3))
    k = _near(lines.xy_m, center_xy, radius_m)
    fwd = np.stack([np.cos(lines.yaw_rad[k]), np.sin(lines.yaw_rad[k])], -1)
    left = np.stack([-fwd[:, 1], fwd[:, 0]], -1) * (0.45 * lines.lane_width_m[k])[:, None]
    a = lines.xy_m[k] - fwd * STOP_LINE_M
    b = a - fwd * STRIP_M
    quads = np.stack([a + left, a - left, b - left, b + left], axis=1)
    quads = np.concatenate([quads, np.full((len(k), 4, 1), 0.02)], axis=-1)
    colors = np.array([LIGHT_RGB[int(s)] for s in np.asarray(head_state)[lines.head[k]]], np.float64)
    return quads, colors.reshape(-1, 3)


def draw_bev_overlay(
    img: np.ndarray,
    to_px: Any,
    signals: TownSignals | None,
    head_state: np.ndarray | None,
    walkers: Any = None,
    markers: list[tuple[float, float, str]] | None = None,
) -> None:
    """Draw stop lines in their light colour, stop signs, pedestrians and infraction markers into RGB ``img``."""
    if signals is not None:
        lines, stops = signals.lines, signals.stops
        states = np.full(len(lines), GREEN) if head_state is None else np.asarray(head_state)[lines.head]
        for xy, yaw, width, colors in (
            (lines.xy_m, lines.yaw_rad, lines.lane_width_m, [LIGHT_RGB[int(s)] for s in states]),
            (stops.stop_xy_m, stops.yaw_rad, stops.lane_width_m, [STOP_RED] * len(stops)),
        ):
            if len(yaw) == 0:
                continue
            left = np.stack([-np.sin(yaw), np.cos(yaw)], -1) * (0.5 * width)[:, None]
            ends = to_px(np.stack([xy + left, xy - left], axis=1))
            for (p, q), color in zip(ends, colors, strict=True):
                cv2.line(img, _pt(p), _pt(q), color, 3, cv2.LINE_AA, shift=4)
    if walkers is not None and len(walkers):
        for p, color in zip(to_px(np.stack([walkers.x_m, walkers.y_m], -1)), walkers.color_rgb, strict=True):
            cv2.circle(img, _pt(p), 3 * 16, tuple(int(c) for c in color), -1, cv2.LINE_AA, shift=4)
            cv2.circle(img, _pt(p), 3 * 16, (15, 15, 15), 1, cv2.LINE_AA, shift=4)
    for x, y, label in markers or ():
        p = to_px(np.array([[x, y]]))[0]
        u, v = int(round(p[0])), int(round(p[1]))
        cv2.line(img, (u - 7, v - 7), (u + 7, v + 7), _MARKER, 3, cv2.LINE_AA)
        cv2.line(img, (u - 7, v + 7), (u + 7, v - 7), _MARKER, 3, cv2.LINE_AA)
        cv2.putText(img, label, (u + 9, v - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, _MARKER, 1, cv2.LINE_AA)


def _pt(p: np.ndarray) -> tuple[int, int]:
    """A fixed-point (shift 4) OpenCV point."""
    return int(round(float(p[0]) * 16)), int(round(float(p[1]) * 16))
