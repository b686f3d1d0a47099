"""The agent file for ``leaderboard_evaluator.py --agent <path of this file>`` (CARLA Leaderboard 2.0, Bench2Drive).

The evaluator imports this file as a top-level module (``sys.path.insert(0, dirname)`` then
``importlib.import_module(basename)``), so it holds only absolute imports from the installed package and the
module-level ``get_entry_point()`` that names the agent class. All logic lives in
``autovla_agent.adapters.carla.agent``.
"""

from autovla_agent.adapters.carla.agent import AutoVLAAgent

__all__ = ["AutoVLAAgent", "get_entry_point"]


def get_entry_point() -> str:
    """Name of the agent class in this module, as the leaderboard evaluator expects."""
    return "AutoVLAAgent"
