"""The CARLA Leaderboard agent class: translates leaderboard sensor data and routes to the core, controls back.

``AutoVLAAgent`` subclasses the leaderboard's ``AutonomousAgent`` when ``leaderboard.autoagents`` is importable
(the evaluator, Bench2Drive) and ``adapters.carla.agent_base.AgentBase`` otherwise (embedded simulator, tests),
so one class runs everywhere. Translation only: the route (``global_plan``: ``_global_plan_world_coord``
preferred, the GPS plan as fall-back) into the internal world frame, GNSS/IMU/speed into a pose
(``loop.localizer``), camera data into the core loop (``loop.driving_loop``), and the loop's command into a
``carla.VehicleControl`` of plain, clipped, finite Python floats. The loaded model is cached per process
(``load_vla``), so the evaluator's new agent per route reuses it; ``destroy()`` drops only per-route state.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autovla_agent.adapters.carla.agent_base import VehicleControl as _FallbackVehicleControl
from autovla_agent.adapters.carla.global_plan import route_from_global_plan
from autovla_agent.config_io import ConfigError
from autovla_agent.constant_velocity import ConstantVelocityPlanner
from autovla_agent.contract import Planner
from autovla_agent.loop.agent_config import AgentConfig, AgentConfigSpec, load_agent_config
from autovla_agent.loop.driving_loop import DrivingLoop, TickResult
from autovla_agent.loop.localizer import EgoEstimate, GnssLocalizer
from autovla_agent.loop.recording import AgentReplayRecorder, MetricInfoWriter
from autovla_agent.sensors import frames

try:
    import carla

    _VehicleControl: Any = carla.VehicleControl
except ImportError:  # the package runs without the carla client (embedded simulator, NAVSIM-only installs)
    _VehicleControl = _FallbackVehicleControl

try:  # the leaderboard's base class when its sources are on PYTHONPATH (leaderboard_evaluator.py, Bench2Drive)
    from leaderboard.autoagents.autonomous_agent import AutonomousAgent, Track
except ImportError:
    from autovla_agent.adapters.carla.agent_base import AgentBase as AutonomousAgent
    from autovla_agent.adapters.carla.agent_base import Track

logger = logging.getLogger(__name__)


def _unit(value: Any, default: float) -> float:
    """``value`` as a plain float clipped to [0, 1]; NaN, inf or junk give ``default``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return float(min(1.0, max(0.0, number))) if math.isfinite(number) else default


def make_vehicle_control(steer_norm: Any, throttle_norm: Any, brake_norm: Any) -> Any:
    """A ``carla.VehicleControl`` from internal-sign values: plain floats, clipped, NaN-guarded.

    A non-finite steer goes straight, a non-finite throttle is 0 and a non-finite brake brakes fully;
    throttle is dropped whenever the brake is pressed, so the two never fight.
    """
    try:
        steer = frames.steer_norm_to_carla(float(steer_norm))
    except (TypeError, ValueError):
        steer = 0.0
    brake = _unit(brake_norm, 1.0)
    throttle = 0.0 if brake > 0.0 else _unit(throttle_norm, 0.0)
    return _VehicleControl(
        throttle=throttle, steer=steer, brake=brake, hand_brake=False, reverse=False, manual_gear_shift=False
    )


def _reading(input_data: Mapping[str, Any], sensor_id: str | None) -> Any:
    """The data part of ``input_data[sensor_id] = (frame, data)``, or None when absent or malformed."""
    if sensor_id is None:
        return None
    item = input_data.get(sensor_id)
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[1]
    return None


