"""CPU time of ViT-B/32's text tower per query: one query at a time against batches, full context against the
context cut after the longest caption (what ``cmadapter serve`` does with concurrent queries). Random weights.

    OMP_NUM_THREADS=1 python benchmarks/text_batching.py [--repeats 7] [--threads 1]

Prints, per batch size, the median process CPU time of one forward (CPU time, not wall time: on a shared machine
it is the figure other processes do not stretch) and per query, for the full 32-token context and the cut one.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cmadapter import build_model
from cmadapter.bench.serve_load import query
from cmadapter.search.queries import encode_texts


def cpu_ms(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        began = time.process_time()
        run()
        times.append(time.process_time() - began)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backbone", default="ViT-B-32-quickgelu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(args.backbone, None, method=None)
    model.eval()
    print(f"{args.backbone}, {args.threads} thread(s); CPU ms per forward (per query)")
    print("| batch | full context | cut after the longest caption |")
    print("|---:|---:|---:|")
    for batch in (1, 8, 32):
        texts = [query(i) for i in range(batch)]
        with torch.no_grad():
            full = cpu_ms(lambda t=texts: model.encode_text(model.tokenize(t)), args.repeats)
        cut = cpu_ms(lambda t=texts: encode_texts(model, t, "fp32"), args.repeats)
        print(f"| {batch} | {full:.1f} ({full / batch:.1f}) | {cut:.1f} ({cut / batch:.1f}) |")


if __name__ == "__main__":
    main()
