import logging

import numpy as np
import pytest

from autovla_agent.contract import CameraFrame
from autovla_agent.sensors.frame_buffer import FrameBuffer, FrameBufferConfig, preprocess_image

DT_S = 0.05  # the leaderboard's 20 Hz tick


def _bgra(value, height=90, width=160):
    """A BGRA image whose blue channel encodes ``value`` (green 1, red 2, alpha 255)."""
    image = np.empty((height, width, 4), dtype=np.uint8)
    image[..., 0] = value % 256
    image[..., 1] = 1
    image[..., 2] = 2
    image[..., 3] = 255
    return image


def _small_config(**overrides):
    return FrameBufferConfig(**({"width_px": 0, "height_px": 0} | overrides))


def _run_ticks(buffer, num_ticks, camera_ids=("front",), t0_s=0.05, image_fn=None):
    stored = []
    for tick in range(num_ticks):
        t = t0_s + tick * DT_S
        images = {cid: (image_fn(tick) if image_fn else _bgra(tick)) for cid in camera_ids}
        if buffer.push(t, images):
            stored.append(tick)
    return stored


def test_frame_buffer_2hz_from_20hz_keeps_frames_half_second_apart_current_last():
    buffer = FrameBuffer(_small_config(), ["front"])
    stored = _run_ticks(buffer, 41)
    assert stored == [0, 10, 20, 30, 40]
    frames = buffer.frames()["front"]
    assert len(frames) == 4 and all(isinstance(f, CameraFrame) for f in frames)
    times = [f.timestamp_s for f in frames]
    np.testing.assert_allclose(np.diff(times), 0.5)
    assert times[-1] == pytest.approx(0.05 + 40 * DT_S)  # the current frame is last
    # The R channel of the RGB output holds the BGRA blue channel: the tick index that made the frame.
    assert [int(f.image_rgb[0, 0, 2]) for f in frames] == [10, 20, 30, 40]


def test_frame_buffer_grid_tolerates_timestamp_jitter():
    buffer = FrameBuffer(_small_config(), ["front"])
    jitter = np.random.default_rng(0).uniform(-1e-4, 1e-4, 31)
    stored = [tick for tick in range(31) if buffer.push(1.0 + tick * DT_S + jitter[tick], {"front": _bgra(tick)})]
    assert stored == [0, 10, 20, 30]


def test_frame_buffer_skipped_grid_tick_stores_next_tick_without_shifting_grid():
    buffer = FrameBuffer(_small_config(), ["front"])
    stored = [tick for tick in range(31) if tick != 10 and buffer.push(tick * DT_S, {"front": _bgra(tick)})]
    assert stored == [0, 11, 20, 30]


def test_frame_buffer_is_sample_tick_predicts_push():
    buffer = FrameBuffer(_small_config(), ["front"])
    for tick in range(25):
        expected = buffer.is_sample_tick(tick * DT_S)
        assert buffer.push(tick * DT_S, {"front": _bgra(tick)}) == expected


def test_frame_buffer_bgra_to_rgb_channel_order():
    image = np.zeros((4, 6, 4), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2], image[..., 3] = 10, 20, 30, 40  # B, G, R, A
    rgb = preprocess_image(image, _small_config())
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [30, 20, 10]


def test_preprocess_image_crops_then_resizes_to_config_size():
    image = np.zeros((100, 200, 4), dtype=np.uint8)
    image[:50, :, 2] = 255  # red top half (BGRA: channel 2 is red)
    config = FrameBufferConfig(width_px=64, height_px=32, crop_top_norm=0.5)
    rgb = preprocess_image(image, config)
    assert rgb.shape == (32, 64, 3)
    assert rgb[..., 0].max() == 0  # the red half was cropped away


def test_preprocess_image_side_crops_remove_columns():
    image = np.zeros((10, 100, 4), dtype=np.uint8)
    image[:, :10, 0] = 255  # blue left strip
    image[:, 90:, 1] = 255  # green right strip
    rgb = preprocess_image(image, _small_config(crop_left_norm=0.1, crop_right_norm=0.1))
    assert rgb.shape == (10, 80, 3)
    assert rgb.max() == 0


def test_preprocess_image_rgb_input_keeps_channels_and_bad_input_raises():
    rgb_in = np.zeros((10, 20, 3), dtype=np.uint8)
    rgb_in[..., 0] = 7
    assert preprocess_image(rgb_in, _small_config(), channel_order="rgb")[0, 0].tolist() == [7, 0, 0]
    with pytest.raises(ValueError, match="uint8"):
        preprocess_image(np.zeros((10, 20, 4), dtype=np.float32), _small_config())


