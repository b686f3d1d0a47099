from pathlib import Path

import pytest
from PIL import Image

from autovla_agent.config_io import ConfigError, load_yaml
from autovla_agent.training.config import GRPORunConfig, SFTRunConfig
from autovla_agent.training.pipeline import PipelineConfig
from autovla_agent.training.report import write_report

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


@pytest.mark.parametrize("name", ["sft_3b", "sft_tiny", "grpo_3b", "grpo_tiny"])
def test_shipped_training_configs_load_strictly(name):
    cls = SFTRunConfig if name.startswith("sft") else GRPORunConfig
    config = load_yaml(cls, CONFIGS / f"{name}.yaml", ["train.max_steps=5"])
    assert config.train.max_steps == 5


def test_training_config_unknown_key_names_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text((CONFIGS / "sft_tiny.yaml").read_text().replace("cot_weight:", "cot_wieght:"))
    with pytest.raises(ConfigError, match="loss.cot_wieght"):
        load_yaml(SFTRunConfig, path)


def test_grpo_config_rejects_single_generation_groups(tmp_path):
    with pytest.raises(ConfigError, match="num_generations"):
        load_yaml(GRPORunConfig, CONFIGS / "grpo_tiny.yaml", ["grpo.num_generations=1"])


def test_report_writes_table_and_png(tmp_path):
    def result(ds, slow):
        return {
            "driving_score": ds,
            "route_completion": 2 * ds,
            "collisions": 1,
            "slow_share": slow,
            "mean_reasoning_tokens": 40.0,
            "fallback_share": 0.0,
            "routes": [],
        }

    state = {
        "collect": {"wall_s": 10.0, "result": {"samples": 100}},
        "codebook": {"wall_s": 1.0, "result": {"num_tokens": 50, "errors": {"train": {"ade_m": 0.02}}}},
        "eval_untrained": {"wall_s": 5.0, "result": result(2.0, 0.4)},
        "eval_sft": {"wall_s": 5.0, "result": result(20.0, 0.1)},
        "eval_grpo": {"wall_s": 5.0, "result": result(25.0, 0.05)},
        "total_wall_s": 26.0,
    }
    md = write_report(tmp_path, state, PipelineConfig()).read_text()
    assert "| after GRPO | 25.00 | 50.0 | 1 | 0.05 | 40.0 | 0.00 |" in md
    assert "K=50" in md
    with Image.open(tmp_path / "report.png") as img:
        assert img.size[0] > 500 and img.getextrema() != ((255, 255), (255, 255), (255, 255))


def test_pipeline_stage_skipped_after_finishing(tmp_path):
    from autovla_agent.training.pipeline import Pipeline

    calls = []
    first = Pipeline(tmp_path, PipelineConfig())
    assert first.stage("collect", lambda: calls.append(1) or {"samples": 3}) == {"samples": 3}
    again = Pipeline(tmp_path, PipelineConfig())  # a new process after an interruption
    assert again.stage("collect", lambda: calls.append(2) or {"samples": 0}) == {"samples": 3}
    assert calls == [1]
