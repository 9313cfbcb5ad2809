"""`cmadapter bench index --parts precision,skip`: does a cheaper way of indexing change what search finds?

The same videos are indexed the plain way (fp32, every frame encoded) and a cheaper way (bf16; or frames like
the last encoded one skipped at ``--skip-similar`` levels), with the same adapters, and compared: the cosine
of every frame's feature with its plain one (min, 1st percentile, mean), the frames skipped, and text->video
R@1 of each index over captions whose video is known (a TSV of ``video<TAB>caption``, the video named by its
file's stem). A cheaper way is a default only where it agrees (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import numpy as np

from ..search.api import VideoIndex
from ..search.build import BuildOptions, build_index
from ..search.store import IndexStore
from .random_weights import save_random_weights


def read_captions(path: str | Path) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [(row[0], row[1]) for row in csv.reader(f, delimiter="\t") if len(row) >= 2]


def agreement(
    videos: list[str | Path],
    captions: list[tuple[str, str]],
    variants: dict[str, BuildOptions],
    *,
    backbone: str | None,
    pretrained: str | None,
    adapters: dict[str, str],
    workdir: str | None = None,
) -> dict:
    """Each of ``variants`` (name -> options) against the first (the plain way)."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix="bench-variants-") as tmp:
        if pretrained is None:  # random weights: one draw for every variant (each build would make its own)
            pretrained, backbone = str(save_random_weights(backbone, Path(tmp) / "random-weights.pt")), None
        built, skipped = {}, {}
        for name, options in variants.items():
            out = Path(tmp) / name
            report = build_index(
                videos,
                out,
                backbone=backbone,
                pretrained=pretrained,
                adapters=adapters,
                zero_shot=True,
                options=options,
            )
            built[name], skipped[name] = out, report.skipped_frames
        plain = next(iter(built))
        rows = []
        for name, out in built.items():
            cosines = _frame_cosines(built[plain], out)
            recall = _recall_at_1(out, captions)
            for adapter, c in cosines.items():
                rows.append(
                    {
                        "variant": name,
                        "adapter": adapter,
                        "frames": len(c),
                        "skipped": skipped[name],
                        "cosine_min": round(float(c.min()), 5),
                        "cosine_p1": round(float(np.percentile(c, 1)), 5),
                        "cosine_mean": round(float(c.mean()), 6),
                        "t2v_R1": recall[adapter],
                    }
                )
    return {"rows": rows, "captions": len(captions), "plain": plain}


def _frame_cosines(first: Path, second: Path) -> dict[str, np.ndarray]:
    a, b = IndexStore(first, readonly=True), IndexStore(second, readonly=True)
    try:
        dim = a.get_meta("dim")
        files_b = {path: row.id for path, row in b.files().items()}
        out: dict[str, list[np.ndarray]] = {}
        for path, row in a.files().items():
            for adapter in a.adapters():
                x, y = a.file_frames(row.id, adapter, dim), b.file_frames(files_b[path], adapter, dim)
                x, y = x.astype(np.float32), y.astype(np.float32)
                cos = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
                out.setdefault(adapter, []).append(cos)
        return {adapter: np.concatenate(parts) for adapter, parts in out.items()}
    finally:
        a.close()
        b.close()


def _recall_at_1(index_folder: Path, captions: list[tuple[str, str]]) -> dict[str, float]:
    with VideoIndex.open(index_folder) as index:
        recall = {}
        for adapter in index.adapters:
            hits = 0
            for video, caption in captions:
                top = index.search(caption, k=1, adapter=adapter).results
                hits += bool(top) and Path(top[0].best.video).stem == video
            recall[adapter] = round(100.0 * hits / max(1, len(captions)), 2)
        return recall


def format_agreement(result: dict) -> str:
    lines = [
        f"against {result['plain']}, {result['captions']} captions:",
        "| variant | adapter | frames | skipped | cosine min | cosine 1st pct | cosine mean | T2V R@1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['variant']} | {r['adapter']} | {r['frames']} | {r['skipped']} | {r['cosine_min']} | {r['cosine_p1']} "
        f"| {r['cosine_mean']} | {r['t2v_R1']} |"
        for r in result["rows"]
    ]
    return "\n".join(lines)
