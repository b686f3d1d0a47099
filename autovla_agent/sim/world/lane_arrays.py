"""All driving lanes of a town packed on one arc-length axis, for vectorised traffic lookups and conflicts.

``global_s = base[lane] + s`` addresses any point of any lane, so positions, headings and curvatures of many
(lane, s) pairs come out of one ``searchsorted``. ``conflict_in/out`` hold where junction lanes of the same
junction come close (crossing or merging paths), for traffic to give way before bodies meet. World frame.
"""

from __future__ import annotations

import functools

import numpy as np

from autovla_agent.sim.world.town import Town

__all__ = ["LaneArrays", "lane_arrays"]

_GAP_M = 10.0  # spacing between lanes in the packed arc-length axis (keeps interpolation per lane)


class LaneArrays:
    """All lanes of a town packed on one arc-length axis: ``global_s = base[lane] + s`` (for vectorised lookups)."""

    def __init__(self, town: Town) -> None:
        lanes = town.lanes
        self.length = np.array([ln.length_m for ln in lanes])
        self.base = np.concatenate([[0.0], np.cumsum(self.length + _GAP_M)[:-1]])
        self.s = np.concatenate([ln.s_m + b for ln, b in zip(lanes, self.base, strict=True)])
        xy = np.concatenate([ln.xy_m for ln in lanes])
        self.x, self.y = xy[:, 0], xy[:, 1]
        yaw = np.concatenate([ln.yaw_rad for ln in lanes])
        self.cos, self.sin = np.cos(yaw), np.sin(yaw)
        curv = []
        for ln in lanes:  # |curvature| from heading change per metre
            dyaw = np.abs(np.angle(np.exp(1j * np.diff(ln.yaw_rad))))
            k = dyaw / np.maximum(np.diff(ln.s_m), 1e-6)
            curv.append(np.concatenate([k, k[-1:]]))
        self.curvature = np.concatenate(curv)
        self.successors = [ln.successors for ln in lanes]
        self._town = town
        self.conflict_in, self.conflict_out = self._conflicts(town)
        self.is_junction = np.array([ln.is_junction for ln in lanes])
        self._slots: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @staticmethod
    def _conflicts(town: Town, clearance_m: float = 2.4) -> tuple[np.ndarray, np.ndarray]:
        """(L, L) arc lengths on lane a where its path comes within ``clearance_m`` of lane b's (enter, leave).

        Only pairs of junction lanes of one junction that do not share a predecessor (crossing or merging);
        NaN elsewhere. Used to let traffic yield at junctions before bodies meet.
        """
        n = len(town.lanes)
        s_in = np.full((n, n), np.nan)
        s_out = np.full((n, n), np.nan)
        by_junction: dict[int, list] = {}
        for ln in town.lanes:
            if ln.is_junction:
                by_junction.setdefault(ln.junction_id, []).append(ln)
        for group in by_junction.values():
            for a in group:
                for b in group:
                    if a.index == b.index or set(a.predecessors) & set(b.predecessors):
                        continue
                    dist = np.sqrt(((a.xy_m[:, None, :] - b.xy_m[None, :, :]) ** 2).sum(-1))
                    close_a = np.nonzero((dist < clearance_m).any(axis=1))[0]
                    if len(close_a):
                        s_in[a.index, b.index] = a.s_m[close_a[0]]
                        s_out[a.index, b.index] = a.s_m[close_a[-1]]
        return s_in, s_out

    def slots(self, spacing_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Spawn slots on road lanes (not junctions) every ``spacing_m``: lane (S,), s_m (S,), xy (S, 2); cached."""
        if spacing_m not in self._slots:
            lanes, ss, xys = [], [], []
            for ln in self._town.lanes:
                if ln.is_junction or ln.length_m < 8.0:
                    continue
                s = np.arange(4.0, ln.length_m - 4.0, spacing_m)
                if len(s):
                    lanes.append(np.full(len(s), ln.index))
                    ss.append(s)
                    xys.append(ln.interpolate(s)[0])
            self._slots[spacing_m] = (np.concatenate(lanes), np.concatenate(ss), np.concatenate(xys))
        return self._slots[spacing_m]

    def lookup(self, lane: np.ndarray, s_m: np.ndarray, curvature: bool = True) -> tuple[np.ndarray, ...]:
        """(x, y, cos_yaw, sin_yaw[, |curvature|]) at arc lengths ``s_m`` of lanes ``lane`` (same shapes)."""
        g = self.base[lane] + np.minimum(np.maximum(s_m, 0.0), self.length[lane])
        # one binary search shared by all channels (np.interp would search once per channel)
        i = np.minimum(np.searchsorted(self.s, g, side="right"), len(self.s) - 1)
        i0 = np.maximum(i - 1, 0)
        span = self.s[i] - self.s[i0]
        t = np.where(span > 0, (g - self.s[i0]) / np.where(span > 0, span, 1.0), 0.0)
        out = [a[i0] + (a[i] - a[i0]) * t for a in (self.x, self.y, self.cos, self.sin)]
        if curvature:
            out.append(self.curvature[i0] + (self.curvature[i] - self.curvature[i0]) * t)
        return tuple(out)


@functools.cache
def lane_arrays(town: Town) -> LaneArrays:
    """The packed lane arrays of a town (cached per town)."""
    return LaneArrays(town)
