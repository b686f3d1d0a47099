"""``autovla-evaluate``: run a leaderboard agent file over route files on the embedded world, as the evaluator does.

Mirrors ``leaderboard_evaluator.py`` (CARLA Leaderboard 2.0) without a CARLA server::

    autovla-evaluate --routes routes_default --agent autovla_agent/sim/expert.py \
        --checkpoint results/expert.json --record results/replays

This module is the command line; the route loop is ``autovla_agent.sim.evaluator``, the settings
(``--sim-config``, ``--sim-override``) ``autovla_agent.sim.runner_config``. ``--workers N`` runs the routes on N
Ray workers (``autovla_agent.scale.evaluate``) into the same results file.

Failures are recorded with the leaderboard's reasons: a route that cannot be built (unknown town, route off the
road network) -> "Simulation crashed"; a ``setup()`` that raises -> "Agent couldn't be set up"; ``run_step``
raising (or returning no valid ``VehicleControl``) -> "Agent crashed". In these cases the run goes on with the
next route (the leaderboard stops on "Simulation crashed", but here it concerns one route only). Three cases
stop the whole evaluation with exit status 1: invalid sensors (leaderboard rules, wrong track: "Rejected"), a
sensor type the embedded world cannot produce (e.g. LiDAR), and an agent that cannot be set up at all (its file
does not import, or ``setup()`` fails before any agent of the run was set up, e.g. a bad ``--agent-config``: the
entry "Crashed"). Bad command-line input (unknown track, route file or ``--sim-config``) exits 2 before any run.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from autovla_agent.config_io import ConfigError
from autovla_agent.scale.engine import RayUnavailableError, ScaleConfig, require_engine
from autovla_agent.sim.agent_loader import TRACKS
from autovla_agent.sim.evaluator import Evaluator
from autovla_agent.sim.runner_config import load_runner_config
from autovla_agent.sim.world.route_files import RouteError, load_routes, shipped_route_names

logger = logging.getLogger(__name__)

__all__ = ["build_parser", "main"]


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
    # The shipped names are read from the package's routes folder, so a new route file is listed without edits here.
    shipped = ", ".join(shipped_route_names()) or "none"
    p.add_argument("--routes", required=True, help=f"route XML file, or a shipped name ({shipped})")
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
    p.add_argument(
        "--maps-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="folder of <town>.xodr files looked in before the shipped towns (repeatable), e.g. "
        "CARLA_ROOT/CarlaUE4/Content/Carla/Maps/OpenDrive for Town03/05/12/13",
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
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="routes run in parallel on this many Ray workers (needs the 'ray' extra; 1 = serial, in this process)",
    )
    p.add_argument("--ray-address", default="", help="join this Ray cluster ('auto', host:port) instead of a local Ray")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the embedded evaluation; 0 when all routes ran, 1 when the evaluation stopped, 2 on bad input."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.DEBUG if args.debug > 0 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
    try:
        if args.track not in TRACKS:
            raise ValueError(f"--track {args.track!r} is not a track; use one of {list(TRACKS)} (upper case)")
        if args.repetitions < 1:
            raise ValueError("--repetitions must be >= 1")
        scale = ScaleConfig(workers=args.workers, ray_address=args.ray_address)
        require_engine(scale)  # before any route runs: a missing Ray says how to install it
        config = load_runner_config(args.sim_config or None, args.sim_override, args.traffic, args.maps_dir)
        routes = load_routes(args.routes, args.routes_subset)
    except (RouteError, ConfigError, OSError, ValueError, RayUnavailableError) as exc:
        logger.error("%s", exc)
        return 2
    if not routes:
        logger.error("no routes to run in %s (subset %r)", args.routes, args.routes_subset)
        return 2
    if scale.uses_ray:
        from autovla_agent.scale.evaluate import run_parallel

        return run_parallel(args, config, routes)
    return Evaluator(args, config).run(routes)


if __name__ == "__main__":
    raise SystemExit(main())
