import math

import numpy as np
import pytest

from autovla_agent.training import navsim_reader
from autovla_agent.training.rewards import NavsimPDMReward, NavsimUnavailableError, RewardConfig

try:  # find_spec("navsim") is not enough: the tests/navsim folder is a namespace package under pytest
    import navsim.common.dataclasses  # noqa: F401

    NAVSIM_MISSING = False
except ImportError:
    NAVSIM_MISSING = True


def _frame(x, y, yaw):
    return {
        "ego2global_translation": [x, y, 0.0],
        "ego2global_rotation": [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)],
    }


def test_navsim_future_in_current_rear_axle_frame():
    # current pose (10, 5) heading north; the car keeps going north 2 m per frame and turns a little
    frames = [_frame(10.0, 5.0 - 2 * (3 - k), math.pi / 2) for k in range(4)]
    frames += [_frame(10.0 - 0.1 * k, 5.0 + 2 * k, math.pi / 2 + 0.05 * k) for k in range(1, 11)]
    future = navsim_reader.future_from_frames(frames, 3, 10)
    assert future.shape == (10, 3)
    np.testing.assert_allclose(future[:, 0], 2 * np.arange(1, 11), atol=1e-9)  # forward = north
    np.testing.assert_allclose(future[:, 1], 0.1 * np.arange(1, 11), atol=1e-9)  # west = left
    np.testing.assert_allclose(future[:, 2], 0.05 * np.arange(1, 11), atol=1e-9)


@pytest.mark.skipif(not NAVSIM_MISSING, reason="checks the message shown when navsim is absent")
def test_navsim_reader_and_reward_without_navsim_clear_message(tmp_path, caplog):
    code = navsim_reader.main(
        ["--navsim-log-path", str(tmp_path), "--sensor-blobs-path", str(tmp_path), "--out", str(tmp_path / "out")]
    )
    assert code == 2 and "needs navsim" in caplog.text
    with pytest.raises(NavsimUnavailableError, match="navsim"):
        NavsimPDMReward(None, None, RewardConfig(navsim_metric_cache=str(tmp_path)))
