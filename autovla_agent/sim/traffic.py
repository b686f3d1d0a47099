"""Background traffic: vehicles on the town's lanes driven by the Intelligent Driver Model, vectorised with numpy.

Each moving vehicle sits on the centre line of a lane of the ``Town`` topology (bounding-box centre at arc
length ``s`` of ``lane_seq[:, 0]``) and carries the next ``PATH_LANES - 1`` lanes it will take; at a lane end it
moves to the next one and draws a random successor for the far end (seeded ``numpy.random.Generator``, so runs
repeat exactly). Every tick, for each vehicle, points of its path ahead are sampled; every other vehicle and the
ego whose box reaches into that corridor is a leader candidate and the nearest one is the IDM leader. Desired
speed drops before curves (lateral acceleration limit). Where two vehicles block each other's corridor head-on
or crosswise (crossing, merging), the one nearer the conflict goes first (ties: lower id); traffic always
yields to the ego.

Stopped obstacles: a route's ``<obstacles>`` are placed in their lane and held for ``hold_s`` (parked when
infinite); ``TrafficConfig.num_parked`` adds vehicles parked at the kerb along the route, just outside the lane.
All arrays are world frame (x east, y north, yaw CCW rad). No carla call happens after ``Traffic.spawn``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autovla_agent.sim.lane_arrays import lane_arrays
from autovla_agent.sim.town import Town

logger = logging.getLogger(__name__)

__all__ = ["PATH_LANES", "Traffic", "TrafficConfig"]

PATH_LANES = 6  # lanes a vehicle knows ahead (current + 5 chosen)
_EGO_ID = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class TrafficConfig:
    """Background traffic: count, placement and IDM parameters (SI units)."""

    num_vehicles: int = 20
    num_parked: int = 0  # vehicles parked at the kerb along the route (outside the lane)
    spawn_radius_m: float = 120.0  # spawn on lanes that come this close to the route
    spawn_spacing_m: float = 12.0  # spawn slots along a lane
    min_ego_distance_m: float = 25.0  # no spawn this close to the ego's start
    recycle_distance_m: float = 160.0  # a vehicle this far from the ego respawns near it (0: never)
    desired_speed_mps: tuple[float, float] = (6.0, 8.5)  # uniform range per vehicle (Town01/02 limit 30 km/h)
    max_accel_mps2: float = 1.5  # IDM a
    comfort_decel_mps2: float = 2.0  # IDM b
    max_decel_mps2: float = 8.0  # hard clamp of IDM braking
    time_headway_s: float = 1.2  # IDM T
    min_gap_m: float = 2.5  # IDM s0
    max_lateral_accel_mps2: float = 2.0  # curve speed limit
    perception_period_ticks: int = 2  # leader search every N ticks (10 Hz at 20 Hz); gaps propagated between
    lookahead_m: float = 40.0
    sample_spacing_m: float = 2.5
    vehicle_length_m: tuple[float, float] = (4.2, 5.2)
    vehicle_width_m: tuple[float, float] = (1.8, 2.1)
    vehicle_height_m: tuple[float, float] = (1.4, 1.7)

    def __post_init__(self) -> None:
        """Validate counts and ranges."""
        if self.num_vehicles < 0 or self.num_parked < 0:
            raise ValueError("TrafficConfig.num_vehicles and num_parked must be >= 0")
        if self.perception_period_ticks < 1:
            raise ValueError("TrafficConfig.perception_period_ticks must be >= 1")
        for name in ("desired_speed_mps", "vehicle_length_m", "vehicle_width_m", "vehicle_height_m"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ValueError(
                    f"TrafficConfig.{name}={getattr(self, name)} must be (low, high) with 0 <= low <= high"
                )
        for name in (
            "spawn_spacing_m",
            "max_accel_mps2",
            "comfort_decel_mps2",
            "max_decel_mps2",
            "time_headway_s",
            "lookahead_m",
            "sample_spacing_m",
            "max_lateral_accel_mps2",
        ):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"TrafficConfig.{name} must be > 0, got {getattr(self, name)!r}")


class Traffic:
    """N background vehicles as parallel arrays (world frame); ids 1..N (the ego is 0).

    Public arrays (N,): ``ids``, ``x_m``, ``y_m``, ``yaw_rad``, ``speed_mps``, ``accel_mps2``, ``length_m``,
    ``width_m``, ``height_m``, ``parked`` (static obstacle), ``color_rgb`` (N, 3) uint8.
    """

    def __init__(self, town: Town, config: TrafficConfig, rng: np.random.Generator) -> None:
        self.town = town
        self.config = config
        self.rng = rng
        self.lanes = lane_arrays(town)
        self.time_s = 0.0
        self._ticks = 0
        n = 0
        self.ids = np.zeros(n, np.int64)
        self.lane_seq = np.zeros((n, PATH_LANES), np.int64)
        self.s_m = np.zeros(n)
        self.speed_mps = np.zeros(n)
        self.accel_mps2 = np.zeros(n)
        self.v0_mps = np.zeros(n)
        self.length_m = np.zeros(n)
        self.width_m = np.zeros(n)
        self.height_m = np.zeros(n)
        self.on_lane = np.zeros(n, bool)
        self.parked = np.zeros(n, bool)
        self.hold_until_s = np.zeros(n)
        self.x_m = np.zeros(n)
        self.y_m = np.zeros(n)
        self.yaw_rad = np.zeros(n)
        self.color_rgb = np.zeros((n, 3), np.uint8)
        self._lead_gap = np.zeros(n)  # perceived leader gap (m), inf: none
        self._lead_ref = np.zeros(n, np.int64)  # leader id (0: ego, -1: none or a junction stop point)
        self._lead_cos = np.zeros(n)  # cos of the leader's heading relative to the path
        self._v_allow = np.zeros(n)  # curve speed limit (m/s)
        self._yield_to = np.zeros(n, np.int64)  # id each vehicle gives way to at a junction (0: ego), -1: none
        self._ego_speed: float | None = None
        self._loops: dict[int, tuple[int, ...]] = {}  # row -> closed lane cycle it follows
        self._route_xy: np.ndarray | None = None
        self._route_s: np.ndarray | None = None
        self._run_lane = np.zeros(0, np.int64)  # the route's lanes in order (consecutive runs)
        self._run_start_s = np.zeros(0)  # route arc length where each run's lane starts (may be < 0)
        self._run_of_point = np.zeros(0, np.int64)  # route point -> run
        self._ego_route_idx = 0

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def yield_to_id(self) -> np.ndarray:
        """(N,) id of the vehicle each one gives way to at a junction conflict (0: the ego), -1 when none."""
        return self._yield_to.copy()

    # ----- spawning -----
    @classmethod
    def spawn(cls, town: Town, route: Any, config: TrafficConfig | None = None, seed: int = 0) -> Traffic:
        """Spawn the route's obstacles, ``num_parked`` kerb-parked and ``num_vehicles`` moving vehicles near it."""
        config = config or TrafficConfig()
        traffic = cls(town, config, np.random.default_rng(seed))
        traffic._route_xy = np.asarray(route.xy_world_m)
        traffic._set_route_lanes(route)
        for ob in getattr(route, "obstacles", ()):
            traffic._add_obstacle(ob)
        traffic._add_kerb_parked(config.num_parked)
        traffic._update_poses()  # obstacles' poses must be known before free slots are searched
        ego_xy = traffic._route_xy[0]
        slots = traffic._free_slots(ego_xy, traffic._route_xy, config.spawn_radius_m, config.min_ego_distance_m)
        if len(slots) < config.num_vehicles:
            logger.warning("only %d spawn slots near route for %d vehicles", len(slots), config.num_vehicles)
        for lane, s in slots[: config.num_vehicles]:
            traffic.add_vehicle(lane, s)
        traffic._update_poses()
        return traffic

    def _set_route_lanes(self, route: Any) -> None:
        """Record the ego route's lane runs so the ego takes part in junction conflicts like a lane vehicle."""
        lanes = np.asarray(getattr(route, "lanes", np.zeros(0)), np.int64)
        if len(lanes) == 0:
            return
        self._route_s = np.asarray(route.s_m, dtype=np.float64)
        first = np.concatenate([[0], np.nonzero(np.diff(lanes))[0] + 1])
        self._run_lane = lanes[first]
        self._run_start_s = np.array(
            [self._route_s[k] - self.town.project(int(lanes[k]), self._route_xy[k]).s_m for k in first]
        )
        self._run_of_point = np.cumsum(np.isin(np.arange(len(lanes)), first)) - 1

    def _ego_lanes(self, ego_box: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """The ego's next ``PATH_LANES`` route lanes and the distance from its centre to each lane's start.

        None when the ego is more than 3 m off its route (then only the corridor test sees it).
        """
        if ego_box is None or self._route_xy is None or len(self._run_lane) == 0:
            return None
        lo = max(0, self._ego_route_idx - 5)
        window = self._route_xy[lo : self._ego_route_idx + 60]
        d = np.hypot(window[:, 0] - ego_box[0], window[:, 1] - ego_box[1])
        k = int(np.argmin(d))
        if d[k] > 3.0:
            return None
        self._ego_route_idx = lo + k
        run = int(self._run_of_point[self._ego_route_idx])
        lanes = self._run_lane[run : run + PATH_LANES]
        start = self._run_start_s[run : run + PATH_LANES] - self._route_s[self._ego_route_idx]
        if len(lanes) < PATH_LANES:  # the route ends: pad with a lane that conflicts with nothing far away
            pad = PATH_LANES - len(lanes)
            lanes = np.concatenate([lanes, np.full(pad, lanes[-1])])
            start = np.concatenate([start, np.full(pad, np.inf)])
        return lanes, start

    def _append(
        self,
        *,
        lane_seq: np.ndarray,
        s: float,
        speed: float,
        v0: float,
        on_lane: bool,
        parked: bool,
        hold_until: float,
        pose: tuple[float, float, float] | None = None,
    ) -> int:
        """Append one vehicle with random size and colour; return its id."""
        cfg, rng = self.config, self.rng
        vid = len(self) + 1
        size = (
            rng.uniform(*cfg.vehicle_length_m),
            rng.uniform(*cfg.vehicle_width_m),
            rng.uniform(*cfg.vehicle_height_m),
        )
        color = rng.integers(40, 230, size=3).astype(np.uint8)
        x, y, yaw = pose if pose is not None else (0.0, 0.0, 0.0)
        for name, value in (
            ("ids", vid),
            ("s_m", s),
            ("speed_mps", speed),
            ("accel_mps2", 0.0),
            ("v0_mps", v0),
            ("length_m", size[0]),
            ("width_m", size[1]),
            ("height_m", size[2]),
            ("on_lane", on_lane),
            ("parked", parked),
            ("hold_until_s", hold_until),
            ("x_m", x),
            ("y_m", y),
            ("yaw_rad", yaw),
            ("_lead_gap", math.inf),
            ("_lead_ref", -1),
            ("_lead_cos", 0.0),
            ("_v_allow", v0),
            ("_yield_to", -1),
        ):
            arr = getattr(self, name)
            setattr(self, name, np.concatenate([arr, np.array([value], dtype=arr.dtype)]))
        self.lane_seq = np.vstack([self.lane_seq, lane_seq[None]])
        self.color_rgb = np.vstack([self.color_rgb, color[None]])
        return vid

    def _lane_sequence(self, lane: int, loop: tuple[int, ...] | None = None) -> np.ndarray:
        """``lane`` followed by ``PATH_LANES - 1`` successors (random, or along ``loop``)."""
        seq = [lane]
        for _ in range(PATH_LANES - 1):
            seq.append(self._next_lane(seq[-1], loop))
        return np.array(seq, np.int64)

    def _next_lane(self, lane: int, loop: tuple[int, ...] | None = None) -> int:
        """The lane after ``lane``: the next one of a closed ``loop``, else a successor drawn uniformly.

        A dead end keeps the lane (none exists in the shipped towns).
        """
        if loop is not None:
            return loop[(loop.index(lane) + 1) % len(loop)]
        succ = self.lanes.successors[lane]
        return int(succ[self.rng.integers(len(succ))]) if succ else lane

    def add_vehicle(
        self, lane: int, s_m: float, speed_mps: float | None = None, loop: tuple[int, ...] | None = None
    ) -> int:
        """Add a moving IDM vehicle at arc length ``s_m`` of ``lane``; return its id.

        ``loop``: a closed cycle of lane indices (each the successor of the previous, the last of the first)
        containing ``lane`` that the vehicle follows forever instead of choosing at random.
        """
        if loop is not None:
            loop = tuple(int(v) for v in loop)
            pairs = zip(loop, loop[1:] + loop[:1], strict=True)
            if lane not in loop or any(b not in self.lanes.successors[a] for a, b in pairs):
                raise ValueError(f"loop {loop} is not a closed chain of successor lanes containing lane {lane}")
        v0 = float(self.rng.uniform(*self.config.desired_speed_mps))
        speed = 0.5 * v0 if speed_mps is None else float(speed_mps)
        vid = self._append(
            lane_seq=self._lane_sequence(lane, loop),
            s=float(s_m),
            speed=speed,
            v0=v0,
            on_lane=True,
            parked=False,
            hold_until=-math.inf,
        )
        if loop is not None:
            self._loops[vid - 1] = loop
        return vid

    def _add_obstacle(self, ob: Any) -> None:
        """A route obstacle: held in its lane for ``hold_s`` (parked forever when inf), or static off the lanes."""
        from autovla_agent.sensors import frames

        xy = frames.carla_to_world_xy((ob.x, ob.y))
        yaw = float(frames.carla_yaw_deg_to_world_rad(ob.yaw_deg))
        lp = self.town.locate(xy, yaw, max_distance_m=1.5)
        parked = math.isinf(ob.hold_s)
        if lp is None:
            self._append(
                lane_seq=np.zeros(PATH_LANES, np.int64),
                s=0.0,
                speed=0.0,
                v0=0.0,
                on_lane=False,
                parked=True,
                hold_until=math.inf,
                pose=(float(xy[0]), float(xy[1]), yaw),
            )
            return
        v0 = float(self.rng.uniform(*self.config.desired_speed_mps))
        self._append(
            lane_seq=self._lane_sequence(lp.lane),
            s=lp.s_m,
            speed=0.0,
            v0=v0,
            on_lane=True,
            parked=parked,
            hold_until=float(ob.hold_s),
        )

    def _add_kerb_parked(self, count: int) -> None:
        """Park ``count`` vehicles at the kerb right of the route's road lanes, spread along the route."""
        if count <= 0:
            return
        route_xy = self._route_xy
        cands = []
        for i in range(30, len(route_xy) - 10, 15):
            lp = self.town.locate(route_xy[i])
            if lp is None or self.town.lanes[lp.lane].is_junction or lp.s_m < 6.0:
                continue
            ln = self.town.lanes[lp.lane]
            if ln.length_m - lp.s_m < 6.0:
                continue
            cands.append((lp.lane, lp.s_m))
        order = self.rng.permutation(len(cands))[:count]
        for k in sorted(order):
            lane, s = cands[k]
            ln = self.town.lanes[lane]
            xy, yaw = ln.interpolate(s)
            width = float(np.interp(s, ln.s_m, ln.width_m))
            off = 0.5 * width + 0.15 + 0.5 * self.config.vehicle_width_m[1]
            pose = (float(xy[0] + math.sin(yaw) * off), float(xy[1] - math.cos(yaw) * off), float(yaw))
            self._append(
                lane_seq=np.zeros(PATH_LANES, np.int64),
                s=0.0,
                speed=0.0,
                v0=0.0,
                on_lane=False,
                parked=True,
                hold_until=math.inf,
                pose=pose,
            )

    def _free_slots(
        self, ego_xy: np.ndarray, near_xy: np.ndarray, radius_m: float, min_ego_m: float, max_ego_m: float = math.inf
    ) -> list[tuple[int, float]]:
        """Shuffled spawn slots (lane, s) on road lanes near ``near_xy`` and clear of the ego and other vehicles."""
        lane, s, xy = self.lanes.slots(self.config.spawn_spacing_m)
        sub = near_xy[:: max(1, len(near_xy) // 200)]
        d_near = np.full(len(xy), np.inf)
        for chunk in np.array_split(sub, max(1, len(sub) // 50)):  # bounded memory for long routes
            d_near = np.minimum(d_near, np.sqrt(((xy[:, None, :] - chunk[None]) ** 2).sum(-1)).min(1))
        d_ego = np.hypot(xy[:, 0] - ego_xy[0], xy[:, 1] - ego_xy[1])
        ok = (d_near <= radius_m) & (d_ego >= min_ego_m) & (d_ego <= max_ego_m)
        if len(self):
            occupied = np.stack([self.x_m, self.y_m], -1)
            cand = np.nonzero(ok)[0]
            if len(cand):
                d_occ = np.sqrt(((xy[cand, None, :] - occupied[None]) ** 2).sum(-1)).min(1)
                ok[cand[d_occ < 10.0]] = False
        cand = np.nonzero(ok)[0]
        order = self.rng.permutation(len(cand))
        return [(int(lane[cand[i]]), float(s[cand[i]])) for i in order]

    # ----- simulation -----
    def _update_poses(self) -> None:
        """Box-centre poses of the lane-bound vehicles from (lane, s)."""
        m = self.on_lane
        if not m.any():
            return
        x, y, c, s = self.lanes.lookup(self.lane_seq[m, 0], self.s_m[m], curvature=False)
        self.x_m[m], self.y_m[m], self.yaw_rad[m] = x, y, np.arctan2(s, c)

    def step(self, dt_s: float, ego_box: tuple[float, float, float, float, float, float] | None = None) -> None:
        """Advance all vehicles by ``dt_s``; ``ego_box`` = (x, y, yaw, speed, length, width) of the ego centre."""
        self.time_s += dt_s
        self._ticks += 1
        self._ego_speed = None if ego_box is None else float(ego_box[3])
        idx = np.nonzero(self.on_lane)[0]
        if len(idx):
            if self._ticks % self.config.perception_period_ticks == 1 % self.config.perception_period_ticks:
                self._perceive(idx, ego_box)
            else:  # between perception ticks the leader gaps follow the relative motion
                self._propagate_gaps(idx, ego_box, dt_s)
            accel = self._idm(idx)
            v = self.speed_mps[idx]
            v_new = np.maximum(v + accel * dt_s, 0.0)
            self.s_m[idx] += 0.5 * (v + v_new) * dt_s
            self.accel_mps2[idx] = (v_new - v) / dt_s
            self.speed_mps[idx] = v_new
            self._advance_lanes(idx)
            self._update_poses()
        if self.config.recycle_distance_m > 0 and ego_box is not None and self._ticks % 20 == 0:
            self._recycle(np.array(ego_box[:2]))

    def _perceive(self, idx: np.ndarray, ego_box: Any) -> None:
        """Find each vehicle's leader (path corridor, junction conflicts) and its curve speed limit."""
        cfg, la = self.config, self.lanes
        n = len(idx)
        seq = self.lane_seq[idx]
        s0 = self.s_m[idx]
        half_len = 0.5 * self.length_m[idx]
        # path samples ahead of the front bumper, across up to PATH_LANES lanes
        k = np.arange(0.0, cfg.lookahead_m + 1e-9, cfg.sample_spacing_m)
        d = half_len[:, None] + k[None, :]  # (n, K) distance from the box centre along the path
        lane_len = la.length[seq]  # (n, L)
        start = np.concatenate([np.zeros((n, 1)), np.cumsum(lane_len, 1)[:, :-1]], 1) - s0[:, None]
        m = np.minimum((d[:, :, None] >= start[:, None, 1:]).sum(-1), PATH_LANES - 1)
        lane_k = np.take_along_axis(seq, m, 1)
        s_k = d - np.take_along_axis(start, m, 1)
        px, py, pc, ps, pk = la.lookup(lane_k, s_k)
        # obstacles: every vehicle plus the ego
        ox, oy, oyaw, ov = self.x_m, self.y_m, self.yaw_rad, self.speed_mps
        ol, ow, oid = self.length_m, self.width_m, self.ids
        if ego_box is not None:
            ex, ey, eyaw, ev, el, ew = ego_box
            ox, oy, oyaw, ov = (np.append(ox, ex), np.append(oy, ey), np.append(oyaw, eyaw), np.append(ov, ev))
            ol, ow, oid = np.append(ol, el), np.append(ow, ew), np.append(oid, _EGO_ID)
        # candidate pairs (vehicle r, obstacle c) within reach, then the corridor test on their samples only
        reach = cfg.lookahead_m + half_len + 0.5 * ol.max() + 1.0
        rel_x, rel_y = ox[None, :] - self.x_m[idx][:, None], oy[None, :] - self.y_m[idx][:, None]
        ahead = rel_x * np.cos(self.yaw_rad[idx])[:, None] + rel_y * np.sin(self.yaw_rad[idx])[:, None]
        cand = (rel_x**2 + rel_y**2 < (reach**2)[:, None]) & (ahead > -0.5 * ol[None, :] - 1.0)
        cand &= oid[None, :] != self.ids[idx][:, None]
        r, c = np.nonzero(cand)
        gap = np.full((n, len(ox)), np.inf)
        cos_pair = np.ones((n, len(ox)))
        if len(r):
            dx, dy = ox[c][:, None] - px[r], oy[c][:, None] - py[r]  # (P, K)
            pcr, psr = pc[r], ps[r]
            along = dx * pcr + dy * psr
            lat = dy * pcr - dx * psr
            cos_rel = np.cos(oyaw[c])[:, None] * pcr + np.sin(oyaw[c])[:, None] * psr
            abs_cos = np.abs(cos_rel)
            sin_rel = np.sqrt(np.maximum(1.0 - cos_rel**2, 0.0))
            lat_ext = 0.5 * (ow[c][:, None] * abs_cos + ol[c][:, None] * sin_rel)
            lon_ext = 0.5 * (ol[c][:, None] * abs_cos + ow[c][:, None] * sin_rel)
            half_w = 0.5 * self.width_m[idx][r][:, None]
            hit = (np.abs(lat) < half_w + lat_ext + 0.2) & (np.abs(along) <= 0.5 * cfg.sample_spacing_m + lon_ext)
            g = np.where(hit, d[r] + along - lon_ext - half_len[r][:, None], np.inf).min(1)
            gap[r, c] = np.maximum(g, 0.0)
            cos_pair[r, c] = cos_rel.mean(1)
        crossing = cos_pair < 0.7  # (n, M) not following the same way
        # mutual blocking with crossing/merging/opposing paths: the one nearer the conflict goes first
        ignore = self._goes_first(idx, gap, oid) & crossing
        gap = np.where(ignore, np.inf, gap)
        lead = np.argmin(gap, 1)
        lead_gap = gap[np.arange(n), lead]
        # junction conflicts: stop before the conflict zone of a vehicle that gets there first
        yield_gap = self._yield_gap(idx, seq, start, half_len, ego_box)
        use_yield = yield_gap < lead_gap
        lead_gap = np.where(use_yield, yield_gap, lead_gap)
        # desired speed, lowered before curves: v_allow(d) = sqrt(v_curve^2 + 2 b d)
        v_curve2 = cfg.max_lateral_accel_mps2 / np.maximum(pk, 1e-4)
        self._v_allow[idx] = np.sqrt(v_curve2 + 2.0 * cfg.comfort_decel_mps2 * k[None, :]).min(1)
        self._lead_gap[idx] = lead_gap
        self._lead_ref[idx] = np.where(use_yield | ~np.isfinite(lead_gap), -1, oid[lead])
        self._lead_cos[idx] = np.where(use_yield, 0.0, np.maximum(cos_pair[np.arange(n), lead], 0.0))

    def _propagate_gaps(self, idx: np.ndarray, ego_box: Any, dt_s: float) -> None:
        """Advance the perceived leader gaps by the relative speed over ``dt_s`` (no new leader search)."""
        ref = self._lead_ref[idx]
        speeds = np.append(self.speed_mps, ego_box[3] if ego_box is not None else 0.0)
        lead_v = np.where(ref > 0, speeds[np.maximum(ref, 1) - 1], np.where(ref == 0, speeds[-1], 0.0))
        self._lead_gap[idx] -= (self.speed_mps[idx] - lead_v * self._lead_cos[idx]) * dt_s

    def _idm(self, idx: np.ndarray) -> np.ndarray:
        """IDM accelerations (len(idx),) from the perceived leaders; held/parked vehicles brake to a stop."""
        cfg = self.config
        ref, lead_gap = self._lead_ref[idx], self._lead_gap[idx]
        speeds = self.speed_mps
        lead_v = np.where(ref > 0, speeds[np.maximum(ref, 1) - 1], 0.0) * self._lead_cos[idx]
        if self._ego_speed is not None:
            lead_v = np.where(ref == 0, self._ego_speed * self._lead_cos[idx], lead_v)
        v0 = np.minimum(self.v0_mps[idx], self._v_allow[idx])
        v = self.speed_mps[idx]
        a, b = cfg.max_accel_mps2, cfg.comfort_decel_mps2
        s_star = cfg.min_gap_m + np.maximum(0.0, v * cfg.time_headway_s + v * (v - lead_v) / (2 * math.sqrt(a * b)))
        interaction = np.where(np.isfinite(lead_gap), (s_star / np.maximum(lead_gap, 0.1)) ** 2, 0.0)
        free = (v / np.maximum(v0, 0.1)) ** 4
        accel = a * (1.0 - free - interaction)
        held = self.parked[idx] | (self.hold_until_s[idx] > self.time_s)
        accel = np.where(held, -cfg.max_decel_mps2, accel)
        return np.minimum(np.maximum(accel, -cfg.max_decel_mps2), a)

    def _yield_gap(
        self, idx: np.ndarray, seq: np.ndarray, start: np.ndarray, half_len: np.ndarray, ego_box: Any = None
    ) -> np.ndarray:
        """(n,) distance from each front bumper to the entry of a junction conflict it must yield at (inf: none).

        Vehicle i yields to j when their upcoming junction lanes conflict, j has not cleared the conflict, i can
        still stop before it comfortably, and j arrives first (time to the conflict; ties: lower id). The ego
        takes part through its route lanes (id 0: it wins ties); only traffic yields here.
        """
        cfg, la = self.config, self.lanes
        n = len(idx)
        self._yield_to[idx] = -1
        v = self.speed_mps[idx]
        ids = self.ids[idx]
        ego = self._ego_lanes(ego_box)
        if ego is not None:
            seq = np.vstack([seq, ego[0][None]])
            start = np.vstack([start, ego[1][None]])
            half_len = np.append(half_len, 0.5 * ego_box[4])
            v = np.append(v, max(float(ego_box[3]), 0.0))
            ids = np.append(ids, _EGO_ID)
        near = la.is_junction[seq] & (start < cfg.lookahead_m)  # upcoming junction lanes (rows, L)
        rows, cols = np.nonzero(near)
        out = np.full(n, np.inf)
        if len(rows) < 2:
            return out
        lane = seq[rows, cols]
        s_in_ab = la.conflict_in[lane[:, None], lane[None, :]]  # (A, A)
        p, q = np.nonzero(~np.isnan(s_in_ab))
        if len(p) == 0:
            return out
        keep = rows[p] < n  # only traffic yields; the ego's own decisions are the agent's
        p, q = p[keep], q[keep]
        r, j = rows[p], rows[q]
        d_i = start[r, cols[p]] + s_in_ab[p, q] - half_len[r]
        d_j = start[j, cols[q]] + la.conflict_in[lane[q], lane[p]] - half_len[j]
        cleared_j = start[j, cols[q]] + la.conflict_out[lane[q], lane[p]] - half_len[j] < -2.0 * half_len[j]
        v_i, v_j = v[r], v[j]
        t_i = d_i / np.maximum(v_i, 1.0)
        t_j = np.where(d_j < 0.0, -1.0, d_j / np.maximum(v_j, 1.0))
        j_first = (t_j < t_i) | ((t_j == t_i) & (ids[j] < ids[r]))
        can_stop = d_i > v_i**2 / (2.0 * cfg.max_decel_mps2 * 0.75)
        must = (r != j) & ~cleared_j & j_first & can_stop & (d_i < cfg.lookahead_m) & (d_j < cfg.lookahead_m)
        r_m, gap_m, who = r[must], np.maximum(d_i[must] - 1.0, 0.0), ids[j[must]]
        order = np.lexsort((gap_m, r_m))  # per yielding vehicle, the nearest conflict first
        first = order[np.concatenate([[True], np.diff(r_m[order]) != 0])] if len(order) else order
        out[r_m[first]] = gap_m[first]
        self._yield_to[idx] = -1
        self._yield_to[idx[r_m[first]]] = who[first]
        return out

    def _goes_first(self, idx: np.ndarray, gap: np.ndarray, oid: np.ndarray) -> np.ndarray:
        """(n, M) where vehicle idx[r] and lane vehicle j block each other and r is nearer the conflict.

        Both bodies reach into the other's path; the one with the shorter gap is further along and goes first,
        ties go to the lower id. The ego is never in this set: traffic always yields to it.
        """
        n_all = len(self)
        full = np.full((n_all, gap.shape[1]), np.inf)
        full[idx] = gap
        mine = gap[:, :n_all]
        theirs = full[:n_all, idx].T  # gap of vehicle j to vehicle idx[r]
        mutual = np.isfinite(mine) & np.isfinite(theirs)
        diff = np.zeros_like(mine)
        diff[mutual] = mine[mutual] - theirs[mutual]
        first = (diff < -0.05) | ((np.abs(diff) <= 0.05) & (self.ids[idx][:, None] < oid[None, :n_all]))
        out = np.zeros_like(gap, dtype=bool)
        out[:, :n_all] = mutual & first
        return out

    def _advance_lanes(self, idx: np.ndarray) -> None:
        """Move vehicles past their lane end onto the next lane of their sequence (drawing a new far successor)."""
        over = idx[self.s_m[idx] >= self.lanes.length[self.lane_seq[idx, 0]]]
        for i in over:
            while self.s_m[i] >= self.lanes.length[self.lane_seq[i, 0]]:
                self.s_m[i] -= self.lanes.length[self.lane_seq[i, 0]]
                self.lane_seq[i, :-1] = self.lane_seq[i, 1:]
                self.lane_seq[i, -1] = self._next_lane(int(self.lane_seq[i, -2]), self._loops.get(int(i)))

    def _recycle(self, ego_xy: np.ndarray) -> None:
        """Respawn moving vehicles that drove too far from the ego on a free slot near it (not too close)."""
        cfg = self.config
        far = np.nonzero(
            self.on_lane
            & ~self.parked
            & (np.hypot(self.x_m - ego_xy[0], self.y_m - ego_xy[1]) > cfg.recycle_distance_m)
        )[0]
        if len(far) == 0:
            return
        slots = self._free_slots(ego_xy, ego_xy[None], 0.75 * cfg.recycle_distance_m, 60.0)
        far = np.array([i for i in far if int(i) not in self._loops], np.int64)
        for i, (lane, s) in zip(far, slots, strict=False):
            self.lane_seq[i] = self._lane_sequence(lane)
            self.s_m[i] = s
            self.speed_mps[i] = 0.5 * self.v0_mps[i]
            self.accel_mps2[i] = 0.0
        self._update_poses()
