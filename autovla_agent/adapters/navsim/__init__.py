"""The NAVSIM adapter: ``run_pdm_score.py agent=autovla``."""
