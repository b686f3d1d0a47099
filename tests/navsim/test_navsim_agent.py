"""The navsim agent on stand-in navsim modules: fallback trajectories and per-agent run stats with their summaries."""

from __future__ import annotations

import gc
import importlib
import logging
import sys
import types
import weakref
from types import SimpleNamespace

import numpy as np
import pytest

import autovla_agent.adapters.navsim
from autovla_agent.adapters.navsim.convert import NAVSIM_CAMERAS
from autovla_agent.contract import Plan, PlanStatus

AGENT_MODULE = "autovla_agent.adapters.navsim.agent"


class _AbstractAgent:
    """navsim v2.x's constructor signature; nothing else of the base class is used."""

    def __init__(self, trajectory_sampling=None, requires_scene=False):
        self._trajectory_sampling = trajectory_sampling
        self.requires_scene = requires_scene


class _TrajectorySampling:
    def __init__(self, time_horizon=4, interval_length=0.5):
        self.interval_length = interval_length
        self.num_poses = int(round(time_horizon / interval_length))


class _Trajectory:
    def __init__(self, poses, trajectory_sampling):
        self.poses, self.trajectory_sampling = poses, trajectory_sampling


@pytest.fixture
def agent_module(monkeypatch):
    """The agent module imported against stand-ins for the few navsim and nuplan names it uses."""
    leaves = {
        "navsim.agents.abstract_agent": {"AbstractAgent": _AbstractAgent},
        "navsim.common.dataclasses": {"AgentInput": object, "SensorConfig": dict, "Trajectory": _Trajectory},
        "nuplan.planning.simulation.trajectory.trajectory_sampling": {"TrajectorySampling": _TrajectorySampling},
    }
    for leaf, names in leaves.items():
        parts = leaf.split(".")
        for i in range(1, len(parts) + 1):
            monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        for name, value in names.items():
            setattr(sys.modules[leaf], name, value)
    monkeypatch.delitem(sys.modules, AGENT_MODULE, raising=False)
    yield importlib.import_module(AGENT_MODULE)
    sys.modules.pop(AGENT_MODULE, None)
    if hasattr(autovla_agent.adapters.navsim, "agent"):
        delattr(autovla_agent.adapters.navsim, "agent")


def _agent_input(speed_mps: float = 4.0):
    image = np.zeros((6, 8, 3), np.uint8)
    status = SimpleNamespace(
        ego_pose=np.zeros(3),
        ego_velocity=np.array([speed_mps, 0.0]),
        ego_acceleration=np.zeros(2),
        driving_command=np.array([0, 1, 0, 0]),
        in_global_frame=False,
    )
    cameras = SimpleNamespace(**{cam: SimpleNamespace(image=image) for cam in NAVSIM_CAMERAS})
    return SimpleNamespace(ego_statuses=[status] * 4, cameras=[cameras] * 4)


class _FakePlanner:
    """Plans straight at 2 m/s, except every third scene: there it raises, or returns a fallback plan."""

    def __init__(self, raises: bool):
        self.raises = raises
        self.calls = 0
        self.stats = SimpleNamespace(as_dict=lambda: {"steps": self.calls})

    def plan(self, obs):
        self.calls += 1
        if self.calls % 3 == 0 and self.raises:
            raise RuntimeError("model exploded")
        times_s = 0.5 * np.arange(1, 11)
        poses = np.stack([2.0 * times_s, np.zeros(10), np.zeros(10)], axis=-1)
        status = PlanStatus.FALLBACK if self.calls % 3 == 0 else PlanStatus.OK
        return Plan(times_s=times_s, poses_ego=poses, status=status)


def _agent(module, raises: bool = False):
    agent = module.AutoVLANavsimAgent(checkpoint_path="/models/autovla")
    agent._planner = _FakePlanner(raises)  # what initialize() builds, without a model
    agent.stats.planner_stats = agent._planner.stats
    return agent


def test_raising_planner_gives_constant_velocity_trajectory(agent_module):
    agent = _agent(agent_module, raises=True)
    ok = agent.compute_trajectory(_agent_input())
    agent.compute_trajectory(_agent_input())
    fallback = agent.compute_trajectory(_agent_input(speed_mps=4.0))
    np.testing.assert_allclose(ok.poses[:, 0], 2.0 * 0.5 * np.arange(1, 9), atol=1e-5)
    assert fallback.poses.dtype == np.float32 and fallback.poses.shape == (8, 3)
    np.testing.assert_allclose(fallback.poses[:, 0], 4.0 * 0.5 * np.arange(1, 9))
    assert agent.stats.scenes == 3 and agent.stats.errors == 1 and agent.stats.fallbacks == 1


def test_run_stats_are_per_agent_and_summaries_logged_every_50_scenes_and_at_the_end(agent_module, caplog):
    first, second = _agent(agent_module), _agent(agent_module)
    with caplog.at_level(logging.INFO, logger=AGENT_MODULE):
        for _ in range(50):
            first.compute_trajectory(_agent_input())
        second.compute_trajectory(_agent_input())
        periodic = [r.getMessage() for r in caplog.records if r.getMessage().startswith("autovla navsim agent: ")]
        assert periodic == [f"autovla navsim agent: {first.stats.summary()}"]
        assert periodic[0].startswith("autovla navsim agent: 50 scenes") and "fallback 16" in periodic[0]
        assert (first.stats.scenes, second.stats.scenes) == (50, 1)

        # navsim drops an agent when its chunk ends: its final summary is logged then, and nothing keeps it alive
        # (the planner never raises here: a logged traceback in caplog would hold the agent's frames).
        gone = weakref.ref(first)
        finalizer = first.final_summary
        del first
        gc.collect()
        assert gone() is None and not finalizer.alive
        finals = [r for r in caplog.records if "final summary" in r.getMessage()]
        assert len(finals) == 1 and finals[0].levelno == logging.WARNING  # it had fallbacks
        assert "50 scenes" in finals[0].getMessage() and "{'steps': 50}" in finals[0].getMessage()

        # An agent still alive at interpreter exit: the same finalizer runs from the exit hook, once.
        assert second.final_summary.atexit
        second.final_summary()
        second.final_summary()
        finals = [r.getMessage() for r in caplog.records if "final summary" in r.getMessage()]
        assert len(finals) == 2 and "1 scenes" in finals[1]


def test_agent_without_scenes_logs_no_final_summary(agent_module, caplog):
    agent = _agent(agent_module)
    with caplog.at_level(logging.INFO, logger=AGENT_MODULE):
        agent.final_summary()
    assert not [r for r in caplog.records if "final summary" in r.getMessage()]
