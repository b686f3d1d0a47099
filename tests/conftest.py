"""Fixtures shared by every test area: a tiny random Qwen2.5-VL action model folder built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random Qwen2.5-VL with 2048 action tokens and its codebook (offline, ~1 s, ~3 MB).

    Read-only for tests: copy it (shutil.copytree) before changing anything inside. Its image processor uses a
    6272-pixel budget per frame (a 90 x 160 px frame becomes 56 x 84 px, 6 vision tokens); load it with
    ``VLAConfig(model=ModelConfig(path=str(tiny_model_dir), device="cpu"))``.
    """
    from autovla_agent.policy.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_vla") / "model", num_action_tokens=2048, seed=0)
