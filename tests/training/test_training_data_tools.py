import json
import logging

import numpy as np
import pytest

from autovla_agent.planners.codebook import ActionCodebook
from autovla_agent.training.codebook_cmd import build_from_dataset, hermite_dense
from autovla_agent.training.codebook_cmd import main as codebook_main
from autovla_agent.training.collect import CollectConfig, Collector
from autovla_agent.training.dataset_io import load_samples, read_manifest
from autovla_agent.training.validate import validate_dataset


def test_hermite_dense_straight_line_exact():
    poses = np.stack([np.arange(1, 11) * 2.0, np.zeros(10), np.zeros(10)], -1)
    dense = hermite_dense(poses, 0.5)
    assert dense.shape == (51, 3)
    np.testing.assert_allclose(dense[:, 0], np.arange(51) * 0.4, atol=1e-9)
    np.testing.assert_allclose(dense[:, 1:], 0.0, atol=1e-9)


def test_codebook_from_dataset_reconstructs_and_tokenises(dataset_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    codebook, errors = build_from_dataset(dataset_dir, num_tokens=64, heldout_share=0.0)
    assert 1 < codebook.num_tokens <= 64 and errors["train"]["ade_m"] < 0.5
    assert codebook_main([str(dataset_dir), "--out", str(tmp_path / "cb"), "--num-tokens", "64", "--tokenize"]) == 0
    assert "ADE" in caplog.text
    saved = ActionCodebook.load(tmp_path / "cb")
    manifest = read_manifest(dataset_dir)
    assert manifest.codebook_sha256
    tokens = [s.action_tokens for s in load_samples(dataset_dir)]
    assert all(t is not None and len(t) == 10 and max(t) < saved.num_tokens for t in tokens)
    assert validate_dataset(dataset_dir, num_action_tokens=saved.num_tokens, require_tokens=True).ok


@pytest.mark.slow
def test_collect_smoke_route_writes_valid_dataset(tmp_path):
    out = tmp_path / "data"
    config = CollectConfig(
        out=str(out),
        routes=("routes_smoke",),
        seeds=(0,),
        reasoning_share=0.5,
        num_traffic=4,
        agent_overrides=("frame_buffer.width_px=112", "frame_buffer.height_px=56"),
    )
    stats = Collector(config).run()
    assert stats[0].outcome == "completed" and stats[0].samples >= 5
    report = validate_dataset(out, decode_images=True, require_scene=True)
    assert report.ok, report.summary()
    samples = load_samples(out)
    assert any(s.is_slow for s in samples) and any(not s.is_slow for s in samples)
    s = samples[len(samples) // 2]
    assert s.scene is not None and len(s.scene.drivable_area_ego_m) >= 1
    poses = np.asarray(s.future.poses_ego)
    assert np.all(np.diff(np.hypot(poses[:, 0], poses[:, 1])) >= -1e-6)  # the expert drives forward
    dense = np.asarray(s.future.dense_poses_ego)
    np.testing.assert_allclose(dense[4::5], poses, atol=1e-6)
    assert s.meta_action is None or s.reasoning.endswith(f"Meta action: {s.meta_action.text()}.")
    row = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    assert row["command"] in {"turn right", "keep forward", "go straight", "turn left"}
