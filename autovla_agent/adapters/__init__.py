"""Thin adapters from the simulators' agent interfaces to the driving loop: CARLA leaderboard and NAVSIM."""
