"""Presenting a comparison: the stdout table, the JSON object, and the `--out DIR` files.

`--out DIR` writes:
- results.json: the full `ComparisonResult` (deterministic: byte-identical for the same seed and
  parameters);
- performance.json: the simulation's own wall time and peak memory (not deterministic, kept apart);
- report.md: the table, the targets, the parameters (scenario, RC's from the field notes, and the
  marked assumptions), the method, and the plots;
- cdf_time_to_ready.png, ec2_calls_over_time.png, pods_ready_over_time.png.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from controller.research.compare import ComparisonResult, RunPerformance
from controller.research.metrics import ApproachMetrics
from controller.research.scenarios import SCENARIO_DESCRIPTIONS, parameter_rows

BULKY_FIELDS = {"ready_times_s", "ec2_series", "ready_series", "stuck_pods"}
PLOT_FILES = ("cdf_time_to_ready.png", "ec2_calls_over_time.png", "pods_ready_over_time.png")
MAX_REASON_CHARS = 56  # table cells; the full reason is in results.json and report.md

logger = logging.getLogger("netalloc.research")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def _short(text: str, limit: int = MAX_REASON_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table_rows(result: ComparisonResult, *, short: bool = True) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per metric, one column per approach. `short` cuts long stuck reasons
    for terminals; the report (and results.json) keep them whole."""
    names = list(result.runs)
    metrics: list[ApproachMetrics] = [result.runs[n].metrics for n in names]
    rows: list[list[str]] = []

    def add(label: str, values: list[str]) -> None:
        rows.append([label, *values])

    add("pods", [str(m.pods_total) for m in metrics])
    add("pods network-ready", [str(m.pods_ready) for m in metrics])
    add("pods stuck at the end", [str(m.pods_stuck) for m in metrics])
    reasons = sorted({r for m in metrics for r in m.stuck_reasons})
    for reason in reasons:
        label = _short(reason) if short else reason
        add(f"  stuck: {label}", [str(m.stuck_reasons.get(reason, 0)) for m in metrics])
    for label, attr in (
        ("p50", "p50_ready_s"),
        ("p95", "p95_ready_s"),
        ("p99", "p99_ready_s"),
        ("max", "max_ready_s"),
    ):
        add(f"time to network-ready {label} (s, stuck = horizon)", [_fmt(getattr(m, attr)) for m in metrics])
    add("  p99 over ready pods only (s)", [_fmt(m.ready_only_p99_s) for m in metrics])
    add("EC2 floor p99 on the approach's path (s)", [_fmt(m.floor_p99_s) for m in metrics])
    add("  ratio p99 / floor", [_fmt(m.ratio_to_floor) for m in metrics])
    add("pods Ready (containers started, readiness passed)", [str(m.pods_pod_ready) for m in metrics])
    add(
        "time to pod Ready p50 / max (s, stuck = horizon)",
        [f"{_fmt(m.pod_ready_p50_s)} / {_fmt(m.pod_ready_p100_s)}" for m in metrics],
    )
    runs = [result.runs[n] for n in names]
    if any(r.release_gate_p100_s is not None for r in runs):
        add(
            "release gate: last of 1,000 pods Ready (s) vs RC's",
            [f"{_fmt(r.release_gate_p100_s)} vs {_fmt(r.release_gate_target_s)}" for r in runs],
        )
    add("branch ENI cool-down (s)", [_fmt(r.cooldown_s) for r in runs])
    add("EC2 attempts", [str(m.ec2_attempts_total) for m in metrics])
    add("  successes", [str(m.ec2_successes_total) for m in metrics])
    add("  throttled", [str(m.ec2_throttled_total) for m in metrics])
    add("  other errors", [str(m.ec2_errors_total) for m in metrics])
    add("EC2 mutating attempts", [str(m.ec2_mutating_calls) for m in metrics])
    add("  per pod start", [_fmt(m.mutating_calls_per_pod_start) for m in metrics])
    actions = sorted({a for m in metrics for a in m.ec2_calls})
    for action in actions:
        add(f"  {action}", [str(m.ec2_calls.get(action, 0)) for m in metrics])
    throttled_actions = sorted({a for m in metrics for a in m.ec2_throttled})
    for action in throttled_actions:
        add(f"  throttled {action}", [str(m.ec2_throttled.get(action, 0)) for m in metrics])
    add("Kubernetes writes to Pod objects", [str(m.pod_writes) for m in metrics])
    add("Kubernetes writes (all)", [str(m.k8s_writes) for m in metrics])
    kinds = sorted({k for m in metrics for k in m.k8s_writes_by_kind})
    for kind in kinds:
        add(f"  {kind}", [str(m.k8s_writes_by_kind.get(kind, 0)) for m in metrics])
    add("Kubernetes objects created", [str(m.objects_created) for m in metrics])
    add("HTTP 409 Conflict", [str(m.conflicts_409) for m in metrics])
    add("HTTP 422 Invalid", [str(m.invalid_422) for m in metrics])
    add("ENIs created / deleted", [f"{m.enis.created} / {m.enis.deleted}" for m in metrics])
    add(
        "ENIs in use / pooled / leaked",
        [f"{m.enis.in_use} / {m.enis.pooled} / {m.enis.leaked}" for m in metrics],
    )
    add("simulated time to settle (s)", [_fmt(m.simulated_end_s) for m in metrics])
    extra_keys = sorted({k for m in metrics for k in m.extra})
    for key in extra_keys:
        add(f"  {key}", [str(m.extra.get(key, "—")) for m in metrics])
    return ["metric", *names], rows