class AutoVLAAgent(AutonomousAgent):
    """AutoVLA-style VLA driving agent for the CARLA Leaderboard 2.0 and Bench2Drive (see the module docstring)."""

    def __init__(self, carla_host: str = "localhost", carla_port: int = 2000, debug: bool = False) -> None:
        super().__init__(carla_host, carla_port, debug)
        self.config: AgentConfig | None = None
        self.config_spec: AgentConfigSpec | None = None
        self.planner: Planner | None = None  # built by setup(); may be replaced before the first tick
        self._loop: DrivingLoop | None = None
        self._localizer: GnssLocalizer | None = None
        self._recorder: AgentReplayRecorder | None = None
        self._metric_writer: MetricInfoWriter | None = None
        self.last_plan_record: dict[str, Any] | None = None  # read by the embedded simulator's replays
        self.last_step_record: dict[str, Any] | None = None
        self.last_tick: TickResult | None = None
        self.step = 0
        self.num_step_errors = 0

    @property
    def loop(self) -> DrivingLoop | None:
        """The per-route core loop (frame buffer, route follower, tracker); None before the first tick."""
        return self._loop

    # ---------------------------------------------------------------------------------------------- set-up
    def setup(self, path_to_conf_file: str) -> None:
        """Load the YAML named by ``--agent-config`` (``'<yaml> [key=value ...]'``, Bench2Drive's ``+name`` ok)."""
        config, spec = load_agent_config(path_to_conf_file)
        self.config, self.config_spec = config, spec
        package_logger = logging.getLogger("autovla_agent")
        package_logger.setLevel(config.log_level)
        if not package_logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            package_logger.addHandler(handler)
        self.track = Track[config.rig.track]
        self.planner = self._build_planner(config)
        logger.info(
            "agent set up from %s%s (planner %s, replan %.1f Hz, track %s)",
            spec.path,
            f" with {list(spec.overrides)}" if spec.overrides else "",
            config.planner,
            config.replan_hz,
            config.rig.track,
        )

    @staticmethod
    def _build_planner(config: AgentConfig) -> Planner:
        if config.planner == "constant_velocity":
            return ConstantVelocityPlanner(config.vla.decoding.plan_times_s, config.baseline_min_speed_mps)
        if not config.vla.model.path:
            raise ConfigError(
                "vla.model.path is empty: set it in the YAML to the model folder, or pass "
                '--agent-config "<yaml> vla.model.path=/abs/path/to/model"'
            )
        from autovla_agent.policy.modeling import VLAPlanner  # torch is imported only for the VLA planner

        model_path = Path(config.vla.model.path)
        if config.build_tiny_model_if_missing and not (model_path / "config.json").is_file():
            from autovla_agent.policy.tiny_model import build_tiny_model

            logger.info("building the tiny random model at %s (build_tiny_model_if_missing)", model_path)
            build_tiny_model(model_path, overwrite=True)
        return VLAPlanner(config.vla)

    def sensors(self) -> list[dict[str, Any]]:
        """The rig of the config as leaderboard sensor dicts (cameras, GNSS, IMU, speedometer)."""
        if self.config is None:
            raise RuntimeError("sensors() needs setup(path_to_conf_file) first (pass --agent-config <yaml>)")
        return self.config.rig.to_leaderboard()

    def _build_route_state(self, config: AgentConfig) -> None:
        """Route in world coordinates, localiser and loop, from the global plan (called on the first tick)."""
        route = route_from_global_plan(self._global_plan_world_coord or [], self._global_plan or [])
        route_xy_world = frames.carla_to_world_xy(route.xy_carla_m)
        self._localizer = GnssLocalizer(
            config.localization,
            route_xy_carla_m=route.xy_carla_m,
            lat_ref_deg=route.lat_ref_deg,
            lon_ref_deg=route.lon_ref_deg,
            route_yaw_world_rad=route.route_yaw_world_rad,
            rear_axle_offset_m=config.vehicle.rear_axle_offset_m,
        )
        assert self.planner is not None
        self._loop = DrivingLoop(config, self.planner, route_xy_world, route.commands)
        save_name = self.config_spec.save_name if self.config_spec is not None else ""
        config_path = str(self.config_spec.path) if self.config_spec is not None else ""
        if config.record_dir:
            self._recorder = AgentReplayRecorder.for_route(config, route_xy_world, config_path, save_name)
        if config.metric_info_dir:
            self._metric_writer = MetricInfoWriter.for_route(config, save_name, getattr(self, "get_metric_info", None))

    # ----------------------------------------------------------------------------------------------- ticks
    def run_step(self, input_data: Mapping[str, Any], timestamp: float) -> Any:
        """One tick: leaderboard ``input_data`` ``{id: (frame, data)}`` and sim time (s) -> ``VehicleControl``.

        Never raises: an internal error is logged, counted in ``num_step_errors`` and answered with full brake.
        """
        self.step += 1
        try:
            return self._run_step(input_data, float(timestamp))
        except Exception:  # noqa: BLE001 -- the evaluator would end the route ("Agent crashed"); brake instead
            self.num_step_errors += 1
            logger.exception("run_step failed at t=%s s (error %d); braking", timestamp, self.num_step_errors)
            return make_vehicle_control(0.0, 0.0, 1.0)

    def _run_step(self, input_data: Mapping[str, Any], timestamp_s: float) -> Any:
        config = self.config
        if config is None:
            raise RuntimeError("run_step before setup(): pass --agent-config <yaml>")
        if self._loop is None:
            self._build_route_state(config)
        assert self._loop is not None and self._localizer is not None
        rig = config.rig
        ego: EgoEstimate = self._localizer.update(
            timestamp_s,
            _reading(input_data, rig.gnss.id if rig.gnss else None),
            _reading(input_data, rig.imu.id if rig.imu else None),
            _reading(input_data, rig.speedometer.id if rig.speedometer else None),
        )
        images = {cid: _reading(input_data, cid) for cid in rig.camera_ids}
        tick = self._loop.step(ego, images)
        self.last_tick = tick
        cmd = tick.command
        control = make_vehicle_control(cmd.steer_norm, cmd.throttle_norm, cmd.brake_norm)
        if tick.replanned:
            self.last_plan_record = self._loop.last_plan_record
        self.last_step_record = {
            "time_s": timestamp_s,
            "state": tick.state,
            "command": tick.nav_command.value,
            "target_point_ego_m": tick.target_point_ego_m,
            "pose_world": ego.origin_pose_world.tolist(),
            "speed_mps": ego.speed_mps,
            "accel_mps2": ego.accel_mps2,
            "heading_source": ego.heading_source,
            "latitude_sign": self._localizer.latitude_sign,
            "planner_time_s": tick.planner_time_s,
        }
        if self._recorder is not None:
            self._recorder.step(
                timestamp_s,
                input_data,
                ego.origin_pose_world,
                ego.speed_mps,
                ego.accel_mps2,
                (control.steer, control.throttle, control.brake),
                self.last_plan_record,
                self.last_step_record,
            )
        if self._metric_writer is not None:
            self._metric_writer.step(self.step)
        return control

    def destroy(self) -> None:
        """End of route: close logs and drop per-route state; the process-wide model cache stays loaded."""
        start = time.perf_counter()
        if self._recorder is not None:
            self._recorder.close()
        if self._metric_writer is not None:
            self._metric_writer.flush()
        if self._loop is not None:
            buffer = self._loop.frame_buffer
            stats = getattr(self.planner, "stats", None)
            logger.info(
                "route done: %d ticks, %d plans (%d fallbacks), %d repeated / %d dropped frames, %d step errors%s",
                self.step,
                self._loop.num_plans,
                self._loop.num_fallbacks,
                buffer.num_repeated,
                buffer.num_dropped,
                self.num_step_errors,
                f", planner {stats.as_dict()}" if dataclasses.is_dataclass(stats) else "",
            )
        self._loop = self._localizer = self._recorder = self._metric_writer = None
        self.planner = None
        logger.debug("destroy took %.3f s", time.perf_counter() - start)
        parent_destroy = getattr(super(), "destroy", None)
        if callable(parent_destroy):
            parent_destroy()
