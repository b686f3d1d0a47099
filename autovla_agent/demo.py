"""``autovla-demo``: the README's main job: drive the AutoVLA agent over the default routes in the embedded runner.

It picks the model (the small trained default model shipped with the package when present, else a tiny random
model built offline into the output folder), runs ``autovla-evaluate`` with the leaderboard agent file
``autovla_agent/carla_agent.py`` on ``routes/routes_default.xml``, and logs where the results JSON and the
route replay videos are.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from autovla_agent.paths import DEFAULT_MODEL_DIR, PACKAGE_DIR

logger = logging.getLogger(__name__)


def resolve_model(model: str, out_dir: Path) -> Path:
    """Return the model folder to drive with: ``model`` if given, the shipped default, or a freshly built tiny one."""
    if model:
        path = Path(model).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"--model {path} is not a model folder (no config.json); pass a saved model folder")
        return path
    if (DEFAULT_MODEL_DIR / "config.json").is_file():
        logger.info("driving with the shipped default model %s", DEFAULT_MODEL_DIR)
        return DEFAULT_MODEL_DIR
    from autovla_agent.policy.tiny_model import build_tiny_model

    path = out_dir / "models" / "tiny_random"
    if not (path / "config.json").is_file():
        logger.info("no trained default model is shipped: building a tiny random model at %s", path)
        build_tiny_model(path, overwrite=True)
    return path


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the demo."""
    p = argparse.ArgumentParser(prog="autovla-demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="outputs", help="output folder (results JSON, replays, built models)")
    p.add_argument("--model", default="", help="model folder (default: the shipped default model, else a tiny one)")
    p.add_argument("--routes", default="routes_default", help="route XML file or a shipped route set name")
    p.add_argument("--routes-subset", default="", help="route ids to run, e.g. '0-1'")
    p.add_argument(
        "--agent-config",
        default="",
        help="agent YAML (packaged name or path); default: the model folder's agent_config.yaml or autovla_tiny",
    )
    p.add_argument(
        "--maps-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="folder of <town>.xodr files for other towns (CARLA_ROOT/CarlaUE4/Content/Carla/Maps/OpenDrive)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of traffic and sensor noise")
    p.add_argument("--resume", action="store_true", help="skip routes already in the results file")
    p.add_argument("--workers", type=int, default=1, help="routes in parallel on this many Ray workers (ray extra)")
    p.add_argument("--ray-address", default="", help="join this Ray cluster instead of starting a local Ray")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the evaluator's exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    model_dir = resolve_model(args.model, out_dir)

    from autovla_agent.sim import runner

    # A trained model folder carries the agent config it was trained and evaluated with (camera size, layout,
    # thinking policy); driving it with another config would feed it inputs it never saw.
    agent_config = args.agent_config or (
        str(model_dir / "agent_config.yaml") if (model_dir / "agent_config.yaml").is_file() else "autovla_tiny.yaml"
    )

    results = out_dir / "results.json"
    replays = out_dir / "replays"
    agent_file = PACKAGE_DIR / "carla_agent.py"
    cli = [
        "--routes", args.routes,
        "--agent", str(agent_file),
        "--agent-config", f"{agent_config} vla.model.path={model_dir}",
        "--checkpoint", str(results),
        "--record", str(replays),
        "--seed", str(args.seed),
    ]  # fmt: skip
    if args.routes_subset:
        cli += ["--routes-subset", args.routes_subset]
    if args.resume:
        cli += ["--resume"]
    for folder in args.maps_dir:
        cli += ["--maps-dir", folder]
    cli += ["--workers", str(args.workers)] + (["--ray-address", args.ray_address] if args.ray_address else [])
    code = runner.main(cli)
    videos = sorted(str(p) for p in replays.rglob("*") if p.suffix in (".mp4", ".gif"))
    logger.info("results JSON: %s", results)
    logger.info("route replays (%d): %s", len(videos), ", ".join(videos) if videos else "none")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
