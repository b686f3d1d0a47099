"""``autovla-evaluate``: run a leaderboard agent file over route files on the embedded world, as the evaluator does.

Mirrors ``leaderboard_evaluator.py`` (CARLA Leaderboard 2.0) without a CARLA server::

    autovla-evaluate --routes routes_default --agent autovla_agent/sim/expert.py \
        --checkpoint results/expert.json --record results/replays

Per route: a world on the route's town, a NEW agent instance built in the evaluator's order
(``set_global_plan`` -> ``set_privileged_world`` if defined -> ``setup`` -> ``sensors`` -> validation on the first
route), then ticks at 20 Hz (sensor data -> agent -> ``VehicleControl`` -> world tick -> criteria) until the
route completes or a criterion ends it; ``destroy()``, then the route record is written (atomically) to the
results JSON, in the leaderboard's layout.

Failures are recorded with the leaderboard's reasons: a route that cannot be built (unknown town, route off the
road network) -> "Simulation crashed"; an agent file that does not import or a ``setup()`` that raises ->
"Agent couldn't be set up"; ``run_step`` raising (or returning no valid ``VehicleControl``) -> "Agent crashed".
In all three cases the run goes on with the next route (the leaderboard stops on "Simulation crashed", but here
it concerns one route only). Invalid sensors (leaderboard rules, wrong track) reject the whole evaluation and
stop it, as the leaderboard does; so does a sensor type the embedded world cannot produce (e.g. LiDAR).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autovla_agent.config_io import ConfigError, apply_overrides, from_dict, to_dict
from autovla_agent.sim.agent_loader import (
    TRACKS,
    SensorConfigurationInvalid,
    call_agent,
    check_control,
    create_agent,
    load_agent_class,
    load_agent_module,
    validate_agent_sensors,
)
from autovla_agent.sim.replay.log import ReplayConfig, RouteRecorder, render_video
from autovla_agent.sim.scoring.results import FAILURE_MESSAGES, ResultsFile, RouteOutcome, make_route_record, route_name
from autovla_agent.sim.scoring.route_scorer import RouteScorer, ScoringConfig
from autovla_agent.sim.world.simulation import WorldConfig

logger = logging.getLogger(__name__)

__all__ = ["RunnerConfig", "build_parser", "main"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RunnerConfig:
    """Embedded evaluation settings: the world, the criteria thresholds, the replays and a tick cap."""

    world: WorldConfig = field(default_factory=WorldConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    max_ticks: int = 0  # 0: no cap; Bench2Drive caps a route at 4000 ticks ("Failed - TickRuntime")

    def __post_init__(self) -> None:
        """Validate the tick cap."""
        if self.max_ticks < 0:
            raise ValueError("RunnerConfig.max_ticks must be >= 0 (0 = no cap)")


def load_runner_config(path: str | None, overrides: Sequence[str], num_traffic: int | None) -> RunnerConfig:
    """RunnerConfig from an optional YAML (sections world, scoring, replay, max_ticks) and dotted overrides."""
    defaults = {
        "world": to_dict(WorldConfig()),
        "scoring": to_dict(ScoringConfig()),
        "replay": to_dict(ReplayConfig()),
        "max_ticks": 0,
    }
    if path:
        import yaml

        text = Path(path).read_text(encoding="utf-8")
        user = yaml.safe_load(text) or {}
        if not isinstance(user, dict):
            raise ConfigError(f"{path}: the top level must be a mapping (world, scoring, replay, max_ticks)")
        unknown = sorted(set(user) - set(defaults))
        if unknown:
            raise ConfigError(f"{path}: unknown section(s) {unknown}; allowed: {sorted(defaults)}")
        for key, value in user.items():
            defaults[key] = _merge(defaults[key], value, key)
    data = apply_overrides(defaults, overrides)
    world = from_dict(WorldConfig, data["world"], "world")
    if num_traffic is not None:
        world = dataclasses.replace(world, traffic=dataclasses.replace(world.traffic, num_vehicles=int(num_traffic)))
    return RunnerConfig(
        world=world,
        scoring=from_dict(ScoringConfig, data["scoring"], "scoring"),
        replay=from_dict(ReplayConfig, data["replay"], "replay"),
        max_ticks=int(data["max_ticks"]),
    )


def _merge(base: Any, update: Any, path: str) -> Any:
    """Deep-merge a YAML section into the defaults; unknown keys are errors naming their dotted path."""
    if not isinstance(base, dict) or not isinstance(update, dict):
        return update
    merged = dict(base)
    for key, value in update.items():
        if key not in base:
            raise ConfigError(f"unknown key {path}.{key}; allowed: {sorted(base)}")
        merged[key] = _merge(base[key], value, f"{path}.{key}")
    return merged


def _bool_arg(text: str) -> bool:
    """``--resume`` value: true/false words (the leaderboard's ``type=bool`` takes any text as True)."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """The command line, with the leaderboard evaluator's option names."""
    p = argparse.ArgumentParser(
        prog="autovla-evaluate",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--routes", required=True, help="route XML file, or a shipped name (routes_default, routes_smoke)")
    p.add_argument("--routes-subset", default="", help="route ids to run, e.g. '0-3,7'")
    p.add_argument("--repetitions", type=int, default=1, help="runs per route (seed + repetition each)")
    p.add_argument("-a", "--agent", required=True, help="path of the agent's .py file (module with get_entry_point)")
    p.add_argument("--agent-config", default="", help="string passed to agent.setup()")
    p.add_argument("--track", default="SENSORS", help="SENSORS, MAP, SENSORS_QUALIFIER or MAP_QUALIFIER")
    p.add_argument("--checkpoint", default="./simulation_results.json", help="results JSON (also read by --resume)")
    p.add_argument("--record", default="", help="folder for route logs and replay videos ('' = none)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        type=_bool_arg,
        help="skip the routes already finished in --checkpoint",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of traffic and sensor noise")
    p.add_argument("--traffic", type=int, default=None, help="number of traffic vehicles (default: world config)")
    p.add_argument("--timeout", type=float, default=300.0, help="watchdog for agent setup and each step, seconds")
    p.add_argument("--sim-config", default="", help="YAML with sections world, scoring, replay, max_ticks")
    p.add_argument(
        "--sim-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. scoring.blocked_max_time_s=90 (repeatable)",
    )
    p.add_argument("--host", default="localhost", help="passed to the agent constructor (no server is used)")
    p.add_argument("--port", type=int, default=2000, help="passed to the agent constructor (no server is used)")
    p.add_argument("--debug", type=int, default=0, help="debug level (passed to the agent; > 0 logs DEBUG)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


class _Evaluator:
    """One evaluation run over a list of routes (the state the leaderboard keeps in its evaluator)."""

    def __init__(self, args: argparse.Namespace, config: RunnerConfig) -> None:
        self.args = args
        self.config = config
        self.results = ResultsFile(args.checkpoint)
        self.sensors_validated = False
        self.record_dir = Path(args.record) if args.record else None
        self.videos: list[Path] = []

    # ------------------------------------------------------------------ run
    def run(self, routes: Sequence[Any]) -> int:
        reps = max(1, int(self.args.repetitions))
        plan = [(spec, rep) for spec in routes for rep in range(reps)]
        names = [route_name(spec.route_id, rep) for spec, rep in plan]
        skip = self.results.resume_from(names) if self.args.resume else 0
        if skip:
            logger.info("resuming %s: %d of %d routes already done", self.results.path, skip, len(plan))
        else:
            self.results.start(len(plan))
        self.results.save()
        logger.info("results: %s", self.results.path.resolve())
        if self.record_dir is not None:
            logger.info("route logs and replays: %s", self.record_dir.resolve())
        stopped = False
        for index in range(skip, len(plan)):
            spec, rep = plan[index]
            stopped = self._run_route(spec, rep, index)
            self.results.save()
            if stopped:
                logger.error(
                    "the evaluation stopped at %s (see above); results so far: %s", names[index], self.results.path
                )
                break
        if not stopped:
            self.results.finalize(self.sensors_validated, crashed=False)
            self.results.save()
        self._summary()
        logger.info("results written to %s", self.results.path.resolve())
        for video in self.videos:
            logger.info("replay: %s", video.resolve())
        return 1 if stopped else 0

    def _register(
        self,
        name: str,
        index: int,
        outcome: RouteOutcome | None,
        reason: str,
        entry_status: str,
        route_length_m: float = 0.0,
    ) -> dict[str, Any]:
        record = make_route_record(name, index, outcome, reason, route_length_m)
        self.results.add_record(record, entry_status)
        self.results.save()
        logger.info("%s: %s (driving score %.2f)", name, record["status"], record["scores"]["score_composed"])
        return record

    # ------------------------------------------------------------------ one route
    def _run_route(self, spec: Any, rep: int, index: int) -> bool:
        """Run one route; return True when the whole evaluation must stop."""
        from autovla_agent.sim.world.sensors import SensorUnsupportedError
        from autovla_agent.sim.world.simulation import World

        args = self.args
        name = route_name(spec.route_id, rep)
        logger.info("========= %s on %s (%d/%d) =========", name, spec.town, index + 1, self.results.progress[1])
        try:
            world = World(spec.town, spec, self.config.world, seed=args.seed + rep)
        except Exception as exc:  # noqa: BLE001 -- any failure to build the route is a simulation crash
            logger.error("the route could not be loaded: %s: %s", type(exc).__name__, exc)
            return self._setup_failed(None, "Simulation", name, index, 0.0, stop=False)
        route_length_m = float(world.route.length_m)
        agent = None
        try:
            t0 = time.monotonic()
            cls = load_agent_class(load_agent_module(args.agent))
            gps_plan, world_plan = world.global_plan()
            agent = create_agent(
                cls,
                gps_plan,
                world_plan,
                args.agent_config,
                privileged_world=world,
                host=args.host,
                port=args.port,
                debug=bool(args.debug),
            )
            specs = list(agent.sensors())
            if not self.sensors_validated:
                validate_agent_sensors(specs, getattr(agent, "track", "SENSORS"), args.track)
                self.results.set_sensors(specs)
                self.results.save()
                self.sensors_validated = True
            world.validate_sensors(specs)
            if time.monotonic() - t0 > args.timeout:
                raise TimeoutError(f"Timeout: Agent took longer than {args.timeout}s to setup")
        except SensorConfigurationInvalid as exc:
            logger.error("the sensor configuration is invalid, the evaluation is rejected:\n%s", exc)
            return self._setup_failed(agent, "Sensors", name, index, route_length_m, stop=True)
        except SensorUnsupportedError as exc:
            logger.error("the embedded world cannot produce a declared sensor: %s", exc)
            return self._setup_failed(agent, "Simulation", name, index, route_length_m, stop=True)
        except Exception as exc:  # noqa: BLE001 -- the leaderboard records any setup failure and goes on
            logger.error("could not set up the agent: %s: %s", type(exc).__name__, exc, exc_info=args.debug > 0)
            return self._setup_failed(agent, "Agent_init", name, index, route_length_m, stop=False)
        return self._drive(world, agent, specs, name, index, route_length_m)

    def _setup_failed(
        self, agent: Any, failure: str, name: str, index: int, route_length_m: float, *, stop: bool
    ) -> bool:
        """Destroy a half set-up agent and record the route with the leaderboard's ``failure`` reason; ``stop``."""
        self._destroy(agent)
        entry, reason = FAILURE_MESSAGES[failure]
        self._register(name, index, None, reason, entry, route_length_m)
        return stop

    def _drive(
        self, world: Any, agent: Any, specs: list[dict[str, Any]], name: str, index: int, route_length_m: float
    ) -> bool:
        args, cfg = self.args, self.config
        from autovla_agent.sim.world.lane_query import CarlaMapLanes

        scorer = RouteScorer(
            world.route.xy_world_m, world.route.yaw_world_rad, CarlaMapLanes(world.town.map), cfg.scoring
        )
        recorder = self._recorder(world, specs, name)
        camera_id = next((s["id"] for s in specs if s.get("type") == "sensor.camera.rgb"), None)
        entry, reason = "Started", ""
        warned = False
        t_start = time.monotonic()
        bar = _ProgressBar(name, args.no_progress)
        try:
            while True:
                try:
                    input_data = world.sensor_data(specs)
                except Exception as exc:  # noqa: BLE001
                    logger.error("simulation error while reading sensors: %s: %s", type(exc).__name__, exc)
                    entry, reason = FAILURE_MESSAGES["Simulation"]
                    break
                try:
                    t_step = time.monotonic()
                    control = call_agent(agent, input_data, world.time_s)
                    warning = check_control(control)
                    if time.monotonic() - t_step > args.timeout:
                        raise TimeoutError(f"Agent took longer than {args.timeout}s to send its command")
                except Exception as exc:  # noqa: BLE001 -- the leaderboard's AgentError
                    logger.error(
                        "stopping the route, the agent has crashed: %s: %s", type(exc).__name__, exc, exc_info=True
                    )
                    entry, reason = FAILURE_MESSAGES["Agent_runtime"]
                    break
                if warning and not warned:
                    logger.warning("%s (logged once per route)", warning)
                    warned = True
                try:
                    world.apply_control(control)
                    world.tick()
                    snapshot = world.snapshot()
                    events = scorer.update(snapshot)
                except Exception as exc:  # noqa: BLE001
                    logger.error("error during the simulation: %s: %s", type(exc).__name__, exc, exc_info=True)
                    entry, reason = FAILURE_MESSAGES["Simulation"]
                    break
                for event in events:
                    logger.info("%s t=%.2f s: %s", event.event_type.value, event.time_s, event.message)
                if recorder is not None:
                    recorder.step(
                        snapshot,
                        input_data,
                        camera_id,
                        getattr(agent, "last_plan_record", None),
                        getattr(agent, "last_step_record", None),
                        events,
                        scorer.completion_pct,
                    )
                bar.update(scorer.completion_pct, float(snapshot.ego.speed_mps[0]), snapshot.time_s)
                if scorer.done:
                    break
                if 0 < cfg.max_ticks <= world.frame:
                    reason = "TickRuntime"
                    break
        finally:
            bar.close()
            self._destroy(agent)
        scorer.finish()
        outcome = RouteOutcome(
            scorer.completion_pct,
            tuple(scorer.events),
            scorer.timed_out,
            route_length_m,
            float(world.time_s),
            time.monotonic() - t_start,
        )
        record = self._register(name, index, outcome, reason, entry, route_length_m)
        if recorder is not None:
            recorder.close(record)
            try:
                self.videos.append(render_video(recorder.log_dir, config=cfg.replay))
            except Exception as exc:  # noqa: BLE001 -- a failed video must not lose the results
                logger.error("could not render the replay of %s: %s: %s", name, type(exc).__name__, exc)
        return False

    def _recorder(self, world: Any, specs: list[dict[str, Any]], name: str) -> RouteRecorder | None:
        if self.record_dir is None:
            return None
        vehicle = self.config.world.ego.vehicle
        meta = {
            "route_name": name,
            "route_id": world.route.route_id,
            "town": world.town.name,
            "dt_s": self.config.world.dt_s,
            "route_xy_world_m": [[round(float(x), 3), round(float(y), 3)] for x, y in world.route.xy_world_m],
            "camera_id": next((s["id"] for s in specs if s.get("type") == "sensor.camera.rgb"), None),
            "sensors": specs,
            "agent": str(self.args.agent),
            "agent_config": self.args.agent_config,
            "seed": self.args.seed,
            "ego_length_m": vehicle.length_m,
            "ego_width_m": vehicle.width_m,
        }
        return RouteRecorder(self.record_dir / name, meta, self.config.replay)

    @staticmethod
    def _destroy(agent: Any) -> None:
        if agent is None:
            return
        try:
            agent.destroy()
        except Exception as exc:  # noqa: BLE001 -- as the leaderboard: log and go on
            logger.error("failed to stop the agent: %s: %s", type(exc).__name__, exc)

    def _summary(self) -> None:
        from tabulate import tabulate

        rows = [
            [
                r["route_id"],
                r["status"],
                r["scores"]["score_route"],
                r["scores"]["score_penalty"],
                r["scores"]["score_composed"],
                r["num_infractions"],
                r["meta"]["route_length"],
                r["meta"]["duration_game"],
                r["meta"]["duration_system"],
            ]
            for r in self.results.records
        ]
        table = tabulate(
            rows,
            headers=[
                "route",
                "status",
                "completion %",
                "penalty",
                "driving score",
                "infractions",
                "length m",
                "game s",
                "system s",
            ],
            floatfmt=".2f",
        )
        logger.info("per-route results:\n%s", table)
        if self.results.values:
            glob = tabulate(
                list(zip(self.results.labels, self.results.values, strict=True)), headers=["metric", "value"]
            )
            logger.info("global results (entry status %s):\n%s", self.results.entry_status, glob)


class _ProgressBar:
    """A tqdm bar over route completion (percent), with speed and simulated time."""

    def __init__(self, name: str, disabled: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=100.0,
            desc=name,
            unit="%",
            disable=True if disabled else None,
            leave=True,
            bar_format="{desc}: {percentage:5.1f}%|{bar}| [{elapsed}{postfix}]",
        )
        self._last = 0.0
        self._ticks = 0

    def update(self, completion_pct: float, speed_mps: float, time_s: float) -> None:
        self._ticks += 1
        if completion_pct > self._last:
            self._bar.update(completion_pct - self._last)
            self._last = completion_pct
        if self._ticks % 20 == 0:
            self._bar.set_postfix_str(f"t={time_s:.0f}s v={speed_mps:.1f}m/s", refresh=False)

    def close(self) -> None:
        self._bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the embedded evaluation; 0 when all routes ran, 1 when the evaluation stopped, 2 on bad input."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.DEBUG if args.debug > 0 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
    from autovla_agent.sim.world.routes import RouteError, load_routes

    try:
        if args.track not in TRACKS:
            raise ValueError(f"--track {args.track!r} is not a track; use one of {list(TRACKS)} (upper case)")
        if args.repetitions < 1:
            raise ValueError("--repetitions must be >= 1")
        if not Path(args.agent).is_file():
            logger.warning("agent file %s does not exist; every route will fail to set up", args.agent)
        config = load_runner_config(args.sim_config or None, args.sim_override, args.traffic)
        routes = load_routes(args.routes, args.routes_subset)
    except (RouteError, ConfigError, OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    if not routes:
        logger.error("no routes to run in %s (subset %r)", args.routes, args.routes_subset)
        return 2
    return _Evaluator(args, config).run(routes)


if __name__ == "__main__":
    raise SystemExit(main())
