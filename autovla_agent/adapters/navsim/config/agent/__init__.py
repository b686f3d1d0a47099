"""The ``agent`` config group: ``autovla.yaml`` selects the AutoVLA agent in navsim's Hydra scripts."""
