"""The life of one route scenario (``Scenario``) and the world-side helpers its behaviours share.

A scenario is parsed and checked when its route is loaded (a bad parameter raises ``ScenarioSetupError``),
``build`` spawns its actors once the ego is within ``INIT_DISTANCE_M`` of the trigger point (the leaderboard's
``build_scenarios``), ``start`` runs when the ego's route position passes the trigger point, ``update`` every
tick until it returns True (the scenario's end condition), then ``finish`` removes its actors and gives back
what it changed (lights, criteria switches). ``timeout_s`` is the ``ScenarioTimeout`` of the scenario_runner
types that add ``ScenarioTimeoutTest``: the manager ends such a scenario after that long and records it as
"Agent timed out a scenario". World frame (x east, y north, yaw CCW rad), metres and seconds.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import numpy as np

from autovla_agent.sensors import frames
from autovla_agent.sim.scenarios.actors import ScenarioActor
from autovla_agent.sim.scenarios.config import ScenarioConfig
from autovla_agent.sim.scenarios.geometry import lane_of, waypoint_at, wp_pose

logger = logging.getLogger(__name__)

__all__ = ["INIT_DISTANCE_M", "Scenario"]

INIT_DISTANCE_M = 500.0  # RouteScenario.INIT_THRESHOLD: scenarios are built when the ego comes this close


class Scenario:
    """Base class of the scenario types (see the module docstring); one instance per ``<scenario>``.

    Args:
        config: the ``<scenario>`` as parsed from the route file.
        world: the embedded ``World`` (town, route, ego, traffic, walkers, lights, scenario actors).
        seed: seeds the scenario's random draws (models, flows), so a run repeats exactly.
    """

    type_name: ClassVar[str] = ""
    timeout_s: ClassVar[float | None] = None  # ScenarioTimeout duration, where scenario_runner has one

    def __init__(self, config: ScenarioConfig, world: Any, seed: int = 0) -> None:
        self.config = config
        self.world = world
        self.rng = np.random.default_rng([seed, 31, sum(map(ord, config.name))])
        self.actors: list[ScenarioActor] = []
        self.walker_rows: list[int] = []
        self.wrong_direction_test = True  # SwitchWrongDirectionTest: False lets the ego use the opposite lane
        self.started_at_s: float | None = None
        self.manager: Any = None  # the ScenarioManager running it (ego odometer)
        self.read_parameters()

    # ------------------------------------------------------------------ to override
    def read_parameters(self) -> None:
        """Read and check the route's parameters (``self.config.value``...); raise ``ScenarioSetupError``."""

    def build(self) -> None:
        """Spawn the actors (the ego is within ``INIT_DISTANCE_M``); raise ``ScenarioSetupError`` when impossible."""

    def start(self) -> None:
        """The ego reached the trigger point: the behaviour starts."""

    def update(self) -> bool:
        """One tick of the behaviour; True when the scenario's end condition holds."""
        return True

    def finish(self) -> None:
        """Remove the actors (``ActorDestroy``) and give back lights and switches."""
        for actor in self.actors:
            actor.alive = False
        walkers = getattr(self.world, "walkers", None)
        for row in self.walker_rows:
            walkers.remove_scripted(row)
        self.wrong_direction_test = True

    # ------------------------------------------------------------------ shared helpers
    @property
    def name(self) -> str:
        """The scenario's name in the route file."""
        return self.config.name

    @property
    def time_s(self) -> float:
        """Simulated time of the world."""
        return float(self.world.time_s)

    @property
    def ego_xy(self) -> np.ndarray:
        """Ego box centre (2,), world frame."""
        x, y, _ = self.world.ego.center_pose_world()
        return np.array([x, y])

    @property
    def ego_yaw(self) -> float:
        """Ego heading, world frame."""
        return float(self.world.ego.center_pose_world()[2])

    @property
    def ego_speed(self) -> float:
        """Ego speed magnitude (m/s)."""
        return abs(float(self.world.ego.speed_mps))

    @property
    def odometer_m(self) -> float:
        """Distance the ego has driven since the route started (``DriveDistance`` measures from it)."""
        return float(self.manager.odometer_m) if self.manager is not None else 0.0

    def speed_limit_mps(self) -> float:
        """The speed limit at the ego's lane (CARLA's ``get_speed_limit``), 30 km/h without signs."""
        lane = self.ego_lane()
        signals = getattr(self.world, "signals", None)
        if lane is None or signals is None:
            return 30.0 / 3.6
        s = self.world.town.project(lane, self.ego_xy).s_m
        return float(signals.speed_limits.at(np.array([lane]), np.array([s]))[0])

    def trigger_waypoint(self) -> Any:
        """CARLA's driving waypoint at the trigger point (``map.get_waypoint(trigger_location)``)."""
        x, y, z, _ = self.config.trigger_carla
        return waypoint_at(self.world.town, x, y, z)

    def trigger_xy(self) -> np.ndarray:
        """The trigger point (2,), world frame."""
        x, y, _, _ = self.config.trigger_carla
        return frames.carla_to_world_xy((x, y))

    def ego_in_front_of(self, pose: tuple[float, float, float]) -> bool:
        """``WaitUntilInFrontPosition``: the ego centre is past ``pose`` along its heading."""
        x, y, yaw = pose
        return float((self.ego_xy[0] - x) * math.cos(yaw) + (self.ego_xy[1] - y) * math.sin(yaw)) > 0.0

    def ego_within(self, xy: np.ndarray, distance_m: float) -> bool:
        """``InTriggerDistanceToLocation``: the ego centre is closer than ``distance_m`` to ``xy``."""
        return float(np.hypot(*(self.ego_xy - np.asarray(xy)))) < distance_m

    def ego_lane(self) -> int | None:
        """Town lane index of the ego's driving lane (None off the driving topology)."""
        try:
            x, y = frames.world_to_carla_xy(self.ego_xy)
            return lane_of(self.world.town, waypoint_at(self.world.town, float(x), float(y)))
        except ValueError:
            return None

    def spawn(self, type_id: str, pose: tuple[float, float, float], **kwargs: Any) -> ScenarioActor:
        """Spawn a scenario actor owned by this scenario (removed by ``finish``)."""
        actor = self.world.scenario_actors.spawn(type_id, pose, **kwargs)
        actor.tags.add(self.name)
        self.actors.append(actor)
        return actor

    def spawn_on_path(self, type_id: str, path: Any, s_m: float, mode: str, speed_mps: float, **kwargs: Any) -> Any:
        """Spawn a moving scenario actor owned by this scenario."""
        actor = self.world.scenario_actors.spawn_on_path(type_id, path, s_m, mode, speed_mps, **kwargs)
        actor.tags.add(self.name)
        self.actors.append(actor)
        return actor

    @staticmethod
    def pose_of(wp: Any, right_m: float = 0.0) -> tuple[float, float, float]:
        """World pose of a waypoint moved ``right_m`` to its right."""
        from autovla_agent.sim.scenarios.geometry import displaced

        return displaced(wp_pose(wp), right_m)
