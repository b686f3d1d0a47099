#!/usr/bin/env python3
"""Install autovla-agent beside pinned environments and check that nothing they pinned changes.

usage: python scripts/check_install.py [--scenario NAME ...] [--wheel WHEEL] [--workdir DIR] [--python310 PATH]

Each scenario gets a fresh venv (``venv --without-pip``; the pip running this script drives it through
``pip --python``, so pip >= 22.3 is needed here):

navsim-v1.1    real install, Python 3.11. The venv first gets constraints/navsim-v1.1-py311.txt (numpy 1.26.4,
               scikit-learn 1.2.2, opencv-python 4.9, hydra-core, pandas, shapely, Pillow, torch) as a stand-in
               navsim environment; then a plain ``pip install <wheel>``, as the README's NAVSIM section runs it.
               Checked: every package already there keeps its version, no second opencv wheel is added,
               ``pip check`` reports nothing new, ``import sklearn, numpy, cv2`` works (cv2 from opencv-python)
               and Hydra composes ``agent=autovla`` through the package's search-path plugin.
numpy2         dry run (``pip install --dry-run --report``), Python 3.11: a fresh numpy 2.x environment with the
               [opencv] and [navsim] extras under constraints/numpy2-py311.txt: numpy stays 2.x, one cv2 wheel.
numpy1-opencv  dry run, Python 3.11: numpy 1.26.4 without any cv2, plus the [opencv] extra: numpy stays 1.x.
bench2drive    dry run, Python 3.10: constraints/bench2drive-py310.txt (carla 0.9.15, numpy 1.26.4,
               opencv-python, torch 2.6.0: the lowest declared torch) plus the [carla] extra: all kept.
               Without a Python 3.10 interpreter pip resolves for 3.10 from this one (``--python-version``).

Every figure (versions before and after, pip check, seconds) is printed. Exit status: 0 all passed, 1 one
failed, 3 none failed but one could not run here (no such interpreter, or torch would be a CUDA download).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "constraints"
# Distributions that each install the importable `cv2`: two of them in one environment overwrite each other.
CV2_DISTS = {"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"}
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "outputs", ".work", ".whl", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)

# Run inside the navsim venv (working directory: an empty folder, so the checkout cannot shadow the install).
SMOKE = r"""
import json, sys, tempfile
from pathlib import Path
import numpy, sklearn, cv2, torch
from sklearn.linear_model import LinearRegression
LinearRegression().fit(numpy.arange(6.0).reshape(3, 2), numpy.arange(3.0))  # sklearn's compiled code on this numpy
assert torch.from_numpy(numpy.arange(3.0)).sum().item() == 3.0
import transformers
import autovla_agent.carla_agent  # the leaderboard entry point (frame buffer on the environment's cv2)
import autovla_agent.adapters.navsim.convert  # navsim's side of the adapter (its agent module needs navsim)
from autovla_agent.loop.agent_config import load_agent_config
from autovla_agent.sensors.frame_buffer import preprocess_image
config, _ = load_agent_config("autovla_tiny.yaml")
frame = numpy.zeros((config.rig.cameras[0].height_px, config.rig.cameras[0].width_px, 4), numpy.uint8)
size = (config.frame_buffer.height_px, config.frame_buffer.width_px, 3)
assert preprocess_image(frame, config.frame_buffer).shape == size
from hydra import compose, initialize_config_dir
root = Path(tempfile.mkdtemp())  # navsim's layout: a primary config whose defaults pick an agent, agent=... on the CLI
(root / "agent").mkdir()
(root / "agent" / "constant_velocity_agent.yaml").write_text("_target_: navsim.agents.ConstantVelocityAgent\n")
(root / "run_pdm_score.yaml").write_text("defaults:\n  - agent: constant_velocity_agent\n  - _self_\n")
with initialize_config_dir(config_dir=str(root), version_base=None):
    cfg = compose(config_name="run_pdm_score", overrides=["agent=autovla"])
assert cfg.agent._target_ == "autovla_agent.adapters.navsim.agent.AutoVLANavsimAgent", cfg.agent._target_
print(json.dumps({"numpy": numpy.__version__, "sklearn": sklearn.__version__, "cv2": cv2.__version__,
                  "cv2_file": cv2.__file__, "torch": torch.__version__, "transformers": transformers.__version__,
                  "agent": cfg.agent._target_}))
"""


class CheckError(Exception):
    """A scenario's expectation that did not hold."""


class ScenarioSkipped(Exception):  # noqa: N818  (not an error: the scenario cannot run on this machine)
    """A scenario that cannot run here (no such interpreter, or it would download a CUDA torch)."""


