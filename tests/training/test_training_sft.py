import shutil
from pathlib import Path

import pytest
import torch

from autovla_agent.planners.codebook import build_synthetic_codebook
from autovla_agent.policy.configuration import CODEBOOK_FILENAME, ModelConfig, PromptConfig, VLAConfig
from autovla_agent.policy.decoding import DecodeEngine
from autovla_agent.policy.modeling import VLAPlanner, load_vla
from autovla_agent.policy.prompt import build_prompt, encode_prompt
from autovla_agent.training.checkpoint import CheckpointError, load_for_training
from autovla_agent.training.common import load_checked_samples
from autovla_agent.training.config import SFTRunConfig, TrainSettings
from autovla_agent.training.data import SFTCollator, sample_observation, sft_dataset
from autovla_agent.training.sft import autovla_sft_loss, run_sft
from autovla_agent.training.validate import DatasetError

PROMPT = PromptConfig(camera_layout="images", include_target_point=True)


def _train(max_steps=1, save_steps=10, resume="auto", lr=1e-3):
    return TrainSettings(
        max_steps=max_steps,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        learning_rate=lr,
        logging_steps=1,
        save_steps=save_steps,
        gradient_checkpointing=False,
        use_cpu=True,
        resume=resume,
    )


def test_sft_collator_prompt_masked_and_equal_to_runtime_prompt(tiny_model_dir, dataset_dir):
    tm = load_for_training(tiny_model_dir)
    samples = load_checked_samples(dataset_dir, tm.codebook, 10)
    collator = SFTCollator(tm.processor, PROMPT, tm.action_vocab.token_ids)
    batch = collator(list(sft_dataset(samples[:4], dataset_dir)))
    runtime = load_vla(ModelConfig(path=str(tiny_model_dir)))
    engine = DecodeEngine(runtime, VLAConfig().decoding, VLAConfig().thinking, True)
    action_ids = set(tm.action_vocab.token_ids)
    for i, sample in enumerate(samples[:4]):
        # exactly what VLAPlanner.plan feeds for this observation
        runtime_ids = (
            encode_prompt(
                runtime.processor, build_prompt(sample_observation(sample, dataset_dir, PROMPT), PROMPT), PROMPT
            )
            .input_ids[0]
            .tolist()
        )
        row = batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist()
        labels = batch["labels"][i][batch["attention_mask"][i].bool()].tolist()
        n = len(runtime_ids)
        assert row[:n] == runtime_ids
        assert all(v == -100 for v in labels[:n]) and all(v != -100 for v in labels[n:])
        completion = row[n:]
        if not sample.is_slow:
            assert completion[: len(engine.fast_ids)] == engine.fast_ids  # the scaffold the runtime feeds
        else:
            assert completion[: len(engine.slow_ids)] == engine.slow_ids
            assert batch["sample_weight"][i] == 40.0
        actions = [t for t in completion if t in action_ids]
        assert [tm.action_vocab.token_ids.index(t) for t in actions] == list(sample.action_tokens)
        assert int(batch["action_mask"][i].sum()) == 10
    assert batch["mm_token_type_ids"].sum() > 0 and "pixel_values" in batch and "image_grid_thw" in batch
    runtime_pad = batch["input_ids"] == tm.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert torch.equal(runtime_pad.long(), batch["mm_token_type_ids"])


def test_sft_loss_weights_each_sample_not_the_batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[1, 2, 3, -100, -100], [4, 5, 6, 1, 2]])
    actions = torch.tensor([[False, True, True, False, False], [False, False, True, True, False]])
    loss_a, parts = autovla_sft_loss(logits, labels, actions, torch.tensor([40.0, 1.0]), 1.0)
    token_w = torch.tensor([[40.0] * 5, [1.0] * 5])
    assert autovla_sft_loss(logits, labels, actions, token_w, 1.0)[0].item() == pytest.approx(loss_a.item())
    loss_b, _ = autovla_sft_loss(logits, labels, actions, torch.tensor([1.0, 40.0]), 1.0)
    per = parts["lm_loss"] + parts["action_loss"]
    assert loss_a.item() == pytest.approx(((40 * per[0] + per[1]) / 2).item(), rel=1e-5)
    assert loss_b.item() == pytest.approx(((per[0] + 40 * per[1]) / 2).item(), rel=1e-5)


