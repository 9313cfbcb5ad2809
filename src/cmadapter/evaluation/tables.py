"""Results as text: the one-line summary of a training run, the table of an evaluation, the Markdown table
of several methods and the line that says what the Cross-Modal Adapter gained over zero-shot."""

from __future__ import annotations

from typing import Any

ZERO_SHOT = "zero-shot"  # the frozen backbone, evaluated without training


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


# Direction labels by the kind of item retrieved (results keep the keys "t2v" and "v2t" for both).
DIRECTIONS = {"video": ("t2v", "v2t"), "image": ("t2i", "i2t")}


def format_eval(results: dict) -> str:
    labels = DIRECTIONS[results.get("media", "video")]
    lines = [f"{results['split']}: {results['model']}"]
    for name, block in [("", results["test"])] + [
        (f" [{k}, transductive]", v) for k, v in results["test"].get("postprocessed", {}).items()
    ]:
        for direction, label in zip(("t2v", "v2t"), labels):
            m = block[direction]
            lines.append(
                f"  {label}{name}: R@1 {m['R1']:.1f}  R@5 {m['R5']:.1f}  R@10 {m['R10']:.1f}  "
                f"MdR {m['MdR']:.1f}  MnR {m['MnR']:.1f}"
            )
        if "rsum" in block:
            lines.append(f"  rsum{name}: {block['rsum']:.1f}")
    return "\n".join(lines)


def markdown_table(results: dict[str, dict[str, Any]], media: str = "video") -> str:
    """The comparison as Markdown; for images the directions read T2I/I2T and an rsum column is added."""

    def number(value, fmt="{:.1f}"):
        return "–" if value is None else fmt.format(value)

    forward, backward = ("T2I", "I2T") if media == "image" else ("T2V", "V2T")
    rsum = media == "image"
    head = (
        f"| method | trainable params | % of total | {forward} R@1 | R@5 | R@10 | MnR | {backward} R@1 | R@5 | R@10 "
        f"| MnR {'| rsum ' if rsum else ''}| s/step | time vs full | peak memory (MB) | memory vs full |\n"
        f"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|{'---:|' if rsum else ''}---:|---:|---:|---:|\n"
    )
    rows = []
    for label, r in results.items():
        share = 100.0 * r["trainable_params"] / r["total_params"] if r["total_params"] else None
        t, v = r["t2v"], r["v2t"]
        rows.append(
            f"| {label} | {r['trainable_params']:,} | {number(share, '{:.2f}')} "
            f"| {t['R1']:.1f} | {t['R5']:.1f} | {t['R10']:.1f} | {t['MnR']:.1f} "
            f"| {v['R1']:.1f} | {v['R5']:.1f} | {v['R10']:.1f} | {v['MnR']:.1f} "
            + (f"| {number(r.get('rsum'))} " if rsum else "")
            + f"| {number(r['step_seconds'], '{:.3f}')} | {number(r['time_vs_full'], '{:.2f}×')} "
            f"| {number(r['peak_memory_mb'], '{:.0f}')} | {number(r['memory_vs_full'], '{:.2f}×')} |"
        )
    return head + "\n".join(rows) + "\n"


def gain_line(results: dict[str, dict[str, Any]], media: str = "video") -> str | None:
    """Text→video (text→image) R@1 points the Cross-Modal Adapter gained over zero-shot, when both are in
    ``results``."""
    if "cross-modal" not in results or ZERO_SHOT not in results:
        return None
    points = results["cross-modal"]["t2v"]["R1"] - results[ZERO_SHOT]["t2v"]["R1"]
    return f"Cross-Modal Adapter text→{media} R@1 over zero-shot: {points:+.1f} points."