@dataclass
class Scenario:
    """One environment: how it is built and what must hold after installing the wheel into it."""

    name: str
    python: str  # "3.10" or "3.11"
    constraints: str
    real: bool  # True: install for real; False: pip install --dry-run --report
    extras: str = ""
    env_requirements: list[str] | None = None  # None: the constraints file's pins
    expect_numpy_major: int = 1
    expect_cv2: str | None = None  # the one cv2 distribution expected at the end (None: no check)
    log: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""
    skipped: str = ""


SCENARIOS = {
    "navsim-v1.1": Scenario(
        "navsim-v1.1", "3.11", "navsim-v1.1-py311.txt", real=True, expect_numpy_major=1, expect_cv2="opencv-python"
    ),
    "numpy2": Scenario(
        "numpy2",
        "3.11",
        "numpy2-py311.txt",
        real=False,
        extras="opencv,navsim",
        expect_numpy_major=2,
        expect_cv2="opencv-python-headless",
    ),
    "numpy1-opencv": Scenario(
        "numpy1-opencv",
        "3.11",
        "navsim-v1.1-py311.txt",
        real=False,
        extras="opencv",
        env_requirements=["numpy==1.26.4", "torch==2.13.0"],
        expect_numpy_major=1,
        expect_cv2="opencv-python-headless",
    ),
    "bench2drive": Scenario(
        "bench2drive",
        "3.10",
        "bench2drive-py310.txt",
        real=False,
        extras="carla",
        expect_numpy_major=1,
        expect_cv2="opencv-python",
    ),
}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a constraints file (comments and ranges ignored), names normalised."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s#;]+)", line)
        if match:
            pins[_normalize(match.group(1))] = match.group(2)
    return pins


def run(
    cmd: list[str], log: list[str], *, check: bool = True, cwd: Path | None = None, shown: str = ""
) -> subprocess.CompletedProcess:
    """Run a command, log it with its output's tail; raise CheckError on a non-zero exit when ``check``."""
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, stdin=subprocess.DEVNULL)
    shown = shown or " ".join(str(c) for c in cmd)
    log.append(f"$ {shown}   [{time.perf_counter() - start:.1f} s, exit {done.returncode}]")
    if check and done.returncode != 0:
        noise = ("is ignored: it is neither a file nor a directory",)
        tail = [ln for ln in (done.stdout + done.stderr).splitlines() if not any(n in ln for n in noise)][-40:]
        raise CheckError(f"command failed (exit {done.returncode}):\n" + "\n".join(tail))
    return done


def pip(venv_python: Path, *args: str) -> list[str]:
    """The pip running this script, working on ``venv_python``'s environment."""
    return [sys.executable, "-m", "pip", "--python", str(venv_python), "--disable-pip-version-check", *args]


def find_python(version: str, explicit: str | None) -> str | None:
    """An interpreter of ``version`` ("3.10"): the given one, on PATH, or beside this one; None if none runs."""
    candidates = [explicit] if explicit else []
    if sys.version_info[:2] == tuple(int(p) for p in version.split(".")):
        candidates.append(getattr(sys, "_base_executable", sys.executable))
    candidates.append(shutil.which(f"python{version}"))
    # Interpreters installed side by side (<root>/<X.Y.Z>/bin/pythonX.Y), as version managers lay them out.
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    if len(base.parents) > 2:
        candidates.extend(str(p) for p in sorted(base.parents[2].glob(f"{version}*/bin/python{version}")))
    for cand in filter(None, candidates):
        try:
            out = subprocess.run(
                [cand, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
            )
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return cand
    return None


def build_wheel(out: Path, log: list[str]) -> Path:
    """Build the wheel from a clean copy of the checkout (no stale build/ folder, nothing written to the repo)."""
    src = out / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=COPY_IGNORE)
    try:
        import setuptools  # noqa: F401  (the running environment can build without isolation: offline, seconds)

        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(out), str(src)], log)
    shutil.rmtree(src)
    return next(out.glob("autovla_agent-*.whl"))


def installed(venv_python: Path, log: list[str]) -> dict[str, str]:
    """Normalised name -> version of everything in the venv."""
    done = run(pip(venv_python, "list", "--format=json"), log)
    return {_normalize(d["name"]): d["version"] for d in json.loads(done.stdout)}


def pip_check(venv_python: Path, log: list[str]) -> list[str]:
    """The problems ``pip check`` reports (empty when clean)."""
    done = run(pip(venv_python, "check"), log, check=False)
    return [ln for ln in done.stdout.splitlines() if ln.strip() and "No broken requirements" not in ln]


