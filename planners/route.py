"""Route following: the global plan (world-frame points with commands) -> the next target point and its command.

The TCP/TransFuser++ lineage ``RoutePlanner``: every tick, scan the route ahead while the cumulative path
length stays within ``max_distance_m``, remember the farthest point that lies within ``min_distance_m`` of
the ego, drop the points before it (always keeping at least two), and target the point after it. The
target is therefore the first route point beyond ``min_distance_m`` (TF++ and SimLingo use 7.5 / 50 m).
Commands are opaque here: the adapter maps CARLA's RoadOption to ``NavCommand``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, kw_only=True, slots=True)
class RouteConfig:
    """Distances of the target-point route follower (TF++ / SimLingo defaults)."""

    min_distance_m: float = 7.5
    max_distance_m: float = 50.0

    def __post_init__(self) -> None:
        """Require 0 < min_distance_m <= max_distance_m."""
        if not 0.0 < self.min_distance_m <= self.max_distance_m:
            raise ValueError(
                "RouteConfig needs 0 < min_distance_m <= max_distance_m, "
                f"got {self.min_distance_m}, {self.max_distance_m}"
            )


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """The current target point in the world frame, its command and where it lies on the route.

    ``index`` is the target's index in the original route; ``remaining_m`` is the path length from the ego
    to the target plus the route length from the target to the end; ``distance_m`` is the straight-line
    distance from the ego to the target.
    """

    xy_world_m: np.ndarray
    command: Any
    index: int
    remaining_m: float
    distance_m: float


class RouteFollower:
    """Pops passed route points and returns the next target point with its command (see the module docstring)."""

    def __init__(self, xy_world_m: np.ndarray, commands: Sequence[Any], config: RouteConfig | None = None):
        route = np.asarray(xy_world_m, dtype=np.float64)
        if route.ndim != 2 or route.shape[1] != 2 or route.shape[0] < 1:
            raise ValueError(f"route must have shape (N >= 1, 2) of world x_m, y_m; got {route.shape}")
        if not np.all(np.isfinite(route)):
            raise ValueError("route points must be finite")
        if len(commands) != route.shape[0]:
            raise ValueError(f"need one command per route point: {len(commands)} commands for {route.shape[0]} points")
        self._num_given = route.shape[0]
        if route.shape[0] == 1:  # a one-point route still needs a segment: the point is its own target
            route = np.vstack([route, route])
            commands = [commands[0], commands[0]]
        self.config = config or RouteConfig()
        self.xy_world_m = route
        self.commands = list(commands)
        self._seg_m = np.linalg.norm(np.diff(route, axis=0), axis=1)
        self._remaining_after_m = np.concatenate([np.cumsum(self._seg_m[::-1])[::-1], [0.0]])
        self.start = 0  # index of the first route point not yet popped

    @property
    def num_remaining(self) -> int:
        """Route points not yet popped."""
        return self.xy_world_m.shape[0] - self.start

    def step(self, ego_xy_world_m: np.ndarray) -> RouteTarget:
        """Advance along the route for the ego position (x_m, y_m) in the world frame and return the target."""
        ego = np.asarray(ego_xy_world_m, dtype=np.float64).reshape(-1)[:2]
        if not np.all(np.isfinite(ego)):
            raise ValueError(f"ego position must be finite, got {ego_xy_world_m!r}")
        cfg, route = self.config, self.xy_world_m
        # Candidates: each point after the first kept one whose predecessor lies within max_distance_m of path.
        path_m = np.cumsum(self._seg_m[self.start :])
        num_within = int(np.searchsorted(path_m, cfg.max_distance_m, side="right"))
        candidates = np.arange(self.start + 1, min(self.start + num_within + 2, route.shape[0]))
        if candidates.size:
            dist = np.linalg.norm(route[candidates] - ego, axis=1)
            within = dist <= cfg.min_distance_m
            if np.any(within):
                farthest = candidates[within][np.argmax(dist[within])]
                self.start = min(int(farthest), route.shape[0] - 2)  # keep at least two points
        index = self.start + 1
        target = route[index]
        distance = float(np.linalg.norm(target - ego))
        return RouteTarget(
            xy_world_m=target.copy(),
            command=self.commands[index],
            index=min(index, self._num_given - 1),
            remaining_m=distance + float(self._remaining_after_m[index]),
            distance_m=distance,
        )
