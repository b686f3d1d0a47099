"""Agent file for closed-loop evaluation in training: the AutoVLA agent, plus a log of every plan's thinking.

``autovla-evaluate --agent <this file> --agent-config <yaml>`` drives exactly ``AutoVLAAgent``; when the
environment variable ``AUTOVLA_PLAN_STATS`` names a file, every new plan appends one JSON line to it
(``time_s``, ``thinking_mode``, ``reasoning_chars``, ``status``, ``route``) so that the pipeline can report
the share of slow thinking and the mean reasoning length next to the driving scores.
"""

from __future__ import annotations

import json
import os
from typing import Any

from autovla_agent.adapters.carla.agent import AutoVLAAgent

STATS_ENV = "AUTOVLA_PLAN_STATS"


def get_entry_point() -> str:
    """Name of the agent class in this module, as the leaderboard evaluator expects."""
    return "PlanStatsAgent"


class PlanStatsAgent(AutoVLAAgent):
    """``AutoVLAAgent`` that appends the thinking mode and reasoning length of each new plan to a JSONL file."""

    def run_step(self, input_data: Any, timestamp: float) -> Any:
        """Drive as ``AutoVLAAgent``; log the plan when this tick replanned."""
        control = super().run_step(input_data, timestamp)
        path = os.environ.get(STATS_ENV, "")
        tick = getattr(self, "last_tick", None)
        record = getattr(self, "last_plan_record", None)
        if path and tick is not None and tick.replanned and record:
            line = {
                "time_s": float(timestamp),
                "thinking_mode": record.get("thinking_mode", ""),
                "reasoning_chars": len(record.get("reasoning", "") or ""),
                "reasoning": record.get("reasoning", "") or "",
                "status": record.get("status", ""),
                "route": str(getattr(self.config_spec, "save_name", "")),
            }
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
        return control
