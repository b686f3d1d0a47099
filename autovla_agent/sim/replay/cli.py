"""``autovla-replay``: re-render replay videos from route logs recorded by ``autovla-evaluate --record``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from autovla_agent.sim.replay.log import ReplayConfig
from autovla_agent.sim.replay.video import render_video

logger = logging.getLogger(__name__)

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``autovla-replay``."""
    parser = argparse.ArgumentParser(prog="autovla-replay", description=__doc__.splitlines()[0])
    parser.add_argument("logdir", help="a route log folder (meta.json + steps.jsonl) or a --record folder of them")
    parser.add_argument("--out", default=None, help="output folder (default: beside each route log folder)")
    parser.add_argument("--format", choices=("mp4", "gif"), default="mp4")
    parser.add_argument("--fps", type=float, default=10.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Render the video of every route log under ``logdir``; 0 when all rendered, 1 when some failed, 2 when none."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root = Path(args.logdir)
    logs = [root] if (root / "meta.json").is_file() else sorted(p.parent for p in root.glob("*/meta.json"))
    if not logs:
        logger.error("%s holds no route logs (folders with meta.json and steps.jsonl)", root)
        return 2
    config = ReplayConfig(video_format=args.format, fps=args.fps)
    failed = 0
    for log in logs:
        out = None
        if args.out:
            out = Path(args.out) / log.name
            out.parent.mkdir(parents=True, exist_ok=True)
        try:
            render_video(log, out, config)
        except (OSError, ValueError) as exc:
            logger.error("cannot render %s: %s", log, exc)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
