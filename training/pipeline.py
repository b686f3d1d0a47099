"""The tiny end-to-end pipeline: collect, codebook, SFT, closed-loop evaluation, GRPO, evaluation, report.

``python -m autovla_agent.training.pipeline --out DIR [--config YAML] [overrides] [--install-default-model]``

Stages (each writes ``DIR/<stage>/`` and a ``DIR/state.json`` entry; a rerun skips finished stages, and SFT/GRPO
resume from their last trainer checkpoint):

1. ``data``: the privileged expert drives the training routes (seeds) in the embedded world; samples imitate the
   agent config the model is evaluated with (``agent.yaml``).
2. ``codebook``: K-disk codebook from the collected futures (its reconstruction ADE in the report).
3. ``base_model``: a tiny random Qwen2.5-VL (same architecture as AutoVLA-3B) with that codebook: the
   untrained reference.
4. ``sft``, then ``grpo`` (from the saved SFT folder, driving-score + length-penalty rewards).
5. ``eval_untrained``, ``eval_sft``, ``eval_grpo``: the AutoVLA agent drives the held-out routes in the embedded
   runner (``autovla-evaluate``); driving score, route completion, collisions, share of slow thinking and mean
   reasoning length per model.
6. ``report.md`` + ``report.png`` + ``report.json``. ``--install-default-model`` copies the better of the SFT and
   GRPO models (GRPO unless it scores lower) to ``autovla_agent/assets/default_model`` when it beats the
   untrained model.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from autovla_agent.config_io import dump_yaml, from_dict, load_yaml
from autovla_agent.paths import DEFAULT_MODEL_DIR
from autovla_agent.scale.engine import RayUnavailableError, ScaleConfig, ray_session, require_engine
from autovla_agent.training.config import (
    GRPORunConfig,
    GRPOSettings,
    LoraSettings,
    SFTLossSettings,
    SFTRunConfig,
    TrainSettings,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class PipelineConfig:
    """Scale and settings of the tiny pipeline (defaults: 29 minutes measured on a shared 2-core CPU)."""

    train_routes: tuple[str, ...] = ("lb1_training_town01", "lb1_testing_town02")
    train_routes_subset: str = ""
    train_seeds: tuple[int, ...] = (0, 1, 2)
    eval_routes: str = "routes_default"
    eval_routes_subset: str = ""
    eval_seed: int = 0
    eval_repetitions: int = 3  # runs per held-out route (seed + repetition: different traffic)
    num_traffic: int | None = None  # None: the world's default
    reasoning_share: float = 1.0
    reasoning_selection: Literal["random", "complex"] = "complex"
    sample_every: int = 1
    camera_width_px: int = 256  # rendered camera (cheap to render), resized by the frame buffer
    camera_height_px: int = 144
    frame_width_px: int = 112  # model input frames (the tiny model's pixel budget is 112 x 56)
    frame_height_px: int = 56
    codebook_tokens: int = 2048
    codebook_tolerance_m: float = 0.05
    hidden_size: int = 64
    num_layers: int = 2
    pixels: int = 28 * 28 * 8
    include_target_point: bool = True  # route target point in the prompt (not in AutoVLA; helps a tiny model)
    eval_thinking: Literal["adaptive", "fast", "slow"] = "adaptive"
    max_reasoning_tokens: int = 192
    sft: TrainSettings = field(
        default_factory=lambda: TrainSettings(
            learning_rate=2e-3,
            num_train_epochs=2.0,
            per_device_train_batch_size=16,
            gradient_accumulation_steps=1,
            warmup_steps=20,
            lr_scheduler_type="cosine",
            logging_steps=20,
            save_steps=200,
            save_total_limit=2,
            gradient_checkpointing=False,
            use_cpu=True,
            weight_decay=0.0,
        )
    )
    sft_loss: SFTLossSettings = field(default_factory=SFTLossSettings)
    grpo: GRPOSettings = field(
        default_factory=lambda: GRPOSettings(
            num_generations=4, max_completion_length=240, max_reasoning_tokens=192, temperature=1.0, beta=0.04
        )
    )
    grpo_train: TrainSettings = field(
        default_factory=lambda: TrainSettings(
            learning_rate=2e-5,
            max_steps=100,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=1,
            logging_steps=5,
            save_steps=20,
            save_total_limit=2,
            gradient_checkpointing=False,
            use_cpu=True,
            weight_decay=0.0,
        )
    )
    grpo_lora: LoraSettings = field(default_factory=lambda: LoraSettings(enabled=False, train_action_embeddings=False))
    seed: int = 0
    torch_threads: int = 1  # a tiny model runs fastest single-threaded (thread sync dominates on a busy CPU)
    # workers > 1: the collection runs and the evaluation routes are Ray tasks (one Ray session for all stages)
    scale: ScaleConfig = field(default_factory=ScaleConfig)


class Pipeline:
    """Runs the stages of the module docstring in ``out``; ``state.json`` records finished ones."""

    def __init__(self, out: str | Path, config: PipelineConfig) -> None:
        self.out = Path(out)
        self.config = config
        self.out.mkdir(parents=True, exist_ok=True)
        self.state_path = self.out / "state.json"
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}

    def _save_state(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2), encoding="utf-8")
        os.replace(tmp, self.state_path)

    def stage(self, name: str, fn, *args: Any) -> Any:
        """Run a stage unless ``state.json`` says it finished; record its result and wall time."""
        if name in self.state:
            logger.info("stage %s: done before (%.0f s), skipped", name, self.state[name]["wall_s"])
            return self.state[name]["result"]
        logger.info("===== stage %s =====", name)
        start = time.perf_counter()
        result = fn(*args)
        self.state[name] = {"wall_s": round(time.perf_counter() - start, 1), "result": result}
        self._save_state()
        return result

    # ------------------------------------------------------------------ agent config
    def agent_config_path(self, model_dir: Path, name: str, dest: Path | None = None, model_path: str = "") -> Path:
        """Write the AutoVLA agent config that drives ``model_dir`` (and that the data imitates).

        ``dest`` defaults to ``DIR/agent_<name>.yaml``; ``model_path`` replaces the absolute model path (a path
        relative to the YAML file, e.g. ``.`` for a config shipped inside the model folder).
        """
        from autovla_agent.loop.agent_config import load_agent_config

        c = self.config
        base, _ = load_agent_config("autovla_tiny.yaml")
        camera = replace(base.rig.cameras[0], width_px=c.camera_width_px, height_px=c.camera_height_px)
        vla = base.vla
        vla = replace(
            vla,
            model=replace(vla.model, path=model_path or str(model_dir.resolve()), device="cpu", dtype="float32"),
            prompt=replace(vla.prompt, camera_layout="images", include_target_point=c.include_target_point),
            thinking=replace(vla.thinking, policy=c.eval_thinking, max_reasoning_tokens=c.max_reasoning_tokens),
        )
        config = replace(
            base,
            rig=replace(base.rig, cameras=(camera,)),
            frame_buffer=replace(base.frame_buffer, width_px=c.frame_width_px, height_px=c.frame_height_px),
            vla=vla,
            build_tiny_model_if_missing=False,
        )
        path = dest or self.out / f"agent_{name}.yaml"
        dump_yaml(config, path)
        return path

    # ------------------------------------------------------------------ stages
    def collect(self) -> dict[str, Any]:
        """Stage 1: drive the expert over the training routes and seeds."""
        from autovla_agent.training.collect import CollectConfig, Collector

        c = self.config
        data = self.out / "data"
        if data.exists():
            shutil.rmtree(data)  # an interrupted collection restarts (it takes minutes)
        config = CollectConfig(
            out=str(data),
            routes=c.train_routes,
            routes_subset=c.train_routes_subset,
            seeds=c.train_seeds,
            agent_config=str(self.agent_config_path(self.out / "base_model", "collect")),
            num_traffic=c.num_traffic,
            reasoning_share=c.reasoning_share,
            reasoning_selection=c.reasoning_selection,
            sample_every=c.sample_every,
            scale=c.scale,
        )
        runs = Collector(config).run()
        return {"samples": sum(r.samples for r in runs), "runs": [dataclasses.asdict(r) for r in runs]}

    def codebook(self) -> dict[str, Any]:
        """Stage 2: codebook from the collected futures; tokenise the dataset with it."""
        from autovla_agent.training.codebook_cmd import build_from_dataset, tokenize_dataset

        c = self.config
        codebook, errors = build_from_dataset(
            self.out / "data", num_tokens=c.codebook_tokens, tolerance_m=c.codebook_tolerance_m, seed=c.seed
        )
        codebook.save(self.out / "codebook" / "action_codebook")
        tokenize_dataset(self.out / "data", codebook)
        return {"num_tokens": codebook.num_tokens, "errors": errors}

    def base_model(self) -> dict[str, Any]:
        """Stage 3: the tiny random model with the collected codebook (the untrained reference)."""
        from autovla_agent.planners.codebook import ActionCodebook
        from autovla_agent.policy.tiny_model import build_tiny_model

        c = self.config
        codebook = ActionCodebook.load(self.out / "codebook" / "action_codebook")
        folder = self.out / "base_model"
        build_tiny_model(
            folder,
            num_action_tokens=codebook.num_tokens,
            seed=c.seed,
            pixels=c.pixels,
            hidden_size=c.hidden_size,
            num_layers=c.num_layers,
            overwrite=True,
            codebook_trajectories=200,
        )
        codebook.save(folder / "action_codebook")  # same K: replaces the synthetic codebook
        return {"path": str(folder), "num_tokens": codebook.num_tokens}

    def sft(self) -> dict[str, Any]:
        """Stage 4a: supervised fine-tuning of the base model."""
        from autovla_agent.training.sft import run_sft

        c = self.config
        prompt = self._prompt()
        config = SFTRunConfig(
            model_path=str(self.out / "base_model"),
            output_dir=str(self.out / "sft"),
            train_data=str(self.out / "data"),
            prompt=prompt,
            loss=c.sft_loss,
            train=replace(c.sft, seed=c.seed),
            freeze_vision=False,  # a random tiny vision tower must learn (AutoVLA freezes a pretrained one)
        )
        return {"path": str(run_sft(config))}

    def grpo(self) -> dict[str, Any]:
        """Stage 4b: GRPO from the saved SFT folder."""
        from autovla_agent.training.grpo import run_grpo

        c = self.config
        config = GRPORunConfig(
            model_path=str(self.out / "sft" / "model"),
            output_dir=str(self.out / "grpo"),
            train_data=str(self.out / "data"),
            prompt=self._prompt(),
            grpo=c.grpo,
            lora=c.grpo_lora,
            train=replace(c.grpo_train, seed=c.seed),
            freeze_vision=True,
        )
        return {"path": str(run_grpo(config))}

    def _prompt(self):
        from autovla_agent.policy.configuration import PromptConfig

        return PromptConfig(camera_layout="images", include_target_point=self.config.include_target_point)

    def evaluate(self, name: str, model_dir: Path) -> dict[str, Any]:
        """Stage 5: the AutoVLA agent with ``model_dir`` drives the held-out routes in the embedded runner."""
        from autovla_agent.training.evaluate import evaluate_model

        c = self.config
        return evaluate_model(
            model_dir,
            self.agent_config_path(model_dir, name),
            self.out / name,
            c.eval_routes,
            c.eval_routes_subset,
            c.eval_seed,
            c.eval_repetitions,
            scale=c.scale,
        )

    def run(self, install_default_model: bool = False) -> Path:
        """All stages, then the report; return the report path."""
        import torch

        from autovla_agent.training.report import write_report

        torch.set_num_threads(self.config.torch_threads)
        start = time.perf_counter()
        scale = self.config.scale
        # One Ray session for every stage that uses it (starting a local Ray costs seconds each time).
        with ray_session(scale) if scale.uses_ray else contextlib.nullcontext():
            self.stage("collect", self.collect)
            self.stage("codebook", self.codebook)
            self.stage("base_model", self.base_model)
            self.stage("eval_untrained", self.evaluate, "eval_untrained", self.out / "base_model")
            self.stage("sft", self.sft)
            self.stage("eval_sft", self.evaluate, "eval_sft", self.out / "sft" / "model")
            self.stage("grpo", self.grpo)
            self.stage("eval_grpo", self.evaluate, "eval_grpo", self.out / "grpo" / "model")
        self.state.setdefault("total_wall_s", 0.0)
        self.state["total_wall_s"] = round(sum(v["wall_s"] for v in self.state.values() if isinstance(v, dict)), 1)
        self._save_state()
        report = write_report(self.out, self.state, self.config)
        logger.info("pipeline finished in %.1f s (this invocation); report: %s", time.perf_counter() - start, report)
        if install_default_model:
            self.install_default_model()
        return report

    def install_default_model(self, target: Path = DEFAULT_MODEL_DIR) -> Path | None:
        """Copy the better trained model to the package's default-model folder if it beats the untrained one."""
        scores = {k: self.state[k]["result"]["driving_score"] for k in ("eval_untrained", "eval_sft", "eval_grpo")}
        best = "grpo" if scores["eval_grpo"] >= scores["eval_sft"] else "sft"
        if scores[f"eval_{best}"] <= scores["eval_untrained"]:
            logger.warning("no trained model beats the untrained one (%s); nothing installed", scores)
            return None
        source = self.out / best / "model"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
        self.agent_config_path(target, best, dest=target / "agent_config.yaml", model_path=".")
        shutil.copy2(self.out / "report.md", target / "REPORT.md")
        logger.info("installed %s (%s) as the default model: %s", source, scores, target)
        return target


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="autovla-train-pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="working folder (rerun to resume)")
    parser.add_argument("--config", type=Path, default=None, help="YAML of PipelineConfig (defaults otherwise)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. sft.num_train_epochs=1")
    parser.add_argument(
        "--install-default-model",
        action="store_true",
        help="copy the trained model to autovla_agent/assets/default_model if it beats the untrained",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.config is not None:
        config = load_yaml(PipelineConfig, args.config, args.overrides)
    else:
        from autovla_agent.config_io import apply_overrides, to_dict

        config = from_dict(PipelineConfig, apply_overrides(to_dict(PipelineConfig()), args.overrides))
    try:
        require_engine(config.scale)  # scale.workers > 1 without Ray: say how to install it before any stage
    except RayUnavailableError as exc:
        logger.error("%s", exc)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    dump_yaml(config, args.out / "pipeline_config.yaml")
    Pipeline(args.out, config).run(args.install_default_model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