def render_table(result: ComparisonResult, performance: RunPerformance | None = None) -> str:
    header, rows = table_rows(result)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        f"netalloc compare — scenario {result.scenario.value}, seed {result.seed}, "
        f"scale {result.params.scale:g}",
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.append("")
    lines += shared_eni_lines(result)
    lines += ec2_client_lines(result)
    for check in result.targets:
        status = {True: "MET", False: "NOT MET", None: "n/a"}[check.met]
        lines.append(f"[{status}] {check.target}: {check.measured}")
    if performance is not None:
        lines.append(_performance_line(performance))
    return "\n".join(lines)


def _per(value: float | None, unit: str) -> str:
    return "—" if value is None else f"{value:g} {unit}"


def shared_eni_lines(result: ComparisonResult) -> list[str]:
    """The shared/branch/baseline line for the terminal: one line per run, then a blank one."""
    comparison = result.shared_eni_comparison
    if comparison is None:
        return []
    limit = "no limit" if comparison.k8s_client_qps is None else f"{comparison.k8s_client_qps:g} QPS"
    lines = [
        f"shared ENI vs branch ENI vs baseline ({comparison.nodes} nodes; Kubernetes client: crd {limit}, "
        f"annotation {comparison.baseline_k8s_client_qps:g} QPS):"
    ]
    for row in comparison.rows:
        writes = f"; {row.k8s_writes} Kubernetes writes"
        if row.pna_writes is not None:
            writes += f" ({row.pna_writes} PNA)"
        if row.k8s_write_floor_s is not None:
            writes += f", {row.k8s_write_floor_s:g} s at its client's limit"
        lines.append(
            f"  {row.approach} [{row.allocation}]: p50 {_per(row.p50_ready_s, 's')}, "
            f"p99 {_per(row.p99_ready_s, 's')}, {_fmt(row.mutating_calls_per_pod_start)} mutating EC2 calls "
            f"per pod start, {row.mutating_calls_per_node:g} per node{writes}"
        )
    return [*lines, ""]


