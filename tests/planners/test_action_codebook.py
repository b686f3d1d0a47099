import json
import logging

import numpy as np
import pytest

from autovla_agent.planners.bicycle import rollout
from autovla_agent.planners.codebook import (
    ActionCodebook,
    build_codebook,
    build_synthetic_codebook,
    detokenize,
    evaluation_trajectories,
    main,
    reconstruction_ade,
    reconstruction_errors,
    segments_from_states,
    tokenize,
)
from autovla_agent.planners.se2 import box_corners
from autovla_agent.planners.synthetic_driving import generate_driving_states
from autovla_agent.planners.vehicle import VehicleParams


@pytest.fixture(scope="module")
def small_codebook() -> ActionCodebook:
    return build_synthetic_codebook(num_trajectories=300, num_tokens=256, seed=3)


def _straight_primitive(speed_mps: float) -> np.ndarray:
    t = np.arange(1, 6) * 0.1
    return np.stack([speed_mps * t, 0 * t, 0 * t], axis=-1)


def _mean_corner_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, K) mean corner distance of poses a (N, 3) and b (K, 3)."""
    ca, cb = box_corners(a, 4.8, 2.0), box_corners(b, 4.8, 2.0)
    return np.linalg.norm(ca[:, None] - cb[None], axis=-1).mean(axis=-1)


def test_build_codebook_first_token_is_standstill(small_codebook):
    np.testing.assert_array_equal(small_codebook.poses[0], np.zeros((5, 3)))
    assert small_codebook.num_tokens == 256 and small_codebook.num_substeps == 5
    assert small_codebook.duration_s == pytest.approx(0.5)


def test_build_codebook_stores_group_means_and_stops_when_all_covered():
    rng = np.random.default_rng(0)
    centres = [_straight_primitive(v) for v in (4.0, 8.0, 12.0)]
    clusters = [c + rng.normal(0.0, 0.002, size=(40, 5, 3)) for c in centres]
    still = rng.normal(0.0, 0.002, size=(10, 5, 3))
    segments = np.concatenate([still, *clusters])
    codebook = build_codebook(segments, num_tokens=50, tolerance_m=0.05, seed=1)
    assert codebook.num_tokens == 4  # standstill + one token per tight cluster, then nothing is left
    assert codebook.metadata["coverage"] == 1.0
    order = np.argsort(codebook.end_poses[1:, 0]) + 1
    for token, cluster in zip(order, clusters, strict=True):
        np.testing.assert_allclose(codebook.poses[token], cluster.mean(axis=0), atol=1e-12)


def test_build_codebook_group_members_lie_within_tolerance_of_their_token():
    segments = segments_from_states(generate_driving_states(30, seed=5), stride=2)
    codebook = build_codebook(segments, num_tokens=4096, tolerance_m=0.05, seed=0)
    # Each member is within 0.05 m of its picked segment, so within 0.1 m of the group mean (triangle inequality).
    nearest = np.min(_mean_corner_distance(segments[:, -1], codebook.end_poses), axis=1)
    assert codebook.num_tokens < 4096 and codebook.metadata["coverage"] == 1.0
    assert np.all(nearest <= 0.1 + 1e-9)


def test_build_codebook_is_deterministic_for_a_seed():
    segments = segments_from_states(generate_driving_states(50, seed=2))
    a = build_codebook(segments, num_tokens=64, seed=7)
    b = build_codebook(segments, num_tokens=64, seed=7)
    np.testing.assert_array_equal(a.poses, b.poses)


def test_tokenize_codebook_primitive_sequence_returns_same_tokens(small_codebook):
    tokens = [5, 17, 17, 0, 100, 3, 255, 42, 8, 1]
    poses = small_codebook.detokenize(tokens)
    assert small_codebook.tokenize(poses) == tokens
    assert tokenize(small_codebook, poses) == tokens


def test_detokenize_composes_primitives_rigidly():
    straight = _straight_primitive(10.0)
    turn = np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [3.0, 0.0, 0.0], [4.0, 0.0, 0.0], [5.0, 1.0, np.pi / 2]])
    codebook = ActionCodebook(np.stack([np.zeros((5, 3)), straight, turn]))
    poses = detokenize(codebook, [1, 2, 2])
    np.testing.assert_allclose(poses[0], [5.0, 0.0, 0.0])
    np.testing.assert_allclose(poses[1], [10.0, 1.0, np.pi / 2])
    np.testing.assert_allclose(poses[2], [9.0, 6.0, -np.pi], atol=1e-12)  # turned left twice: now heading -x
    subs = codebook.detokenize_substeps([1, 2])
    assert subs.shape == (10, 3)
    np.testing.assert_allclose(subs[4], poses[0])
    np.testing.assert_allclose(subs[6], [7.0, 0.0, 0.0])


def test_tokenize_is_anchored_on_reconstruction_so_errors_do_not_drift():
    codebook = ActionCodebook(np.stack([np.zeros((5, 3)), _straight_primitive(9.9), _straight_primitive(10.2)]))
    t = np.arange(1, 41) * 0.5
    truth = np.stack([10.0 * t, 0 * t, 0 * t], axis=-1)  # 10 m/s: between the two tokens
    recon = codebook.detokenize(codebook.tokenize(truth))
    assert np.abs(recon[:, 0] - truth[:, 0]).max() <= 0.1 + 1e-9  # bounded by one token's quantisation step


def test_tokenize_rejects_bad_shapes_and_detokenize_rejects_bad_tokens(small_codebook):
    with pytest.raises(ValueError, match=r"\(T, 3\)"):
        small_codebook.tokenize(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="outside"):
        small_codebook.detokenize([0, 256])
    with pytest.raises(ValueError, match="integers"):
        small_codebook.detokenize([0.5])


def test_codebook_save_load_round_trip_is_exact(tmp_path, small_codebook):
    npz_path, json_path = small_codebook.save(tmp_path / "action_codebook.npz")
    assert npz_path.name == "action_codebook.npz" and json_path.name == "action_codebook.json"
    loaded = ActionCodebook.load(tmp_path / "action_codebook")
    np.testing.assert_array_equal(loaded.poses, small_codebook.poses)
    assert loaded.substep_s == small_codebook.substep_s
    assert loaded.metadata == json.loads(json.dumps(small_codebook.metadata))
    header = json.loads(json_path.read_text())
    assert header["num_tokens"] == 256 and header["metadata"]["source"] == "k-disk"
    with np.load(npz_path, allow_pickle=False) as data:  # plain arrays only, no pickled objects
        assert list(data.keys()) == ["poses"]


def test_codebook_load_rejects_npz_that_does_not_match_its_json(tmp_path, small_codebook):
    small_codebook.save(tmp_path / "cb")
    np.savez(tmp_path / "cb.npz", poses=small_codebook.poses * 1.01)
    with pytest.raises(ValueError, match="does not match"):
        ActionCodebook.load(tmp_path / "cb")
    with pytest.raises(FileNotFoundError):
        ActionCodebook.load(tmp_path / "missing")


def test_segments_from_states_are_in_each_window_start_frame():
    states = rollout(np.array([3.0, 4.0, 1.0, 10.0]), np.zeros((12, 2)), 0.1, VehicleParams())[None]
    segments = segments_from_states(states, num_substeps=5, stride=2)
    assert segments.shape == (4, 5, 3)  # window starts 0, 2, 4, 6
    np.testing.assert_allclose(segments, np.broadcast_to(_straight_primitive(10.0), (4, 5, 3)), atol=1e-9)


def test_reconstruction_of_codebook_sequences_is_exact(small_codebook):
    tokens = np.random.default_rng(0).integers(0, 256, size=(20, 10))
    trajectories = small_codebook.detokenize_batch(tokens)
    assert reconstruction_ade(small_codebook, trajectories) < 1e-9


def test_k2048_codebook_from_4000_synthetic_trajectories_has_heldout_ade_below_5cm():
    codebook = build_synthetic_codebook(num_trajectories=4000, num_tokens=2048, seed=0)
    errors = reconstruction_errors(codebook, evaluation_trajectories(300, seed=12345))
    assert codebook.num_tokens == 2048
    assert errors["ade_m"] < 0.05, errors


def test_codebook_cli_logs_ade_and_writes_files(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "cb"
    args = ["--num-trajectories", "200", "--num-tokens", "128", "--num-eval-trajectories", "20", "--out", str(out)]
    assert main(args) == 0
    assert any("ADE" in r.getMessage() for r in caplog.records)
    loaded = ActionCodebook.load(out)
    assert loaded.num_tokens == 128 and "heldout_ade_m" in loaded.metadata
