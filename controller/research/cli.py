"""`netalloc compare`: hook `compare_command` into the main app with
`app.command("compare")(compare_command)`; `app` here runs it standalone
(`python -m controller.research.cli compare ...`)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from controller.k8s.reconcilers.context import ControllerConfig
from controller.research.scenarios import (
    SCENARIO_DESCRIPTIONS,
    SHARED_ENI_SCENARIOS,
    ScenarioName,
    shared_eni_refusal,
)

SCENARIO_HELP = "; ".join(f"{name.value}: {text}" for name, text in SCENARIO_DESCRIPTIONS.items())
SHARED_ENI_HELP = (
    "crd side with SharedENI (SHARED_ENI_FOR_POD_SG, no trunk: every SGP pod on its group set's shared "
    "ENI), plus a branch-ENI crd run (crd-branch) beside it; for "
    + ", ".join(s.value for s in SHARED_ENI_SCENARIOS if s is not ScenarioName.SHARED_ENI_FALLBACK)
    + f" (always on in {ScenarioName.SHARED_ENI_FALLBACK.value})"
)
USAGE_ERROR = 2  # click's exit code for a bad option


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
        bool, typer.Option("--parallel/--serial", help="run each approach in a process of its own")
    ] = True,
    shared_eni: Annotated[bool, typer.Option("--shared-eni", help=SHARED_ENI_HELP)] = False,
    crd_k8s_client_qps: Annotated[
        float | None,
        typer.Option(
            "--crd-k8s-client-qps",
            min=0.001,
            help="give netalloc's runtime a client-side Kubernetes limit (KUBE_CLIENT_QPS); default: none, "
            "as netalloc ships. 20 is RC's",
        ),
    ] = None,
    crd_k8s_client_burst: Annotated[
        int, typer.Option("--crd-k8s-client-burst", min=1, help="KUBE_CLIENT_BURST with --crd-k8s-client-qps")
    ] = ControllerConfig.model_fields["kube_client_burst"].default,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="write results.json, performance.json, report.md and PNG plots here"),
    ] = None,
) -> None:
    """Simulate the annotation baseline (AWS's resource controller) and netalloc through one scenario."""
    from controller.research.compare import run_comparison
    from controller.research.report import render_table, summary_object, write_outputs

    if shared_eni and scenario not in SHARED_ENI_SCENARIOS:
        # Checked before any run starts, in plain text (no traceback from the parameters' validator).
        typer.echo(f"Error: {shared_eni_refusal(scenario)}", err=True)
        raise typer.Exit(USAGE_ERROR)
    overrides: dict[str, Any] = {}
    if shared_eni:  # otherwise the scenario's own default (shared-eni-fallback has it on)
        overrides["crd_shared_eni"] = True
    if crd_k8s_client_qps is not None:
        overrides |= {"crd_k8s_client_qps": crd_k8s_client_qps, "crd_k8s_client_burst": crd_k8s_client_burst}
    result, performance = run_comparison(scenario, seed=seed, scale=scale, parallel=parallel, **overrides)
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
