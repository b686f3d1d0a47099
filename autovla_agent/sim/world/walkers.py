"""Pedestrians: walkers pacing the sidewalks and crossing the road at crossings, vectorised with numpy.

Each walker follows its own straight or polyline path (``walker_paths``): a stretch of sidewalk it walks up and
down, or a crossing it walks from kerb to kerb and back, pausing on each kerb. Before stepping onto the road a
crossing walker looks for a gap: it waits while a vehicle (the ego included) is within ``min_vehicle_distance_m``
of the crossing or heading for it and due within ``crossing_gap_s``. Once on the road it keeps going, but stands
still while a vehicle body blocks its next step, and turns back after ``_GIVE_UP_S`` of that (a car that stopped
too close would wait for it for ever). Placement and pauses draw from a seeded generator, so runs repeat exactly.
Walker ids start at ``WALKER_ID_BASE + 1`` (the ego is 0, vehicles 1..N). World frame (x east, y north, yaw CCW
rad), metres and seconds.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autovla_agent.sim.config_checks import require_at_least
from autovla_agent.sim.world.town import Town
from autovla_agent.sim.world.walker_paths import walker_paths

logger = logging.getLogger(__name__)

__all__ = ["WALKER_ID_BASE", "WalkerConfig", "Walkers"]

WALKER_ID_BASE = 10000
_ROUTE_CROSSING_M = 4.0  # a crossing whose segment passes this close to the route is on it
_KERB_LOOK_M = 0.8  # where on the kerb a crossing walker stops to look for a gap, before the road edge
_GIVE_UP_S = 2.0  # a crossing walker blocked this long by a vehicle turns back
_PER_CROSSING = 2  # walkers sharing one crossing at most (the rest walk the sidewalks)


@dataclass(frozen=True, kw_only=True, slots=True)
class WalkerConfig:
    """Pedestrians: count, share crossing the road, speeds and gap acceptance (SI units)."""

    num_walkers: int = 20
    crossing_fraction: float = 0.4  # share of walkers assigned to a crossing (the others pace a sidewalk)
    spawn_radius_m: float = 60.0  # walkers are placed on paths this close to the route
    speed_mps: tuple[float, float] = (1.0, 1.5)
    sidewalk_stretch_m: float = 40.0  # how far a sidewalk walker walks before turning round
    kerb_wait_s: tuple[float, float] = (2.0, 8.0)  # pause on each kerb (and at sidewalk turns)
    crossing_gap_s: float = 5.0  # a vehicle due at the crossing sooner than this keeps a walker on the kerb
    min_vehicle_distance_m: float = 10.0  # ... and so does any vehicle this close to the crossing
    length_m: float = 0.4
    width_m: float = 0.5
    height_m: tuple[float, float] = (1.6, 1.9)

    def __post_init__(self) -> None:
        """Validate counts and ranges."""
        require_at_least(self, ("num_walkers",), 0)
        if not 0.0 <= self.crossing_fraction <= 1.0:
            raise ValueError("WalkerConfig.crossing_fraction must be in [0, 1]")
        for name in ("speed_mps", "kerb_wait_s", "height_m"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ValueError(f"WalkerConfig.{name}={getattr(self, name)} must be (low, high), 0 <= low <= high")
        names = ("spawn_radius_m", "sidewalk_stretch_m", "length_m", "width_m")
        require_at_least(self, names, 0.0, strict=True)
        require_at_least(self, ("crossing_gap_s", "min_vehicle_distance_m"), 0.0)


class Walkers:
    """W pedestrians as parallel arrays (world frame); see the module docstring for their behaviour.

    Public arrays (W,): ``ids``, ``x_m``, ``y_m``, ``yaw_rad``, ``speed_mps`` (current), ``length_m``,
    ``width_m``, ``height_m``, ``crossing`` (bool: assigned to a crossing), ``on_road`` (bool: between the kerbs
    of its crossing now), ``color_rgb`` (W, 3) uint8. Paths (W,): ``path_length_m``, ``road_in_m``/
    ``road_out_m`` (the road part of a crossing, NaN for sidewalk walkers), ``s_m`` and ``direction`` (+1/-1).
    """

    def __init__(self, config: WalkerConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.rng = rng
        self.time_s = 0.0
        self._paths: list[np.ndarray] = []
        self.crossing = np.zeros(0, bool)
        self.road_in_m = np.zeros(0)
        self.road_out_m = np.zeros(0)
        self.s_m = np.zeros(0)
        self.direction = np.zeros(0)
        self.v0_mps = np.zeros(0)
        self.wait_until_s = np.zeros(0)
        self.height_m = np.zeros(0)
        self.color_rgb = np.zeros((0, 3), np.uint8)
        self._pack()

    def __len__(self) -> int:
        return len(self._paths)

    # ----- spawning -----
    @classmethod
    def spawn(
        cls, town: Town, route_xy_world_m: np.ndarray, config: WalkerConfig | None = None, seed: int = 0
    ) -> Walkers:
        """Place ``num_walkers`` walkers on sidewalks and crossings near the route (crossings on it first)."""
        config = config or WalkerConfig()
        walkers = cls(config, np.random.default_rng([seed, 21]))
        if config.num_walkers == 0:
            return walkers
        paths = walker_paths(town)
        route = np.asarray(route_xy_world_m, np.float64)[::2]
        n_cross = round(config.crossing_fraction * config.num_walkers) if paths.crossings else 0
        for crossing in walkers._pick_crossings(paths.crossings, route, n_cross):
            walkers._add_crossing(crossing)
        walkers._add_sidewalk_walkers(paths.sidewalks, route, config.num_walkers - len(walkers))
        walkers._pack()
        return walkers

    def _pick_crossings(self, crossings: tuple, route: np.ndarray, count: int) -> list:
        """``count`` crossings: those the route passes over first (in random order), then others nearby."""
        if count <= 0:
            return []
        d = np.array([_segment_distance(route, c.a_xy_m, c.b_xy_m) for c in crossings])
        on_route = np.flatnonzero(d < _ROUTE_CROSSING_M)
        near = np.flatnonzero((d >= _ROUTE_CROSSING_M) & (d < self.config.spawn_radius_m))
        order = list(self.rng.permutation(on_route)) + list(self.rng.permutation(near))
        if not order:
            return []
        # more walkers than crossings: up to _PER_CROSSING share one (each with its own start and pauses)
        return [crossings[order[k % len(order)]] for k in range(min(count, _PER_CROSSING * len(order)))]

    def _add_crossing(self, crossing: Any) -> None:
        path = np.stack([crossing.a_xy_m, crossing.b_xy_m])
        at_b = bool(self.rng.integers(2))
        self._append(path, s=crossing.length_m if at_b else 0.0, direction=-1.0 if at_b else 1.0, crossing=True,
                     road=(crossing.road_in_m, crossing.road_out_m))  # fmt: skip

    def _add_sidewalk_walkers(self, sidewalks: tuple, route: np.ndarray, count: int) -> None:
        if count <= 0 or not sidewalks:
            return
        near = []
        for sw in sidewalks:
            sub = sw.xy_m[::4]
            d = np.sqrt(((sub[:, None, :] - route[None]) ** 2).sum(-1)).min(1)
            close = np.flatnonzero(d < self.config.spawn_radius_m)
            if len(close):
                near.append((sw, sw.s_m[::4][close]))
        if not near:
            return
        stretch = self.config.sidewalk_stretch_m
        for _ in range(count):
            sw, s_options = near[int(self.rng.integers(len(near)))]
            center = float(s_options[int(self.rng.integers(len(s_options)))])
            lo, hi = max(0.0, center - 0.5 * stretch), min(float(sw.s_m[-1]), center + 0.5 * stretch)
            keep = (sw.s_m > lo) & (sw.s_m < hi)
            pts = [np.interp(lo, sw.s_m, sw.xy_m[:, 0]), np.interp(lo, sw.s_m, sw.xy_m[:, 1])]
            end = [np.interp(hi, sw.s_m, sw.xy_m[:, 0]), np.interp(hi, sw.s_m, sw.xy_m[:, 1])]
            path = np.vstack([pts, sw.xy_m[keep], end])
            length = float(np.hypot(*np.diff(path, axis=0).T).sum())
            if length < 2.0:
                continue
            self._append(path, s=float(self.rng.uniform(0.0, length)), direction=float(self.rng.choice([-1, 1])),
                         crossing=False, road=(math.nan, math.nan))  # fmt: skip

    def _append(self, path: np.ndarray, *, s: float, direction: float, crossing: bool, road: tuple) -> None:
        cfg, rng = self.config, self.rng
        self._paths.append(path)
        self.crossing = np.append(self.crossing, crossing)
        self.road_in_m = np.append(self.road_in_m, road[0])
        self.road_out_m = np.append(self.road_out_m, road[1])
        self.s_m = np.append(self.s_m, s)
        self.direction = np.append(self.direction, direction)
        self.v0_mps = np.append(self.v0_mps, rng.uniform(*cfg.speed_mps))
        self.wait_until_s = np.append(self.wait_until_s, rng.uniform(0.0, cfg.kerb_wait_s[1]) if crossing else 0.0)
        self.height_m = np.append(self.height_m, rng.uniform(*cfg.height_m))
        self.color_rgb = np.vstack([self.color_rgb, rng.integers(30, 230, size=(1, 3)).astype(np.uint8)])

    def _pack(self) -> None:
        """Pack the paths on one arc-length axis (``base[w] + s``) for vectorised lookups; set ids and poses."""
        w = len(self._paths)
        seg = [np.hypot(*np.diff(p, axis=0).T) for p in self._paths]
        self.path_length_m = np.array([float(s.sum()) for s in seg])
        self._base = np.concatenate([[0.0], np.cumsum(self.path_length_m + 1.0)[:-1]]) if w else np.zeros(0)
        starts = [b + np.concatenate([[0.0], np.cumsum(s)]) for b, s in zip(self._base, seg, strict=True)]
        self._s = np.concatenate(starts) if w else np.zeros(0)
        xy = np.concatenate(self._paths) if w else np.zeros((0, 2))
        self._x, self._y = xy[:, 0], xy[:, 1]
        self.ids = WALKER_ID_BASE + 1 + np.arange(w, dtype=np.int64)
        self.length_m = np.full(w, self.config.length_m)
        self.width_m = np.full(w, self.config.width_m)
        self.speed_mps = np.zeros(w)
        self.on_road = np.zeros(w, bool)
        self._blocked_s = np.zeros(w)  # how long each walker's way has been blocked by a vehicle body
        self.x_m, self.y_m, self.yaw_rad = np.zeros(w), np.zeros(w), np.zeros(w)
        self._update_poses()

    # ----- simulation -----
    def lookup_row(self, row: int, s_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, heading of the path direction) at arc lengths ``s_m`` (K,) of walker ``row``'s path."""
        s = np.asarray(s_m, np.float64)
        return self._lookup(s, np.full(s.shape, row, np.int64))

    def _lookup(self, s_m: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, heading of the path direction) at arc lengths ``s_m`` of each walker's (or ``rows``') path."""
        base, length = (
            (self._base, self.path_length_m) if rows is None else (self._base[rows], self.path_length_m[rows])
        )
        g = base + np.clip(s_m, 0.0, length)
        i = np.clip(np.searchsorted(self._s, g, side="right"), 1, len(self._s) - 1)
        i0 = i - 1
        span = np.maximum(self._s[i] - self._s[i0], 1e-9)
        t = np.clip((g - self._s[i0]) / span, 0.0, 1.0)
        dx, dy = self._x[i] - self._x[i0], self._y[i] - self._y[i0]
        return self._x[i0] + dx * t, self._y[i0] + dy * t, np.arctan2(dy, dx)

    def _update_poses(self) -> None:
        if len(self) == 0:
            return
        self.x_m, self.y_m, heading = self._lookup(self.s_m)
        self.yaw_rad = np.where(self.direction > 0, heading, heading + math.pi)
        on = self.crossing & (self.s_m > self.road_in_m) & (self.s_m < self.road_out_m)
        self.on_road = np.where(self.crossing, on, False)

    def step(self, dt_s: float, vehicles: Any = None) -> None:
        """Advance by ``dt_s`` among ``vehicles``: (x_m, y_m, yaw_rad, speed_mps, length_m, width_m, parked) arrays.

        Parked vehicles block a walker's way but do not keep it on the kerb.
        """
        self.time_s += dt_s
        if len(self) == 0:
            return
        cfg = self.config
        moving = self.time_s >= self.wait_until_s
        ds = self.direction * self.v0_mps * dt_s
        nxt = self.s_m + ds
        # the look for a gap happens _KERB_LOOK_M before the road edge, so a waiting walker stands clear of it
        kerb_in, kerb_out = self.road_in_m - _KERB_LOOK_M, self.road_out_m + _KERB_LOOK_M
        entering = (
            self.crossing
            & moving
            & (
                ((self.direction > 0) & (self.s_m <= kerb_in) & (nxt > kerb_in))
                | ((self.direction < 0) & (self.s_m >= kerb_out) & (nxt < kerb_out))
            )
        )
        if vehicles is not None and len(vehicles[0]):
            if entering.any():
                entering_rows = np.flatnonzero(entering)
                refuse = entering_rows[~self._gap_ok(entering_rows, vehicles)]
                moving[refuse] = False
                self.wait_until_s[refuse] = self.time_s + 0.5  # look again in half a second
            blocked = moving & self.crossing & self._blocked(vehicles)
            self._blocked_s = np.where(blocked, self._blocked_s + dt_s, 0.0)
            # a body that stays in the way (a car that stopped too close) sends the walker back where it came from
            back = self._blocked_s > _GIVE_UP_S
            self.direction = np.where(back, -self.direction, self.direction)
            self._blocked_s[back] = 0.0
            moving &= ~(blocked & ~back)
            nxt = np.where(back, self.s_m - ds, nxt)
        self.s_m = np.where(moving, nxt, self.s_m)
        self.speed_mps = np.where(moving, self.v0_mps, 0.0)
        # path ends: turn round after a pause on the kerb (sidewalk walkers after a short one)
        over = (self.s_m >= self.path_length_m) & (self.direction > 0)
        under = (self.s_m <= 0.0) & (self.direction < 0)
        ends = over | under
        if ends.any():
            self.s_m = np.clip(self.s_m, 0.0, self.path_length_m)
            self.direction = np.where(over, -1.0, np.where(under, 1.0, self.direction))
            lo, hi = cfg.kerb_wait_s
            pause = self.rng.uniform(lo, hi, size=len(self)) * np.where(self.crossing, 1.0, 0.25)
            self.wait_until_s = np.where(ends, self.time_s + pause, self.wait_until_s)
        self._update_poses()

    def _crossing_centre(self, rows: np.ndarray) -> np.ndarray:
        """Middle of the road part (R, 2) of the crossings of ``rows``."""
        x, y, _ = self._lookup(0.5 * (self.road_in_m + self.road_out_m))
        return np.stack([x[rows], y[rows]], -1)

    def _gap_ok(self, rows: np.ndarray, vehicles: Any) -> np.ndarray:
        """(R,) whether each walker of ``rows`` may step onto the road: no vehicle near or due soon."""
        cfg = self.config
        vx, vy, vyaw, vv = (np.asarray(a, np.float64) for a in vehicles[:4])
        live = ~np.asarray(vehicles[6], bool) if len(vehicles) > 6 else np.ones(len(vx), bool)
        vx, vy, vyaw, vv = vx[live], vy[live], vyaw[live], vv[live]
        c = self._crossing_centre(rows)  # (R, 2)
        half_road = 0.5 * (self.road_out_m[rows] - self.road_in_m[rows])  # (R,)
        rel_x, rel_y = c[:, None, 0] - vx[None], c[:, None, 1] - vy[None]  # (R, V)
        dist = np.hypot(rel_x, rel_y)
        along = rel_x * np.cos(vyaw)[None] + rel_y * np.sin(vyaw)[None]
        lateral = np.abs(rel_y * np.cos(vyaw)[None] - rel_x * np.sin(vyaw)[None])
        due = (along > -2.0) & (lateral < half_road[:, None] + 3.0)
        due &= along / np.maximum(np.abs(vv)[None], 0.5) < cfg.crossing_gap_s
        near = dist < cfg.min_vehicle_distance_m + half_road[:, None]
        return ~(due | near).any(axis=1)

    def _blocked(self, vehicles: Any) -> np.ndarray:
        """(W,) walkers whose next 0.8 m would enter a vehicle body (grown by 0.3 m)."""
        vx, vy, vyaw, _, vl, vw = (np.asarray(a, np.float64) for a in vehicles[:6])
        probe_s = self.s_m + self.direction * 0.8
        px, py, _ = self._lookup(probe_s)
        rel_x, rel_y = px[:, None] - vx[None], py[:, None] - vy[None]
        c, s = np.cos(vyaw)[None], np.sin(vyaw)[None]
        lon = np.abs(rel_x * c + rel_y * s)
        lat = np.abs(rel_y * c - rel_x * s)
        inside = (lon < 0.5 * vl[None] + 0.3) & (lat < 0.5 * vw[None] + 0.3)
        return inside.any(axis=1)

    def obstacle_boxes(self, lead_time_s: float = 1.5) -> tuple[np.ndarray, ...]:
        """Boxes (x, y, yaw, length, width) for traffic perception: walkers on the road grow along their way.

        A walker stepping into a lane is seen ``lead_time_s`` of its walk ahead, so vehicles brake before it
        is in front of them rather than when it already is.
        """
        reach = np.where(self.on_road | (self.crossing & (self.speed_mps > 0)), self.v0_mps * lead_time_s, 0.0)
        cx = self.x_m + 0.5 * reach * np.cos(self.yaw_rad)
        cy = self.y_m + 0.5 * reach * np.sin(self.yaw_rad)
        return cx, cy, self.yaw_rad, self.length_m + reach, self.width_m


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Smallest distance from points (P, 2) to the segment a-b."""
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return float(np.hypot(*(points - (a + t[:, None] * ab)).T).min())
