"""Traffic lights, stop signs and speed limits of a town, read from its OpenDRIVE signals through CARLA's map engine.

``carla.Map.get_all_landmarks()`` gives every signal reference with the road, ``s`` and lane validities it applies
to; the OpenDRIVE ``<controller>`` and ``<junction><controller sequence>`` elements (parsed from the xodr text,
the offline map does not expose them) give which light heads switch together and in which order. CARLA builds
one ``TrafficLightGroup`` per junction from those controllers and cycles them in turn; we keep the same grouping.

Geometry follows CARLA's server (``TrafficLightComponent``/``StopSignComponent::InitializeSign``): a reference on
a junction's connecting lane governs the road lane that leads into it; a light's trigger volume lies 3 m before
the junction entry (1.5 m box length plus 1.5 m safety distance), and ``RunningRedLightTest`` advances it to the
last waypoint before the junction, the stop line used here. A stop sign's trigger box (half size 0.45 lane
widths) sits at the reference moved back by that half size along the lane, clamped to the lane. Speed limits
(type 274, ``value`` in km/h as CARLA's ``traffic.speed_limit.*`` actors) hold from the sign on along the lanes
that follow until another sign, as a CARLA vehicle keeps the last limit it passed.

All positions are in the internal WORLD frame (x east, y north = -y_carla, yaw CCW radians).
"""

from __future__ import annotations

import functools
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from autovla_agent.sensors import frames
from autovla_agent.sim.world.town import Town

logger = logging.getLogger(__name__)

__all__ = [
    "LIGHT_TYPE",
    "SPEED_LIMIT_TYPE",
    "STOP_TYPE",
    "LightHeads",
    "SpeedLimits",
    "StopLines",
    "StopZones",
    "TownSignals",
    "town_signals",
]

LIGHT_TYPE = "1000001"  # OpenDRIVE dynamic signal type of CARLA's traffic lights
STOP_TYPE = "206"
SPEED_LIMIT_TYPE = "274"
DEFAULT_SPEED_LIMIT_MPS = 30.0 / 3.6  # a CARLA vehicle's limit before it passes any sign
LIGHT_TRIGGER_BACK_M = 3.0  # BoxLength 1.5 m + AdditionalDistance 1.5 m before the junction entry
RED_LIGHT_LINE_HALF_WIDTH = 0.6  # RunningRedLightTest's stop line: +-0.6 lane widths
STOP_BOX_HALF_WIDTH = 0.45  # StopSignComponent: 90 % of half the lane width


@dataclass(frozen=True, slots=True, eq=False)
class LightHeads:
    """Traffic-light heads (one per OpenDRIVE signal a controller drives); arrays (H,), world frame."""

    ids: tuple[str, ...]
    xy_m: np.ndarray  # (H, 2) pole position
    z_m: np.ndarray  # (H,) ground height at the pole
    group: np.ndarray  # (H,) junction group index
    phase: np.ndarray  # (H,) controller index within the group (cycle order)
    num_phases: np.ndarray  # (G,) controllers per group
    group_junction: tuple[int, ...]  # (G,) OpenDRIVE junction id of each group

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True, eq=False)
class StopLines:
    """Where lights govern a lane: one row (K,) per road lane entering a signalised junction, world frame."""

    head: np.ndarray  # (K,) index into LightHeads
    lane: np.ndarray  # (K,) town lane index of the incoming road lane
    xy_m: np.ndarray  # (K, 2) stop-line centre: the incoming lane's end (junction entry)
    yaw_rad: np.ndarray  # (K,) lane direction at the line
    z_m: np.ndarray  # (K,)
    lane_width_m: np.ndarray  # (K,)
    trigger_xy_m: np.ndarray  # (K, 2) the light's trigger-volume centre, LIGHT_TRIGGER_BACK_M before the entry
    road_id: np.ndarray  # (K,) CARLA road and lane id of the stop waypoint (RunningRedLightTest compares them)
    lane_id: np.ndarray  # (K,)

    def __len__(self) -> int:
        return int(self.lane.shape[0])


