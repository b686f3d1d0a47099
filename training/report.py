"""Report of the tiny pipeline: markdown table, JSON, and a bar plot (matplotlib if installed, else PIL)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from autovla_agent.config_io import to_dict

STAGES = (("eval_untrained", "untrained"), ("eval_sft", "after SFT"), ("eval_grpo", "after GRPO"))
METRICS = (
    ("driving_score", "driving score", "{:.2f}"),
    ("route_completion", "route completion %", "{:.1f}"),
    ("collisions", "collisions", "{:d}"),
    ("slow_share", "slow thinking share", "{:.2f}"),
    ("mean_reasoning_tokens", "mean reasoning tokens", "{:.1f}"),
)
COLORS = ((150, 150, 150), (66, 133, 244), (219, 68, 55))


def _rows(state: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(label, state[key]["result"]) for key, label in STAGES if key in state]


def write_plot(path: Path, rows: list[tuple[str, dict[str, Any]]]) -> Path:
    """One bar panel per metric, one bar per model; matplotlib when installed, a PIL drawing otherwise."""
    if importlib.util.find_spec("matplotlib") is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.2))
        for ax, (key, title, _) in zip(axes, METRICS, strict=True):
            ax.bar(
                [r[0].split()[-1] for r in rows],
                [float(r[1][key]) for r in rows],
                color=[tuple(c / 255 for c in col) for col in COLORS[: len(rows)]],
            )
            ax.set_title(title, fontsize=9)
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
    panel_w, panel_h, top, bottom = 220, 260, 30, 50
    image = Image.new("RGB", (panel_w * len(METRICS), panel_h), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for p, (key, title, fmt) in enumerate(METRICS):
        x0 = p * panel_w
        draw.text((x0 + 10, 8), title, fill="black", font=font)
        values = [float(r[1][key]) for r in rows]
        vmax = max(max(values), 1e-9)
        bar_w = (panel_w - 40) // max(len(rows), 1)
        for i, ((label, _), value) in enumerate(zip(rows, values, strict=True)):
            h = int((panel_h - top - bottom) * value / vmax)
            bx = x0 + 20 + i * bar_w
            draw.rectangle([bx, panel_h - bottom - h, bx + bar_w - 8, panel_h - bottom], fill=COLORS[i % 3])
            text = fmt.format(int(value)) if fmt == "{:d}" else fmt.format(value)
            draw.text((bx, panel_h - bottom - h - 12), text, fill="black", font=font)
            draw.text((bx, panel_h - bottom + 4), label.split()[-1], fill="black", font=font)
        draw.line([x0 + panel_w - 1, 0, x0 + panel_w - 1, panel_h], fill=(220, 220, 220))
    image.save(path)
    return path


def write_report(out: Path, state: dict[str, Any], config: Any) -> Path:
    """Write ``report.md``, ``report.json`` and ``report.png`` into ``out``; return the markdown path."""
    rows = _rows(state)
    lines = ["# Tiny AutoVLA pipeline report", ""]
    header = "| model | " + " | ".join(title for _, title, _ in METRICS) + " | fallback share |"
    lines += [header, "|" + "---|" * (len(METRICS) + 2)]
    for label, result in rows:
        cells = [
            fmt.format(int(result[key])) if fmt == "{:d}" else fmt.format(float(result[key])) for key, _, fmt in METRICS
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {result.get('fallback_share', 0.0):.2f} |")
    lines += ["", "Per route (driving score / route completion % / collisions):", ""]
    for label, result in rows:
        routes = ", ".join(
            f"{r['route']}: {r['driving_score']:.1f} / {r['route_completion']:.1f} / {r['collisions']}"
            for r in result.get("routes", [])
        )
        lines.append(f"- {label}: {routes}")
    lines += ["", "| stage | wall time (s) | notes |", "|---|---|---|"]
    for name, entry in state.items():
        if not isinstance(entry, dict):
            continue
        result = entry["result"]
        note = ""
        if name == "collect":
            note = f"{result['samples']} samples"
        elif name == "codebook":
            err = result["errors"].get("heldout", result["errors"]["train"])
            note = f"K={result['num_tokens']}, reconstruction ADE {err['ade_m']:.3f} m (held-out routes)"
        lines.append(f"| {name} | {entry['wall_s']:.0f} | {note} |")
    lines += [f"| total | {state.get('total_wall_s', 0.0):.0f} | |", "", "![metrics](report.png)", ""]
    md = out / "report.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    (out / "report.json").write_text(json.dumps({"state": state, "config": to_dict(config)}, indent=2), "utf-8")
    if rows:
        write_plot(out / "report.png", rows)
    return md
