"""A missing OpenCV is reported with the install line, not as a bare ModuleNotFoundError."""

import sys

import pytest

from autovla_agent.optional_deps import require_cv2


def test_require_cv2_returns_the_module():
    assert hasattr(require_cv2(), "resize")


def test_missing_cv2_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # what an environment without any opencv wheel gives
    with pytest.raises(ImportError, match=r"autovla-agent\[opencv\]"):
        require_cv2()
