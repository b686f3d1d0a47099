"""Safe import of the layout of AutoVLA's published ``agent_vocab.pkl`` (box corners) into an ActionCodebook.

The published file is a pickle: a dict with keys ``veh``, ``ped`` and ``cyc`` (optionally nested under
``token_all``), each float32 (K, P, 4, 2) = tokens x poses at 0.1 s from 0 s (P = 6) x box corners x xy, the
corners ordered front-left, front-right, rear-right, rear-left in a right-handed frame (x forward, y left) at
the token's start pose. A pickle can run arbitrary code when loaded, so it is read through a restricted
unpickler that only rebuilds numpy arrays, dtypes and scalars (plus the plain dicts, lists, tuples and
strings the pickle protocol builds by itself) and refuses any other global with ``UnsafePickleError``.

Licence: AutoVLA's codebook is under the UCLA Academic Software License (non-commercial, no redistribution
of derivatives). Nothing of it ships with this package; this loader only lets users who hold the file use
models trained with it. Convert corners to poses, never redistribute the result.
"""

from __future__ import annotations

import codecs
import hashlib
import importlib
import io
import logging
import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np

from autovla_agent.planners.codebook import DEFAULT_NUM_SUBSTEPS, DEFAULT_SUBSTEP_S, ActionCodebook
from autovla_agent.planners.se2 import compose_poses, relative_poses

logger = logging.getLogger(__name__)

AgentKind = Literal["veh", "ped", "cyc"]

# (module, name) pairs numpy needs to rebuild arrays, dtypes and scalars under numpy 1.x and 2.x.
_NUMPY_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that references something other than numpy arrays, dtypes and scalars."""


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode`` (protocol-2 pickles store array bytes as latin-1 text); nothing else."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}: only latin-1 byte strings")
    return text.encode("latin-1")


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals numpy arrays need and refuses every other class or function."""

    def __init__(self, file: io.BufferedIOBase, source: str = "<pickle>") -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed numpy global, or raise UnsafePickleError naming the refused one."""
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) not in _NUMPY_GLOBALS:
            raise UnsafePickleError(
                f"refusing to unpickle {self._source}: it references '{module}.{name}', but only numpy arrays, "
                "dtypes and scalars in dicts/lists are allowed (loading other objects can run arbitrary code). "
                "Re-export the data as .npz with numpy arrays only."
            )
        # numpy 2 moved numpy.core to numpy._core; resolve whichever exists without the deprecation shim.
        if module.startswith("numpy.core."):
            module = "numpy._core." + module[len("numpy.core.") :]
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            legacy = module.replace("numpy._core.", "numpy.core.", 1)
            return getattr(importlib.import_module(legacy), name)

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids: a numpy-only pickle never has them."""
        raise UnsafePickleError(f"refusing to unpickle {self._source}: persistent id {pid!r} is not allowed")


