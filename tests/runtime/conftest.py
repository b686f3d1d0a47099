"""Fixtures of the VLA runtime tests: observation and config factories for the session's tiny model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from autovla_agent.contract import CameraFrame, EgoState, NavCommand, Observation
from autovla_agent.policy.configuration import DecodingConfig, ModelConfig, PromptConfig, ThinkingConfig, VLAConfig

FRAME_HW = (90, 160)


def frame_pool(view: str, count: int, seed: int = 0) -> list[np.ndarray]:
    """Deterministic random RGB frames of one view (same content for the same view, index and seed)."""
    rng = np.random.default_rng([seed, sum(map(ord, view))])
    return [rng.integers(0, 256, (*FRAME_HW, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture
def make_obs() -> Callable[..., Observation]:
    """Factory: observation whose frame window starts at ``start`` in each view's deterministic frame pool."""

    def make(
        views=("front",), num_frames=4, start=0, speed_mps=5.0, accel_mps2=0.2, seed=0, command=NavCommand.TURN_LEFT
    ) -> Observation:
        t_s = 0.5 * (start + num_frames - 1)
        cameras = {
            v: tuple(
                CameraFrame(img, 0.5 * (start + i))
                for i, img in enumerate(frame_pool(v, start + num_frames, seed)[start:])
            )
            for v in views
        }
        history = tuple(
            EgoState(t_s - 0.5 * k, speed_mps=speed_mps - 0.1 * k, accel_mps2=accel_mps2) for k in (3, 2, 1, 0)
        )
        return Observation(timestamp_s=t_s, cameras=cameras, ego_history=history, command=command)

    return make


@pytest.fixture
def make_config(tiny_model_dir: Path) -> Callable[..., VLAConfig]:
    """Factory: VLAConfig for the tiny model on the CPU; keyword groups override prompt/thinking/decoding fields."""

    def make(prompt: dict | None = None, thinking: dict | None = None, decoding: dict | None = None) -> VLAConfig:
        return VLAConfig(
            model=ModelConfig(path=str(tiny_model_dir), device="cpu"),
            prompt=PromptConfig(**{"views": ("front",), **(prompt or {})}),
            thinking=ThinkingConfig(**{"max_reasoning_tokens": 6, **(thinking or {})}),
            decoding=DecodingConfig(**(decoding or {})),
        )

    return make


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    """One torch thread per runtime test module: the tiny model gains nothing from more, and on a shared 2-core
    machine competing thread pools made the suite about twice as slow."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