@dataclass(frozen=True, slots=True, eq=False)
class StopZones:
    """Stop signs: one row (Z,) per (sign, incoming lane), world frame."""

    sign_ids: tuple[str, ...]
    lane: np.ndarray  # (Z,) incoming road lane
    stop_xy_m: np.ndarray  # (Z, 2) stop line: the incoming lane's end
    yaw_rad: np.ndarray  # (Z,)
    lane_width_m: np.ndarray  # (Z,)
    box_xy_m: np.ndarray  # (Z, 2) trigger-box centre
    box_half_m: np.ndarray  # (Z,) half size of the (axis-aligned, as RunningStopTest reads it) box
    pole_xy_m: np.ndarray  # (Z, 2) sign position

    def __len__(self) -> int:
        return int(self.lane.shape[0])


class SpeedLimits:
    """The speed limit in force at (lane, s): the last sign passed on that lane, else the one at the lane start.

    Args:
        num_lanes: lanes of the town.
        predecessors: per lane, the lanes leading into it.
        signs: (lane, s_m, limit_mps) of every speed-limit sign on a lane.
        default_mps: the limit of lanes no sign reaches.
    """

    def __init__(
        self,
        num_lanes: int,
        predecessors: list[tuple[int, ...]],
        signs: list[tuple[int, float, float]],
        default_mps: float = DEFAULT_SPEED_LIMIT_MPS,
    ) -> None:
        signs = sorted(signs)
        self._key = np.array([lane * 1e6 + s for lane, s, _ in signs], dtype=np.float64)
        self._lane = np.array([lane for lane, _, _ in signs], dtype=np.int64)
        self._mps = np.array([v for _, _, v in signs], dtype=np.float64)
        end = np.full(num_lanes, np.nan)  # limit at each lane's end
        for lane, _, v in signs:
            end[lane] = v  # sorted by s: the last sign of the lane wins
        start = np.full(num_lanes, np.nan)
        for _ in range(num_lanes):  # propagate along the lane graph until nothing changes
            changed = False
            for lane in range(num_lanes):
                if not np.isnan(start[lane]):
                    continue
                known = [end[p] for p in predecessors[lane] if not np.isnan(end[p])]
                if known:
                    start[lane] = min(known)  # several ways in with different limits: the lower one
                    if np.isnan(end[lane]):
                        end[lane] = start[lane]
                    changed = True
            if not changed:
                break
        self.start_mps = np.where(np.isnan(start), default_mps, start)

    def at(self, lane: np.ndarray, s_m: np.ndarray) -> np.ndarray:
        """Limits (m/s) at arc lengths ``s_m`` of lanes ``lane`` (same shapes)."""
        lane = np.asarray(lane, np.int64)
        s = np.asarray(s_m, np.float64)
        out = self.start_mps[lane]
        if len(self._key) == 0:
            return out
        i = np.searchsorted(self._key, lane * 1e6 + s, side="right") - 1
        ok = i >= 0
        ii = np.maximum(i, 0)
        same = ok & (self._lane[ii] == lane)
        return np.where(same, self._mps[ii], out)


@dataclass(frozen=True, slots=True, eq=False)
class TownSignals:
    """Lights, stop signs and speed limits of one town, plus per-lane lookups for traffic and the expert.

    ``lane_light`` (L,): the ``StopLines`` row governing each incoming lane (-1: none); ``lane_stop`` (L,): the
    ``StopZones`` row of each lane ending at a stop sign (-1: none).
    """

    heads: LightHeads
    lines: StopLines
    stops: StopZones
    speed_limits: SpeedLimits
    lane_light: np.ndarray
    lane_stop: np.ndarray


def _controllers(xodr_text: str) -> dict[str, tuple[int, int, str]]:
    """Signal id -> (junction id, sequence, controller id) from the OpenDRIVE controller elements."""
    root = ET.fromstring(xodr_text)
    signal_ctrl: dict[str, str] = {}
    for ctrl in root.findall("controller"):
        for ref in ctrl.findall("control"):
            signal_ctrl.setdefault(str(ref.get("signalId")), str(ctrl.get("id")))
    ctrl_junction: dict[str, tuple[int, int]] = {}
    for junction in root.findall("junction"):
        for ref in junction.findall("controller"):
            ctrl_junction[str(ref.get("id"))] = (int(junction.get("id", -1)), int(ref.get("sequence", 0) or 0))
    out = {}
    for sig, ctrl in signal_ctrl.items():
        if ctrl in ctrl_junction:
            out[sig] = (*ctrl_junction[ctrl], ctrl)
    return out


