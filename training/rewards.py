"""GRPO reward functions with TRL's keyword-only signature, returning one float (or None) per completion.

Every reward is a callable object named by ``__name__`` (TRL logs it as ``rewards/<name>``) and called as
``reward(prompts=..., completions=..., completion_ids=..., **dataset_columns)``. The columns they read are
written by ``autovla_agent.training.data.to_grpo_rows``: ``sample_id``, ``speed_mps``, ``accel_mps2``,
``scene_json``, ``future_json`` and ``scene_token`` (NAVSIM).

- ``PDMReward``: decodes the completion's action tokens with the bicycle decoder and scores the trajectory
  with the PDM-style scorer (``autovla_agent.training.pdm``) on the sample's stored scene state.
- ``NavsimPDMReward``: navsim v1.1's own PDM scorer on a metric cache (navsim must be installed).
- ``LengthPenalty``: AutoVLA's reasoning-length penalty, on tokens instead of characters, for slow-thinking
  completions only: ``-scale * sigmoid(rate * (num_reasoning_tokens - center))``.

Completions are read from their token ids with the runtime's own parser (``completion_autovla.parse_completion``):
one the runtime could not use (fewer than N action tokens, out-of-range ids, garbled) is an invalid plan and gets
``invalid_plan_reward`` (the runtime would fall back), never an exception.
"""

from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from autovla_agent.config_io import from_dict
from autovla_agent.contract import ThinkingMode
from autovla_agent.policy.completion import ParsedCompletion, parse_completion
from autovla_agent.training.pdm import PDMConfig, PDMResult, SceneGeometry, pdm_score
from autovla_agent.training.schema import SceneState

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class RewardConfig:
    """Reward settings: PDM scorer, plan length, invalid-plan value, length penalty and weights."""

    pdm: PDMConfig = field(default_factory=PDMConfig)
    num_plan_tokens: int = 10  # action tokens a complete answer carries
    invalid_plan_reward: float = 0.0
    use_reference_progress: bool = True  # normalise ego progress by the expert's driven future
    length_penalty_scale: float = 0.3
    length_penalty_rate_per_token: float = 0.008  # AutoVLA: 0.002 per char, ~4 chars per token
    length_penalty_center_tokens: float = 100.0  # AutoVLA: 400 chars
    pdm_weight: float = 10.0  # AutoVLA: reward = 10 * PDMS - length penalty
    length_weight: float = 1.0
    navsim_metric_cache: str = ""  # folder of a navsim metric cache; "" = navsim reward off

    def __post_init__(self) -> None:
        """Reject impossible values."""
        if self.num_plan_tokens < 1:
            raise ValueError("num_plan_tokens must be >= 1")
        if self.length_penalty_scale < 0 or self.length_penalty_rate_per_token < 0:
            raise ValueError("length_penalty_scale and length_penalty_rate_per_token must be >= 0")


class DecodedLike(Protocol):
    """What the reward needs from a decoded trajectory (planners' DecodedTrajectory)."""

    times_s: np.ndarray
    states: np.ndarray


class TrajectoryDecoder(Protocol):
    """planners' BicycleDecoder protocol: codebook indices + current speed/accel -> trajectory."""

    def decode(self, tokens: Sequence[int], speed_mps: float, accel_mps2: float = 0.0) -> DecodedLike:
        """Decode codebook indices."""


class CompletionReader:
    """Reads completions with the runtime's parser (``completion_autovla.parse_completion``), from token ids."""

    def __init__(
        self,
        action_token_ids: Sequence[int],
        num_plan_tokens: int,
        tokenizer: Any = None,
        reasoning_model: bool = True,
    ) -> None:
        self.action_token_ids = tuple(int(t) for t in action_token_ids)
        self.num_plan_tokens = num_plan_tokens
        self.tokenizer = tokenizer
        self.reasoning_model = reasoning_model

    def read(self, completion_ids: Sequence[int]) -> ParsedCompletion:
        """Parsed completion (never raises): action indices when usable, thinking mode and reasoning text."""
        return parse_completion(
            list(completion_ids),
            num_action_tokens=self.num_plan_tokens,
            num_codebook_tokens=len(self.action_token_ids),
            action_token_ids=self.action_token_ids,
            tokenizer=self.tokenizer,
            reasoning_model=self.reasoning_model,
        )

    def count_tokens(self, text: str) -> int:
        """Token count of ``text`` with the tokenizer (about 4 characters per token without one)."""
        if self.tokenizer is None:
            return math.ceil(len(text) / 4)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _column(kwargs: Mapping[str, Any], name: str, reward: str) -> list[Any]:
    if name not in kwargs:
        raise KeyError(
            f"reward {reward!r} needs the dataset column {name!r}; build the GRPO dataset with "
            "autovla_agent.training.data.to_grpo_rows (samples need a scene state)"
        )
    return kwargs[name]


