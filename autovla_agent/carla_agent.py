"""The entry file for ``leaderboard_evaluator.py --agent <this file>``; the class is ``adapters.carla.agent``'s.

The evaluator imports this file by path as a top-level module and takes the class named by ``get_entry_point``
from it, so this file holds that import (absolute, from the installed package) and nothing else.
"""

from autovla_agent.adapters.carla.agent import AutoVLAAgent  # noqa: F401 -- the evaluator reads it from here


def get_entry_point() -> str:
    """Name of the agent class in this module, as the leaderboard evaluator expects."""
    return "AutoVLAAgent"
