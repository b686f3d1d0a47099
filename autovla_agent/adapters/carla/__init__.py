"""The CARLA Leaderboard 2.0 / Bench2Drive adapter (the ``--agent`` file is ``autovla_agent/carla_agent.py``)."""
