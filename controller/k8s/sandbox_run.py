"""`netalloc sandbox`: nodes and pods in, allocations shown, everything deleted, leftovers counted."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from controller.k8s.api_emulator import _human_age, evaluate_jsonpath
from controller.k8s.sandbox import Sandbox, SandboxSummary, crd_directory

NODE_TYPES = ("c5.4xlarge", "m5.xlarge")


def printer_columns(crd_file: str, *, wide: bool) -> list[dict[str, Any]]:
    crd = yaml.safe_load((crd_directory() / crd_file).read_text())
    columns: list[dict[str, Any]] = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    return [c for c in columns if wide or not c.get("priority")]


def kubectl_table(
    objects: Sequence[Mapping[str, Any]], crd_file: str, *, title: str, namespaced: bool, wide: bool
) -> Table:
    """The table `kubectl get` prints, from the CRD's additionalPrinterColumns."""
    columns = printer_columns(crd_file, wide=wide)
    table = Table(title=title, box=None, header_style="bold")
    if namespaced:
        table.add_column("NAMESPACE")
    table.add_column("NAME")
    for column in columns:
        table.add_column(column["name"].upper())
    now = datetime.datetime.now(datetime.UTC)
    for obj in objects:
        meta = obj["metadata"]
        row = [meta.get("namespace", "")] if namespaced else []
        row.append(meta["name"])
        for column in columns:
            values = evaluate_jsonpath(obj, column["jsonPath"])
            value = values[0] if values else None
            if column.get("type") == "date" and isinstance(value, str):
                row.append(_human_age(value, now))
            else:
                row.append("" if value is None else str(value))
        table.add_row(*row)
    return table


async def run_sandbox(*, nodes: int, pods: int, output: str, wide: bool = False) -> SandboxSummary:
    console = Console(width=160, stderr=output == "json")
    logging.getLogger("kopf").setLevel(logging.ERROR)  # e.g. "OS signals are ignored" in a thread
    async with Sandbox.running() as sandbox:
        web_group = sandbox.fleet.app_groups[0]
        sandbox.add_security_group_policy("web-sg", "web", [web_group])
        for i in range(nodes):
            sandbox.add_node(f"node-{i}", NODE_TYPES[i % len(NODE_TYPES)])
        await sandbox.wait_for(
            lambda: sum(1 for p in sandbox.pools() if (p.get("status") or {}).get("freeIps")) == nodes,
            timeout=60,
        )
        console.print(
            kubectl_table(
                sorted(sandbox.pools(), key=lambda p: p["metadata"]["name"]),
                "nodenetworkpools.yaml",
                title="kubectl get nnp (pools pre-allocated at registration)",
                namespaced=False,
                wide=False,
            )
        )
        for i in range(pods):
            sandbox.add_pod(f"pod-{i:03d}", f"node-{i % nodes}", app="web" if i % 3 == 0 else "api")
        await sandbox.wait_for(lambda: len(sandbox.allocated()) == pods, timeout=120)
        console.print(
            kubectl_table(
                sorted(sandbox.pnas(), key=lambda p: p["metadata"]["name"]),
                "podnetworkallocations.yaml",
                title="kubectl get pna -A" + (" -o wide" if wide else ""),
                namespaced=True,
                wide=wide,
            )
        )
        for i in range(pods):
            sandbox.delete_pod(f"pod-{i:03d}")
        await sandbox.wait_for(lambda: not sandbox.pnas(), timeout=60)
        console.print(f"all {pods} pods deleted: PodNetworkAllocations left: {len(sandbox.pnas())}")
        branch_pods = len(range(0, pods, 3))

        def cooling() -> int:
            return sum(
                ((p.get("status") or {}).get("branchEnis") or {}).get("coolingDown", 0)
                for p in sandbox.pools()
            )

        await sandbox.wait_for(lambda: cooling() == branch_pods, timeout=30)  # the next periodic reconcile
        console.print(
            kubectl_table(
                sorted(sandbox.pools(), key=lambda p: p["metadata"]["name"]),
                "nodenetworkpools.yaml",
                title=f"kubectl get nnp, pods gone ({cooling()} branch ENIs cooling down for reuse)",
                namespaced=False,
                wide=False,
            )
        )
        for i in range(nodes):
            sandbox.delete_node(f"node-{i}")
        await sandbox.wait_for(lambda: not sandbox.pools(), timeout=60)
        summary = sandbox.summary(pods=pods, released=pods)
    if output == "json":
        sys.stdout.write(json.dumps(summary.model_dump(), indent=2) + "\n")
    else:
        console.print(
            f"nodes deleted: ENIs netalloc still owns: {summary.leaked_enis}; "
            f"requests that wrote a Pod: {summary.pod_writes}; "
            f"PNA creation to Allocated: p50 {summary.p50_allocation_s:.3f}s, "
            f"p99 {summary.p99_allocation_s:.3f}s"
        )
    return summary


def sandbox_main(*, nodes: int, pods: int, output: str, wide: bool = False) -> SandboxSummary:
    return asyncio.run(run_sandbox(nodes=nodes, pods=pods, output=output, wide=wide))
