"""Installs autovla-agent: one import root, with the design card's top-level folders linked in as subpackages."""

from pathlib import Path

from setuptools import find_namespace_packages, setup

# The design card keeps sensors/, planners/, training/, routes/ and leaderboard_configs/ at the top of the
# repository, but generic top-level names in site-packages collide with other projects. Each is linked into
# autovla_agent/ (autovla_agent/planners -> ../planners), so the source tree is the import tree: the same
# `autovla_agent.planners` resolves from a checkout, an editable install and a wheel. Namespace discovery makes
# every data folder (maps, routes, configs, the default model) a package of its own, so its files are package
# data and setuptools has nothing to warn about.
packages = find_namespace_packages(include=["autovla_agent", "autovla_agent.*", "hydra_plugins.*"])
packages = [p for p in packages if "__pycache__" not in p]
DATA_FILES = ["*.yaml", "*.xml", "*.xodr", "*.md", "*.txt", "*.json", "*.npz", "*.safetensors", "*.jinja", "*.png"]

setup(
    name="autovla-agent",
    version="0.1.0",
    description="Closed-loop driving agent for AutoVLA-style vision-language-action models (CARLA, NAVSIM)",
    long_description=Path("README.md").read_text(encoding="utf-8") if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=packages,
    package_data={"": DATA_FILES},
    # Ranges, not pins: the package installs beside navsim (numpy 1.26, opencv-python 4.9, hydra-core) and
    # Bench2Drive (Python 3.10, carla 0.9.15) without changing what they pinned. constraints/ holds those
    # environments' pins; tests/install/ resolves against them on every `make test`.
    install_requires=[
        # Supported range: 2.6 (what transformers 5.20 and later need at run time; their metadata does not say so)
        # up to 2.13, the release tested. A torch already installed in that range is kept: install torch first
        # (the build you want) and pip never swaps it.
        "torch>=2.6,<3",
        "transformers>=5.10.4,<5.40",  # 5.40 drops the past_key_values argument the decoding loop passes
        "safetensors>=0.4",
        "numpy>=1.23",  # 1.x (navsim v1.1 pins 1.23.4; Bench2Drive) and 2.x; nothing here requires numpy>=2
        "pyyaml>=6",
        "pillow>=10",
        "shapely>=2",
        # No opencv here: any cv2 the environment has (navsim's opencv-python, the leaderboard's) is used, and
        # a second opencv wheel writing the same cv2 is never added. Fresh environments: the [opencv] extra.
        "imageio>=2.30",
        "imageio-ffmpeg>=0.5",
        "tqdm>=4.60",
        "tabulate>=0.9",
    ],
    extras_require={
        # opencv 4.9-4.11 wheels run on numpy 1.x and 2.x (4.12 and later require numpy>=2).
        "opencv": ["opencv-python-headless>=4.9,<4.12"],
        # The CARLA client: 0.9.16 on Python 3.10-3.12; Bench2Drive users on 3.10 keep their carla==0.9.15.
        "carla": ["carla>=0.9.15,<0.10"],
        # The embedded runner (CARLA's map engine from the client wheel, camera rendering, replays).
        "sim": ["carla>=0.9.15,<0.10", "opencv-python-headless>=4.9,<4.12"],
        # 4/8-bit loading (model.quantization): transformers needs accelerate for bitsandbytes' device map.
        "quant": ["bitsandbytes>=0.45", "accelerate>=1.5"],
        "train": ["trl==1.16.0", "peft>=0.13", "datasets>=3", "accelerate>=1.5"],
        "navsim": ["hydra-core>=1.2"],
        # Scale-out (--workers N, the multi-server leaderboard runner): routes as tasks on Ray workers.
        "ray": ["ray>=2.9"],
        # Our own .venv (scripts/setup_env.sh dev): torch 2.13.0 is installed before these.
        "dev": [
            "pytest>=8",
            "hypothesis>=6",
            "ruff>=0.6",
            "mypy>=1.11",
            "carla==0.9.16",
            "opencv-python-headless>=4.9",
            "hydra-core>=1.2",
            "trl==1.16.0",
            "peft>=0.13",
            "datasets>=3",
            "accelerate>=1.5",
            "ray==2.60.0",
        ],
    },
    entry_points={
        "console_scripts": [
            "autovla-demo=autovla_agent.demo:main",
            "autovla-evaluate=autovla_agent.sim.runner:main",
            "autovla-replay=autovla_agent.sim.replay.cli:main",
            "autovla-sim-bench=autovla_agent.sim.bench:main",
            "autovla-make-tiny=autovla_agent.policy.tiny_model:main",
            "autovla-convert-checkpoint=autovla_agent.policy.convert_checkpoint:main",
            "autovla-benchmark-vla=autovla_agent.benchmarks.vla:main",
            "autovla-benchmark-agent=autovla_agent.benchmarks.agent:main",
            "autovla-codebook=autovla_agent.planners.codebook:main",
            "autovla-build-codebook=autovla_agent.training.codebook_cmd:main",
            "autovla-collect=autovla_agent.training.collect:main",
            "autovla-validate-data=autovla_agent.training.validate:main",
            "autovla-train-sft=autovla_agent.training.sft:main",
            "autovla-train-grpo=autovla_agent.training.grpo:main",
            "autovla-train-pipeline=autovla_agent.training.pipeline:main",
        ]
    },
)