def _references(town: Town, landmark_type: str) -> list[tuple[object, int, float]]:
    """(landmark, town lane index, s on that lane) of every valid lane of every landmark of a type."""
    out = []
    for lm in town.map.get_all_landmarks_of_type(landmark_type):
        for a, b in lm.get_lane_validities():
            for lane_id in range(min(a, b), max(a, b) + 1):
                if lane_id == 0:
                    continue
                wp = town.map.get_waypoint_xodr(lm.road_id, lane_id, lm.s)
                if wp is None:
                    continue
                try:
                    lane = town.lane_index(wp.road_id, wp.section_id, wp.lane_id)
                except KeyError:
                    continue  # not a driving lane of the topology
                xy = frames.carla_to_world_xy((wp.transform.location.x, wp.transform.location.y))
                out.append((lm, lane, town.project(lane, xy).s_m))
    return out


def _incoming_lane(town: Town, lane: int) -> int | None:
    """The road lane that leads into junction lane ``lane`` (itself for a road lane ending at a junction)."""
    ln = town.lanes[lane]
    if not ln.is_junction:
        ends_at_junction = any(town.lanes[k].is_junction for k in ln.successors)
        return lane if ends_at_junction else None
    seen = {lane}
    cur = ln
    while cur.is_junction:  # a chain of junction lanes: walk back to the road
        preds = [p for p in cur.predecessors if p not in seen]
        if len(preds) != 1:
            return None
        seen.add(preds[0])
        cur = town.lanes[preds[0]]
    return cur.index


def _lane_end(town: Town, lane: int) -> tuple[np.ndarray, float, float, float]:
    """(xy, yaw, width, z) at the end of ``lane``."""
    ln = town.lanes[lane]
    z = float(ln.z_m[-1]) if getattr(ln, "z_m", None) is not None else 0.0
    return ln.xy_m[-1].copy(), float(ln.yaw_rad[-1]), float(ln.width_m[-1]), z


def _build_lights(town: Town, ctrl: dict[str, tuple[int, int, str]]) -> tuple[LightHeads, StopLines]:
    """Heads grouped per junction (controllers in sequence order) and one stop line per incoming lane."""
    landmarks = {lm.id: lm for lm in town.map.get_all_landmarks_of_type(LIGHT_TYPE)}
    head_ids = sorted(sid for sid in landmarks if sid in ctrl)
    dropped = sorted(set(landmarks) - set(head_ids))
    if dropped:
        logger.debug("%s: lights %s belong to no junction controller; ignored", town.name, dropped)
    junctions = sorted({ctrl[h][0] for h in head_ids})
    group_of = {j: g for g, j in enumerate(junctions)}
    phases: dict[int, list[tuple[int, str]]] = {}
    for h in head_ids:
        j, seq, c = ctrl[h]
        if (seq, c) not in phases.setdefault(j, []):
            phases[j].append((seq, c))
    for j in phases:
        phases[j].sort(key=lambda p: (p[0], int(p[1]) if p[1].isdigit() else p[1]))
    xy, z = [], []
    for h in head_ids:
        loc = landmarks[h].transform.location
        xy.append(frames.carla_to_world_xy((loc.x, loc.y)))
        z.append(float(loc.z))
    heads = LightHeads(
        ids=tuple(head_ids),
        xy_m=np.array(xy, np.float64).reshape(-1, 2),
        z_m=np.array(z, np.float64),
        group=np.array([group_of[ctrl[h][0]] for h in head_ids], np.int64),
        phase=np.array([phases[ctrl[h][0]].index((ctrl[h][1], ctrl[h][2])) for h in head_ids], np.int64),
        num_phases=np.array([len(phases[j]) for j in junctions], np.int64),
        group_junction=tuple(junctions),
    )
    head_index = {h: i for i, h in enumerate(head_ids)}
    by_lane: dict[int, int] = {}
    for lm, lane, _ in _references(town, LIGHT_TYPE):
        incoming = _incoming_lane(town, lane)
        if incoming is None or lm.id not in head_index:
            continue
        by_lane.setdefault(incoming, head_index[lm.id])  # one controller per incoming lane in every town
    rows = []
    for lane, head in sorted(by_lane.items()):
        line_xy, yaw, width, zz = _lane_end(town, lane)
        ln = town.lanes[lane]
        trigger, _ = ln.interpolate(ln.length_m - LIGHT_TRIGGER_BACK_M)
        rows.append((head, lane, line_xy, yaw, zz, width, trigger, ln.road_id, ln.lane_id))
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in range(9)]
    lines = StopLines(
        head=np.array(cols[0], np.int64),
        lane=np.array(cols[1], np.int64),
        xy_m=np.array(cols[2], np.float64).reshape(-1, 2),
        yaw_rad=np.array(cols[3], np.float64),
        z_m=np.array(cols[4], np.float64),
        lane_width_m=np.array(cols[5], np.float64),
        trigger_xy_m=np.array(cols[6], np.float64).reshape(-1, 2),
        road_id=np.array(cols[7], np.int64),
        lane_id=np.array(cols[8], np.int64),
    )
    return heads, lines


