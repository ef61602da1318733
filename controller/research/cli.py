"""`netalloc compare`: hook `compare_command` into the main app with
`app.command("compare")(compare_command)`; `app` here runs it standalone
(`python -m controller.research.cli compare ...`)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from controller.research.scenarios import SCENARIO_DESCRIPTIONS, ScenarioName

SCENARIO_HELP = "; ".join(f"{name.value}: {text}" for name, text in SCENARIO_DESCRIPTIONS.items())


class CompareOutput(StrEnum):
    TABLE = "table"
    JSON = "json"


def compare_command(
    scenario: Annotated[ScenarioName, typer.Option("--scenario", help=SCENARIO_HELP)] = (
        ScenarioName.BATCH_SCALE_UP
    ),
    seed: Annotated[
        int, typer.Option("--seed", help="seed of every random draw; same seed, same results.json")
    ] = 1,
    scale: Annotated[float, typer.Option("--scale", min=0.001, help="multiplies nodes and pods")] = 1.0,
    output: Annotated[CompareOutput, typer.Option("--output", help="table on stdout, or one JSON object")] = (
        CompareOutput.TABLE
    ),
    parallel: Annotated[
        bool, typer.Option("--parallel/--serial", help="run the two approaches in two processes")
    ] = True,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="write results.json, performance.json, report.md and PNG plots here"),
    ] = None,
) -> None:
    """Simulate the annotation baseline (AWS's resource controller) and netalloc through one scenario."""
    from controller.research.compare import run_comparison
    from controller.research.report import render_table, summary_object, write_outputs

    result, performance = run_comparison(scenario, seed=seed, scale=scale, parallel=parallel)
    if output is CompareOutput.JSON:
        sys.stdout.write(json.dumps(summary_object(result, performance), ensure_ascii=False) + "\n")
    else:
        typer.echo(render_table(result, performance))
    if out is not None:
        written = write_outputs(result, performance, out)
        typer.echo("wrote " + ", ".join(str(p) for p in written), err=True)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def research() -> None:
    """netalloc research tools."""


app.command("compare")(compare_command)


if __name__ == "__main__":
    app()
