"""Per-camera ring buffer of the last T frames on the model-rate grid, converted from BGRA to model-ready RGB.

The simulator ticks at ``sim_rate_hz`` (20 Hz in the leaderboard) but AutoVLA sees ``num_frames`` frames
``1 / model_rate_hz`` apart (4 frames at 2 Hz: t - 1.5 s ... t, current last). Only ticks on that grid are
converted (crop, INTER_AREA resize, BGRA -> RGB), so ticks between grid points cost a few microseconds of
the agent's ~2 ms per-tick budget. The grid is anchored at the first pushed timestamp; a grid tick is the
first tick at or after each grid point (within half a sim tick), so a skipped tick never shifts the grid.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from autovla_agent.contract import CameraFrame
from autovla_agent.optional_deps import require_cv2

cv2 = require_cv2()

logger = logging.getLogger(__name__)

ChannelOrder = Literal["bgra", "bgr", "rgb"]
_TO_RGB = {"bgra": cv2.COLOR_BGRA2RGB, "bgr": cv2.COLOR_BGR2RGB}
_CHANNELS = {"bgra": 4, "bgr": 3, "rgb": 3}


@dataclass(frozen=True, kw_only=True, slots=True)
class FrameBufferConfig:
    """How many frames to keep, at which rate, and how to crop and resize them (crop first, then resize).

    The default output 728x392 px is AutoVLA's CARLA pixel budget (28*28*384) for a 16:9 view, both sides
    multiples of 28, so Qwen2.5-VL's processor does not resize again. ``width_px = height_px = 0`` keeps the
    (cropped) camera size. Crops are fractions of the image height/width removed at each side.
    """

    num_frames: int = 4
    model_rate_hz: float = 2.0
    sim_rate_hz: float = 20.0
    width_px: int = 728
    height_px: int = 392
    crop_top_norm: float = 0.0
    crop_bottom_norm: float = 0.0
    crop_left_norm: float = 0.0
    crop_right_norm: float = 0.0
    use_warmup_padding: bool = False  # before num_frames are stored, pad by repeating the oldest frame

    def __post_init__(self) -> None:
        """Check counts, rates, output size and crop fractions."""
        if self.num_frames < 1:
            raise ValueError(f"num_frames={self.num_frames} must be >= 1 (AutoVLA uses 4)")
        if not (self.model_rate_hz > 0.0 and self.sim_rate_hz > 0.0):
            raise ValueError("model_rate_hz and sim_rate_hz must be > 0 (AutoVLA: 2.0 Hz out of 20.0 Hz ticks)")
        if self.model_rate_hz > self.sim_rate_hz:
            raise ValueError(
                f"model_rate_hz={self.model_rate_hz} exceeds sim_rate_hz={self.sim_rate_hz}; frames cannot be "
                "sampled faster than the simulator ticks"
            )
        if self.width_px < 0 or self.height_px < 0 or (self.width_px == 0) != (self.height_px == 0):
            raise ValueError("width_px and height_px must both be > 0, or both 0 to keep the camera size")
        crops = (self.crop_top_norm, self.crop_bottom_norm, self.crop_left_norm, self.crop_right_norm)
        if any(not 0.0 <= c < 1.0 for c in crops):
            raise ValueError(f"crop_*_norm must be fractions in [0, 1); got {crops}")
        if self.crop_top_norm + self.crop_bottom_norm >= 1.0 or self.crop_left_norm + self.crop_right_norm >= 1.0:
            raise ValueError("crop_top_norm + crop_bottom_norm and crop_left_norm + crop_right_norm must be < 1")

    @property
    def period_s(self) -> float:
        """Seconds between kept frames."""
        return 1.0 / self.model_rate_hz

    @property
    def window_s(self) -> float:
        """Seconds from the oldest to the current frame of a full buffer."""
        return (self.num_frames - 1) * self.period_s


def preprocess_image(
    image: np.ndarray, config: FrameBufferConfig, *, channel_order: ChannelOrder = "bgra"
) -> np.ndarray:
    """Crop, resize (cv2.INTER_AREA) and convert one image (H, W, C) uint8 to RGB (h, w, 3) uint8.

    The one preprocessing path for evaluation (CARLA BGRA) and training data (RGB), so both see the same
    pixels. Raises ValueError on a wrong shape or dtype.
    """
    channels = _CHANNELS[channel_order]
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != channels:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected an (H, W, {channels}) uint8 {channel_order} image; got shape {shape}, {dtype}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    top = round(config.crop_top_norm * height)
    bottom = height - round(config.crop_bottom_norm * height)
    left = round(config.crop_left_norm * width)
    right = width - round(config.crop_right_norm * width)
    cropped = image[top:bottom, left:right]
    # Convert first: the colour conversion is ~0.05 ms, and resizing 3 channels instead of 4 saves ~25 %.
    rgb = np.ascontiguousarray(cropped) if channel_order == "rgb" else cv2.cvtColor(cropped, _TO_RGB[channel_order])
    if config.width_px and (rgb.shape[1], rgb.shape[0]) != (config.width_px, config.height_px):
        # INTER_AREA averages the source pixels of each output pixel: no aliasing when downscaling.
        rgb = cv2.resize(rgb, (config.width_px, config.height_px), interpolation=cv2.INTER_AREA)
    return rgb


class FrameBuffer:
    """The last ``num_frames`` frames per camera on the model-rate grid, as ``CameraFrame``s oldest first.

    Call ``push`` every tick with ``{camera_id: bgra array or None}``; it returns True on grid ticks, where
    frames were stored (plan on those ticks so the current frame is the newest). A missing or malformed
    image (None, wrong shape/dtype, size change) repeats the camera's last frame with the current timestamp,
    counted in ``num_repeated`` and logged once per camera; with nothing to repeat it is counted in
    ``num_dropped``. ``ready`` is False until every camera holds ``num_frames`` frames (one with
    ``use_warmup_padding``). A timestamp earlier than the last one starts a new episode (``reset``).
    """

    def __init__(self, config: FrameBufferConfig, camera_ids: Sequence[str]) -> None:
        if isinstance(camera_ids, str) or not camera_ids or len(set(camera_ids)) != len(camera_ids):
            raise ValueError(f"camera_ids must be a non-empty sequence of unique ids; got {camera_ids!r}")
        self.config = config
        self.camera_ids = tuple(camera_ids)
        # Half a simulator tick in grid units: tolerates float jitter in the timestamps.
        self._slot_tolerance = 0.5 * config.model_rate_hz / config.sim_rate_hz
        self._warned: set[str] = set()
        self.num_repeated_by_camera: dict[str, int] = dict.fromkeys(self.camera_ids, 0)
        self.num_dropped_by_camera: dict[str, int] = dict.fromkeys(self.camera_ids, 0)
        self.reset()

    def reset(self) -> None:
        """Forget all frames and the grid anchor (counters are kept)."""
        self._frames: dict[str, deque[CameraFrame]] = {
            cid: deque(maxlen=self.config.num_frames) for cid in self.camera_ids
        }
        self._raw_shape: dict[str, tuple[int, ...]] = {}
        self._t0_s: float | None = None
        self._last_slot = -1
        self._last_timestamp_s = -math.inf

    @property
    def num_repeated(self) -> int:
        """Missing or malformed frames replaced by the camera's previous frame, over all cameras."""
        return sum(self.num_repeated_by_camera.values())

    @property
    def num_dropped(self) -> int:
        """Missing or malformed frames with no previous frame to repeat, over all cameras."""
        return sum(self.num_dropped_by_camera.values())

    @property
    def ready(self) -> bool:
        """Whether ``frames()`` can return ``num_frames`` frames for every camera."""
        needed = 1 if self.config.use_warmup_padding else self.config.num_frames
        return all(len(frames) >= needed for frames in self._frames.values())

    def _slot(self, timestamp_s: float) -> int:
        assert self._t0_s is not None
        return math.floor((timestamp_s - self._t0_s) * self.config.model_rate_hz + self._slot_tolerance)

    def is_sample_tick(self, timestamp_s: float) -> bool:
        """Whether ``push`` at this simulation time would store frames (a model-rate grid tick)."""
        if self._t0_s is None or timestamp_s < self._last_timestamp_s:
            return True
        return self._slot(timestamp_s) > self._last_slot

    def push(self, timestamp_s: float, images: Mapping[str, np.ndarray | None]) -> bool:
        """Offer this tick's images (BGRA (H, W, 4) uint8 per camera id); return True if frames were stored."""
        timestamp_s = float(timestamp_s)
        if timestamp_s < self._last_timestamp_s:
            logger.warning(
                "timestamp went back from %.3f to %.3f s; starting a new episode", self._last_timestamp_s, timestamp_s
            )
            self.reset()
        self._last_timestamp_s = timestamp_s
        if self._t0_s is None:
            self._t0_s = timestamp_s
        slot = self._slot(timestamp_s)
        if slot <= self._last_slot:
            return False
        if slot > self._last_slot + 1 and self._last_slot >= 0:
            logger.warning(
                "frame buffer skipped %d grid point(s) before t=%.3f s", slot - self._last_slot - 1, timestamp_s
            )
        self._last_slot = slot
        for cid in self.camera_ids:
            self._store(cid, timestamp_s, images.get(cid))
        return True

    def _store(self, cid: str, timestamp_s: float, image: np.ndarray | None) -> None:
        frames = self._frames[cid]
        problem = self._problem(cid, image)
        if problem is None:
            assert image is not None
            try:
                rgb = preprocess_image(image, self.config)
            except (ValueError, cv2.error) as exc:
                problem = str(exc)
            else:
                rgb.flags.writeable = False  # frames are shared (repeats, callers): nobody may edit them
                self._raw_shape.setdefault(cid, image.shape)
                frames.append(CameraFrame(image_rgb=rgb, timestamp_s=timestamp_s))
                return
        if frames:
            self.num_repeated_by_camera[cid] += 1
            frames.append(CameraFrame(image_rgb=frames[-1].image_rgb, timestamp_s=timestamp_s))
        else:
            self.num_dropped_by_camera[cid] += 1
        if cid not in self._warned:
            self._warned.add(cid)
            logger.warning(
                "camera %r at t=%.3f s: %s; %s (logged once per camera)",
                cid,
                timestamp_s,
                problem,
                "repeating its last frame" if frames else "no earlier frame to repeat",
            )

    def _problem(self, cid: str, image: object) -> str | None:
        if image is None:
            return "no image"
        if not isinstance(image, np.ndarray):
            return f"image is a {type(image).__name__}, not a numpy array"
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 4 or 0 in image.shape:
            return f"expected an (H, W, 4) uint8 BGRA image, got shape {image.shape} {image.dtype}"
        expected = self._raw_shape.get(cid)
        if expected is not None and image.shape != expected:
            return f"image shape {image.shape} differs from the earlier {expected}"
        return None

    def frames(self, views: Mapping[str, str] | None = None) -> dict[str, tuple[CameraFrame, ...]]:
        """Frames per camera, oldest first, current last; keyed by view name when ``views`` (id -> view) is given.

        With ``use_warmup_padding`` a camera holding fewer than ``num_frames`` frames is padded in front with
        its oldest frame, stamped one period earlier each so timestamps keep increasing.
        Raises RuntimeError when not ``ready``.
        """
        if not self.ready:
            counts = {cid: len(frames) for cid, frames in self._frames.items()}
            raise RuntimeError(f"frame buffer not ready (frames per camera {counts}); check .ready before .frames()")
        result: dict[str, tuple[CameraFrame, ...]] = {}
        period_s = self.config.period_s
        for cid, stored in self._frames.items():
            oldest = stored[0]
            padding = [
                CameraFrame(image_rgb=oldest.image_rgb, timestamp_s=oldest.timestamp_s - k * period_s)
                for k in range(self.config.num_frames - len(stored), 0, -1)
            ]
            key = views[cid] if views is not None else cid
            result[key] = (*padding, *stored)
        return result
