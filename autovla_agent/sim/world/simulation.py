"""The embedded closed-loop world: town, route, kinematic ego, IDM traffic, pedestrians, traffic lights, sensors.

Everything here is in the internal WORLD frame of ``autovla_agent.sensors.frames`` (x east, y north = -y_carla,
yaw CCW radians) unless a name says ``carla``. One ``World`` is one route run: it is built from a town and a
route, ticks at a fixed step (20 Hz by default, as the leaderboard's synchronous mode), takes the agent's
``carla.VehicleControl`` and produces the agent's ``input_data`` for the sensors it declared.

Typical loop (what E2's runner does)::

    world = World("Town01", route_spec, WorldConfig(), seed=0)
    gps_plan, world_plan = world.global_plan()          # -> agent.set_global_plan(gps_plan, world_plan)
    world.validate_sensors(agent.sensors())             # SensorUnsupportedError before the route starts
    while not done:
        input_data = world.sensor_data(agent.sensors())  # {id: (frame, data)}
        control = agent.run_step(input_data, world.time_s)
        world.apply_control(control)
        world.tick()
        snap = world.snapshot()                           # scoring / replay
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from autovla_agent.sim.world.ego import EgoConfig, EgoVehicle
from autovla_agent.sim.world.lane_arrays import lane_arrays
from autovla_agent.sim.world.render import CameraRenderer, RenderConfig
from autovla_agent.sim.world.route_files import RouteError, RouteSpec
from autovla_agent.sim.world.routes import DenseRoute, densify_route, global_plan
from autovla_agent.sim.world.sensors import SensorSimConfig, SensorSimulator
from autovla_agent.sim.world.signal_state import SignalConfig, TrafficLightController
from autovla_agent.sim.world.signals import town_signals
from autovla_agent.sim.world.town import Town
from autovla_agent.sim.world.traffic import Traffic
from autovla_agent.sim.world.traffic_model import TrafficConfig
from autovla_agent.sim.world.traffic_signals import SignalObedience
from autovla_agent.sim.world.walkers import WalkerConfig, Walkers

logger = logging.getLogger(__name__)

__all__ = ["ActorArrays", "World", "WorldConfig", "WorldSnapshot"]


@dataclass(frozen=True, kw_only=True, slots=True)
class WorldConfig:
    """Configuration of one embedded world: step, ego response, traffic, pedestrians, signals, sensors, rendering."""

    dt_s: float = 0.05  # fixed step, as the leaderboard's fixed_delta_seconds
    ego: EgoConfig = field(default_factory=EgoConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    walkers: WalkerConfig = field(default_factory=WalkerConfig)
    signals: SignalConfig = field(default_factory=SignalConfig)
    sensors: SensorSimConfig = field(default_factory=SensorSimConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    track: Literal["SENSORS", "MAP"] = "SENSORS"  # MAP allows sensor.opendrive_map
    maps_dirs: tuple[str, ...] = ()  # folders of <town>.xodr looked in before the shipped maps (e.g. CARLA's)

    def __post_init__(self) -> None:
        """Validate the step."""
        if not 0.0 < self.dt_s <= 0.5:
            raise ValueError(f"WorldConfig.dt_s={self.dt_s} must be in (0, 0.5] seconds (leaderboard: 0.05)")


@dataclass(frozen=True, slots=True)
class ActorArrays:
    """Poses and boxes of N actors in the internal world frame; every array has shape (N,).

    The pose is the bounding-box centre (the CARLA actor location), yaw CCW radians, speed signed along the
    heading (negative when reversing). ``ids`` are stable over a route (ego: 0; traffic: 1..N).
    """

    ids: np.ndarray  # int64
    x_m: np.ndarray
    y_m: np.ndarray
    yaw_rad: np.ndarray
    speed_mps: np.ndarray
    length_m: np.ndarray
    width_m: np.ndarray
    parked: np.ndarray  # bool: a static obstacle
    height_m: np.ndarray | None = None  # for rendering
    color_rgb: np.ndarray | None = None  # (N, 3) uint8, for rendering

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def corners_xy_m(self) -> np.ndarray:
        """Box corners (N, 4, 2) in the world frame, counter-clockwise from front-left... front-right."""
        c, s = np.cos(self.yaw_rad), np.sin(self.yaw_rad)
        hl, hw = 0.5 * self.length_m, 0.5 * self.width_m
        local = np.stack(
            [np.stack([hl, hw], -1), np.stack([-hl, hw], -1), np.stack([-hl, -hw], -1), np.stack([hl, -hw], -1)],
            axis=1,
        )  # (N, 4, 2)
        x = local[..., 0] * c[:, None] - local[..., 1] * s[:, None] + self.x_m[:, None]
        y = local[..., 0] * s[:, None] + local[..., 1] * c[:, None] + self.y_m[:, None]
        return np.stack([x, y], axis=-1)

    def select(self, mask: np.ndarray) -> ActorArrays:
        """Return the actors where ``mask`` (N,) is true."""
        values = (getattr(self, f.name) for f in dataclasses.fields(self))
        return ActorArrays(*(None if v is None else v[mask] for v in values))


@dataclass(frozen=True, slots=True)
class WorldSnapshot:
    """The state of the world after a tick, in the internal world frame (scoring, replay, expert input).

    ``ego`` has one row (id 0). ``control`` is the last applied ``(steer_carla, throttle, brake)`` with CARLA's
    sign (+steer = right); ``steer_rad`` is the ego's actual front-wheel angle (internal sign, + = left).
    ``walkers`` are the pedestrians (ids from ``walkers.WALKER_ID_BASE + 1``); ``light_state`` (H,) the state of
    every traffic-light head of the town (``signal_state.GREEN/YELLOW/RED``, heads as ``signals.LightHeads``).
    """

    frame: int
    time_s: float
    ego: ActorArrays
    vehicles: ActorArrays
    ego_accel_mps2: float
    ego_yaw_rate_radps: float
    ego_steer_rad: float
    control: tuple[float, float, float]
    ego_rear_axle_xy_m: tuple[float, float]
    walkers: ActorArrays | None = None
    light_state: np.ndarray | None = None


class World:
    """One closed-loop route run on an embedded CARLA town (see the module docstring for the loop).

    Args:
        town: a ``Town`` or a town name (shipped, or in ``config.maps_dirs``).
        route: a parsed ``RouteSpec`` (densified here with the lane topology) or an already dense ``DenseRoute``.
        config: the world configuration.
        seed: seeds traffic spawning and junction choices; the same seed gives the same run.

    Attributes:
        town: the ``Town``.
        route: the ``DenseRoute`` (about 1 m spacing, with ``RoadOption``s), as the leaderboard's
            ``interpolate_trajectory``.
        ego: the ``EgoVehicle`` (spawned on route[0], at rest, facing along the route).
        traffic: the ``Traffic`` (IDM vehicles and parked obstacles).
        walkers: the ``Walkers`` (pedestrians on sidewalks and crossings near the route).
        signals: the town's ``TownSignals`` (lights, stop signs, speed limits).
        lights: the ``TrafficLightController`` (head states, advanced every tick).
        frame: number of ticks done since the start (0 before the first tick).
        time_s: simulated seconds since the start (``frame * dt_s``); the agent's ``timestamp``.

    Raises:
        UnknownTownError: the town is in no map folder (the message names them and the shipped towns).
        RouteError: a keypoint off the road network, no lane path, or a route of another town.

    Sensor noise (GNSS, IMU) and traffic draw from generators seeded with ``seed``: a run repeats exactly for
    the same seed and controls. Traffic yields to the ego when the ego is in its path; it does not anticipate
    the ego at junctions (a driving agent must give way itself).
    """

    def __init__(
        self, town: Town | str, route: RouteSpec | DenseRoute, config: WorldConfig | None = None, seed: int = 0
    ) -> None:
        self.config = config or WorldConfig()
        self.seed = int(seed)
        self.town = town if isinstance(town, Town) else Town.load(town, tuple(self.config.maps_dirs))
        self.route = route if isinstance(route, DenseRoute) else densify_route(self.town, route)
        if self.route.town != self.town.name:
            raise RouteError(f"route {self.route.route_id} is on {self.route.town}, the world is {self.town.name}")
        self.frame = 0
        self.time_s = 0.0
        self.ego = EgoVehicle.spawn_on_route(self.route, self.config.ego)
        self.traffic = Traffic.spawn(self.town, self.route, self.config.traffic, seed=self.seed)
        self.signals = town_signals(self.town)
        self.lights = TrafficLightController(self.signals.heads, self.config.signals, seed=self.seed)
        reference = self.config.traffic.reference_speed_limit_mps
        self.traffic.rules = SignalObedience(
            lane_arrays(self.town),
            self.signals,
            self.lights,
            obey_stop_signs=self.config.signals.stop_signs,
            reference_speed_limit_mps=reference if reference > 0 else None,
        )
        self.walkers = Walkers.spawn(self.town, self.route.xy_world_m, self.config.walkers, seed=self.seed)
        self._renderer: CameraRenderer | None = None
        self._sensors = SensorSimulator(self.town, self.config.sensors, track=self.config.track, seed=self.seed)

    # ----- agent protocol -----
    def global_plan(self) -> tuple[list[tuple[dict[str, float], Any]], list[tuple[Any, Any]]]:
        """Return the dense (~1 m) ``(gps_plan, world_plan)`` the leaderboard passes to ``agent.set_global_plan``.

        ``world_plan`` is ``[(carla.Transform, RoadOption)]`` in CARLA coordinates, ``gps_plan`` is
        ``[({'lat', 'lon', 'z'}, RoadOption)]``. The agent down-samples it itself (``downsample_route(route, 200)``
        in the leaderboard's ``AutonomousAgent.set_global_plan``; see ``routes.downsampled_plan``).
        """
        return global_plan(self.town, self.route)

    def validate_sensors(self, sensor_specs: Sequence[Mapping[str, Any]]) -> None:
        """Raise ``SensorUnsupportedError`` naming the sensor if one cannot be produced (lidar, radar...)."""
        self._sensors.validate(sensor_specs)

    def sensor_data(self, sensor_specs: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, Any]]:
        """Return the leaderboard ``input_data`` ``{id: (frame, data)}`` for the declared sensors at this frame."""
        return self._sensors.read(self, sensor_specs)

    def apply_control(self, control: Any) -> None:
        """Set the ``carla.VehicleControl`` (or any object with steer/throttle/brake/hand_brake/reverse) to use."""
        self.ego.apply_control(control)

    def tick(self) -> None:
        """Advance the world by ``dt_s``: the ego (response + bicycle model), lights, pedestrians, then the traffic."""
        dt_s = self.config.dt_s
        self.ego.step(dt_s)
        self.lights.update(self.time_s + dt_s)
        ego_box = self.ego.box_state()
        t = self.traffic
        vehicles = (
            np.append(t.x_m, ego_box[0]),
            np.append(t.y_m, ego_box[1]),
            np.append(t.yaw_rad, ego_box[2]),
            np.append(t.speed_mps, ego_box[3]),
            np.append(t.length_m, ego_box[4]),
            np.append(t.width_m, ego_box[5]),
            np.append(t.parked, False),
        )
        self.walkers.step(dt_s, vehicles)
        self.traffic.step(dt_s, ego_box, self.walkers)
        self.frame += 1
        self.time_s = self.frame * dt_s

    # ----- state -----
    def snapshot(self) -> WorldSnapshot:
        """Return the ego and the other vehicles as arrays in the internal world frame (copy; safe to keep)."""
        e = self.ego
        ex, ey, eyaw = e.center_pose_world()
        ego = ActorArrays(
            ids=np.zeros(1, np.int64),
            x_m=np.array([ex]),
            y_m=np.array([ey]),
            yaw_rad=np.array([eyaw]),
            speed_mps=np.array([e.speed_mps]),
            length_m=np.array([e.params.length_m]),
            width_m=np.array([e.params.width_m]),
            parked=np.zeros(1, bool),
            height_m=np.array([self.config.ego.height_m]),
            color_rgb=np.array([[200, 40, 40]], np.uint8),
        )
        vehicles = _actor_copies(self.traffic, self.traffic.parked.copy())
        return WorldSnapshot(
            frame=self.frame,
            time_s=self.time_s,
            ego=ego,
            vehicles=vehicles,
            ego_accel_mps2=e.accel_mps2,
            ego_yaw_rate_radps=e.yaw_rate_radps,
            ego_steer_rad=e.steer_rad,
            control=(e.control.steer, e.control.throttle, e.control.brake),
            ego_rear_axle_xy_m=(float(e.state[0]), float(e.state[1])),
            walkers=_actor_copies(self.walkers, np.zeros(len(self.walkers), bool)),
            light_state=self.lights.state.copy(),
        )

    # ----- rendering -----
    @property
    def renderer(self) -> CameraRenderer:
        """The camera/BEV renderer of this world's town (built on first use; shared per town)."""
        if self._renderer is None:
            self._renderer = CameraRenderer.for_town(self.town, self.config.render)
        return self._renderer

    def render_bev(
        self, size_px: int = 512, meters_per_px: float = 0.2, planned_xy_world_m: np.ndarray | None = None
    ) -> np.ndarray:
        """Bird's-eye view RGB (size_px, size_px, 3) uint8 centred on the ego, heading up: lanes, route, vehicles."""
        return self.renderer.render_bev(
            self.snapshot(),
            self.route.xy_world_m,
            size_px=size_px,
            meters_per_px=meters_per_px,
            planned_xy_world_m=planned_xy_world_m,
        )


_ACTOR_COLUMNS = ("ids", "x_m", "y_m", "yaw_rad", "speed_mps", "length_m", "width_m", "height_m", "color_rgb")


def _actor_copies(source: Any, parked: np.ndarray) -> ActorArrays:
    """``ActorArrays`` copied from the columns of the traffic or the walkers (a snapshot must not alias them)."""
    return ActorArrays(**{name: getattr(source, name).copy() for name in _ACTOR_COLUMNS}, parked=parked)
