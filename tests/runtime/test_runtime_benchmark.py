"""The latency benchmark CLI on the tiny model (CPU): stages, both paths, JSON document."""

from __future__ import annotations

import json
import logging

from autovla_agent.benchmarks.vla import RESULT_FIELDS, STAGES, main


def test_benchmark_cli_tiny_model_writes_breakdown_json(tiny_model_dir, tmp_path, caplog):
    out = tmp_path / "bench.json"
    args = [
        "--model",
        str(tiny_model_dir),
        "--steps",
        "1",
        "--warmup",
        "0",
        "--device",
        "cpu",
        "--views",
        "front",
        "--num-frames",
        "2",
        "--image-height",
        "90",
        "--image-width",
        "160",
        "--reasoning-tokens",
        "3",
        "--json",
        str(out),
    ]
    with caplog.at_level(logging.INFO, logger="autovla_agent.benchmarks.vla"):
        assert main(args) == 0
    assert "median stage times in ms" in caplog.text and "speed-up of the total" in caplog.text
    document = json.loads(out.read_text())
    assert document["schema"] == "autovla-benchmark/1"
    assert {(r["layout"], r["mode"], r["path"]) for r in document["results"]} == {
        (layout, mode, path)
        for layout in ("video", "images")
        for mode in ("fast", "slow")
        for path in ("generate", "optimized")
    }
    for result in document["results"]:
        assert set(RESULT_FIELDS) - {"vision_cache_hit_rate", "reasoning_tokens"} <= set(result) | {"fields"}
        assert set(result["median_s"]) == set(STAGES)
        assert all(v >= 0 for v in result["median_s"].values()) and len(result["total_samples_s"]) == 1
        stages = sum(result["median_s"][s] for s in STAGES if s != "total_s")
        assert stages <= result["median_s"]["total_s"] * 1.5 + 1e-3  # medians of parts need not add up exactly
        if result["path"] == "optimized":
            assert result["statuses"].get("fallback", 0) == 0 and 0.0 <= result["vision_cache_hit_rate"] <= 1.0
    slow = next(r for r in document["results"] if r["mode"] == "slow" and r["path"] == "optimized")
    fast = next(r for r in document["results"] if r["mode"] == "fast" and r["path"] == "optimized")
    assert slow["reasoning_tokens"] == 3 and slow["median_s"]["reasoning_s"] > fast["median_s"]["reasoning_s"]
    assert set(document["speedup_total"]) == {"video/fast", "video/slow", "images/fast", "images/slow"}
    assert document["model"]["num_action_tokens"] == 2048 and document["environment"]["device"] == "cpu"
