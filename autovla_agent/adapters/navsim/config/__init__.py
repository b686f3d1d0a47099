"""Hydra config package appended to navsim's search path (hydra_plugins/autovla_searchpath): ``agent=autovla``."""