def test_sft_one_step_changes_parameters_finite_loss_and_runtime_loads(tiny_model_dir, dataset_dir, tmp_path):
    before = load_for_training(tiny_model_dir).model.state_dict()
    out = run_sft(
        SFTRunConfig(
            model_path=str(tiny_model_dir),
            output_dir=str(tmp_path / "sft"),
            train_data=str(dataset_dir),
            prompt=PROMPT,
            train=_train(),
        )
    )
    after = load_for_training(out).model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("language_model" in k for k in changed) and any("embed_tokens" in k for k in changed)
    state = (tmp_path / "sft" / "versions.json").read_text()
    assert "transformers" in state and (out / "training_config.yaml").is_file()
    assert (out / (CODEBOOK_FILENAME + ".npz")).is_file()
    planner = VLAPlanner(VLAConfig(model=ModelConfig(path=str(out)), prompt=PROMPT))
    samples = load_checked_samples(dataset_dir, load_for_training(out).codebook, 10)
    plan = planner.plan(sample_observation(samples[0], dataset_dir, PROMPT))
    assert plan.poses_ego.shape == (10, 3) and torch.isfinite(torch.as_tensor(plan.poses_ego)).all()


def test_sft_resume_keeps_finished_steps(tiny_model_dir, dataset_dir, tmp_path):
    out = tmp_path / "sft"
    run_sft(
        SFTRunConfig(
            model_path=str(tiny_model_dir),
            output_dir=str(out),
            train_data=str(dataset_dir),
            prompt=PROMPT,
            train=_train(max_steps=2, save_steps=1),
        )
    )
    shutil.rmtree(out / "checkpoint-2")  # as if the run died after step 1 was saved
    shutil.rmtree(out / "model")
    step1 = load_for_training(out / "checkpoint-1").model.state_dict()
    run_sft(
        SFTRunConfig(
            model_path=str(tiny_model_dir),
            output_dir=str(out),
            train_data=str(dataset_dir),
            prompt=PROMPT,
            train=_train(max_steps=3, save_steps=1),
        )
    )
    import json

    history = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    assert [e["step"] for e in history if "loss" in e] == [1, 2, 3]
    first = json.loads((out / "checkpoint-1" / "trainer_state.json").read_text())["log_history"][0]["loss"]
    assert history[0]["loss"] == first  # step 1 was kept, not redone
    assert any(not torch.equal(v, load_for_training(out / "model").model.state_dict()[k]) for k, v in step1.items())


def test_bad_checkpoint_and_codebook_stop_before_training(tiny_model_dir, dataset_dir, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        run_sft(SFTRunConfig(model_path=str(corrupt), output_dir=str(tmp_path / "o1"), train_data=str(dataset_dir)))
    mismatch = tmp_path / "mismatch"
    shutil.copytree(tiny_model_dir, mismatch)
    build_synthetic_codebook(200, 32).save(mismatch / CODEBOOK_FILENAME)
    with pytest.raises(CheckpointError, match="action tokens"):
        run_sft(SFTRunConfig(model_path=str(mismatch), output_dir=str(tmp_path / "o2"), train_data=str(dataset_dir)))
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_bad_dataset_stops_before_training(tiny_model_dir, dataset_dir, tmp_path):
    (dataset_dir / "images/front/0002_1.png").unlink()
    with pytest.raises(DatasetError, match="row 3"):
        run_sft(
            SFTRunConfig(
                model_path=str(tiny_model_dir),
                output_dir=str(tmp_path / "o"),
                train_data=str(dataset_dir),
                prompt=PROMPT,
            )
        )
    assert not Path(tmp_path / "o").exists()


def test_sft_collator_mode_token_weight_neutral(tiny_model_dir, dataset_dir):
    tm = load_for_training(tiny_model_dir)
    samples = load_checked_samples(dataset_dir, tm.codebook, 10)
    slow = [s for s in samples if s.is_slow][:1] + [s for s in samples if not s.is_slow][:1]
    rows = list(sft_dataset(slow, dataset_dir))
    batch = SFTCollator(tm.processor, PROMPT, tm.action_vocab.token_ids)(rows)
    weighted = SFTCollator(tm.processor, PROMPT, tm.action_vocab.token_ids, neutral_mode_token=False)(rows)
    supervised = batch["labels"][0] != -100
    assert sorted(set(batch["token_weight"][0][supervised].tolist())) == [1.0, 40.0]
    assert int((batch["token_weight"][0][supervised] == 1.0).sum()) == 1  # only the mode choice
    assert set(weighted["token_weight"][0][supervised].tolist()) == {40.0}
    assert set(batch["token_weight"][1][batch["labels"][1] != -100].tolist()) == {1.0}
