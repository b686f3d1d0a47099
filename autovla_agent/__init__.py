"""AutoVLA closed-loop driving agent: core types, VLA runtime, CARLA and NAVSIM adapters."""

__version__ = "0.1.0"
