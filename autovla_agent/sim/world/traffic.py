"""Background traffic: vehicles on the town's lanes driven by the Intelligent Driver Model, vectorised with numpy.

Each moving vehicle sits on the centre line of a lane of the ``Town`` topology (bounding-box centre at arc
length ``s`` of ``lane_seq[:, 0]``) and carries the next ``PATH_LANES - 1`` lanes it will take; at a lane end it
moves to the next one and draws a random successor for the far end (seeded ``numpy.random.Generator``, so runs
repeat exactly). Every tick, for each vehicle, points of its path ahead are sampled; every other vehicle and the
ego whose box reaches into that corridor is a leader candidate and the nearest one is the IDM leader. Desired
speed drops before curves (lateral acceleration limit). Where two vehicles block each other's corridor head-on
or crosswise (crossing, merging), the one nearer the conflict goes first (ties: lower id); traffic always
yields to the ego. At junctions, a vehicle stops before the conflict zone of crossing or merging lanes for one
that gets there first (the ego included, through its route). Signals (``rules``, set by the world): a vehicle
stops at the line of a red or yellow light it can still stop for and stands at stop signs before going on
(``traffic_signals.py``); its desired speed scales with the speed limit in force. Pedestrians in a vehicle's
corridor (seen a little ahead along their way) are standing obstacles. The perception lives in
``traffic_perception.py``, the spawn placement in ``traffic_spawn.py``, the IDM parameters and law in
``traffic_model.py``.

Stopped obstacles: a route's ``<obstacles>`` are placed in their lane and held for ``hold_s`` (parked when
infinite); ``TrafficConfig.num_parked`` adds vehicles parked at the kerb along the route, just outside the lane.
All arrays are world frame (x east, y north, yaw CCW rad). No carla call happens after ``Traffic.spawn``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from autovla_agent.sim.world.lane_arrays import lane_arrays
from autovla_agent.sim.world.town import Town
from autovla_agent.sim.world.traffic_model import TrafficConfig, idm_acceleration
from autovla_agent.sim.world.traffic_perception import (
    EGO_ID,
    Boxes,
    EgoRouteLanes,
    corridor_gaps,
    goes_first,
    junction_yield_with_ego,
    path_ahead,
)
from autovla_agent.sim.world.traffic_signals import SignalObedience
from autovla_agent.sim.world.traffic_spawn import free_slots, kerb_parking_poses, obstacle_placement

logger = logging.getLogger(__name__)

__all__ = ["PATH_LANES", "Traffic"]

PATH_LANES = 6  # lanes a vehicle knows ahead (current + 5 chosen)


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
        self._ego_route: EgoRouteLanes | None = None  # the ego's route lanes, for junction conflicts
        self._speed_scale = np.zeros(n)  # desired-speed factor of the speed limit in force
        self.rules: SignalObedience | None = None  # lights, stop signs and speed limits (None: none)
        self._walkers: Any = None  # pedestrians seen as standing obstacles (``Walkers.obstacle_boxes``)

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
        traffic._ego_route = EgoRouteLanes.of_route(town, route, PATH_LANES)
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
            ("_speed_scale", 1.0),
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
        lane_s, pose = obstacle_placement(self.town, ob)
        if lane_s is None:
            self._append_parked(pose)
            return
        v0 = float(self.rng.uniform(*self.config.desired_speed_mps))
        self._append(
            lane_seq=self._lane_sequence(lane_s[0]),
            s=lane_s[1],
            speed=0.0,
            v0=v0,
            on_lane=True,
            parked=math.isinf(ob.hold_s),
            hold_until=float(ob.hold_s),
        )

    def _add_kerb_parked(self, count: int) -> None:
        """Park ``count`` vehicles at the kerb right of the route's road lanes, spread along the route."""
        for pose in kerb_parking_poses(self.town, self._route_xy, count, self.rng, self.config.vehicle_width_m[1]):
            self._append_parked(pose)

    def _append_parked(self, pose: tuple[float, float, float]) -> None:
        """A vehicle parked off the lanes at box-centre ``pose`` (x_m, y_m, yaw_rad) for good."""
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
        self, ego_xy: np.ndarray, near_xy: np.ndarray, radius_m: float, min_ego_m: float
    ) -> list[tuple[int, float]]:
        """Shuffled spawn slots (lane, s) on road lanes near ``near_xy`` and clear of the ego and other vehicles."""
        occupied = np.stack([self.x_m, self.y_m], -1)
        spacing_m = self.config.spawn_spacing_m
        return free_slots(self.lanes, self.rng, spacing_m, ego_xy, near_xy, radius_m, min_ego_m, occupied)

    # ----- simulation -----
    def _update_poses(self) -> None:
        """Box-centre poses of the lane-bound vehicles from (lane, s)."""
        m = self.on_lane
        if not m.any():
            return
        x, y, c, s = self.lanes.lookup(self.lane_seq[m, 0], self.s_m[m], curvature=False)
        self.x_m[m], self.y_m[m], self.yaw_rad[m] = x, y, np.arctan2(s, c)

    def step(
        self, dt_s: float, ego_box: tuple[float, float, float, float, float, float] | None = None, walkers: Any = None
    ) -> None:
        """Advance all vehicles by ``dt_s``; ``ego_box`` = (x, y, yaw, speed, length, width) of the ego centre.

        ``walkers``: the pedestrians (``Walkers``) vehicles stop for, or None.
        """
        self._walkers = walkers
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
        cfg = self.config
        n = len(idx)
        seq = self.lane_seq[idx]
        half_len = 0.5 * self.length_m[idx]
        path = path_ahead(self.lanes, seq, self.s_m[idx], half_len, cfg.lookahead_m, cfg.sample_spacing_m)
        everyone = Boxes(self.x_m, self.y_m, self.yaw_rad, self.length_m, self.width_m, self.ids)
        others = everyone  # the obstacles: every vehicle plus the ego, then the pedestrians
        if ego_box is not None:
            ex, ey, eyaw, _, el, ew = ego_box
            others = everyone.appended(ex, ey, eyaw, el, ew, EGO_ID)
        num_vehicles = len(others.ids)
        if self._walkers is not None and len(self._walkers):
            others = others.extended(*self._walkers.obstacle_boxes(), self._walkers.ids)
        gap, cos_pair = corridor_gaps(path, everyone.take(idx), others, cfg.lookahead_m, cfg.sample_spacing_m)
        oid = others.ids
        crossing = cos_pair < 0.7  # (n, M) not following the same way
        # mutual blocking with crossing/merging/opposing paths: the one nearer the conflict goes first
        ignore = goes_first(gap, idx, self.ids, oid) & crossing
        gap = np.where(ignore, np.inf, gap)
        lead = np.argmin(gap, 1)
        lead_gap = gap[np.arange(n), lead]
        walker_lead = lead >= num_vehicles  # a pedestrian: a standing obstacle (its speed is not along the path)
        # junction conflicts: stop before the conflict zone of a vehicle that gets there first
        ego = self._ego_route.ahead(ego_box[:2]) if ego_box is not None and self._ego_route is not None else None
        yield_gap, self._yield_to[idx] = junction_yield_with_ego(
            self.lanes, seq, path.lane_start_m, half_len, self.speed_mps[idx], self.ids[idx], ego, ego_box,
            lookahead_m=cfg.lookahead_m, max_decel_mps2=cfg.max_decel_mps2,
        )  # fmt: skip
        if self.rules is not None:  # red/yellow lights and stop signs: standing obstacles at their lines
            yield_gap = np.minimum(
                yield_gap, self.rules.gaps(idx, seq, path.lane_start_m, half_len, self.speed_mps[idx], cfg)
            )
            self._speed_scale[idx] = self.rules.speed_scale(seq, self.s_m[idx])
        use_yield = (yield_gap < lead_gap) | walker_lead
        lead_gap = np.minimum(lead_gap, yield_gap)
        # desired speed, lowered before curves: v_allow(d) = sqrt(v_curve^2 + 2 b d)
        v_curve2 = cfg.max_lateral_accel_mps2 / np.maximum(path.curvature, 1e-4)
        self._v_allow[idx] = np.sqrt(v_curve2 + 2.0 * cfg.comfort_decel_mps2 * path.ahead_m[None, :]).min(1)
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
        v0 = np.minimum(self.v0_mps[idx] * self._speed_scale[idx], self._v_allow[idx])
        held = self.parked[idx] | (self.hold_until_s[idx] > self.time_s)
        return idm_acceleration(self.speed_mps[idx], v0, lead_v, lead_gap, held, cfg)

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
            if self.rules is not None:
                self.rules.reset(np.array([i]))
        self._update_poses()
