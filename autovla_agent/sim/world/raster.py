"""Top-down raster pyramid of an embedded town's ground (grass, roads, sidewalks, markings, stop lines, crosswalks).

Painted once per town and resolution in the internal WORLD frame (x east, y north) with OpenCV; the camera
renderer warps it through the ground-plane homography and the bird's-eye view through an affine map
(``autovla_agent.sim.world.render``). Pixels are BGR uint8; level L has ``m_per_px * 2**L`` metres per pixel.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from autovla_agent.optional_deps import require_cv2
from autovla_agent.sim.world.render_signals import paint_static_signals
from autovla_agent.sim.world.signals import town_signals
from autovla_agent.sim.world.town import Town
from autovla_agent.sim.world.walker_paths import walker_paths

cv2 = require_cv2()

__all__ = ["GRASS", "TownRaster", "town_raster"]

# colours, RGB
GRASS = (96, 116, 78)
ROAD = (78, 78, 82)
SIDEWALK = (158, 156, 150)
WHITE = (228, 228, 228)
YELLOW = (226, 190, 70)
DASH_M, GAP_M = 3.0, 5.0  # broken lane markings
MARK_WIDTH_M = 0.15


class TownRaster:
    """Top-down BGR raster pyramid of a town's ground; level L has ``m_per_px * 2**L`` metres per pixel."""

    def __init__(self, town: Town, m_per_px: float, levels: int, margin_m: float = 40.0) -> None:
        xmin, ymin, xmax, ymax = town.bounds_xy_m
        self.x0, self.y1 = xmin - margin_m, ymax + margin_m
        self.m_per_px = m_per_px
        w = int(math.ceil((xmax - xmin + 2 * margin_m) / m_per_px))
        h = int(math.ceil((ymax - ymin + 2 * margin_m) / m_per_px))
        base = np.empty((h, w, 3), np.uint8)
        base[:] = GRASS[::-1]
        self._paint(base, town)
        self.levels = [base]
        for _ in range(levels - 1):
            self.levels.append(cv2.pyrDown(self.levels[-1]))

    def to_px(self, xy_world_m: np.ndarray, level: int = 0) -> np.ndarray:
        """World (..., 2) -> raster pixel coordinates (..., 2) of ``level`` (pixel centres at integers)."""
        res = self.m_per_px * 2**level
        xy = np.asarray(xy_world_m, dtype=np.float64)
        return np.stack([(xy[..., 0] - self.x0) / res - 0.5, (self.y1 - xy[..., 1]) / res - 0.5], axis=-1)

    def px_to_world(self, level: int) -> np.ndarray:
        """Affine (3, 3) mapping homogeneous raster pixels of ``level`` to world (x, y, 1)."""
        res = self.m_per_px * 2**level
        return np.array([[res, 0.0, self.x0 + 0.5 * res], [0.0, -res, self.y1 - 0.5 * res], [0.0, 0.0, 1.0]])

    def _poly(self, img: np.ndarray, polys: list[np.ndarray], color: tuple[int, int, int]) -> None:
        pts = [np.round(self.to_px(p) * 16).astype(np.int32) for p in polys]
        cv2.fillPoly(img, pts, color[::-1], lineType=cv2.LINE_AA, shift=4)

    def _line(self, img: np.ndarray, xy: np.ndarray, color: tuple[int, int, int], width_m: float) -> None:
        thick = max(1, int(round(width_m / self.m_per_px)))
        pts = np.round(self.to_px(xy) * 16).astype(np.int32)
        cv2.polylines(img, [pts], False, color[::-1], thickness=thick, lineType=cv2.LINE_AA, shift=4)

    def _paint(self, img: np.ndarray, town: Town) -> None:
        """Sidewalks, road surface (lanes, shoulders, junction hulls), then lane markings."""
        sidewalks, shoulders = [], []
        for ln in town.lanes:
            normal = np.stack([-np.sin(ln.yaw_rad), np.cos(ln.yaw_rad)], -1)
            for kind, inner, outer in ln.outer_sides:
                inner_xy = ln.xy_m - normal * (0.5 * ln.width_m + inner)[:, None]
                outer_xy = ln.xy_m - normal * (0.5 * ln.width_m + outer)[:, None]
                poly = np.concatenate([inner_xy, outer_xy[::-1]])
                (sidewalks if kind == "Sidewalk" else shoulders).append(poly)
        self._poly(img, sidewalks, SIDEWALK)
        junctions: dict[int, list[np.ndarray]] = {}
        for ln in town.lanes:
            if ln.is_junction:
                junctions.setdefault(ln.junction_id, []).append(ln.polygon_xy_m())
        hulls = [
            cv2.convexHull(np.concatenate(p).astype(np.float32))[:, 0, :].astype(np.float64) for p in junctions.values()
        ]
        self._poly(img, hulls + shoulders + [ln.polygon_xy_m() for ln in town.lanes], ROAD)
        for ln in town.lanes:
            if ln.is_junction:
                continue
            sides = [(ln.right_marking, ln.right_color, ln.right_xy_m)]
            if ln.lane_id < 0 or ln.left_neighbor < 0:  # the shared centre line is drawn once
                sides.append((ln.left_marking, ln.left_color, ln.left_xy_m))
            for kind, color_name, xy in sides:
                if kind in ("NONE", "Other", "Grass", "Curb"):
                    continue
                color = YELLOW if color_name == "Yellow" else WHITE
                if kind.startswith("Broken") or kind == "BottsDots":
                    for seg in _dashes(xy, ln.s_m):
                        self._line(img, seg, color, MARK_WIDTH_M)
                else:
                    self._line(img, xy, color, MARK_WIDTH_M)
        paint_static_signals(img, self.to_px, town_signals(town), walker_paths(town).crossings)


def _dashes(xy: np.ndarray, s_m: np.ndarray) -> list[np.ndarray]:
    """Pieces of a polyline (M, 2) for a broken marking: DASH_M on, GAP_M off."""
    out = []
    start = 0.0
    while start < s_m[-1]:
        end = min(start + DASH_M, s_m[-1])
        ss = np.concatenate([[start], s_m[(s_m > start) & (s_m < end)], [end]])
        out.append(np.stack([np.interp(ss, s_m, xy[:, 0]), np.interp(ss, s_m, xy[:, 1])], -1))
        start += DASH_M + GAP_M
    return out


@functools.cache
def town_raster(town: Town, m_per_px: float, levels: int) -> TownRaster:
    """The raster pyramid of ``town`` (cached per process, town and resolution)."""
    return TownRaster(town, m_per_px, levels)
