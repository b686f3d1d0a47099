"""Imports of dependencies that the package does not force on an environment, each with the install line."""

from types import ModuleType


def require_cv2() -> ModuleType:
    """OpenCV, whichever wheel the environment has; a clear error naming the extra when there is none."""
    try:
        import cv2
    except ImportError as exc:
        # No opencv is declared: navsim and Bench2Drive bring their own opencv-python, and a second wheel
        # writing the same cv2 package breaks theirs.
        raise ImportError(
            "OpenCV (cv2) is needed for camera frames and rendering but is not installed: use the opencv your "
            'environment already has, or `pip install "autovla-agent[opencv]"` (opencv-python-headless<4.12, '
            "numpy 1.x compatible)"
        ) from exc
    return cv2
