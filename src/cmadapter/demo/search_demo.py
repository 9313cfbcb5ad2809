"""The demo's last stage: index the test videos with the trained adapter (and zero-shot), search them.

Every test caption is searched over the index; its own video ranked first counts as a hit, which gives
the index's text->video R@1 to set beside ``eval``'s (same model, same frames: the same ranking, since
a demo video is one segment and stage 2 re-ranks every candidate exactly).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from ..evaluation.tables import ZERO_SHOT
from ..search.api import VideoIndex
from ..search.build import BuildOptions, build_index
from .synthetic import SyntheticDataset

log = logging.getLogger(__name__)

EXAMPLES = 2


def index_and_search(
    data: SyntheticDataset, weights: Path, adapter: Path | None, out: Path, variant: str, *, progress: bool = True
) -> dict[str, Any]:
    """Build (or update) ``out`` from the test videos, then search every test caption with each adapter.

    The index belongs to the demo variant and seed (``variant``, e.g. "default/seed42") that built it last;
    another (other videos, another backbone) starts it afresh."""
    stamp = out / "demo-variant.txt"
    if out.exists() and (not stamp.is_file() or stamp.read_text() != variant):
        shutil.rmtree(out)
    test = data.split("test")
    frames = data.config.objects_per_video
    report = build_index(
        [data.video_path(v.video_id) for v in test],
        out,
        pretrained=str(weights),
        adapters={"cross-modal": adapter} if adapter is not None else {},
        zero_shot=True,
        options=BuildOptions(fps=1.0, max_frames=frames, precision="fp32", progress=progress),  # as the demo evaluates
    )
    stamp.write_text(variant)
    recall: dict[str, float] = {}
    examples = []
    with VideoIndex.open(out) as index:
        for name in index.adapters:
            hits = 0
            for spec in test:
                top = index.search(spec.captions[0], k=1, adapter=name).results
                hits += bool(top) and Path(top[0].best.video).stem == spec.video_id
            recall[name] = 100.0 * hits / len(test)
        default = "cross-modal" if "cross-modal" in index.adapters else ZERO_SHOT
        for spec in test[:EXAMPLES]:
            found = index.search(spec.captions[0], k=3, adapter=default)
            examples.append({"query": spec.captions[0], "expected": spec.video_id, **found.to_dict()})
    return {
        "index": str(out),
        "files": report.files,
        "segments": report.segments,
        "t2v_R1": recall,
        "examples": examples,
        "commands": [
            f'cmadapter search {out} "{test[0].captions[0]}" -k 5',
            f'cmadapter search {out} "{test[0].captions[0]}" --adapter zero-shot --json',
            f"cmadapter serve {out}",
        ],
    }
