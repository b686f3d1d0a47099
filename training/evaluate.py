"""Closed-loop evaluation of a model folder in the embedded runner, summarised for the training report.

Runs ``autovla-evaluate`` (``autovla_agent.sim.runner``) in this process with the AutoVLA agent
(``training/eval_agents/plan_stats_agent.py``, which also logs each plan's thinking mode) and reads back the
leaderboard-style results JSON: mean driving score, route completion and infraction penalty over the routes,
collisions (with vehicles, pedestrians and the road layout), plus the share of slow-thinking plans, the mean
reasoning length of slow plans in tokens and the share of fallback plans.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from autovla_agent.policy.completion import SLOW_THINKING_SENTENCE
from autovla_agent.scale.engine import ScaleConfig

logger = logging.getLogger(__name__)

COLLISION_KEYS = ("collisions_vehicle", "collisions_pedestrian", "collisions_layout")


def summarise_results(results_path: Path) -> dict[str, Any]:
    """Mean scores and collision counts over the route records of a results JSON."""
    data = json.loads(results_path.read_text(encoding="utf-8"))
    records = data["_checkpoint"]["records"]
    n = max(len(records), 1)
    per_route = [
        {
            "route": r["route_id"],
            "status": r["status"],
            "driving_score": r["scores"]["score_composed"],
            "route_completion": r["scores"]["score_route"],
            "collisions": sum(len(r["infractions"].get(k, [])) for k in COLLISION_KEYS),
        }
        for r in records
    ]
    return {
        "num_routes": len(records),
        "driving_score": sum(r["driving_score"] for r in per_route) / n,
        "route_completion": sum(r["route_completion"] for r in per_route) / n,
        "infraction_penalty": sum(r["scores"]["score_penalty"] for r in records) / n,
        "collisions": sum(r["collisions"] for r in per_route),
        "routes": per_route,
    }


def summarise_plans(stats_path: Path, tokenizer: Any) -> dict[str, Any]:
    """Share of slow plans, mean reasoning tokens of slow plans and share of fallbacks from the plan log."""
    lines = stats_path.read_text(encoding="utf-8").splitlines() if stats_path.is_file() else []
    plans = [json.loads(line) for line in lines if line.strip()]
    slow = [p for p in plans if p["thinking_mode"] == "slow"]
    lengths = []
    for p in slow:
        text = p["reasoning"]
        if text.startswith(SLOW_THINKING_SENTENCE):
            text = text[len(SLOW_THINKING_SENTENCE) :]
        lengths.append(len(tokenizer(text.strip(), add_special_tokens=False)["input_ids"]) if text.strip() else 0)
    n = max(len(plans), 1)
    return {
        "num_plans": len(plans),
        "slow_share": len(slow) / n,
        "mean_reasoning_tokens": sum(lengths) / len(lengths) if lengths else 0.0,
        "fallback_share": sum(p["status"] == "fallback" for p in plans) / n,
    }


def evaluate_model(
    model_dir: Path,
    agent_yaml: Path,
    out_dir: Path,
    routes: str,
    routes_subset: str = "",
    seed: int = 0,
    repetitions: int = 1,
    scale: ScaleConfig | None = None,
) -> dict[str, Any]:
    """Drive ``model_dir`` over ``routes`` with the agent config ``agent_yaml``; return the summary dict.

    ``scale`` (more than one worker, or a cluster address) runs the routes on Ray workers.
    """
    from autovla_agent.policy.processor import load_processor
    from autovla_agent.sim import runner
    from autovla_agent.training.eval_agents import plan_stats_agent as eval_agent

    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / "results.json"
    stats = out_dir / "plans.jsonl"
    for stale in (results, stats):
        if stale.exists():
            stale.unlink()
    argv = [
        "--routes",
        routes,
        "--agent",
        eval_agent.__file__,
        "--agent-config",
        str(agent_yaml),
        "--checkpoint",
        str(results),
        "--seed",
        str(seed),
        "--repetitions",
        str(repetitions),
        "--no-progress",
    ]
    if routes_subset:
        argv += ["--routes-subset", routes_subset]
    if scale is not None:
        argv += ["--workers", str(scale.workers)] + (["--ray-address", scale.ray_address] if scale.ray_address else [])
    previous = os.environ.get(eval_agent.STATS_ENV)
    os.environ[eval_agent.STATS_ENV] = str(stats)
    try:
        code = runner.main(argv)
    finally:
        if previous is None:
            os.environ.pop(eval_agent.STATS_ENV, None)
        else:
            os.environ[eval_agent.STATS_ENV] = previous
    if code != 0 or not results.is_file():
        raise RuntimeError(f"the embedded runner stopped (exit {code}); see the log above and {results}")
    summary = summarise_results(results)
    summary.update(summarise_plans(stats, load_processor(model_dir).tokenizer))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    logger.info(
        "%s: driving score %.2f, route completion %.2f, %d collisions, slow share %.2f, reasoning %.1f tokens",
        model_dir,
        summary["driving_score"],
        summary["route_completion"],
        summary["collisions"],
        summary["slow_share"],
        summary["mean_reasoning_tokens"],
    )
    return summary
