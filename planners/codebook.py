"""Action codebook of 0.5 s motion primitives: greedy tokenization, rigid detokenization, npz I/O, K-disk build.

A primitive (token) is the motion of the rear axle over ``num_substeps`` sub-steps of ``substep_s`` seconds
(default 5 x 0.1 s), stored as the end pose of each sub-step, (x_m, y_m, yaw_rad), in the frame of the
primitive's start pose (x forward, y left). Segments are compared through the corners of a canonical
4.8 m x 2.0 m box placed on their final pose: the distance of two segments is the mean distance of
corresponding corners (AutoVLA, App. A.1).

Build: K-disk clustering of driving segments (``planners.kdisk``), wrapped by ``build_codebook``.

Tokenize: greedy and anchored on the reconstructed pose, never on the ground truth, so quantisation
errors do not accumulate into drift. Run ``python -m autovla_agent.planners.codebook --help`` to build a
codebook from synthetic driving and log its reconstruction ADE on held-out trajectories.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autovla_agent.planners.kdisk import kdisk_cluster
from autovla_agent.planners.se2 import box_corners, compose_poses, relative_poses, wrap_angle_rad

logger = logging.getLogger(__name__)

DEFAULT_SUBSTEP_S = 0.1
DEFAULT_NUM_SUBSTEPS = 5
BOX_LENGTH_M = 4.8
BOX_WIDTH_M = 2.0
FILE_FORMAT = "autovla_agent.action_codebook"
FILE_VERSION = 1
_TOKENIZE_CHUNK = 256  # trajectories per distance block: 256 x K x 4 x 2 floats stays in tens of MB


class ActionCodebook:
    """K motion primitives of ``num_substeps`` x ``substep_s`` seconds each.

    Attributes:
        poses: (K, S, 3) read-only float64; poses[k, j] is the rear-axle pose (x_m, y_m, yaw_rad) after
            (j + 1) * substep_s seconds of token k, in the frame of the token's start pose.
        substep_s: sub-step duration in seconds.
        metadata: JSON-serialisable provenance (source, build parameters, coverage, ADE...).
    """

    def __init__(self, poses: np.ndarray, *, substep_s: float = DEFAULT_SUBSTEP_S, metadata: dict | None = None):
        poses = np.array(poses, dtype=np.float64)
        if poses.ndim != 3 or poses.shape[2] != 3 or poses.shape[0] < 1 or poses.shape[1] < 1:
            raise ValueError(f"codebook poses must have shape (K, S, 3) = tokens x sub-steps x pose, got {poses.shape}")
        if not np.all(np.isfinite(poses)):
            raise ValueError("codebook poses contain NaN or inf")
        if not substep_s > 0.0:
            raise ValueError(f"substep_s must be > 0 seconds, got {substep_s!r}")
        poses[..., 2] = wrap_angle_rad(poses[..., 2])
        poses.setflags(write=False)
        self.poses = poses
        self.substep_s = float(substep_s)
        self.metadata = dict(metadata or {})
        self._end_corners = box_corners(self.end_poses, BOX_LENGTH_M, BOX_WIDTH_M)

    @property
    def num_tokens(self) -> int:
        """Number of tokens K."""
        return self.poses.shape[0]

    @property
    def num_substeps(self) -> int:
        """Number of sub-steps S per primitive."""
        return self.poses.shape[1]

    @property
    def duration_s(self) -> float:
        """Duration of one primitive in seconds."""
        return self.num_substeps * self.substep_s

    @property
    def end_poses(self) -> np.ndarray:
        """(K, 3) final pose of every primitive in its start frame."""
        return self.poses[:, -1, :]

    def __repr__(self) -> str:
        return f"ActionCodebook(num_tokens={self.num_tokens}, substeps={self.num_substeps}x{self.substep_s}s)"

    def with_metadata(self, **updates: Any) -> ActionCodebook:
        """A copy with ``metadata`` updated by the keyword arguments."""
        return ActionCodebook(self.poses, substep_s=self.substep_s, metadata={**self.metadata, **updates})

    def check_tokens(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Tokens as an int64 array; raise ValueError naming the first one outside [0, K)."""
        arr = np.asarray(tokens)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"tokens must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        bad = np.flatnonzero((arr < 0) | (arr >= self.num_tokens))
        if bad.size:
            value, position = int(arr.flat[bad[0]]), int(bad[0])
            raise ValueError(f"token {value} at position {position} is outside [0, {self.num_tokens})")
        return arr

    def detokenize(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Poses (T, 3) at the end of each token by rigid SE(2) composition from the origin (x forward, y left)."""
        return self.detokenize_batch(self.check_tokens(tokens)[None, :])[0]

    def detokenize_substeps(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Poses (T * S, 3) at every sub-step of every token by rigid composition from the origin."""
        tokens = self.check_tokens(tokens)
        starts = np.vstack([np.zeros((1, 3)), self.detokenize(tokens)[:-1]]) if tokens.size else np.zeros((0, 3))
        return compose_poses(starts[:, None, :], self.poses[tokens]).reshape(-1, 3)

    def detokenize_batch(self, tokens: np.ndarray) -> np.ndarray:
        """Poses (B, T, 3) for token arrays (B, T), by rigid composition from the origin."""
        tokens = self.check_tokens(tokens)
        pose = np.zeros(tokens.shape[:-1] + (3,))
        out = np.empty(tokens.shape + (3,))
        for t in range(tokens.shape[-1]):
            pose = compose_poses(pose, self.end_poses[tokens[..., t]])
            out[..., t, :] = pose
        return out

    def tokenize(self, poses_ego: np.ndarray) -> list[int]:
        """Tokens of a trajectory (T, 3) sampled every ``duration_s`` seconds in the ego frame (origin excluded).

        Greedy: each step places every token at the previously reconstructed pose and keeps the one whose box
        corners lie closest (mean corner distance) to the ground-truth box.
        """
        poses_ego = np.asarray(poses_ego, dtype=np.float64)
        if poses_ego.ndim != 2 or poses_ego.shape[1] != 3:
            raise ValueError(f"poses_ego must have shape (T, 3) = (x_m, y_m, yaw_rad), got {poses_ego.shape}")
        return self.tokenize_batch(poses_ego[None])[0].tolist()

    def tokenize_batch(self, poses_ego: np.ndarray) -> np.ndarray:
        """Tokens (B, T) of trajectories (B, T, 3) sampled every ``duration_s`` seconds; see ``tokenize``."""
        poses_ego = np.asarray(poses_ego, dtype=np.float64)
        if poses_ego.ndim != 3 or poses_ego.shape[2] != 3:
            raise ValueError(f"poses_ego must have shape (B, T, 3), got {poses_ego.shape}")
        if not np.all(np.isfinite(poses_ego)):
            raise ValueError("poses_ego contains NaN or inf")
        tokens = np.empty(poses_ego.shape[:2], dtype=np.int64)
        for lo in range(0, poses_ego.shape[0], _TOKENIZE_CHUNK):
            chunk = poses_ego[lo : lo + _TOKENIZE_CHUNK]
            pose = np.zeros((chunk.shape[0], 3))
            for t in range(chunk.shape[1]):
                target = box_corners(relative_poses(pose, chunk[:, t]), BOX_LENGTH_M, BOX_WIDTH_M)
                dist = np.linalg.norm(self._end_corners[None] - target[:, None], axis=-1).mean(axis=-1)
                best = np.argmin(dist, axis=1)
                tokens[lo : lo + chunk.shape[0], t] = best
                pose = compose_poses(pose, self.end_poses[best])
        return tokens

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.npz`` (poses) and ``<path>.json`` (format, shape, checksum, metadata); return both paths."""
        npz_path, json_path = _codebook_paths(path)
        npz_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(npz_path, poses=self.poses)
        header = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "num_tokens": self.num_tokens,
            "num_substeps": self.num_substeps,
            "substep_s": self.substep_s,
            "poses_sha256": _digest(self.poses),
            "metadata": self.metadata,
        }
        json_path.write_text(json.dumps(header, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return npz_path, json_path

    @classmethod
    def load(cls, path: str | Path) -> ActionCodebook:
        """Read a codebook written by ``save`` (never unpickles); raise ValueError on a mismatched pair of files."""
        npz_path, json_path = _codebook_paths(path)
        for p in (npz_path, json_path):
            if not p.is_file():
                raise FileNotFoundError(f"codebook file {str(p)!r} does not exist (a codebook is a .npz + .json pair)")
        header = json.loads(json_path.read_text(encoding="utf-8"))
        if header.get("format") != FILE_FORMAT or header.get("version") != FILE_VERSION:
            raise ValueError(f"{json_path}: not a version-{FILE_VERSION} {FILE_FORMAT} file")
        with np.load(npz_path, allow_pickle=False) as data:
            poses = np.asarray(data["poses"], dtype=np.float64)
        if poses.shape != (header["num_tokens"], header["num_substeps"], 3) or _digest(poses) != header["poses_sha256"]:
            raise ValueError(f"{npz_path} does not match {json_path} (shape or checksum differ); rewrite both")
        return cls(poses, substep_s=header["substep_s"], metadata=header["metadata"])


def _codebook_paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".npz", ".json") else path
    return base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")


def _digest(poses: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(poses, dtype=np.float64).tobytes()).hexdigest()


def tokenize(codebook: ActionCodebook, poses_ego: np.ndarray) -> list[int]:
    """Module-level form of ``ActionCodebook.tokenize``."""
    return codebook.tokenize(poses_ego)


def detokenize(codebook: ActionCodebook, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    """Module-level form of ``ActionCodebook.detokenize``."""
    return codebook.detokenize(tokens)


def segments_from_states(states: np.ndarray, num_substeps: int = DEFAULT_NUM_SUBSTEPS, stride: int = 1) -> np.ndarray:
    """Segments (M, S, 3): every window of S + 1 consecutive poses of states (N, T+1, >=3), in its start frame.

    Windows start every ``stride`` samples; the sampling interval of ``states`` becomes the sub-step.
    """
    states = np.asarray(states, dtype=np.float64)
    if states.ndim != 3 or states.shape[2] < 3 or states.shape[1] < num_substeps + 1:
        raise ValueError(f"states must have shape (N, T+1 >= {num_substeps + 1}, >=3), got {states.shape}")
    starts = np.arange(0, states.shape[1] - num_substeps, stride)
    index = starts[:, None] + np.arange(num_substeps + 1)[None, :]
    windows = states[:, index, :3]  # (N, W, S+1, 3)
    return relative_poses(windows[:, :, :1], windows[:, :, 1:]).reshape(-1, num_substeps, 3)


def build_codebook(
    segments: np.ndarray,
    num_tokens: int = 2048,
    tolerance_m: float = 0.05,
    seed: int = 0,
    *,
    substep_s: float = DEFAULT_SUBSTEP_S,
    metadata: dict[str, Any] | None = None,
) -> ActionCodebook:
    """K-disk clustering (``planners.kdisk``) of segments (N, S, 3) (sub-step poses in each segment's start frame).

    Token 0 is standing still. Stops early (with a warning) when every segment is covered before
    ``num_tokens``. The metadata records the build parameters and the share of segments covered.
    """
    poses, info = kdisk_cluster(
        segments, num_tokens, tolerance_m, seed, box_length_m=BOX_LENGTH_M, box_width_m=BOX_WIDTH_M
    )
    return ActionCodebook(poses, substep_s=substep_s, metadata={**info, **(metadata or {})})


def reconstruction_errors(codebook: ActionCodebook, trajectories_ego: np.ndarray) -> dict[str, float]:
    """Tokenize then detokenize trajectories (N, T, 3) sampled every primitive duration; return error statistics.

    Keys: ``ade_m`` (mean position error over all poses), ``fde_m`` (mean final position error),
    ``max_m`` (worst position error) and ``yaw_mae_rad`` (mean absolute heading error).
    """
    trajectories_ego = np.asarray(trajectories_ego, dtype=np.float64)
    recon = codebook.detokenize_batch(codebook.tokenize_batch(trajectories_ego))
    dist = np.linalg.norm(recon[..., :2] - trajectories_ego[..., :2], axis=-1)
    yaw_err = np.abs(wrap_angle_rad(recon[..., 2] - trajectories_ego[..., 2]))
    return {
        "ade_m": float(dist.mean()),
        "fde_m": float(dist[:, -1].mean()),
        "max_m": float(dist.max()),
        "yaw_mae_rad": float(yaw_err.mean()),
    }


def reconstruction_ade(codebook: ActionCodebook, trajectories_ego: np.ndarray) -> float:
    """Mean position error in metres of tokenize -> detokenize over trajectories (N, T, 3)."""
    return reconstruction_errors(codebook, trajectories_ego)["ade_m"]


def evaluation_trajectories(num_trajectories: int, *, num_tokens_per_trajectory: int = 10, seed: int = 1) -> np.ndarray:
    """Held-out synthetic trajectories (N, T, 3) in their start frame, sampled every 0.5 s (origin excluded)."""
    from autovla_agent.planners.synthetic_driving import SyntheticDrivingConfig, generate_driving_states

    config = SyntheticDrivingConfig(duration_s=num_tokens_per_trajectory * DEFAULT_NUM_SUBSTEPS * DEFAULT_SUBSTEP_S)
    states = generate_driving_states(num_trajectories, config=config, seed=seed)
    return states[:, DEFAULT_NUM_SUBSTEPS::DEFAULT_NUM_SUBSTEPS, :3]


def build_synthetic_codebook(
    num_trajectories: int = 4000,
    num_tokens: int = 2048,
    tolerance_m: float = 0.05,
    seed: int = 0,
    *,
    stride: int = 1,
) -> ActionCodebook:
    """K-disk codebook from ``num_trajectories`` synthetic 10 s driving rollouts (segments every ``stride`` x 0.1 s)."""
    from autovla_agent.planners.synthetic_driving import SyntheticDrivingConfig, generate_driving_states

    config = SyntheticDrivingConfig()
    states = generate_driving_states(num_trajectories, config=config, seed=seed)
    segments = segments_from_states(states, DEFAULT_NUM_SUBSTEPS, stride)
    provenance = {
        "data": f"synthetic bicycle driving (planners.synthetic_driving), {num_trajectories} x {config.duration_s} s, "
        f"heading noise {config.heading_noise_rad} rad, seed {seed}, segment stride {stride} x 0.1 s"
    }
    return build_codebook(segments, num_tokens, tolerance_m, seed, metadata=provenance)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: build a codebook from synthetic driving, log its held-out reconstruction ADE, optionally save it."""
    parser = argparse.ArgumentParser(prog="autovla-codebook", description=main.__doc__)
    parser.add_argument("--num-trajectories", type=int, default=4000, help="synthetic 10 s trajectories to cluster")
    parser.add_argument("--num-tokens", type=int, default=2048, help="codebook size K")
    parser.add_argument("--tolerance-m", type=float, default=0.05, help="K-disk mean-corner-distance tolerance")
    parser.add_argument("--stride", type=int, default=1, help="segment start stride in 0.1 s sub-steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training trajectories and the clustering")
    parser.add_argument("--num-eval-trajectories", type=int, default=1000, help="held-out 5 s trajectories")
    parser.add_argument("--eval-seed", type=int, default=1_000_003, help="seed of the held-out trajectories")
    parser.add_argument("--out", type=Path, default=None, help="write <out>.npz and <out>.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.eval_seed == args.seed:
        parser.error("--eval-seed must differ from --seed so that the evaluation trajectories are held out")
    start = time.perf_counter()
    codebook = build_synthetic_codebook(
        args.num_trajectories, args.num_tokens, args.tolerance_m, args.seed, stride=args.stride
    )
    build_s = time.perf_counter() - start
    held_out = evaluation_trajectories(args.num_eval_trajectories, seed=args.eval_seed)
    start = time.perf_counter()
    errors = reconstruction_errors(codebook, held_out)
    eval_s = time.perf_counter() - start
    codebook = codebook.with_metadata(
        heldout=f"{args.num_eval_trajectories} synthetic 5 s trajectories at 2 Hz, seed {args.eval_seed}",
        **{f"heldout_{k}": round(v, 6) for k, v in errors.items()},
    )
    logger.info(
        "codebook K=%d (coverage %.4f) built in %.2f s; held-out reconstruction over %d trajectories x %d poses: "
        "ADE %.4f m, FDE %.4f m, max %.4f m, yaw MAE %.4f rad (%.2f s)",
        codebook.num_tokens,
        codebook.metadata["coverage"],
        build_s,
        held_out.shape[0],
        held_out.shape[1],
        errors["ade_m"],
        errors["fde_m"],
        errors["max_m"],
        errors["yaw_mae_rad"],
        eval_s,
    )
    if args.out is not None:
        npz_path, json_path = codebook.save(args.out)
        logger.info("wrote %s and %s", npz_path, json_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