class _LRU(OrderedDict):
    """Tiny LRU cache for per-sample geometry (a group of G completions shares one scene)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or_make(self, key: str, make: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value


class PDMReward:
    """PDM-style driving score of the decoded plan on the sample's stored scene (reward in [0, 1])."""

    __name__ = "pdm_score"

    def __init__(self, decoder: TrajectoryDecoder, reader: CompletionReader, config: RewardConfig) -> None:
        self.decoder = decoder
        self.reader = reader
        self.config = config
        self._geometry = _LRU(256)
        self.last_results: list[PDMResult | None] = []

    def _geometry_for(self, sample_id: str, scene_json: str) -> SceneGeometry:
        def make() -> SceneGeometry:
            return SceneGeometry(from_dict(SceneState, json.loads(scene_json)), self.config.pdm)

        return self._geometry.get_or_make(f"{sample_id}:{hash(scene_json)}", make)

    def score_indices(
        self, indices: Sequence[int], speed_mps: float, accel_mps2: float, geom: SceneGeometry, future: Any
    ) -> PDMResult:
        """Decode codebook indices and score them; ``future`` = {'dt_s', 'poses_ego'} of the expert or None."""
        decoded = self.decoder.decode(list(indices), speed_mps, accel_mps2)
        states = np.asarray(decoded.states, dtype=np.float64)
        ref_poses = ref_times = None
        if self.config.use_reference_progress and future:
            ref_poses = np.asarray(future["poses_ego"], dtype=np.float64)
            ref_times = np.arange(1, len(ref_poses) + 1) * float(future["dt_s"])
        return pdm_score(geom, np.asarray(decoded.times_s), states[:, :3], speed_mps, ref_poses, ref_times)

    def __call__(
        self, prompts: list[Any], completions: list[Any], completion_ids: list[list[int]], **kwargs: Any
    ) -> list[float | None]:
        """One PDM score per completion; invalid plans get ``invalid_plan_reward``; scene-less rows None."""
        ids_col = _column(kwargs, "sample_id", self.__name__)
        scenes = _column(kwargs, "scene_json", self.__name__)
        speeds = _column(kwargs, "speed_mps", self.__name__)
        accels = _column(kwargs, "accel_mps2", self.__name__)
        futures = kwargs.get("future_json", [None] * len(completion_ids))
        rewards: list[float | None] = []
        self.last_results = []
        for k, ids in enumerate(completion_ids):
            if not scenes[k]:
                rewards.append(None)
                self.last_results.append(None)
                continue
            parsed = self.reader.read(ids)
            if not parsed.usable:
                rewards.append(self.config.invalid_plan_reward)
                self.last_results.append(None)
                continue
            indices = parsed.action_indices
            geom = self._geometry_for(str(ids_col[k]), scenes[k])
            future = json.loads(futures[k]) if futures[k] else None
            try:
                result = self.score_indices(indices, float(speeds[k]), float(accels[k]), geom, future)
            except Exception:  # a scoring failure must not stop training; AutoVLA also scores it 0
                logger.exception("PDM scoring failed for sample %s; reward %s", ids_col[k], 0.0)
                rewards.append(0.0)
                self.last_results.append(None)
                continue
            rewards.append(result.score)
            self.last_results.append(result)
        return rewards


class NavsimUnavailableError(RuntimeError):
    """navsim (or its metric cache) is not available for the navsim PDM reward."""


