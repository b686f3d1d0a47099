"""How background vehicles obey signals: stop before red and yellow lights and at stop signs, keep speed limits.

Vectorised over the vehicles that perceive this tick. Each vehicle's lane sequence ahead (``traffic.PATH_LANES``
lanes and the distance from its centre to each lane's start) tells which stop lines it meets: the end of a road
lane that leads into a junction and is governed by a light (``TownSignals.lane_light``) or a stop sign
(``TownSignals.lane_stop``). A red or yellow light is a standing obstacle at its line unless the vehicle can no
longer stop comfortably (then it goes, as a driver in the dilemma zone of a yellow light). A stop sign is one
until the vehicle has stood still before that line (``SignStops``), after which it goes on (the junction yield
rules still apply). World frame, metres and seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autovla_agent.sim.world.lane_arrays import LaneArrays
from autovla_agent.sim.world.signal_state import GREEN
from autovla_agent.sim.world.signals import TownSignals

__all__ = ["STOPPED_MPS", "SignalGaps", "SignalObedience", "signal_gaps"]

STOPPED_MPS = 0.1  # below this a vehicle counts as standing at a stop sign (RunningStopTest's threshold)
_STOP_BEFORE_LINE_M = 1.0  # vehicles stop with their front this far before the line
_COMMITTED_M = -0.5  # a front this far past the line has entered the junction: the line is behind it


@dataclass(frozen=True, slots=True)
class SignalGaps:
    """Per perceiving vehicle (n,): IDM gap to the signal it must stop at (inf: none) and what that signal is."""

    gap_m: np.ndarray  # to place a standing leader at: the vehicle settles ``_STOP_BEFORE_LINE_M`` before the line
    front_to_line_m: np.ndarray  # front bumper to that line
    stop_zone: np.ndarray  # StopZones row when it is a stop sign, -1 otherwise


def signal_gaps(
    la: LaneArrays,
    signals: TownSignals,
    head_state: np.ndarray,
    seq: np.ndarray,
    start_m: np.ndarray,
    half_len_m: np.ndarray,
    speed_mps: np.ndarray,
    stopped_zone: np.ndarray,
    *,
    lookahead_m: float,
    min_gap_m: float,
    max_decel_mps2: float,
    obey_stop_signs: bool = True,
) -> SignalGaps:
    """Gaps (n,) to the nearest light or stop sign each vehicle must stop at.

    Args:
        la: the town's packed lanes (junction flags).
        signals: the town's signals.
        head_state: (H,) current light states.
        seq: (n, L) lane sequences.
        start_m: (n, L) distance from each vehicle centre to the start of each lane of its sequence.
        half_len_m: (n,) half lengths.
        speed_mps: (n,) speeds.
        stopped_zone: (n,) the stop zone each vehicle already stood at (-1: none).
        lookahead_m: lines farther than this are ignored.
        min_gap_m: the IDM standstill gap (the returned gap includes it, so vehicles stop at the line).
        max_decel_mps2: a line the vehicle cannot stop before at 75 % of this is run (dilemma zone).
        obey_stop_signs: False ignores stop signs.
    """
    n = seq.shape[0]
    inf = np.full(n, np.inf)
    if n == 0 or seq.shape[1] < 2:
        return SignalGaps(inf, inf, np.full(n, -1, np.int64))
    before, after = seq[:, :-1], seq[:, 1:]
    into_junction = la.is_junction[after] & ~la.is_junction[before]
    front = start_m[:, 1:] - half_len_m[:, None]  # front bumper to each candidate line (n, L-1)
    reach = into_junction & (front > _COMMITTED_M) & (start_m[:, 1:] < lookahead_m)
    line = signals.lane_light[before]
    light_stop = reach & (line >= 0)
    if light_stop.any():
        heads = signals.lines.head[np.maximum(line, 0)]
        light_stop &= np.asarray(head_state)[heads] != GREEN if len(head_state) else False
    zone = signals.lane_stop[before]
    sign_stop = reach & (zone >= 0) & (zone != stopped_zone[:, None]) if obey_stop_signs else np.zeros_like(reach)
    must = light_stop | sign_stop
    can_stop = front > speed_mps[:, None] ** 2 / (2.0 * 0.75 * max_decel_mps2)  # before the line itself
    must &= can_stop | sign_stop  # a stop sign is stopped at even when late (it was seen in time)
    dist = np.where(must, front, np.inf)
    k = np.argmin(dist, axis=1)
    rows = np.arange(n)
    front_line = dist[rows, k]
    gap = np.where(np.isfinite(front_line), np.maximum(front_line - _STOP_BEFORE_LINE_M, 0.0) + min_gap_m, np.inf)
    zone_hit = np.where(np.isfinite(front_line) & sign_stop[rows, k], zone[rows, k], -1)
    return SignalGaps(gap, front_line, zone_hit.astype(np.int64))


class SignalObedience:
    """What the traffic knows of the signals: light states, stop signs stood at, speed limits (per vehicle row).

    Args:
        la: the town's packed lanes.
        signals: the town's signals.
        lights: the light controller (``state`` (H,)), or None for a world without lights.
        obey_stop_signs: False ignores stop signs.
        reference_speed_limit_mps: the limit the traffic's desired speeds are drawn for; they scale with the
            limit in force (None: no scaling).
    """

    def __init__(
        self,
        la: LaneArrays,
        signals: TownSignals,
        lights: object | None,
        *,
        obey_stop_signs: bool = True,
        reference_speed_limit_mps: float | None = None,
    ) -> None:
        self.la = la
        self.signals = signals
        self.lights = lights
        self.obey_stop_signs = obey_stop_signs
        self.reference_speed_limit_mps = reference_speed_limit_mps
        self.stopped_zone = np.zeros(0, np.int64)  # (N,) the stop zone each vehicle stood at last (-1: none)

    def resize(self, n: int) -> None:
        """Grow the per-vehicle state to ``n`` rows (new vehicles have stood at no stop sign)."""
        if n > len(self.stopped_zone):
            self.stopped_zone = np.concatenate([self.stopped_zone, np.full(n - len(self.stopped_zone), -1)])

    def reset(self, rows: np.ndarray) -> None:
        """Forget the stop-sign state of respawned vehicles."""
        self.stopped_zone[rows] = -1

    def gaps(
        self,
        rows: np.ndarray,
        seq: np.ndarray,
        start_m: np.ndarray,
        half_len_m: np.ndarray,
        speed_mps: np.ndarray,
        cfg: object,
    ) -> np.ndarray:
        """IDM gaps (n,) to the signals of vehicle ``rows`` (see ``signal_gaps``); records stops at stop signs."""
        self.resize(int(rows.max()) + 1 if len(rows) else 0)
        state = self.lights.state if self.lights is not None else np.zeros(0, np.int8)
        out = signal_gaps(
            self.la,
            self.signals,
            state,
            seq,
            start_m,
            half_len_m,
            speed_mps,
            self.stopped_zone[rows],
            lookahead_m=cfg.lookahead_m,
            min_gap_m=cfg.min_gap_m,
            max_decel_mps2=cfg.max_decel_mps2,
            obey_stop_signs=self.obey_stop_signs,
        )
        stood = (out.stop_zone >= 0) & (speed_mps < STOPPED_MPS) & (out.front_to_line_m < 3.0)
        self.stopped_zone[rows[stood]] = out.stop_zone[stood]
        return out.gap_m

    def speed_scale(self, seq: np.ndarray, s_m: np.ndarray) -> np.ndarray:
        """(n,) factor on the desired speeds: the limit in force over the reference limit (1 without scaling)."""
        if self.reference_speed_limit_mps is None:
            return np.ones(len(s_m))
        return self.signals.speed_limits.at(seq[:, 0], s_m) / self.reference_speed_limit_mps
