"""Collection throughput (frames/s) with 1 and 2 worker processes, and bytes per frame on disk.

    python benchmarks/bench_collect.py --episodes 40
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from training.collect import collect_episodes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=40)
    args = parser.parse_args()
    print("| workers | episodes | frames | seconds | frames/s | bytes/frame |")
    print("|---|---|---|---|---|---|")
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            entries = collect_episodes(tmp, args.episodes, seed=123, workers=workers, progress=False)
            seconds = time.perf_counter() - start
            frames = sum(e["length"] + 1 for e in entries)
            size = sum(p.stat().st_size for p in Path(tmp).glob("ep_*.npz"))
            print(f"| {workers} | {args.episodes} | {frames} | {seconds:.1f} | {frames / seconds:.0f} | "
                  f"{size / frames:.0f} |")


if __name__ == "__main__":
    main()
