"""A non-editable install (the built wheel) holds the whole package, and the source tree agrees with it."""

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_CLI = ["-m", "autovla_agent.policy.tiny_model", "--help"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: the venv's setuptools builds it, offline and in seconds.
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=out, check=True)
    return next(out.glob("autovla_agent-*.whl")), done.stdout + done.stderr


def _run_without_site(args: list[str], cwd: Path, target: Path) -> subprocess.CompletedProcess:
    """Python with the wheel's folder and the venv's dependencies but not the editable install's path hook."""
    env = {"PYTHONPATH": f"{target}:{sysconfig.get_paths()['purelib']}"}
    return subprocess.run([sys.executable, "-S", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_build_has_no_package_data_warnings(wheel):
    _, log = wheel
    assert "absent from the" not in log, log


def test_wheel_holds_code_data_and_plugin(wheel):
    names = set(zipfile.ZipFile(wheel[0]).namelist())
    for required in [
        "autovla_agent/carla_agent.py",
        "autovla_agent/planners/control.py",
        "autovla_agent/sensors/frames.py",
        "autovla_agent/training/pipeline.py",
        "autovla_agent/routes/routes_default.xml",
        "autovla_agent/leaderboard_configs/autovla_tiny.yaml",
        "autovla_agent/sim/world/maps/Town01.xodr",
        "autovla_agent/assets/default_model/model.safetensors",
        "autovla_agent/adapters/navsim/config/agent/autovla.yaml",
        "hydra_plugins/autovla_searchpath/__init__.py",
    ]:
        assert required in names, required
    # Generic names never land at the top of site-packages.
    assert not {n.split("/")[0] for n in names} & {"planners", "sensors", "training", "routes", "tests"}


@pytest.mark.parametrize("where", ["repository root", "elsewhere"])
def test_module_runs_with_non_editable_install(wheel, tmp_path, where):
    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target)]
    subprocess.run([*install, str(wheel[0])], check=True, capture_output=True)
    cwd = REPO if where == "repository root" else tmp_path
    code = "import autovla_agent.planners.control, autovla_agent; print(autovla_agent.__file__)"
    done = _run_without_site(["-c", code], cwd, target)
    assert done.returncode == 0, done.stderr
    # From the root the source tree shadows the install (as `python -m` puts the cwd first); it must still import.
    expected = REPO / "autovla_agent" if where == "repository root" else target / "autovla_agent"
    assert Path(done.stdout.strip()).parent == expected
    cli = _run_without_site(MODULE_CLI, cwd, target)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith("usage: autovla-make-tiny")
