"""Privileged expert agent for the embedded runner: follows the route with IDM gap keeping through our controllers.

A leaderboard-style agent file (``get_entry_point()``, the ``AgentBase`` call protocol): run it with
``autovla-evaluate --agent autovla_agent/sim/expert.py``. The runner hands it the embedded ``World`` through
``set_privileged_world(world)`` (called after ``set_global_plan``, before ``setup``); it reads the dense route,
the ego state and every other vehicle (with the lanes each will take) from it, never from sensors.

Every tick (20 Hz) it plans a trajectory for the rear axle along the dense route centre line:
- target speed along the path: ``min(speed cap, sqrt(max_lateral_accel / |curvature|))``, then limited backwards
  by ``plan_decel_mps2`` so it slows before curves;
- the leader: the nearest vehicle whose box reaches into the ego's corridor along the path (a parked or stopped
  one is an obstacle at speed 0); vehicles about to cross the path (predicted along their lanes) that reach the
  crossing point before the ego, or within ``yield_margin_s`` of it, are yielded to as stopped obstacles;
- traffic rules (``autovla_agent.sim.expert_rules``): it stops for red lights (and yellow ones it can stop for),
  stands at stop signs inside the zone the leaderboard counts, yields to pedestrians on or about to cross its
  path, and keeps ``speed_limit_fraction`` of the speed limit in force, all read from the world (never sensors);
- a rollout of IDM-like gap keeping (``min(free-road accel, IDM interaction)``) over ``horizon_s`` gives the
  speed profile, hence timed poses.
It drives the plan through ``planners.control.TrajectoryTracker`` (the same controllers as the AutoVLA agent)
and ``sensors.frames.steer_norm_to_carla`` for CARLA's steer sign. Its config and the leader / yield search live
in ``autovla_agent.sim.expert_perception``.

Exposed per tick (training data, replays): ``last_step_record`` (route ahead, leader, target speed, meta action,
command, control) and, every ``plan_record_every_s``, ``last_plan_record`` (the runner's replay hook).
Config: ``setup("")`` uses the defaults; ``setup(path)`` loads an ``ExpertConfig`` YAML (Bench2Drive's
``+save_name`` suffix is ignored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autovla_agent.adapters.carla.agent_base import AgentBase, Track, road_option_name
from autovla_agent.planners.control import TrajectoryTracker
from autovla_agent.planners.vehicle import VehicleParams
from autovla_agent.sensors import frames
from autovla_agent.sim.expert_perception import ExpertConfig, ExpertPerception, Obstacle, project_on_path
from autovla_agent.sim.expert_rules import ExpertRules

__all__ = ["ExpertAgent", "get_entry_point", "idm_accel_mps2", "speed_profile_mps"]


def get_entry_point() -> str:
    """Name of the agent class in this file, as the leaderboard evaluator expects."""
    return "ExpertAgent"


# --------------------------------------------------------------------------------------------- pure planning
def speed_profile_mps(
    yaw_rad: np.ndarray, s_m: np.ndarray, max_speed_mps: float, max_lateral_accel_mps2: float, decel_mps2: float
) -> np.ndarray:
    """Target speed (N,) along a path: curvature-limited, then limited backwards by ``decel_mps2``."""
    yaw = np.unwrap(np.asarray(yaw_rad, float))
    s = np.asarray(s_m, float)
    if len(s) < 3:
        return np.full(len(s), max_speed_mps)
    kappa = np.gradient(yaw, s, edge_order=1)
    kappa = np.convolve(np.abs(kappa), np.ones(5) / 5.0, mode="same")
    v = np.minimum(max_speed_mps, np.sqrt(max_lateral_accel_mps2 / np.maximum(kappa, 1e-6)))
    for i in range(len(v) - 2, -1, -1):
        v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2.0 * decel_mps2 * max(s[i + 1] - s[i], 0.0)))
    return v


def idm_accel_mps2(
    speed_mps: float, target_mps: float, gap_m: float, leader_speed_mps: float, cfg: ExpertConfig
) -> float:
    """IDM-like acceleration: ``min`` of free-road speed tracking and IDM's interaction term, clamped."""
    free = float(np.clip(cfg.speed_gain_1ps * (target_mps - speed_mps), -cfg.comfort_decel_mps2, cfg.max_accel_mps2))
    if math.isinf(gap_m):
        return free
    dv = speed_mps - leader_speed_mps
    s_star = cfg.min_gap_m + max(
        0.0,
        speed_mps * cfg.time_headway_s
        + speed_mps * dv / (2.0 * math.sqrt(cfg.max_accel_mps2 * cfg.comfort_decel_mps2)),
    )
    interaction = cfg.max_accel_mps2 * (1.0 - (s_star / max(gap_m, 0.1)) ** 2)
    return float(np.clip(min(free, interaction), -cfg.max_decel_mps2, cfg.max_accel_mps2))


