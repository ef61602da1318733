"""Scale check for `netalloc compare`: batch-scale-up with 1,000 nodes × 30 pods (30,000 SGP pods).

Runs both approaches (one process each, as `netalloc compare` does by default) and prints the
simulation's wall time and peak memory, plus the headline numbers. The target is under 60 s wall
on 2 cores. Usage: .venv/bin/python benchmarks/compare_scale.py [--nodes N] [--pods-per-node K] [--serial]
"""

from __future__ import annotations

import argparse
import sys
import time

from controller.research.compare import run_comparison
from controller.research.scenarios import ScenarioName

TARGET_WALL_S = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serial", action="store_true", help="run the approaches one after the other")
    args = parser.parse_args()
    started = time.perf_counter()
    result, performance = run_comparison(
        ScenarioName.BATCH_SCALE_UP,
        seed=args.seed,
        parallel=not args.serial,
        nodes=args.nodes,
        pods_per_node=args.pods_per_node,
    )
    wall = time.perf_counter() - started
    print(f"batch-scale-up: {args.nodes} nodes × {args.pods_per_node} pods, seed {args.seed}")
    for name, run in result.runs.items():
        m = run.metrics
        print(
            f"  {name:10s} ready {m.pods_ready}/{m.pods_total}  stuck {m.pods_stuck}  "
            f"p50 {m.p50_ready_s} s  p99 {m.p99_ready_s} s  simulated {m.simulated_end_s} s  "
            f"EC2 calls {m.ec2_calls_total} (throttled {m.ec2_throttled_total})  "
            f"wall {performance.wall_s[name]:.1f} s"
        )
    print(
        f"wall time {wall:.1f} s (target < {TARGET_WALL_S:g} s); "
        f"peak memory (max RSS) {performance.peak_rss_mb:.0f} MiB"
    )
    return 0 if wall < TARGET_WALL_S else 1


if __name__ == "__main__":
    sys.exit(main())