def safe_load_numpy_pickle(path: str | Path) -> Any:
    """Load a pickle holding only numpy arrays/scalars in dicts, lists and tuples; raise UnsafePickleError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pickle file {str(path)!r} does not exist")
    with path.open("rb") as fh:
        return NumpyOnlyUnpickler(fh, source=str(path)).load()


def corners_to_poses(corners_xy_m: np.ndarray) -> np.ndarray:
    """Poses (..., 3) = [x_m, y_m, yaw_rad] of boxes given as corners (..., 4, 2).

    Corners are ordered front-left, front-right, rear-right, rear-left. The position is the mean of the corners
    (the box centre); the heading is the direction from the rear edge's midpoint to the front edge's midpoint,
    which is the corner 3 -> corner 0 axis averaged with the corner 2 -> corner 1 axis.
    """
    corners = np.asarray(corners_xy_m, dtype=np.float64)
    if corners.shape[-2:] != (4, 2):
        raise ValueError(f"corners must have shape (..., 4, 2), got {corners.shape}")
    centre = corners.mean(axis=-2)
    axis = 0.5 * (corners[..., 0, :] + corners[..., 1, :]) - 0.5 * (corners[..., 2, :] + corners[..., 3, :])
    return np.concatenate([centre, np.arctan2(axis[..., 1], axis[..., 0])[..., None]], axis=-1)


def _check_corner_order(corners: np.ndarray) -> tuple[float, float]:
    """Median box length and width in metres; raise if the corners are not in the expected order."""
    forward = corners[..., 0, :] - corners[..., 3, :]
    leftward = corners[..., 0, :] - corners[..., 1, :]
    cross = forward[..., 0] * leftward[..., 1] - forward[..., 1] * leftward[..., 0]
    if np.median(cross) <= 0.0:
        raise ValueError(
            "box corners are not ordered front-left, front-right, rear-right, rear-left in a right-handed frame "
            "(corner 1 lies left of corner 0); cannot derive headings from this layout"
        )
    return float(np.median(np.linalg.norm(forward, axis=-1))), float(np.median(np.linalg.norm(leftward, axis=-1)))


def codebook_from_corners(
    corners_xy_m: np.ndarray,
    *,
    substep_s: float = DEFAULT_SUBSTEP_S,
    num_substeps: int = DEFAULT_NUM_SUBSTEPS,
    rear_axle_offset_m: float = 0.0,
    metadata: dict[str, Any] | None = None,
) -> ActionCodebook:
    """ActionCodebook from box corners (K, P, 4, 2) of token poses at ``substep_s`` spacing, pose 0 = token start.

    With P == 1 the single pose is the end pose of the primitive and the sub-steps are linearly interpolated
    from the origin. ``rear_axle_offset_m`` > 0 turns box-centre motion into the motion of a reference point
    that far behind the centre (the rear axle), fixing the centre-vs-rear-axle mix-up of the public code; 0
    keeps the box-centre motion as published.
    """
    corners = np.asarray(corners_xy_m, dtype=np.float64)
    if corners.ndim != 4 or corners.shape[2:] != (4, 2) or corners.shape[0] < 1:
        raise ValueError(f"token corners must have shape (K, P, 4, 2), got {corners.shape}")
    if not np.all(np.isfinite(corners)):
        raise ValueError("token corners contain NaN or inf")
    box_length_m, box_width_m = _check_corner_order(corners)
    poses = corners_to_poses(corners)
    if rear_axle_offset_m:
        poses = compose_poses(poses, np.array([-rear_axle_offset_m, 0.0, 0.0]))
    if poses.shape[1] == 1:
        fractions = np.arange(1, num_substeps + 1) / num_substeps
        relative = fractions[None, :, None] * poses  # end pose of a primitive that starts at the origin
    else:
        relative = relative_poses(poses[:, :1], poses[:, 1:])
    info = {"box_length_m": box_length_m, "box_width_m": box_width_m, "rear_axle_offset_m": rear_axle_offset_m}
    return ActionCodebook(relative, substep_s=substep_s, metadata={**info, **(metadata or {})})


def load_autovla_pickle(
    path: str | Path, *, agent: AgentKind = "veh", rear_axle_offset_m: float = 0.0
) -> ActionCodebook:
    """ActionCodebook from a file in the layout of AutoVLA's ``agent_vocab.pkl``, read with a numpy-only unpickler.

    Args:
        path: the pickle file.
        agent: which vocabulary to import (AutoVLA uses ``veh``).
        rear_axle_offset_m: see ``codebook_from_corners``; 0 keeps AutoVLA's box-centre motion.

    Raises:
        UnsafePickleError: the file references anything but numpy arrays, dtypes and scalars.
        ValueError: the content is not a dict with a (K, P, 4, 2) float array under ``agent``.
    """
    path = Path(path)
    data = safe_load_numpy_pickle(path)
    if isinstance(data, dict) and "token_all" in data:
        data = data["token_all"]
    if not isinstance(data, dict) or agent not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: expected a dict with key {agent!r} (veh/ped/cyc), found {keys}")
    corners = data[agent]
    if not isinstance(corners, np.ndarray) or corners.dtype.kind != "f":
        raise ValueError(f"{path}: {agent!r} must be a float numpy array, got {type(corners).__name__}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    metadata = {
        "source": f"autovla agent_vocab.pkl layout import ({agent})",
        "source_file": path.name,
        "source_sha256": digest,
        "licence_note": "AutoVLA codebook: UCLA Academic Software License, non-commercial, do not redistribute",
    }
    codebook = codebook_from_corners(corners, rear_axle_offset_m=rear_axle_offset_m, metadata=metadata)
    logger.info(
        "imported %d %s tokens from %s (box %.2f x %.2f m)",
        codebook.num_tokens,
        agent,
        path.name,
        codebook.metadata["box_length_m"],
        codebook.metadata["box_width_m"],
    )
    return codebook
