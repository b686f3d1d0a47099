"""Installs autovla-agent: the top-level sensors/, planners/ and training/ folders become subpackages."""

from pathlib import Path

from setuptools import find_packages, setup

# The design card keeps sensors/, planners/ and training/ at the top of the repository, but generic
# top-level names in site-packages collide with other projects; they install under one import root.
SUBPACKAGE_DIRS = {"sensors": "sensors", "planners": "planners", "training": "training"}

packages = [p for p in find_packages(include=["autovla_agent", "autovla_agent.*"])]
package_dir = {}
for name, folder in SUBPACKAGE_DIRS.items():
    for sub in [""] + [f".{p}" for p in find_packages(where=folder)]:
        packages.append(f"autovla_agent.{name}{sub}")
    package_dir[f"autovla_agent.{name}"] = folder
# Data folders travel with the package so an installed agent finds its configs and routes.
packages += ["autovla_agent.routes", "autovla_agent.leaderboard_configs", "hydra_plugins.autovla_searchpath"]
package_dir["autovla_agent.routes"] = "routes"
package_dir["autovla_agent.leaderboard_configs"] = "leaderboard_configs"

setup(
    name="autovla-agent",
    version="0.1.0",
    description="Closed-loop driving agent for AutoVLA-style vision-language-action models (CARLA, NAVSIM)",
    long_description=Path("README.md").read_text(encoding="utf-8") if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=packages,
    package_dir=package_dir,
    package_data={
        "autovla_agent": [
            "navsim_config/*.yaml",
            "navsim_config/agent/*.yaml",
            "sim/maps/*.xodr",
            "sim/maps/LICENSE*",
            "assets/**/*",
        ],
        "autovla_agent.routes": ["*.xml", "*.md", "LICENSE*"],
        "autovla_agent.leaderboard_configs": ["*.yaml"],
        "autovla_agent.training": ["configs/*.yaml", "accelerate_configs/*.yaml", "README.md"],
    },
    include_package_data=True,
    install_requires=[
        # torch is pinned so that pip never swaps the CPU build for a newer CUDA one.
        "torch==2.13.0",
        "transformers>=5.10.4,<5.18",
        "safetensors>=0.4",
        "accelerate>=1.5",
        "numpy>=1.26",
        "pyyaml>=6",
        "pillow>=10",
        "shapely>=2",
        "opencv-python-headless>=4.9",
        "imageio>=2.30",
        "imageio-ffmpeg>=0.5",
        "tqdm>=4.60",
        "tabulate>=0.9",
    ],
    extras_require={
        # The CARLA client is optional: Bench2Drive users on Python 3.10 bring carla==0.9.15 themselves.
        "carla": ["carla==0.9.16"],
        "sim": ["carla==0.9.16"],
        "train": ["trl==1.16.0", "peft>=0.13", "datasets>=3"],
        "navsim": ["hydra-core>=1.2"],
        "dev": [
            "pytest>=8",
            "hypothesis>=6",
            "ruff>=0.6",
            "carla==0.9.16",
            "hydra-core>=1.2",
            "trl==1.16.0",
            "peft>=0.13",
            "datasets>=3",
        ],
    },
    entry_points={
        "console_scripts": [
            "autovla-demo=autovla_agent.demo:main",
            "autovla-evaluate=autovla_agent.sim.runner:main",
            "autovla-replay=autovla_agent.sim.replay:main",
            "autovla-sim-bench=autovla_agent.sim.bench:main",
            "autovla-make-tiny=autovla_agent.tiny_model:main",
            "autovla-convert-checkpoint=autovla_agent.convert_checkpoint:main",
            "autovla-benchmark-vla=autovla_agent.benchmark_vla:main",
            "autovla-benchmark-agent=autovla_agent.benchmark_agent:main",
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
