"""Writes camera frames of observations into a dataset folder once each and returns their relative paths."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from autovla_agent.contract import CameraFrame, Observation


class FrameStore:
    """Saves frames under ``images/<episode>/<view>/`` (PNG or JPEG); a frame seen again is not written twice.

    Consecutive samples share 3 of their 4 history frames, so frames are keyed by (episode, view, timestamp).
    """

    def __init__(self, root: str | Path, image_format: Literal["png", "jpg"] = "png", jpeg_quality: int = 95) -> None:
        self.root = Path(root)
        self.image_format = image_format
        self.jpeg_quality = jpeg_quality
        self._written: dict[tuple[str, str, int], str] = {}
        self.num_written = 0

    def path_for(self, episode: str, view: str, frame: CameraFrame) -> str:
        """Relative path of a frame, writing the file the first time it is seen."""
        stamp_ms = round(frame.timestamp_s * 1000.0)
        key = (episode, view, stamp_ms)
        rel = self._written.get(key)
        if rel is not None:
            return rel
        rel = f"images/{episode}/{view}/{stamp_ms:09d}.{self.image_format}"
        full = self.root / rel
        full.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(np.ascontiguousarray(frame.image_rgb))
        if self.image_format == "jpg":
            image.save(full, quality=self.jpeg_quality)
        else:
            image.save(full, optimize=False, compress_level=1)
        self._written[key] = rel
        self.num_written += 1
        return rel

    def camera_paths(self, episode: str, obs: Observation, views: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        """``{view: relative paths oldest first}`` of an observation's frames (written as needed)."""
        return {view: tuple(self.path_for(episode, view, f) for f in obs.cameras[view]) for view in views}

    def forget_episode(self, episode: str) -> None:
        """Drop the bookkeeping of a finished episode (its files stay)."""
        self._written = {k: v for k, v in self._written.items() if k[0] != episode}
