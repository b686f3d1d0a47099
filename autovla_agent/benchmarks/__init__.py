"""Benchmarks that print their figures: the VLA step and the agent's per-tick cost."""