def _require_local_torch(venv_python: Path, version: str, report: Path, log: list[str]) -> None:
    """Skip unless pip takes torch==version from a local wheel: from the index it is a CUDA build of GBs."""
    args = ["install", "-q", "--dry-run", "--no-deps", "--report", str(report), f"torch=={version}"]
    run(pip(venv_python, *args), log)
    url = json.loads(report.read_text())["install"][0]["download_info"]["url"]
    log.append(f"torch {version} from {url}")
    if not url.startswith("file:"):
        raise ScenarioSkipped(f"torch=={version} is not a local wheel here (pip would download {url})")


def run_real(sc: Scenario, venv_python: Path, wheel: Path, work: Path) -> None:
    """Build the stand-in environment, install the wheel into it and check what changed."""
    cons = CONSTRAINTS / sc.constraints
    pins = read_pins(cons)
    env_reqs = sc.env_requirements or [f"{n}=={v}" for n, v in pins.items()]
    if "torch" in pins:
        _require_local_torch(venv_python, pins["torch"], work / f"{sc.name}-torch.json", sc.log)
    run(pip(venv_python, "install", "-q", "--no-compile", "-c", str(cons), *env_reqs), sc.log)
    before = installed(venv_python, sc.log)
    check_before = pip_check(venv_python, sc.log)
    # What a user runs: a plain install, no constraints file.
    run(pip(venv_python, "install", "-q", "--no-compile", f"{wheel}[{sc.extras}]" if sc.extras else str(wheel)), sc.log)
    after = installed(venv_python, sc.log)
    check_after = pip_check(venv_python, sc.log)
    changed = {n: (v, after.get(n)) for n, v in before.items() if after.get(n) != v}
    added = {n: v for n, v in after.items() if n not in before}
    sc.log.append(f"pinned before: {', '.join(f'{n}=={before.get(n)}' for n in pins)}")
    sc.log.append(f"pinned after:  {', '.join(f'{n}=={after.get(n)}' for n in pins)}")
    sc.log.append(f"changed: {changed or 'none'}")
    sc.log.append(f"added ({len(added)}): {', '.join(f'{n}=={v}' for n, v in sorted(added.items()))}")
    sc.log.append(f"pip check before: {check_before or 'clean'}; after: {check_after or 'clean'}")
    if changed:
        raise CheckError(f"installing the wheel changed packages already in the environment: {changed}")
    new_problems = [ln for ln in check_after if ln not in check_before]
    if new_problems:
        raise CheckError(f"pip check reports new problems: {new_problems}")
    _check_cv2_and_numpy(sc, after)
    smoke_dir = work / f"{sc.name}-smoke"
    smoke_dir.mkdir()
    done = run([str(venv_python), "-c", SMOKE], sc.log, cwd=smoke_dir, shown=f"{venv_python} -c <import test>")
    sc.log.append(f"import test: {done.stdout.strip().splitlines()[-1]}")
    if "/cv2/" not in done.stdout.replace("\\", "/"):
        raise CheckError("cv2 did not import from the environment's opencv")


def run_dry(sc: Scenario, venv_python: Path, wheel: Path, work: Path, emulate: str | None) -> None:
    """Resolve the environment's pins and the wheel together with ``pip install --dry-run --report``."""
    cons = CONSTRAINTS / sc.constraints
    pins = read_pins(cons)
    env_reqs = sc.env_requirements or [f"{n}=={v}" for n, v in pins.items()]
    report = work / f"{sc.name}-report.json"
    target = [f"{wheel}[{sc.extras}]" if sc.extras else str(wheel)]
    # --python-version needs wheels only; otherwise sdists are allowed (hydra's antlr4 runtime is one).
    flags = ["--only-binary=:all:", "--python-version", emulate] if emulate else ["--prefer-binary"]
    run(
        pip(venv_python, "install", "-q", "--dry-run", "--report", str(report), *flags, "-c", str(cons))
        + env_reqs
        + target,
        sc.log,
    )
    resolved = {
        _normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]
    }
    kept = {n: resolved.get(n) for n in (_normalize(r.split("==")[0]) for r in env_reqs)}
    sc.log.append(f"resolved {len(resolved)} distributions; environment pins: {kept}")
    for name, version in kept.items():
        want = dict(r.split("==") for r in env_reqs).get(name) or pins.get(name)
        if version is None or version.split("+")[0] != want:  # 2.13.0+cpu is the 2.13.0 release
            raise CheckError(f"{name} resolved to {version}, the environment has {want}")
    sc.log.append(
        f"autovla-agent's own: {', '.join(f'{n}=={resolved[n]}' for n in ('transformers', 'torch') if n in resolved)}"
    )
    _check_cv2_and_numpy(sc, resolved)


