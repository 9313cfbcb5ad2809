"""Results as text: the one-line summary of a training run and the table of an evaluation."""

from __future__ import annotations

from typing import Any


def summary_line(results: dict[str, Any]) -> str:
    eff = results["efficiency"]
    text = f"{results['run']}: {results['method']['method']} {eff['trainable_params'] / 1e6:.2f}M trainable"
    if results["test"] is not None:
        t, v = results["test"]["t2v"], results["test"]["v2t"]
        text += (
            f" | test t2v R@1 {t['R1']:.1f} R@5 {t['R5']:.1f} R@10 {t['R10']:.1f} MnR {t['MnR']:.1f}"
            f" | v2t R@1 {v['R1']:.1f} R@5 {v['R5']:.1f} R@10 {v['R10']:.1f} MnR {v['MnR']:.1f}"
        )
    text += (
        f" | {eff['train_seconds']:.0f} s, {eff['step_seconds_median']:.2f} s/step, peak {eff['peak_memory_mb']:.0f} MB"
    )
    return text


def format_eval(results: dict) -> str:
    lines = [f"{results['split']}: {results['model']}"]
    for name, block in [("", results["test"])] + [
        (f" [{k}, transductive]", v) for k, v in results["test"].get("postprocessed", {}).items()
    ]:
        for direction in ("t2v", "v2t"):
            m = block[direction]
            lines.append(
                f"  {direction}{name}: R@1 {m['R1']:.1f}  R@5 {m['R5']:.1f}  R@10 {m['R10']:.1f}  "
                f"MdR {m['MdR']:.1f}  MnR {m['MnR']:.1f}"
            )
    return "\n".join(lines)
