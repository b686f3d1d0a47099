import numpy as np
import pytest

from autovla_agent import demo
from autovla_agent.contract import CameraFrame, EgoState, NavCommand, Observation, PlanStatus
from autovla_agent.loop.agent_config import load_agent_config
from autovla_agent.paths import DEFAULT_MODEL_DIR
from autovla_agent.policy.modeling import VLAPlanner


def test_demo_resolves_the_shipped_default_model_and_its_agent_config(tmp_path):
    model_dir = demo.resolve_model("", tmp_path)
    assert model_dir == DEFAULT_MODEL_DIR
    assert not (tmp_path / "models").exists()  # nothing built when a trained model ships
    config, _ = load_agent_config(f"{model_dir / 'agent_config.yaml'} vla.model.path={model_dir}")
    assert config.vla.model.path == str(model_dir)


def test_demo_rejects_a_model_argument_that_is_not_a_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        demo.resolve_model(str(tmp_path), tmp_path)


def test_shipped_default_model_plans_with_its_own_config():
    model_dir = DEFAULT_MODEL_DIR
    config, _ = load_agent_config(f"{model_dir / 'agent_config.yaml'} vla.model.path={model_dir} vla.model.device=cpu")
    vla = config.vla
    h, w = config.frame_buffer.height_px, config.frame_buffer.width_px
    rng = np.random.default_rng(0)
    frames = {
        view: tuple(
            CameraFrame(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), -0.5 * k)
            for k in range(vla.prompt.num_frames - 1, -1, -1)
        )
        for view in vla.prompt.views
    }
    history = tuple(EgoState(timestamp_s=-0.5 * k, x_m=-2.5 * k, speed_mps=5.0) for k in range(3, -1, -1))
    obs = Observation(
        timestamp_s=0.0,
        cameras=frames,
        ego_history=history,
        command=NavCommand.KEEP_FORWARD,
        target_point_ego_m=(10.0, 0.0),
    )
    plan = VLAPlanner(vla).plan(obs)
    assert plan.status in (PlanStatus.OK, PlanStatus.REPAIRED)
    assert len(plan.action_tokens) == vla.decoding.num_action_tokens
    assert np.all(np.isfinite(plan.poses_ego))
    # A model trained on driving data starts out moving forward at about the current speed, not backwards.
    assert plan.poses_ego[0, 0] > 0.5
