"""Leaderboard-style route scoring: infraction criteria, driving score and the results JSON."""
