"""The runtime fault campaign, any number of seeded schedules (make test runs a fixed sample of 40).

Prints schedules run, violations with the seed of each (rerun one with --schedules 1 --first-seed S),
and the slowest recovery after the faults stopped. `--output json` has at least `schedules` and
`violations`. `--plant drop-records` (or keep-orphans, trust-cache) plants a known bug to show the
campaign catches it.

Run: `.venv/bin/python benchmarks/fault_campaign.py --schedules 500 --output json`
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from controller.k8s.fault_campaign import CampaignSettings, ScheduleResult, run_campaign


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--schedules", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1, help="campaign seed: schedule i gets seed*100003+i")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.add_argument("--plant", default="", help="a bug to plant: drop-records, keep-orphans, trust-cache")
    parser.add_argument("--progress", action="store_true", help="a line per schedule on stderr")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)

    def progress(result: ScheduleResult) -> None:
        if args.progress:
            mark = "ok" if not result.violations else f"{len(result.violations)} violation(s)"
            print(
                f"seed {result.seed}: {mark} in {result.elapsed_s:.1f}s, {len(result.steps)} steps",
                file=sys.stderr,
            )

    result = run_campaign(
        args.schedules, seed=args.seed, settings=CampaignSettings(planted=args.plant), on_result=progress
    )
    if args.output == "json":
        sys.stdout.write(json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
    else:
        print(f"schedules: {result.schedules}")
        print(f"violations: {len(result.violations)} in {len(result.failed_seeds)} schedule(s)")
        for violation in result.violations[:50]:
            print(f"  seed {violation.seed} step {violation.step}: {violation.invariant}: {violation.detail}")
        print(f"slowest recovery: {result.slowest_recovery_s:.2f}s (seed {result.slowest_recovery_seed})")
        print(f"elapsed: {result.elapsed_s:.0f}s; steps: {result.steps_by_kind}")
        print(f"allocated at the end of the schedules, by mode: {result.allocated_by_mode}")
    sys.stdout.flush()
    os._exit(1 if result.violations else 0)  # killed controllers' loops are abandoned, not shut down


if __name__ == "__main__":
    main()