def _check_cv2_and_numpy(sc: Scenario, dists: dict[str, str]) -> None:
    cv2 = sorted(CV2_DISTS & set(dists))
    sc.log.append(f"cv2 provided by: {cv2 or 'nothing'}; numpy {dists.get('numpy')}")
    if len(cv2) > 1:
        raise CheckError(f"two opencv wheels would write the same cv2: {cv2}")
    if sc.expect_cv2 and cv2 != [sc.expect_cv2]:
        raise CheckError(f"cv2 should come from {sc.expect_cv2}, got {cv2}")
    if not dists.get("numpy", "").startswith(f"{sc.expect_numpy_major}."):
        raise CheckError(f"numpy {dists.get('numpy')} is not {sc.expect_numpy_major}.x")


def say(text: str = "") -> None:
    """Print one line of the report."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run_scenario(sc: Scenario, wheel: Path, work: Path, python310: str | None) -> None:
    """Run one scenario; failures land in ``sc.error``, the commands and figures in ``sc.log``."""
    start = time.perf_counter()
    try:
        interpreter = find_python(sc.python, python310 if sc.python == "3.10" else None)
        emulate = None
        if interpreter is None:
            if sc.real:
                raise ScenarioSkipped(f"needs a Python {sc.python} interpreter (none found)")
            interpreter, emulate = find_python("3.11", None) or sys.executable, sc.python
            sc.log.append(f"no Python {sc.python} here: resolving for {sc.python} with --python-version")
        venv = work / sc.name
        run([interpreter, "-m", "venv", "--without-pip", str(venv)], sc.log)
        venv_python = venv / "bin" / "python"
        if sc.real:
            run_real(sc, venv_python, wheel, work)
        else:
            run_dry(sc, venv_python, wheel, work, emulate)
    except CheckError as exc:
        sc.error = str(exc)
    except ScenarioSkipped as exc:
        sc.skipped = str(exc)
    except Exception as exc:  # noqa: BLE001  (report every scenario, whatever broke)
        sc.error = f"{type(exc).__name__}: {exc}"
    sc.seconds = time.perf_counter() - start


def pip_version() -> tuple[int, int]:
    """The (major, minor) version of the pip running this script."""
    done = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True)
    return tuple(int(p) for p in done.stdout.split()[1].split(".")[:2])  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios side by side and print each one's commands and figures."""
    parser = argparse.ArgumentParser(prog="check_install.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    parser.add_argument("--wheel", type=Path, help="a built autovla_agent wheel (default: build one)")
    parser.add_argument("--workdir", type=Path, help="keep the venvs and reports here (default: a temp folder)")
    parser.add_argument("--python310", help="a Python 3.10 interpreter for the bench2drive scenario")
    args = parser.parse_args(argv)
    if pip_version() < (22, 3):
        sys.stderr.write("check_install.py needs pip >= 22.3 (pip --python) in the running environment\n")
        return 2
    start = time.perf_counter()
    tmp = None
    if args.workdir:
        work = args.workdir.resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="autovla-install-check-")
        work = Path(tmp.name)
    try:
        log: list[str] = []
        wheel = args.wheel.resolve() if args.wheel else build_wheel(work / "wheel", log)
        say(f"wheel: {wheel.name} ({time.perf_counter() - start:.1f} s)")
        chosen = [SCENARIOS[n] for n in (args.scenario or SCENARIOS)]
        # Two lanes side by side: the real installs (mostly CPU: unpacking wheels) and the dry runs (mostly
        # waiting on the index). More pip processes at once only slow each other down on a small machine.
        lanes = [[sc for sc in chosen if sc.real], [sc for sc in chosen if not sc.real]]

        def run_lane(lane: list[Scenario]) -> None:
            for sc in lane:
                run_scenario(sc, wheel, work, args.python310)

        threads = [threading.Thread(target=run_lane, args=(lane,)) for lane in lanes if lane]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for sc in chosen:
            kind = "install" if sc.real else "dry run"
            status = "FAIL" if sc.error else "SKIPPED" if sc.skipped else "ok"
            say(f"\n== {sc.name} ({kind}, Python {sc.python}): {status}, {sc.seconds:.1f} s")
            for line in sc.log:
                say(f"   {line}")
            if sc.error or sc.skipped:
                say("   " + (sc.error or sc.skipped).replace("\n", "\n   "))
        failed = [sc.name for sc in chosen if sc.error]
        skipped = [sc.name for sc in chosen if sc.skipped]
        ok = len(chosen) - len(failed) - len(skipped)
        took = time.perf_counter() - start
        say(f"\nscenarios: {ok} ok, {len(failed)} failed, {len(skipped)} skipped ({took:.1f} s)")
        return 1 if failed else 3 if skipped else 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    os.environ.setdefault("PIP_NO_INPUT", "1")
    sys.exit(main())