class NavsimPDMReward:
    """navsim v1.1's own PDM score on a metric cache (column ``scene_token``); needs navsim + nuplan-devkit."""

    __name__ = "navsim_pdm_score"

    def __init__(self, decoder: TrajectoryDecoder, reader: CompletionReader, config: RewardConfig) -> None:
        try:
            from navsim.common.dataclasses import Trajectory
            from navsim.common.dataloader import MetricCacheLoader
            from navsim.evaluate.pdm_score import pdm_score as navsim_pdm_score
            from navsim.planning.simulation.planner.pdm_planner.scoring.pdm_scorer import PDMScorer
            from navsim.planning.simulation.planner.pdm_planner.simulation.pdm_simulator import PDMSimulator
            from nuplan.planning.simulation.trajectory.trajectory_sampling import TrajectorySampling
        except ImportError as exc:
            raise NavsimUnavailableError(
                f"the navsim PDM reward needs navsim 1.1 and nuplan-devkit installed ({exc}); install them "
                "(see the README's NAVSIM section) or use the built-in 'pdm_score' reward"
            ) from None
        cache = Path(config.navsim_metric_cache)
        if not config.navsim_metric_cache or not (cache / "metadata").is_dir():
            raise NavsimUnavailableError(
                f"navsim metric cache {str(cache)!r} not found (it needs a metadata/ folder); build it with "
                "navsim's run_metric_caching.py and set rewards.navsim_metric_cache"
            )
        self.decoder = decoder
        self.reader = reader
        self.config = config
        self._trajectory_cls = Trajectory
        self._score = navsim_pdm_score
        self._loader = MetricCacheLoader(cache)
        sampling = TrajectorySampling(num_poses=40, interval_length=0.1)
        self._plan_sampling = TrajectorySampling(num_poses=config.num_plan_tokens, interval_length=0.5)
        self._simulator = PDMSimulator(sampling)
        self._scorer = PDMScorer(sampling)

    def __call__(
        self, prompts: list[Any], completions: list[Any], completion_ids: list[list[int]], **kwargs: Any
    ) -> list[float | None]:
        """The navsim PDM score per completion; rows without a cached token get None (excluded)."""
        tokens = _column(kwargs, "scene_token", self.__name__)
        speeds = _column(kwargs, "speed_mps", self.__name__)
        accels = _column(kwargs, "accel_mps2", self.__name__)
        rewards: list[float | None] = []
        for k, ids in enumerate(completion_ids):
            if tokens[k] not in self._loader.metric_cache_paths:
                rewards.append(None)
                continue
            parsed = self.reader.read(ids)
            if not parsed.usable:
                rewards.append(self.config.invalid_plan_reward)
                continue
            decoded = self.decoder.decode(list(parsed.action_indices), float(speeds[k]), float(accels[k]))
            t = np.arange(1, self.config.num_plan_tokens + 1) * 0.5
            states = np.asarray(decoded.states)
            poses = np.stack([np.interp(t, decoded.times_s, states[:, i]) for i in range(3)], axis=-1)
            try:
                trajectory = self._trajectory_cls(poses.astype(np.float32), self._plan_sampling)
                cache = self._loader.get_from_token(tokens[k])
                sampling = self._simulator.proposal_sampling
                result = self._score(cache, trajectory, sampling, self._simulator, self._scorer)
                rewards.append(float(result.score))
            except Exception:
                logger.exception("navsim scoring failed for token %s; reward 0", tokens[k])
                rewards.append(0.0)
        return rewards


def length_penalty(num_tokens: int, config: RewardConfig) -> float:
    """AutoVLA's length penalty on tokens: -scale * sigmoid(rate * (num_tokens - center)) (<= 0)."""
    z = config.length_penalty_rate_per_token * (num_tokens - config.length_penalty_center_tokens)
    return -config.length_penalty_scale / (1.0 + math.exp(-z))


class LengthPenalty:
    """Length penalty for slow-thinking completions (0 for fast or unreadable ones); counts reasoning tokens."""

    __name__ = "length_penalty"

    def __init__(self, reader: CompletionReader, config: RewardConfig) -> None:
        self.reader = reader
        self.config = config

    def __call__(
        self, prompts: list[Any], completions: list[Any], completion_ids: list[list[int]], **kwargs: Any
    ) -> list[float | None]:
        """Penalty (<= 0) per completion: the sigmoid of its reasoning length for slow ones, 0 for fast ones."""
        out: list[float | None] = []
        for ids in completion_ids:
            parsed = self.reader.read(ids)
            if parsed.thinking_mode != ThinkingMode.SLOW:
                out.append(0.0)
                continue
            out.append(length_penalty(self.reader.count_tokens(parsed.reasoning), self.config))
        return out
