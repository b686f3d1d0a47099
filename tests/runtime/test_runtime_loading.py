"""Model folders: the tiny model factory, loading, and the errors for folders that cannot work."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml
from transformers import AutoProcessor

from autovla_agent.config_io import ConfigError, dump_yaml, load_yaml
from autovla_agent.planners.codebook import ActionCodebook
from autovla_agent.policy.configuration import ModelConfig, VLAConfig
from autovla_agent.policy.modeling import ModelFolderError, load_vla
from autovla_agent.policy.processor import ActionVocabError, AutoVLAProcessor, find_action_vocab
from autovla_agent.policy.tiny_model import QWEN_SPECIAL_TOKENS, build_tiny_tokenizer
from autovla_agent.policy.tiny_model import main as tiny_model_main


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_tiny_model_folder_complete_small_and_qwen_shaped(tiny_model_dir):
    size_mb = sum(p.stat().st_size for p in tiny_model_dir.iterdir()) / 1e6
    assert size_mb < 20
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert type(processor) is AutoVLAProcessor  # the saved processor_class resolves to our class, not a tokenizer
    tokenizer = processor.tokenizer
    vocab = find_action_vocab(tokenizer, expected_num_tokens=2048)
    assert vocab.is_contiguous and vocab.token_ids[0] == len(tokenizer) - 2048
    specials = tokenizer.convert_tokens_to_ids(["<|endoftext|>", *QWEN_SPECIAL_TOKENS])
    assert specials == list(range(specials[0], specials[0] + len(specials)))  # Qwen's order
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.decode(vocab.token_ids[:2], skip_special_tokens=True) == "<action_0><action_1>"
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl" and config["tie_word_embeddings"] is True
    assert config["text_config"]["vocab_size"] == len(tokenizer)
    assert ActionCodebook.load(tiny_model_dir / "action_codebook").num_tokens == 2048


def test_tiny_model_cli_builds_folder(tmp_path):
    out = tmp_path / "cli_model"
    assert tiny_model_main(["--out", str(out), "--num-action-tokens", "64", "--seed", "3"]) == 0
    assert find_action_vocab(AutoProcessor.from_pretrained(out).tokenizer).num_tokens == 64
    with pytest.raises(FileExistsError, match="--force"):
        tiny_model_main(["--out", str(out)])


def test_load_vla_cached_per_process(tiny_model_dir):
    first = load_vla(ModelConfig(path=str(tiny_model_dir), device="cpu"))
    assert load_vla(ModelConfig(path=str(tiny_model_dir) + "/", device="cpu")) is first
    assert first.model.lm_head.weight.data_ptr() == first.model.get_input_embeddings().weight.data_ptr()


def test_load_vla_missing_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(ModelFolderError, match="does not exist.*autovla-make-tiny"):
        load_vla(ModelConfig(path=str(tmp_path / "nope"), device="cpu"))
    with pytest.raises(ModelFolderError, match="model.path is empty"):
        load_vla(ModelConfig(device="cpu"))


def test_load_vla_tokenizer_without_actions_refused(tiny_model_dir, tmp_path):
    folder = copy_model(tiny_model_dir, tmp_path / "no_actions")
    tokenizer = build_tiny_tokenizer()
    tokenizer.save_pretrained(folder)
    with pytest.raises(ActionVocabError, match="no action tokens.*convert_checkpoint"):
        load_vla(ModelConfig(path=str(folder), device="cpu"))


def test_load_vla_codebook_size_mismatch_refused(tiny_model_dir, tmp_path):
    folder = copy_model(tiny_model_dir, tmp_path / "small_codebook")
    book = ActionCodebook.load(folder / "action_codebook")
    ActionCodebook(book.poses[:64], substep_s=book.substep_s).save(folder / "action_codebook")
    with pytest.raises(ActionVocabError, match="2048 action tokens but the codebook has 64"):
        load_vla(ModelConfig(path=str(folder), device="cpu"))


def test_load_vla_missing_codebook_or_unknown_model_type_refused(tiny_model_dir, tmp_path):
    folder = copy_model(tiny_model_dir, tmp_path / "no_codebook")
    (folder / "action_codebook.npz").unlink()
    with pytest.raises(ModelFolderError, match="action_codebook.npz"):
        load_vla(ModelConfig(path=str(folder), device="cpu"))
    folder = copy_model(tiny_model_dir, tmp_path / "other_type")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "qwen3_vl"}))
    with pytest.raises(ModelFolderError, match="qwen3_vl.*not supported"):
        load_vla(ModelConfig(path=str(folder), device="cpu"))


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes installed here")
def test_load_vla_quantization_without_bitsandbytes_says_how_to_install(tiny_model_dir):
    with pytest.raises(ModelFolderError, match=r"pip install \"autovla-agent\[quant\]\""):
        load_vla(ModelConfig(path=str(tiny_model_dir), device="cpu", quantization="4bit"))


def test_vla_config_yaml_round_trip_and_strict_errors(tmp_path):
    config = VLAConfig()
    path = tmp_path / "vla.yaml"
    dump_yaml(config, path)
    assert load_yaml(VLAConfig, path, ["thinking.policy=slow", "prompt.views=[front, front_left]"]) == VLAConfig(
        thinking=type(config.thinking)(policy="slow"), prompt=type(config.prompt)(views=("front", "front_left"))
    )
    data = yaml.safe_load(path.read_text())
    data["decoding"]["num_action_tokns"] = 3
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="num_action_tokns"):
        load_yaml(VLAConfig, path)
    dump_yaml(config, path)
    with pytest.raises(ConfigError, match="needs a reasoning model"):
        load_yaml(VLAConfig, path, ["prompt.reasoning_model=false", "thinking.policy=slow"])


def test_decoding_config_rejects_poses_beyond_token_horizon():
    from autovla_agent.policy.configuration import DecodingConfig

    with pytest.raises(ValueError, match="cover only 4.0 s"):
        DecodingConfig(num_action_tokens=8, plan_num_poses=10)