def test_frame_buffer_default_output_is_728x392():
    buffer = FrameBuffer(FrameBufferConfig(num_frames=1), ["front"])
    buffer.push(0.0, {"front": _bgra(0, height=576, width=1024)})
    (frame,) = buffer.frames()["front"]
    assert frame.image_rgb.shape == (392, 728, 3)
    assert not frame.image_rgb.flags.writeable


@pytest.mark.parametrize(
    "bad",
    [
        None,
        np.zeros((90, 160, 3), dtype=np.uint8),
        np.zeros((90, 160, 4), dtype=np.float32),
        np.zeros((90, 160), dtype=np.uint8),
        np.zeros((0, 160, 4), dtype=np.uint8),
        np.zeros((45, 80, 4), dtype=np.uint8),  # size differs from the earlier frames
        "not an image",
    ],
)
def test_frame_buffer_malformed_frame_repeats_last_and_counts(bad, caplog):
    buffer = FrameBuffer(_small_config(), ["front", "left"])

    def image_fn(tick):
        return bad if tick == 20 else _bgra(tick)

    with caplog.at_level(logging.WARNING):
        stored = []
        for tick in range(41):
            images = {"front": image_fn(tick), "left": _bgra(tick)}
            if buffer.push(0.05 + tick * DT_S, images):
                stored.append(tick)
    assert stored == [0, 10, 20, 30, 40]
    front = buffer.frames()["front"]
    assert [int(f.image_rgb[0, 0, 2]) for f in front] == [10, 10, 30, 40]  # tick 20 repeats tick 10
    assert front[1].timestamp_s == pytest.approx(0.05 + 20 * DT_S)
    assert buffer.num_repeated == 1 and buffer.num_repeated_by_camera == {"front": 1, "left": 0}
    assert [int(f.image_rgb[0, 0, 2]) for f in buffer.frames()["left"]] == [10, 20, 30, 40]
    assert sum("front" in r.getMessage() for r in caplog.records) == 1


def test_frame_buffer_missing_camera_key_repeats_and_logs_once(caplog):
    buffer = FrameBuffer(_small_config(num_frames=2), ["front"])
    with caplog.at_level(logging.WARNING):
        buffer.push(0.0, {"front": _bgra(1)})
        buffer.push(0.5, {})
        buffer.push(1.0, {"front": None})
    assert buffer.num_repeated == 2
    assert len([r for r in caplog.records if "'front'" in r.getMessage()]) == 1


def test_frame_buffer_missing_first_frame_is_dropped_not_ready():
    buffer = FrameBuffer(_small_config(num_frames=2), ["front"])
    buffer.push(0.0, {"front": None})
    assert buffer.num_dropped == 1 and not buffer.ready
    buffer.push(0.5, {"front": _bgra(5)})
    buffer.push(1.0, {"front": _bgra(6)})
    assert buffer.ready


def test_frame_buffer_warmup_not_ready_until_full():
    buffer = FrameBuffer(_small_config(), ["front", "left"])
    readiness = []
    for tick in range(31):
        buffer.push(tick * DT_S, {"front": _bgra(tick), "left": _bgra(tick)})
        readiness.append(buffer.ready)
    assert not any(readiness[:30]) and readiness[30]
    with pytest.raises(RuntimeError, match="not ready"):
        FrameBuffer(_small_config(), ["front"]).frames()


def test_frame_buffer_warmup_padding_repeats_oldest_with_earlier_timestamps():
    buffer = FrameBuffer(_small_config(use_warmup_padding=True), ["front"])
    buffer.push(2.0, {"front": _bgra(1)})
    assert buffer.ready
    buffer.push(2.5, {"front": _bgra(2)})
    frames = buffer.frames(views={"front": "front_view"})["front_view"]
    assert [int(f.image_rgb[0, 0, 2]) for f in frames] == [1, 1, 1, 2]
    np.testing.assert_allclose([f.timestamp_s for f in frames], [1.0, 1.5, 2.0, 2.5])


def test_frame_buffer_timestamp_going_back_starts_new_episode():
    buffer = FrameBuffer(_small_config(num_frames=2), ["front"])
    buffer.push(0.0, {"front": _bgra(1)})
    buffer.push(0.5, {"front": _bgra(2)})
    assert buffer.ready
    assert buffer.push(0.05, {"front": _bgra(3)})
    assert not buffer.ready


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"num_frames": 0}, "num_frames"),
        ({"model_rate_hz": 40.0}, "exceeds"),
        ({"width_px": 0}, "both"),
        ({"crop_top_norm": 0.6, "crop_bottom_norm": 0.5}, "crop_top_norm"),
        ({"crop_left_norm": -0.1}, "crop"),
    ],
)
def test_frame_buffer_config_invalid_values_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        FrameBufferConfig(**overrides)


def test_frame_buffer_duplicate_camera_ids_raise():
    with pytest.raises(ValueError, match="unique"):
        FrameBuffer(FrameBufferConfig(), ["front", "front"])
