"""The AutoVLA checkpoint converter on a synthetic Lightning checkpoint with AutoVLA's key layout."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from autovla_agent.planners.codebook import ActionCodebook
from autovla_agent.planners.se2 import box_corners
from autovla_agent.policy.configuration import ModelConfig, VLAConfig
from autovla_agent.policy.convert_checkpoint import (
    ConversionError,
    convert,
    main,
    policy_state_dict,
    to_transformers5_keys,
)
from autovla_agent.policy.modeling import VLAPlanner
from autovla_agent.policy.processor import find_action_vocab, load_processor
from autovla_agent.policy.tiny_model import build_tiny_tokenizer


def to_transformers449_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers-5 names -> the 4.49 names AutoVLA trained with (model.layers.*, visual.*)."""
    out = {}
    for key, value in state.items():
        key = key.replace("model.language_model.", "model.", 1) if key.startswith("model.language_model.") else key
        key = key.replace("model.visual.", "visual.", 1) if key.startswith("model.visual.") else key
        out[key] = value
    return out


@pytest.fixture(scope="module")
def source(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """A Lightning-style checkpoint, an agent_vocab.pkl-layout codebook and a base folder without action tokens."""
    root = tmp_path_factory.mktemp("convert")
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    state = {f"autovla.vlm.{k}": v.clone() for k, v in to_transformers449_keys(model.state_dict()).items()}
    state["reference_model.vlm.lm_head.weight"] = torch.zeros(3, 3)  # GRPO's frozen copy: not part of the policy
    torch.save({"state_dict": state, "epoch": 4, "global_step": 100}, root / "autovla.ckpt")
    book = ActionCodebook.load(tiny_model_dir / "action_codebook")
    poses = np.concatenate([np.zeros((book.num_tokens, 1, 3)), book.poses], axis=1)  # pose 0 = token start
    corners = box_corners(poses, 4.8, 2.0).astype(np.float32)  # (K, 6, 4, 2) like agent_vocab.pkl
    with (root / "agent_vocab.pkl").open("wb") as fh:
        pickle.dump({"veh": corners, "ped": corners[:4], "cyc": corners[:4]}, fh)
    base = root / "base"  # like Qwen2.5-VL-3B-Instruct: config, processor, tokenizer without actions
    base.mkdir()
    shutil.copy(tiny_model_dir / "config.json", base / "config.json")
    processor = load_processor(tiny_model_dir)
    processor.tokenizer = build_tiny_tokenizer()
    processor.save_pretrained(base)
    return {
        "ckpt": root / "autovla.ckpt",
        "codebook": root / "agent_vocab.pkl",
        "base": base,
        "root": root,
        "model": tiny_model_dir,
    }


def test_convert_round_trip_reproduces_weights_tokens_and_plans(source, make_obs):
    out = convert(source["ckpt"], source["base"], source["codebook"], source["root"] / "out", dtype="float32")
    original = Qwen2_5_VLForConditionalGeneration.from_pretrained(source["model"]).state_dict()
    converted = Qwen2_5_VLForConditionalGeneration.from_pretrained(out).state_dict()
    assert set(original) == set(converted)
    assert all(torch.equal(original[k], converted[k]) for k in original)
    vocab = find_action_vocab(load_processor(out).tokenizer, expected_num_tokens=2048)
    assert vocab.token_ids == find_action_vocab(load_processor(source["model"]).tokenizer).token_ids
    np.testing.assert_allclose(
        ActionCodebook.load(out / "action_codebook").poses,
        ActionCodebook.load(source["model"] / "action_codebook").poses,
        atol=1e-5,
    )
    obs = make_obs()
    planners = [VLAPlanner(VLAConfig(model=ModelConfig(path=str(p), device="cpu"))) for p in (source["model"], out)]
    assert planners[0].plan(obs).action_tokens == planners[1].plan(obs).action_tokens


def test_convert_missing_key_refused(source):
    state = torch.load(source["ckpt"], weights_only=True)["state_dict"]
    del state["autovla.vlm.model.layers.1.mlp.down_proj.weight"]
    torch.save({"state_dict": state}, source["root"] / "missing.ckpt")
    with pytest.raises(ConversionError, match=r"1 missing \['model.language_model.layers.1.mlp.down_proj.weight'\]"):
        convert(source["root"] / "missing.ckpt", source["base"], source["codebook"], source["root"] / "bad1")
    assert not (source["root"] / "bad1").exists()  # nothing written


def test_convert_unexpected_key_and_shape_refused(source):
    state = torch.load(source["ckpt"], weights_only=True)["state_dict"]
    extra = dict(state, **{"autovla.vlm.model.layers.9.mlp.down_proj.weight": torch.zeros(2, 2)})
    torch.save({"state_dict": extra}, source["root"] / "extra.ckpt")
    with pytest.raises(ConversionError, match="1 unexpected"):
        convert(source["root"] / "extra.ckpt", source["base"], source["codebook"], source["root"] / "bad2")
    key = "autovla.vlm.visual.merger.mlp.2.weight"
    reshaped = dict(state, **{key: state[key][:, :-1]})
    torch.save({"state_dict": reshaped}, source["root"] / "shape.ckpt")
    with pytest.raises(ConversionError, match="1 shape mismatches"):
        convert(source["root"] / "shape.ckpt", source["base"], source["codebook"], source["root"] / "bad3")


def test_convert_lora_adapters_merged_or_refused_without_alpha():
    weight, a, b = torch.randn(4, 3), torch.randn(2, 3), torch.randn(4, 2)
    raw = {
        "autovla.vlm.base_model.model.model.embed_tokens.weight": torch.randn(5, 3),
        "autovla.vlm.base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight": weight,
        "autovla.vlm.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight": a,
        "autovla.vlm.base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight": b,
        "autovla.vlm.base_model.model.visual.blocks.0.attn.qkv.weight": torch.randn(2, 2),
    }
    with pytest.raises(ConversionError, match="--lora-alpha"):
        policy_state_dict(raw)
    merged = policy_state_dict(raw, lora_alpha=8.0)
    assert set(merged) == {
        "model.language_model.embed_tokens.weight",
        "model.visual.blocks.0.attn.qkv.weight",
        "model.language_model.layers.0.self_attn.q_proj.weight",
    }
    torch.testing.assert_close(merged["model.language_model.layers.0.self_attn.q_proj.weight"], weight + 4.0 * b @ a)


def test_convert_key_renames_are_explicit_and_idempotent():
    renamed = to_transformers5_keys(
        {
            "model.norm.weight": torch.ones(1),
            "visual.patch_embed.proj.weight": torch.ones(1),
            "lm_head.weight": torch.ones(1),
            "model.language_model.norm.bias": torch.ones(1),
        }
    )
    assert set(renamed) == {
        "model.language_model.norm.weight",
        "model.visual.patch_embed.proj.weight",
        "lm_head.weight",
        "model.language_model.norm.bias",
    }
    with pytest.raises(ConversionError, match="mixes"):
        to_transformers5_keys({"model.norm.weight": torch.ones(1), "model.language_model.norm.weight": torch.ones(1)})


def test_convert_cli_refuses_non_empty_output_and_pickled_objects(source):
    with pytest.raises(ConversionError, match="not empty"):
        main(
            [
                "--ckpt",
                str(source["ckpt"]),
                "--base-model",
                str(source["base"]),
                "--codebook",
                str(source["codebook"]),
                "--out",
                str(source["base"]),
            ]
        )
    torch.save({"state_dict": {}, "hparams": ConversionError("x")}, source["root"] / "objects.ckpt")
    with pytest.raises(ConversionError, match="--trust-pickle"):
        convert(source["root"] / "objects.ckpt", source["base"], source["codebook"], source["root"] / "bad4")
