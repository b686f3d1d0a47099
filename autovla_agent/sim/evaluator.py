"""The route loop of ``autovla-evaluate``: build each route's world and agent, tick it, score it, record it.

``Evaluator.run`` imports the agent file once, before the first route (as the leaderboard evaluator does in its
constructor), then per route: a world on the route's town, a NEW agent instance built in the evaluator's order
(``set_global_plan`` -> ``set_privileged_world`` if defined -> ``setup`` -> ``sensors`` -> validation on the first
route), ticks at 20 Hz (sensor data -> agent -> ``VehicleControl`` -> world tick -> criteria) until the route
completes or a criterion ends it; ``destroy()``, then the route record is written (atomically) to the results
JSON, in the leaderboard's layout.

An agent that cannot be set up before any agent of this run was (its file does not import, or the first
``setup()`` raises, e.g. on a bad ``--agent-config``) can drive no route: the entry crashed. The route is recorded
"Failed - Agent couldn't be set up", the results say ``entry_status`` "Crashed" (not eligible) and the run stops
with exit status 1, as Bench2Drive's evaluator stops there. A ``setup()`` failing later, after an agent of this
run was set up, fails that route only and the run goes on.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from autovla_agent.sim.agent_loader import (
    SensorConfigurationInvalid,
    call_agent,
    check_control,
    create_agent,
    load_agent_class,
    load_agent_module,
    validate_agent_sensors,
)
from autovla_agent.sim.replay.log import RouteRecorder
from autovla_agent.sim.replay.video import render_video
from autovla_agent.sim.runner_config import RunnerConfig
from autovla_agent.sim.scoring.results import (
    AGENT_SETUP_CRASH,
    FAILURE_MESSAGES,
    ResultsFile,
    RouteOutcome,
    make_route_record,
    route_name,
)
from autovla_agent.sim.scoring.route_scorer import RouteScorer

logger = logging.getLogger(__name__)

__all__ = ["Evaluator", "log_summary"]


class Evaluator:
    """One evaluation run over a list of routes (the state the leaderboard keeps in its evaluator)."""

    def __init__(self, args: argparse.Namespace, config: RunnerConfig) -> None:
        self.args = args
        self.config = config
        self.results = ResultsFile(args.checkpoint)
        self.sensors_validated = False
        self.agent_module: ModuleType | None = None
        # Until one agent of this run is set up, a setup failure means no route can be driven: the entry crashed.
        self.agent_set_up = False
        self.record_dir = Path(args.record) if args.record else None
        self.videos: list[Path] = []

    # ------------------------------------------------------------------ run
    def run(self, routes: Sequence[Any]) -> int:
        """Run every (route, repetition) not done yet; 0 when all ran, 1 when the evaluation stopped."""
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
        stopped_at = None
        if skip < len(plan) and not self._import_agent(names[skip], skip):
            stopped_at = skip  # the agent file does not import: no route can be driven
        for index in range(skip, len(plan)):
            if stopped_at is not None:
                break
            spec, rep = plan[index]
            stop = self._run_route(spec, rep, index)
            self.results.save()
            if stop:
                stopped_at = index
                break
        if stopped_at is not None:
            logger.error(
                "the evaluation stopped at %s (see above); results so far: %s", names[stopped_at], self.results.path
            )
        else:
            self.results.finalize(self.sensors_validated, crashed=False)
            self.results.save()
        self._summary()
        logger.info("results written to %s", self.results.path.resolve())
        for video in self.videos:
            logger.info("replay: %s", video.resolve())
        return 0 if stopped_at is None else 1

    def _import_agent(self, name: str, index: int) -> bool:
        """Import the agent file once, before the first route; False (the entry crashed) when it does not import."""
        try:
            self.agent_module = load_agent_module(self.args.agent)
        except Exception as exc:  # noqa: BLE001 -- AgentLoadError, or whatever the import itself raised
            logger.error("%s", exc)
            self._entry_crashed(None, name, index, 0.0)
            return False
        return True

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
        self._store(record, entry_status)
        logger.info("%s: %s (driving score %.2f)", name, record["status"], record["scores"]["score_composed"])
        return record

    def _store(self, record: dict[str, Any], entry_status: str) -> None:
        """Write a finished route's record to the results file (a parallel worker returns it instead)."""
        self.results.add_record(record, entry_status)
        self.results.save()

    def _store_sensors(self, specs: list[dict[str, Any]]) -> None:
        """Write the validated sensors to the results file (a parallel worker returns them instead)."""
        self.results.set_sensors(specs)
        self.results.save()

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
            cls = load_agent_class(self.agent_module)
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
                self._store_sensors(specs)
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
        except Exception as exc:  # noqa: BLE001 -- the leaderboard records any setup failure
            logger.error("could not set up the agent: %s: %s", type(exc).__name__, exc, exc_info=args.debug > 0)
            if not self.agent_set_up:
                return self._entry_crashed(agent, name, index, route_length_m)
            return self._setup_failed(agent, "Agent_init", name, index, route_length_m, stop=False)
        self.agent_set_up = True
        return self._drive(world, agent, specs, name, index, route_length_m)

    def _setup_failed(
        self, agent: Any, failure: str, name: str, index: int, route_length_m: float, *, stop: bool
    ) -> bool:
        """Destroy a half set-up agent and record the route with the leaderboard's ``failure`` reason; ``stop``."""
        self._destroy(agent)
        entry, reason = FAILURE_MESSAGES[failure]
        self._register(name, index, None, reason, entry, route_length_m)
        return stop

    def _entry_crashed(self, agent: Any, name: str, index: int, route_length_m: float) -> bool:
        """Record the route as the agent's setup failure with the entry crashed; the evaluation stops (True)."""
        self._destroy(agent)
        entry, reason = AGENT_SETUP_CRASH
        self._register(name, index, None, reason, entry, route_length_m)
        logger.error(
            "the agent %s cannot be set up (--agent-config %r), so it can drive no route: the entry crashed "
            "(entry_status %r, not eligible). Fix the agent file or its config; --resume then runs %s again",
            self.args.agent,
            self.args.agent_config,
            entry,
            name,
        )
        return True

    def _drive(
        self, world: Any, agent: Any, specs: list[dict[str, Any]], name: str, index: int, route_length_m: float
    ) -> bool:
        """Tick one set-up route to its end, destroy the agent, write its record and its replay; never stops."""
        from autovla_agent.sim.world.lane_query import CarlaMapLanes

        lanes = CarlaMapLanes(world.town.map)
        route = world.route
        scorer = RouteScorer(route.xy_world_m, route.yaw_world_rad, lanes, self.config.scoring, town=world.town)
        recorder = self._recorder(world, specs, name)
        t_start = time.monotonic()
        bar = _ProgressBar(name, self.args.no_progress)
        try:
            entry, reason = self._tick_until_done(world, agent, specs, scorer, recorder, bar)
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
                self.videos.append(render_video(recorder.log_dir, config=self.config.replay))
            except Exception as exc:  # noqa: BLE001 -- a failed video must not lose the results
                logger.error("could not render the replay of %s: %s: %s", name, type(exc).__name__, exc)
        return False

    def _tick_until_done(
        self,
        world: Any,
        agent: Any,
        specs: list[dict[str, Any]],
        scorer: RouteScorer,
        recorder: RouteRecorder | None,
        bar: _ProgressBar,
    ) -> tuple[str, str]:
        """Tick until the criteria end the route, the tick cap, or a failure; the ``(entry status, reason)``."""
        args, cfg = self.args, self.config
        camera_id = next((s["id"] for s in specs if s.get("type") == "sensor.camera.rgb"), None)
        warned = False
        while True:
            try:
                input_data = world.sensor_data(specs)
            except Exception as exc:  # noqa: BLE001
                logger.error("simulation error while reading sensors: %s: %s", type(exc).__name__, exc)
                return FAILURE_MESSAGES["Simulation"]
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
                return FAILURE_MESSAGES["Agent_runtime"]
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
                return FAILURE_MESSAGES["Simulation"]
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
                return "Started", ""
            if 0 < cfg.max_ticks <= world.frame:
                return "Started", "TickRuntime"

    def _recorder(self, world: Any, specs: list[dict[str, Any]], name: str) -> RouteRecorder | None:
        if self.record_dir is None:
            return None
        vehicle = self.config.world.ego.vehicle
        meta = {
            "route_name": name,
            "route_id": world.route.route_id,
            "town": world.town.name,
            "maps_dirs": list(self.config.world.maps_dirs),
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
        log_summary(self.results)


def log_summary(results: ResultsFile) -> None:
    """Log the per-route table and the global results of a results file."""
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
        for r in results.records
    ]
    headers = ["route", "status", "completion %", "penalty", "driving score", "infractions", "length m"]
    table = tabulate(rows, headers=[*headers, "game s", "system s"], floatfmt=".2f")
    logger.info("per-route results:\n%s", table)
    if results.values:
        glob = tabulate(list(zip(results.labels, results.values, strict=True)), headers=["metric", "value"])
        logger.info("global results (entry status %s):\n%s", results.entry_status, glob)


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