@dataclass(slots=True)
class _State:
    """Per-route state of the expert."""

    route_index: int = 0
    last_plan_time_s: float = -math.inf
    plan_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    plan_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    last_time_s: float | None = None


class ExpertAgent(AgentBase):
    """The privileged expert (see the module docstring); a new instance per route, as every leaderboard agent."""

    def __init__(self, carla_host: str = "localhost", carla_port: int = 2000, debug: bool = False) -> None:
        super().__init__(carla_host, carla_port, debug)
        self.config = ExpertConfig()
        self.world: Any = None
        self.last_plan_record: dict[str, Any] | None = None
        self.last_step_record: dict[str, Any] | None = None
        self._state = _State()
        self._tracker: TrajectoryTracker | None = None
        self._perception: ExpertPerception | None = None
        self._rules: ExpertRules | None = None
        self._vehicle = VehicleParams()

    # ------------------------------------------------------------------ leaderboard protocol
    def set_privileged_world(self, world: Any) -> None:
        """Receive the embedded ``World`` (route, ego, traffic): the expert's only input."""
        self.world = world

    def setup(self, path_to_conf_file: str) -> None:
        """Load the ``ExpertConfig`` YAML (or defaults for ""), build the tracker, set the SENSORS track."""
        from autovla_agent.config_io import load_yaml

        path = (path_to_conf_file or "").split("+")[0].strip()
        self.config = load_yaml(ExpertConfig, path) if path else ExpertConfig()
        self.track = Track.SENSORS
        if self.world is not None:
            self._vehicle = self.world.config.ego.vehicle  # the embedded ego's geometry and limits
        self._tracker = TrajectoryTracker(self.config.control, self._vehicle)
        self._perception = ExpertPerception(self.config, self._vehicle, self.world)
        if self.world is not None:
            self._rules = ExpertRules(self.world, self.config, 0.5 * self._vehicle.length_m)

    def sensors(self) -> list[dict[str, Any]]:
        """Front camera (for replays and recorded data) plus GNSS, IMU, speedometer; the expert reads none."""
        from autovla_agent.sensors.rig import CameraSpec, RigConfig

        cfg = self.config
        if cfg.camera == "none":
            rig = RigConfig()
            return [s for s in rig.to_leaderboard() if s["type"] != "sensor.camera.rgb"]
        camera = CameraSpec(width_px=cfg.camera_width_px, height_px=cfg.camera_height_px, fov_deg=cfg.camera_fov_deg)
        return RigConfig(cameras=(camera,)).to_leaderboard()

    def destroy(self) -> None:
        """Drop the per-route state and the world reference."""
        self.world = None
        self._tracker = None
        self._perception = None
        self._rules = None
        self._state = _State()

    def run_step(self, input_data: Any, timestamp: float) -> Any:
        """Plan on the privileged state and return a ``carla.VehicleControl``."""
        import carla

        if self.world is None:
            raise RuntimeError("the expert needs the embedded world: run it with autovla-evaluate")
        del input_data
        st = self._state
        dt_s = float(self.world.config.dt_s) if st.last_time_s is None else max(timestamp - st.last_time_s, 1e-3)
        st.last_time_s = timestamp
        snap = self.world.snapshot()
        rear = np.array([*snap.ego_rear_axle_xy_m, float(snap.ego.yaw_rad[0])])
        speed = float(snap.ego.speed_mps[0])
        cfg = self.config
        # look far enough ahead to stop comfortably from the current speed (lights, turns on fast roads)
        lookahead = max(cfg.lookahead_m, speed * speed / (2.0 * cfg.plan_decel_mps2) + 30.0)
        path_xy, path_yaw, path_s, options = self._path_ahead(rear[:2], lookahead)
        s0 = float(project_on_path(path_xy, path_s, rear[None, :2])[0][0])
        caps = self._rules.speed_caps(path_s) if self._rules is not None else cfg.max_speed_mps
        v_profile = speed_profile_mps(path_yaw, path_s, caps, cfg.max_lateral_accel_mps2, cfg.plan_decel_mps2)
        obstacle = self._nearest(snap, path_xy, path_s, s0, speed, timestamp)
        times, s_plan, v_plan = self._rollout(s0, speed, path_s, v_profile, obstacle)
        poses = self._poses_at(path_xy, path_yaw, path_s, s_plan)
        st.plan_t, st.plan_s = times, s_plan
        self._tracker.set_plan(timestamp, times, poses, start_pose_world=rear)
        cmd = self._tracker.step(timestamp, rear, speed, dt_s, obstacle_ahead=obstacle is not None)
        control = carla.VehicleControl(
            steer=frames.steer_norm_to_carla(cmd.steer_norm),
            throttle=float(np.clip(cmd.throttle_norm, 0.0, 1.0)),
            brake=float(np.clip(cmd.brake_norm, 0.0, 1.0)),
        )
        self._records(timestamp, snap, path_xy, path_s, s0, options, v_profile, obstacle, v_plan, times, poses, control)
        return control

    # ------------------------------------------------------------------ planning steps
    def _nearest(
        self, snap: Any, path_xy: np.ndarray, path_s: np.ndarray, s0: float, speed: float, time_s: float
    ) -> Obstacle | None:
        """The nearest of: a vehicle to follow or yield to, a light or stop sign to stop at, a pedestrian."""
        st = self._state
        found = [self._perception.nearest_obstacle(snap, path_xy, path_s, s0, (st.plan_t, st.plan_s))]
        if self._rules is not None:
            front_m = self._vehicle.rear_axle_offset_m + 0.5 * self._vehicle.length_m
            found.append(self._rules.signal_obstacle(time_s, s0, speed, front_m))
            found.append(self._rules.walker_obstacle(path_xy, path_s, s0, front_m))
        found = [o for o in found if o is not None]
        return min(found, key=lambda o: o.s_m) if found else None

    def _path_ahead(
        self, rear_xy: np.ndarray, lookahead_m: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
        """The dense route from 15 m behind the ego to ``lookahead_m`` ahead, extended straight past its end."""
        route = self.world.route
        xy, yaw, s = route.xy_world_m, route.yaw_world_rad, route.s_m
        st = self._state
        lo, hi = max(st.route_index - 5, 0), min(st.route_index + 40, len(xy))
        d = np.linalg.norm(xy[lo:hi] - rear_xy, axis=1)
        st.route_index = lo + int(np.argmin(d))
        i0 = int(np.searchsorted(s, s[st.route_index] - 15.0))  # 15 m behind: followers are recognised
        i1 = int(np.searchsorted(s, s[st.route_index] + lookahead_m)) + 1
        p_xy, p_yaw, p_s = xy[i0:i1], yaw[i0:i1], s[i0:i1]
        options = list(route.options[i0:i1])
        if i1 >= len(xy):  # past the route end: keep going straight so the plan never runs out
            ext = np.arange(1.0, 31.0)
            heading = np.array([math.cos(yaw[-1]), math.sin(yaw[-1])])
            p_xy = np.vstack([p_xy, xy[-1] + ext[:, None] * heading])
            p_yaw = np.concatenate([p_yaw, np.full(len(ext), yaw[-1])])
            p_s = np.concatenate([p_s, s[-1] + ext])
            options += [options[-1] if options else None] * len(ext)
        return p_xy, p_yaw, p_s, options

    def _rollout(
        self, s0: float, speed_mps: float, path_s: np.ndarray, v_profile: np.ndarray, obstacle: Obstacle | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Times (T,), arc lengths (T,) and speeds (T,) of the IDM rollout from the current state."""
        cfg = self.config
        front_m = self._vehicle.rear_axle_offset_m + 0.5 * self._vehicle.length_m
        n = round(cfg.horizon_s / cfg.plan_dt_s)
        times = cfg.plan_dt_s * np.arange(1, n + 1)
        s, v = s0, max(speed_mps, 0.0)
        s_out, v_out = np.zeros(n), np.zeros(n)
        for i in range(n):
            target = float(np.interp(s, path_s, v_profile))
            gap, lead_v = math.inf, 0.0
            if obstacle is not None:
                lead_v = obstacle.speed_mps
                gap = obstacle.s_m + lead_v * i * cfg.plan_dt_s - (s + front_m)
            a = idm_accel_mps2(v, target, gap, lead_v, cfg)
            v_next = max(v + a * cfg.plan_dt_s, 0.0)
            s += 0.5 * (v + v_next) * cfg.plan_dt_s
            v = v_next
            s_out[i], v_out[i] = s, v
        return times, s_out, v_out

    @staticmethod
    def _poses_at(path_xy: np.ndarray, path_yaw: np.ndarray, path_s: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Rear-axle poses (T, 3) on the path at arc lengths ``s`` (world frame)."""
        yaw = np.unwrap(path_yaw)
        return np.stack(
            [np.interp(s, path_s, path_xy[:, 0]), np.interp(s, path_s, path_xy[:, 1]), np.interp(s, path_s, yaw)],
            axis=-1,
        )

    # ------------------------------------------------------------------ records
    def _reason(self, obstacle: Obstacle, s0: float) -> str:
        """What the expert reacts to, in words (the replay's reasoning line)."""
        gap = obstacle.s_m - (s0 + self._vehicle.rear_axle_offset_m + 0.5 * self._vehicle.length_m)
        if obstacle.kind in ("red light", "stop sign"):
            return f"stopping for a {obstacle.kind} {max(gap - self.config.min_gap_m, 0.0):.1f} m ahead"
        if obstacle.kind == "pedestrian":
            return f"yielding to pedestrian {obstacle.actor_id} {gap:.1f} m ahead"
        verb = {"vehicle": "following", "stopped": "stopped obstacle", "crossing": "yielding to crossing"}
        return f"{verb[obstacle.kind]} vehicle {obstacle.actor_id} {gap:.1f} m ahead at {obstacle.speed_mps:.1f} m/s"

    def _records(
        self,
        t: float,
        snap: Any,
        path_xy: np.ndarray,
        path_s: np.ndarray,
        s0: float,
        options: list[Any],
        v_profile: np.ndarray,
        obstacle: Obstacle | None,
        v_plan: np.ndarray,
        times: np.ndarray,
        poses: np.ndarray,
        control: Any,
    ) -> None:
        speed = float(snap.ego.speed_mps[0])
        ahead = (path_s >= s0) & (path_s <= s0 + 15.0)
        names = [road_option_name(o) for o, a in zip(options, ahead, strict=True) if a and o is not None]
        turn = next((n for n in names if n not in ("LANEFOLLOW", "VOID")), names[0] if names else "LANEFOLLOW")
        lateral = {
            "LEFT": "turn left",
            "RIGHT": "turn right",
            "STRAIGHT": "go straight",
            "CHANGELANELEFT": "change lane to the left",
            "CHANGELANERIGHT": "change lane to the right",
        }
        lateral_action = lateral.get(turn, "follow the lane")
        v_target = float(v_plan[min(9, len(v_plan) - 1)])
        if v_target < 0.3 and speed < 0.5:
            longitudinal = "stop"
        elif v_target > speed + 0.3:
            longitudinal = "accelerate"
        elif v_target < speed - 0.3:
            longitudinal = "decelerate"
        else:
            longitudinal = "keep speed"
        if obstacle is None:
            v_curve = float(np.interp(s0, path_s, v_profile))
            cap = float(self._rules.speed_caps(np.array([s0]))[0]) if self._rules else self.config.max_speed_mps
            reason = "road clear" if v_curve >= cap - 0.1 else f"curve ahead, {v_curve:.1f} m/s"
        else:
            reason = self._reason(obstacle, s0)
        step_ahead = (path_s >= s0) & (path_s <= s0 + 40.0)
        self.last_step_record = {
            "time_s": t,
            "route_index": self._state.route_index,
            "route_ahead_world": path_xy[step_ahead][::2],
            "target_speed_mps": v_target,
            "leader": None
            if obstacle is None
            else {
                "id": obstacle.actor_id,
                "kind": obstacle.kind,
                "distance_m": obstacle.s_m - s0,
                "speed_mps": obstacle.speed_mps,
            },
            "meta_action": {"lateral": lateral_action, "longitudinal": longitudinal},
            "command": turn,
            "control": [control.steer, control.throttle, control.brake],
        }
        if t - self._state.last_plan_time_s >= self.config.plan_record_every_s - 1e-6:
            self._state.last_plan_time_s = t
            self.last_plan_record = {
                "time_s": t,
                "poses_world": poses[4::5],
                "thinking_mode": "fast",
                "reasoning": f"{lateral_action}, {longitudinal}: {reason}.",
                "status": "ok",
                "command": lateral_action,
            }
