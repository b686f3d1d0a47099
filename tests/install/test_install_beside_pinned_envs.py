"""autovla-agent installs beside navsim v1.1, Bench2Drive and numpy 2 environments without changing their pins.

The declared requirements are checked against the constraints files offline (fast); then
``scripts/check_install.py`` installs the built wheel into a fresh navsim-pinned venv and resolves the other
environments with ``pip install --dry-run --report`` (it needs the package index).
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints"
CV2_DISTS = {"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"}


def _setup_kwargs() -> dict:
    """The literal keyword arguments of setup() in setup.py (install_requires, extras_require, ...)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", "")) == "setup"
    )
    kwargs = {}
    for kw in call.keywords:
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            continue  # computed arguments (packages, long_description)
    return kwargs


KWARGS = _setup_kwargs()
INSTALL_REQUIRES = [Requirement(r) for r in KWARGS["install_requires"]]
EXTRAS = {name: [Requirement(r) for r in reqs] for name, reqs in KWARGS["extras_require"].items()}


def _check_install():
    spec = importlib.util.spec_from_file_location("check_install", REPO / "scripts" / "check_install.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


CHECK = _check_install()


def test_core_requirements_force_no_opencv_and_pin_no_torch():
    names = {r.name for r in INSTALL_REQUIRES}
    assert not names & CV2_DISTS, "an environment's own cv2 wheel must be used, never a second one"
    torch = next(r for r in INSTALL_REQUIRES if r.name == "torch")
    assert not any(s.operator == "==" for s in torch.specifier), "torch is a range: an installed torch is kept"
    assert torch.specifier.contains("2.13.0") and torch.specifier.contains("2.6.0")
    numpy = next(r for r in INSTALL_REQUIRES if r.name == "numpy")
    assert numpy.specifier.contains("1.23.4") and numpy.specifier.contains("1.26.4")
    assert numpy.specifier.contains("2.4.6")


def test_opencv_extras_admit_only_releases_that_run_on_numpy_1():
    # opencv-python(-headless) 4.12 and later require numpy>=2: an extra allowing them would upgrade numpy 1.x.
    for extra in ("opencv", "sim"):
        (headless,) = [r for r in EXTRAS[extra] if r.name in CV2_DISTS]
        assert headless.specifier.contains("4.11.0.86") and not headless.specifier.contains("4.12.0.88")


def test_carla_extra_keeps_bench2drive_client():
    for extra in ("carla", "sim"):
        (carla,) = [r for r in EXTRAS[extra] if r.name == "carla"]
        assert carla.specifier.contains("0.9.15") and carla.specifier.contains("0.9.16")


@pytest.mark.parametrize("constraints", sorted(p.name for p in CONSTRAINTS.glob("*.txt")))
def test_declared_requirements_admit_every_pinned_version(constraints):
    pins = CHECK.read_pins(CONSTRAINTS / constraints)
    assert pins, constraints
    extras = {
        name
        for sc in CHECK.SCENARIOS.values()
        if sc.constraints == constraints
        for name in sc.extras.split(",")
        if name
    }
    requirements = INSTALL_REQUIRES + [r for name in extras for r in EXTRAS[name]]
    for req in requirements:
        name = CHECK._normalize(req.name)
        if name in pins:
            assert req.specifier.contains(Version(pins[name]), prereleases=True), (
                f"{req} rejects {constraints}'s {name}=={pins[name]}"
            )


def test_every_scenario_names_an_existing_constraints_file():
    for sc in CHECK.SCENARIOS.values():
        assert (CONSTRAINTS / sc.constraints).is_file(), sc.name
    assert CHECK.read_pins(CONSTRAINTS / "navsim-v1.1-py311.txt")["numpy"].startswith("1.")
    assert CHECK.read_pins(CONSTRAINTS / "numpy2-py311.txt")["numpy"].startswith("2.")


@pytest.mark.slow
def test_wheel_installs_beside_navsim_bench2drive_and_numpy2():
    """The real check (about a minute): fresh venvs, pip install / pip install --dry-run --report."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_install.py")],
        capture_output=True,
        text=True,
        timeout=570,
        stdin=subprocess.DEVNULL,
    )
    report = done.stdout[-12000:] + done.stderr[-4000:]
    if done.returncode == 3:
        pytest.skip("a scenario cannot run on this machine:\n" + report)
    assert done.returncode == 0, report
