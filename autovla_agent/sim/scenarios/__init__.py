"""Leaderboard 2.0 route scenarios (scenario_runner's types, triggered along the route) on the embedded world."""
