"""Leaderboard agent files used by training's closed-loop evaluation (each in a folder of its own on sys.path)."""
