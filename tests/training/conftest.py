"""Fixtures of the training tests: a small dataset on disk with images, futures and straight-road scenes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autovla_agent.contract import NavCommand
from autovla_agent.training.dataset_io import SampleWriter
from autovla_agent.training.schema import (
    DatasetManifest,
    EgoRecord,
    FutureTrajectory,
    MetaAction,
    Sample,
    SampleSource,
    SceneState,
)

ROAD = (((-30.0, -3.5), (200.0, -3.5), (200.0, 3.5), (-30.0, 3.5)),)
CENTERLINE = ((-30.0, 0.0), (200.0, 0.0))


def make_sample(i: int, image_paths: tuple[str, ...], *, slow: bool = False, speed: float = 5.0) -> Sample:
    """A sample driving straight at ``speed`` (with a slight curve for odd i) on a straight two-lane road."""
    t = np.arange(1, 11) * 0.5
    curve = 0.02 * (i % 2)
    poses = tuple((speed * tt, curve * (speed * tt) ** 2 / 2, math.atan(curve * speed * tt)) for tt in t)
    dense_t = np.arange(1, 51) * 0.1
    dense = tuple((speed * tt, curve * (speed * tt) ** 2 / 2, math.atan(curve * speed * tt)) for tt in dense_t)
    return Sample(
        id=f"s{i:04d}",
        cameras={"front": image_paths},
        ego=EgoRecord(speed_mps=speed, accel_mps2=0.0),
        command=NavCommand.KEEP_FORWARD if i % 3 else NavCommand.TURN_LEFT,
        target_point_ego_m=(20.0, 0.0),
        future=FutureTrajectory(dt_s=0.5, poses_ego=poses, dense_poses_ego=dense),
        reasoning="Scene: a straight road. Critical objects: none. Meta action: move forward and maintain speed."
        if slow
        else None,
        meta_action=MetaAction(lateral="move forward", longitudinal="maintain speed") if slow else None,
        scene=SceneState(drivable_area_ego_m=ROAD, centerline_ego_m=CENTERLINE),
        source=SampleSource(
            kind="embedded_sim", town="Town01", route=str(i // 4), seed=0, tick=i * 10, timestamp_s=i * 0.5
        ),
    )


def write_dataset(root: Path, num_samples: int = 8, size_px: tuple[int, int] = (56, 56)) -> Path:
    """A dataset of ``num_samples`` rows (every 4th slow) with 4 random 56 px frames each."""
    rng = np.random.default_rng(0)
    manifest = DatasetManifest(name="test", image_width_px=size_px[0], image_height_px=size_px[1])
    with SampleWriter(root, manifest) as writer:
        for i in range(num_samples):
            paths = []
            for k in range(4):
                rel = f"images/front/{i:04d}_{k}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (size_px[1], size_px[0], 3), dtype=np.uint8)).save(root / rel)
                paths.append(rel)
            writer.write(make_sample(i, tuple(paths), slow=(i % 4 == 3)))
    return root


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "ds")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random action model folder (K = 64), built once per session."""
    from autovla_agent.policy.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", num_action_tokens=64, codebook_trajectories=200)


@pytest.fixture(autouse=True)
def _single_thread_torch():
    """The tiny model runs fastest on one thread (thread sync dominates on a shared 2-core CPU)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
