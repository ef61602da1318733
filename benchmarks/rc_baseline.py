"""Benchmark: the corrected annotation baseline (RC) under the sweeps its figures depend on.

- The Node registration → Ready gap (field notes §7): 0, 10 (the default) and 30 s, at RC's release-gate
  size (batch-scale-up, 1,000 SGP pods on 50 nodes): the release-gate figure and p50/p99 for each, and
  the crd side's too, since the gap is netalloc's head start.
- RC's SDK retry token bucket on and off (aws-sdk-go-v2 standard retryer): how much the figure rests on it.

Prints figures; asserts nothing. Run: `.venv/bin/python benchmarks/rc_baseline.py [--seed 1]`.
"""

from __future__ import annotations

import argparse
import time

from controller.research.baseline_params import BaselineParams
from controller.research.compare import run_comparison
from controller.research.scenarios import ScenarioName

GAPS_S = (0.0, 10.0, 30.0)


def _line(label: str, run: object) -> str:
    from controller.research.compare import ApproachRun

    assert isinstance(run, ApproachRun)
    m = run.metrics
    gate = "—" if run.release_gate_p100_s is None else f"{run.release_gate_p100_s:g} s"
    return (
        f"{label:<34} release_gate_p100_s {gate:>10}  p50 {m.p50_ready_s} s  p99 {m.p99_ready_s} s  "
        f"floor_p99 {m.floor_p99_s} s  ratio {m.ratio_to_floor}  throttled {m.ec2_throttled_total}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"batch-scale-up, seed {args.seed}: RC's release gate is 1000 pods Ready within 300 s")
    for gap in GAPS_S:
        result, _ = run_comparison(
            ScenarioName.BATCH_SCALE_UP, seed=args.seed, parallel=True, node_ready_gap_s=gap
        )
        for name, run in result.runs.items():
            print(_line(f"gap {gap:>4g} s  {name}", run))
    for quota in (True, False):
        result, _ = run_comparison(
            ScenarioName.BATCH_SCALE_UP,
            seed=args.seed,
            approaches=("annotation",),
            baseline=BaselineParams(sdk_retry_quota=quota),
        )
        print(_line(f"retry token bucket {'on ' if quota else 'off'}  annotation", result.runs["annotation"]))
    print(f"wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