def shared_eni_markdown(result: ComparisonResult) -> list[str]:
    """The same line as a report.md section (a table)."""
    comparison = result.shared_eni_comparison
    if comparison is None:
        return []
    limit = "none" if comparison.k8s_client_qps is None else f"{comparison.k8s_client_qps:g} QPS"
    lines = [
        "",
        "## Shared ENI, branch ENI and the baseline",
        "",
        f"{comparison.nodes} nodes; Kubernetes client limit: crd {limit} (netalloc ships none), annotation "
        f"{comparison.baseline_k8s_client_qps:g} QPS (RC's). crd-branch is the crd side as it "
        "runs without --shared-eni (ENABLE_POD_ENI, a branch ENI per pod). The write floors are the run's "
        "own Kubernetes writes divided by its client's QPS.",
        "",
        "| run | allocation | p50 (s) | p99 (s) | mutating EC2 calls per pod start | per node | "
        "Kubernetes writes (floor s) | PNA writes (floor s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in comparison.rows:
        pna = "—" if row.pna_writes is None else f"{row.pna_writes} ({_fmt(row.pna_write_floor_s)})"
        lines.append(
            f"| {row.approach} | {row.allocation} | {_fmt(row.p50_ready_s)} | {_fmt(row.p99_ready_s)} | "
            f"{_fmt(row.mutating_calls_per_pod_start)} | {row.mutating_calls_per_node:g} | "
            f"{row.k8s_writes} ({_fmt(row.k8s_write_floor_s)}) | {pna} |"
        )
    return lines


def ec2_client_lines(result: ComparisonResult) -> list[str]:
    """What each approach says about its simulated EC2 client (`ReportsEc2Client.ec2_client_facts`). No
    claim is made for an approach that does not report it."""
    lines = []
    for name, run in result.runs.items():
        facts = run.ec2_client
        if facts is None:
            lines.append(f"EC2 client ({name}): not reported by the approach; no claim is made about it")
        else:
            same = " — checked: the same limits as its boto3 adapter" if facts.same_as_boto3_adapter else ""
            lines.append(f"EC2 client ({name}): {facts.description}{same}")
    return lines


def _performance_line(performance: RunPerformance) -> str:
    per = ", ".join(f"{k} {v:.2f} s" for k, v in performance.wall_s.items())
    return (
        f"simulation wall time {performance.total_wall_s:.2f} s ({per}); "
        f"peak memory (max RSS) {performance.peak_rss_mb:.0f} MiB"
    )


def summary_object(result: ComparisonResult, performance: RunPerformance | None = None) -> dict[str, Any]:
    """The `--output json` object: every metric per approach except the bulky series."""
    approaches = {
        name: {
            **run.metrics.model_dump(mode="json", exclude=BULKY_FIELDS),
            "stuck_pods_sample": [p.model_dump(mode="json") for p in run.metrics.stuck_pods[:5]],
            "workload": run.workload.model_dump(mode="json"),
            "cooldown_s": run.cooldown_s,
            "ec2_client": run.ec2_client.model_dump(mode="json") if run.ec2_client else None,
            "quiet_at_accounting": run.quiet_at_accounting,
            "release_gate_p100_s": run.release_gate_p100_s,
            "release_gate_target_s": run.release_gate_target_s,
        }
        for name, run in result.runs.items()
    }
    out: dict[str, Any] = {
        "scenario": result.scenario.value,
        "seed": result.seed,
        "params": result.params.model_dump(mode="json"),
        "approaches": approaches,
        "targets": [t.model_dump(mode="json") for t in result.targets],
    }
    if result.shared_eni_comparison is not None:  # only with SharedENI: other summaries stay as they were
        out["shared_eni_comparison"] = result.shared_eni_comparison.model_dump(mode="json")
    if performance is not None:
        out["performance"] = performance.model_dump(mode="json")
    return out


def results_json(result: ComparisonResult) -> str:
    """results.json: deterministic (sorted keys, fixed separators, no wall-clock figures)."""
    return json.dumps(result.model_dump(mode="json"), sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def plots_available() -> bool:
    """matplotlib comes with the `research` extra; without it reports are written without plots."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def write_plots(result: ComparisonResult, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    title = f"{result.scenario.value} (seed {result.seed}, scale {result.params.scale:g})"

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, run in result.runs.items():
        times = run.metrics.ready_times_s
        if times:
            total = run.metrics.pods_total
            ax.step(times, [(i + 1) / total for i in range(len(times))], where="post", label=name)
    ax.set_xlabel("time to network-ready (s)")
    ax.set_ylabel("fraction of pods")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"CDF of time to network-ready — {title}")
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(_save(fig, out_dir / PLOT_FILES[0]))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, run in result.runs.items():
        calls = run.metrics.ec2_series.get("calls", [])
        throttled = run.metrics.ec2_series.get("throttled", [])
        ax.plot([p.t_s for p in calls], [p.value for p in calls], label=f"{name}: calls/s")
        ax.plot(
            [p.t_s for p in throttled],
            [p.value for p in throttled],
            linestyle="--",
            label=f"{name}: throttled/s",
        )
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("EC2 requests per second (5 s bins)")
    ax.set_title(f"EC2 calls and throttles — {title}")
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(_save(fig, out_dir / PLOT_FILES[1]))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, run in result.runs.items():
        series = run.metrics.ready_series
        ax.step([0.0, *[p.t_s for p in series]], [0, *[p.value for p in series]], where="post", label=name)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("pods network-ready")
    ax.set_title(f"Pods ready over time — {title}")
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(_save(fig, out_dir / PLOT_FILES[2]))
    return paths


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def render_markdown(result: ComparisonResult, performance: RunPerformance | None) -> str:
    header, rows = table_rows(result, short=False)
    lines = [
        f"# netalloc compare: {result.scenario.value}",
        "",
        SCENARIO_DESCRIPTIONS[result.scenario],
        "",
        "## Results",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    lines += ["", "## Targets", ""]
    for check in result.targets:
        status = {True: "met", False: "**not met**", None: "not applicable at these parameters"}[check.met]
        lines.append(f"- {check.target}: {check.measured} — {status}")
    lines += shared_eni_markdown(result)
    baseline = result.baseline_params
    lines += [
        "",
        "## Published figure beside the simulated one",
        "",
        f"- RC's release gate (field notes §2): {baseline.release_gate_pods} SGP pods Ready within "
        f"{baseline.release_gate_s:g} s.",
    ]
    base = result.runs.get("annotation")
    if base is not None:
        lines.append(
            f"- Simulated here ({base.metrics.implementation}): {base.metrics.pods_pod_ready} of "
            f"{base.metrics.pods_total} pods Ready, the last after {_fmt(base.metrics.pod_ready_p100_s)} s "
            f"(network-ready p99 {_fmt(base.metrics.p99_ready_s)} s); release_gate_p100_s "
            f"{_fmt(base.release_gate_p100_s)} vs release_gate_target_s {_fmt(base.release_gate_target_s)}."
        )
    lines += ["", "## Cool-downs side by side", ""]
    lines += [f"- {name}: {_fmt(run.cooldown_s)} s" for name, run in result.runs.items()]
    lines.append(f"- RC's documented values: default {baseline.branch_cooldown_s:g} s, minimum 30 s.")
    lines += ["", "## Parameters", "", "### Scenario", ""]
    lines += [f"- {k}: {v}" for k, v in parameter_rows(result.params)]
    lines += ["", "### Annotation baseline (RC), from field notes §2", ""]
    lines += [f"- {k}: {v}" for k, v in baseline.field_notes_items()]
    lines += ["", "### Assumptions (not in the field notes)", ""]
    lines += [f"- {k}: {v}" for k, v in baseline.assumption_items()]
    lines += ["- " + line for line in ec2_client_lines(result)]
    lines += [
        "- API request latency (both approaches, every request): log-normal through RC's measured annotate "
        "latency p50 and p99.",
        "- The scheduler binds without a client-side limit; pod creation, binding and deletion are the "
        "workload's and are not counted as either approach's writes.",
        "",
        "## Method",
        "",
        "A deterministic discrete-event simulation: asyncio on a virtual-time event loop "
        "(`controller/research/virtual_time.py`) — when nothing is ready the clock jumps to the next "
        "timer. Every random draw comes from a `random.Random` seeded from the run's seed; nothing reads "
        "the wall clock inside the simulation. Each approach runs alone against its own simulated VPC "
        "(EC2's per-action token buckets, field notes §4, and per-call latency) and its own simulated "
        "API server (resourceVersion and 409, pod admission with mutating webhooks on UPDATE, pod-update "
        "validation answering a real kube-apiserver's 422, watch delivery delay, per-client QPS buckets). "
        "The workload (nodes, pods, scheduler, rollout, other tenants, crash) is the same for both.",
        "",
        "- annotation: " + (base.metrics.implementation if base else "") + ".",
        "- crd: " + (result.runs["crd"].metrics.implementation if "crd" in result.runs else "") + ".",
        "",
        "Time to network-ready runs from pod creation until the node's CNI can see the pod's network "
        "(the annotation, or the PodNetworkAllocation in state Allocated) through its watch; pod Ready "
        "adds the container start and the readiness probe. Stuck pods count in every percentile with "
        "the virtual time limit as their time. The floor is what EC2's buckets allow on the approach's "
        "ENI path (controller/research/floor.py), from the scenario's pod and node counts. EC2 attempts "
        "are every request that reached EC2, split into successes, throttles and other errors. A pod is "
        "stuck when it is not network-ready when the run settles (every pod ready, or its allocator gave "
        "up) or hits the virtual time limit; its reason is what its user can see. ENIs are counted "
        "60 s after the workload settled, at a moment the allocator has no operation in flight (waiting "
        "at most 600 s more), so in-flight calls finish: created − deleted must equal "
        "in use + pooled + leaked, where leaked means made by the allocator and unknown to its state.",
        "",
        "results.json is byte-identical for the same seed and parameters; the simulation's own wall "
        "time and peak memory are in performance.json.",
    ]
    if performance is not None:
        lines += ["", "## Cost of this run", "", "- " + _performance_line(performance)]
    lines += ["", "## Plots", ""]
    if plots_available():
        lines += [f"![{name}]({name})" for name in PLOT_FILES]
    lines += ["", f"The exact 422 message modelled: `{result.exact_422_message_example}`", ""]
    return "\n".join(lines)


def write_outputs(result: ComparisonResult, performance: RunPerformance, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    results_path = out_dir / "results.json"
    results_path.write_text(results_json(result), encoding="utf-8")
    written.append(results_path)
    perf_path = out_dir / "performance.json"
    perf_path.write_text(performance.model_dump_json(indent=1) + "\n", encoding="utf-8")
    written.append(perf_path)
    if plots_available():
        written += write_plots(result, out_dir)
    else:
        logger.warning(
            "matplotlib is not installed (pip install 'netalloc[research]'): no plots in %s", out_dir
        )
    report_path = out_dir / "report.md"
    report_path.write_text(render_markdown(result, performance), encoding="utf-8")
    written.append(report_path)
    return written
