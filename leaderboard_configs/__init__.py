"""Packaged YAML configurations of the CARLA Leaderboard agent (data only; see agent_config.py)."""
