import os
import pickle

import numpy as np
import pytest

from autovla_agent.planners.autovla_vocab import (
    UnsafePickleError,
    codebook_from_corners,
    corners_to_poses,
    load_autovla_pickle,
    safe_load_numpy_pickle,
)
from autovla_agent.planners.bicycle import rollout
from autovla_agent.planners.se2 import box_corners, compose_poses, relative_poses
from autovla_agent.planners.vehicle import VehicleParams

VEH = VehicleParams()


def _rear_axle_primitives(num_tokens: int, seed: int = 0) -> np.ndarray:
    """(K, 6, 4) rear-axle states at 0..0.5 s of random feasible bicycle primitives starting at the origin."""
    rng = np.random.default_rng(seed)
    state0 = np.zeros((num_tokens, 4))
    state0[:, 3] = rng.uniform(0.0, 20.0, num_tokens)
    controls = np.stack(
        [
            np.broadcast_to(rng.uniform(-4, 2, (num_tokens, 1)), (num_tokens, 5)),
            rng.uniform(-0.4, 0.4, (num_tokens, 5)),
        ],
        axis=-1,
    )
    return rollout(state0, controls, 0.1, VEH)


def _vocab_layout(centre_poses: np.ndarray) -> np.ndarray:
    """float32 (K, P, 4, 2) corners of a 4.8 m x 2.0 m box centred on each pose: AutoVLA's published layout."""
    return box_corners(centre_poses, 4.8, 2.0).astype(np.float32)


def _write_pickle(path, obj, protocol=pickle.HIGHEST_PROTOCOL):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def test_corners_to_poses_recovers_centre_and_heading():
    poses = np.array([[1.0, 2.0, 0.3], [-4.0, 0.5, -2.9], [0.0, 0.0, np.pi / 2]])
    np.testing.assert_allclose(corners_to_poses(box_corners(poses, 4.8, 2.0)), poses, atol=1e-12)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_load_autovla_pickle_recovers_token_poses_for_every_protocol(tmp_path, protocol):
    states = _rear_axle_primitives(16)
    corners = _vocab_layout(states[..., :3])
    other = np.zeros_like(corners)
    path = _write_pickle(tmp_path / "agent_vocab.pkl", {"veh": corners, "ped": other, "cyc": other}, protocol)
    codebook = load_autovla_pickle(path)
    assert codebook.num_tokens == 16 and codebook.num_substeps == 5 and codebook.substep_s == pytest.approx(0.1)
    np.testing.assert_allclose(codebook.poses, states[:, 1:, :3], atol=2e-5)  # float32 corners
    assert codebook.metadata["box_length_m"] == pytest.approx(4.8, abs=1e-5)
    assert codebook.metadata["source_sha256"]


def test_load_autovla_pickle_accepts_token_all_nesting_and_other_agents(tmp_path):
    states = _rear_axle_primitives(4, seed=1)
    corners = _vocab_layout(states[..., :3])
    path = _write_pickle(tmp_path / "vocab.pkl", {"token_all": {"veh": corners * 0, "ped": corners, "cyc": corners}})
    np.testing.assert_allclose(load_autovla_pickle(path, agent="ped").poses, states[:, 1:, :3], atol=2e-5)


def test_load_autovla_pickle_converts_box_centre_motion_to_rear_axle_motion(tmp_path):
    rear = _rear_axle_primitives(8, seed=2)[..., :3]
    centre = compose_poses(rear, np.array([1.4, 0.0, 0.0]))  # box centre 1.4 m ahead of the rear axle
    # Express the centre track in the frame of the centre's start pose, as the published layout does.
    centre_in_start = relative_poses(centre[:, :1], centre)
    path = _write_pickle(tmp_path / "vocab.pkl", {"veh": _vocab_layout(centre_in_start)})
    as_published = load_autovla_pickle(path)
    converted = load_autovla_pickle(path, rear_axle_offset_m=1.4)
    np.testing.assert_allclose(converted.poses, rear[:, 1:], atol=3e-5)
    assert np.abs(as_published.poses[..., 1] - rear[:, 1:, 1]).max() > 0.01  # centre motion differs when turning


def test_single_pose_layout_interpolates_substeps(tmp_path):
    end = np.array([[[5.0, 0.5, 0.2]], [[0.0, 0.0, 0.0]]])
    codebook = codebook_from_corners(_vocab_layout(end))
    assert codebook.poses.shape == (2, 5, 3)
    np.testing.assert_allclose(codebook.end_poses, end[:, 0], atol=1e-5)
    np.testing.assert_allclose(codebook.poses[0, 1], [2.0, 0.2, 0.08], atol=1e-5)


def test_pickle_calling_os_system_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = _write_pickle(tmp_path / "agent_vocab.pkl", {"veh": Exploit()})
    with pytest.raises(UnsafePickleError, match=r"system") as info:
        load_autovla_pickle(path)
    assert "only numpy arrays" in str(info.value)
    assert not marker.exists()


def test_pickle_with_any_non_numpy_class_is_refused_naming_it(tmp_path):
    from collections import OrderedDict

    path = _write_pickle(tmp_path / "vocab.pkl", OrderedDict(veh=np.zeros((1, 6, 4, 2), np.float32)))
    with pytest.raises(UnsafePickleError, match="collections.OrderedDict"):
        safe_load_numpy_pickle(path)
    path = _write_pickle(tmp_path / "eval.pkl", {"veh": eval})
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        safe_load_numpy_pickle(path)


def test_load_autovla_pickle_rejects_wrong_content_with_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="'veh'"):
        load_autovla_pickle(_write_pickle(tmp_path / "a.pkl", {"car": np.zeros((1, 6, 4, 2), np.float32)}))
    with pytest.raises(ValueError, match=r"\(K, P, 4, 2\)"):
        load_autovla_pickle(_write_pickle(tmp_path / "b.pkl", {"veh": np.zeros((3, 6, 2), np.float32)}))
    mirrored = _vocab_layout(_rear_axle_primitives(3)[..., :3])[..., ::-1, :]  # corners in the opposite order
    with pytest.raises(ValueError, match="front-left"):
        load_autovla_pickle(_write_pickle(tmp_path / "c.pkl", {"veh": np.ascontiguousarray(mirrored)}))
    with pytest.raises(FileNotFoundError):
        load_autovla_pickle(tmp_path / "missing.pkl")
