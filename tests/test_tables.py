"""Results as text: one Markdown table and one gain line for the CLI, compare and the demo."""

from __future__ import annotations

from cmadapter.evaluation.tables import ZERO_SHOT, gain_line, markdown_table


def _row(method: str, r1: float, trainable: int, step: float | None) -> dict:
    recalls = {"R1": r1, "R5": 50.0, "R10": 75.0, "MnR": 3.25}
    return {
        "method": method,
        "trainable_params": trainable,
        "total_params": 1000,
        "t2v": recalls,
        "v2t": recalls,
        "step_seconds": step,
        "time_vs_full": None if step is None else step / 0.2,
        "peak_memory_mb": None,
        "memory_vs_full": None,
    }


def test_the_gain_line_needs_both_zero_shot_and_the_cross_modal_adapter():
    results = {ZERO_SHOT: _row(ZERO_SHOT, 18.25, 0, None), "cross-modal": _row("cross-modal", 48.5, 5, 0.1)}
    assert gain_line(results) == "Cross-Modal Adapter text→video R@1 over zero-shot: +30.2 points."
    assert gain_line({"cross-modal": results["cross-modal"]}) is None
    assert gain_line({ZERO_SHOT: results[ZERO_SHOT]}) is None


def test_the_markdown_table_has_a_row_per_run_with_missing_figures_as_dashes():
    table = markdown_table({ZERO_SHOT: _row(ZERO_SHOT, 18.25, 0, None), "full r=2": _row("full", 60.0, 1000, 0.2)})
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| method | trainable params |")
    assert lines[2].startswith(f"| {ZERO_SHOT} | 0 | 0.00 | 18.2 |") and "| – | – |" in lines[2]
    assert lines[3].startswith("| full r=2 | 1,000 | 100.00 | 60.0 |") and "| 0.200 | 1.00× |" in lines[3]