def _build_stops(town: Town) -> StopZones:
    """One stop zone per (stop sign, incoming lane), the trigger box at CARLA's place."""
    rows: dict[tuple[str, int], tuple] = {}
    for lm, lane, s in _references(town, STOP_TYPE):
        incoming = _incoming_lane(town, lane)
        if incoming is None or (lm.id, incoming) in rows:
            continue
        ln = town.lanes[lane]
        width = float(np.interp(s, ln.s_m, ln.width_m))
        half = max(0.01, STOP_BOX_HALF_WIDTH * width)
        box_xy, _ = ln.interpolate(max(s - half, 0.0))  # moved back along the lane, clamped to it
        line_xy, yaw, in_width, _ = _lane_end(town, incoming)
        loc = lm.transform.location
        pole = frames.carla_to_world_xy((loc.x, loc.y))
        rows[(lm.id, incoming)] = (lm.id, incoming, line_xy, yaw, in_width, box_xy, half, pole)
    vals = [rows[k] for k in sorted(rows)]
    cols = list(zip(*vals, strict=True)) if vals else [[] for _ in range(8)]
    return StopZones(
        sign_ids=tuple(cols[0]),
        lane=np.array(cols[1], np.int64),
        stop_xy_m=np.array(cols[2], np.float64).reshape(-1, 2),
        yaw_rad=np.array(cols[3], np.float64),
        lane_width_m=np.array(cols[4], np.float64),
        box_xy_m=np.array(cols[5], np.float64).reshape(-1, 2),
        box_half_m=np.array(cols[6], np.float64),
        pole_xy_m=np.array(cols[7], np.float64).reshape(-1, 2),
    )


def _build_speed_limits(town: Town) -> SpeedLimits:
    """Speed-limit signs on their lanes, propagated along the lane graph."""
    signs = []
    for lm, lane, s in _references(town, SPEED_LIMIT_TYPE):
        try:
            kmh = float(lm.value)
        except (TypeError, ValueError):
            continue
        if kmh > 0:
            signs.append((lane, s, kmh / 3.6))
    return SpeedLimits(len(town.lanes), [ln.predecessors for ln in town.lanes], signs)


@functools.cache
def town_signals(town: Town) -> TownSignals:
    """The signals of ``town`` (built once per process and town)."""
    heads, lines = _build_lights(town, _controllers(town.opendrive_text))
    stops = _build_stops(town)
    lane_light = np.full(len(town.lanes), -1, np.int64)
    lane_light[lines.lane] = np.arange(len(lines))
    lane_stop = np.full(len(town.lanes), -1, np.int64)
    for z in range(len(stops))[::-1]:  # several signs on one lane: the first row wins
        lane_stop[stops.lane[z]] = z
    lane_stop[lane_light >= 0] = -1  # a light overrides a sign on the same approach
    signals = TownSignals(heads, lines, stops, _build_speed_limits(town), lane_light, lane_stop)
    logger.info(
        "town %s: %d light heads in %d junction groups, %d stop lines, %d stop zones",
        town.name,
        len(heads),
        len(heads.num_phases),
        len(lines),
        len(stops),
    )
    return signals
