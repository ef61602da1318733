"""The baseline's parameters are the field notes' (section 2), and the report prints every one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.research.baseline_params import BaselineParams


def _field_notes() -> str | None:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "field-notes.md"
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    return None


def _find(pattern: str, text: str) -> tuple[str, ...]:
    match = re.search(pattern, text)
    assert match is not None, f"the field notes no longer say {pattern!r}"
    return match.groups()


def test_defaults_are_the_field_notes_values() -> None:
    params = BaselineParams()
    assert (params.pod_workers, params.max_requeues) == (30, 5)
    assert (params.ec2_client_qps, params.ec2_client_burst) == (12.0, 18)
    assert params.sdk_max_attempts == 3 and params.sdk_max_backoff_s == 20.0 and params.sdk_retry_quota
    assert (params.node_init_workers, params.node_max_requeues) == (10, 1)
    assert (params.k8s_client_qps, params.k8s_client_burst) == (20.0, 30)
    assert params.branch_cooldown_s == 60.0
    assert params.delete_queue_interval_s == 30.0
    assert params.max_vlan_id == 120
    assert (params.node_reconcile_min_s, params.node_reconcile_max_s) == (60.0, 900.0)
    assert (params.cluster_sweep_interval_s, params.cluster_sweep_sightings) == (1800.0, 2)
    assert (params.release_gate_pods, params.release_gate_s) == (1000, 300.0)
    assert (params.annotate_latency_p50_s, params.annotate_latency_p90_s, params.annotate_latency_p99_s) == (
        0.015,
        0.035,
        0.084,
    )
    assert params.per_pod_calls == (
        "CreateNetworkInterface",
        "CreateNetworkInterfacePermission",
        "AssociateTrunkInterface",
    )


def test_cooldown_below_the_documented_minimum_is_rejected() -> None:
    with pytest.raises(ValueError):
        BaselineParams(branch_cooldown_s=29.0)


def test_values_parsed_from_the_field_notes_text_match() -> None:
    text = _field_notes()
    if text is None:
        pytest.skip("shared/field-notes.md is not beside this checkout")
    section = " ".join(text.split("## 2.", 1)[1].split("## 3.", 1)[0].split())  # unwrap lines
    params = BaselineParams()
    workers, requeues = map(int, _find(r"(\d+) pod workers, (\d+) requeues", section))
    assert (workers, requeues) == (params.pod_workers, params.max_requeues)
    qps, burst = _find(r"(\d+) QPS / burst (\d+) each", section)  # each of RC's two EC2 clients
    assert (float(qps), int(burst)) == (params.ec2_client_qps, params.ec2_client_burst)
    assert int(_find(r"standard retryer, (\d+) attempts", section)[0]) == params.sdk_max_attempts
    assert float(_find(r"capped at (\d+) s", section)[0]) == params.sdk_max_backoff_s
    node_workers, node_requeues = map(int, _find(r"(\d+) node workers, (\d+) requeue", section))
    assert (node_workers, node_requeues) == (params.node_init_workers, params.node_max_requeues)
    k_qps, k_burst = _find(r"Kubernetes client (\d+) QPS / burst (\d+)", section)
    assert (float(k_qps), int(k_burst)) == (params.k8s_client_qps, params.k8s_client_burst)
    assert int(_find(r"cool-down \(default (\d+) s", section)[0]) == params.branch_cooldown_s
    assert int(_find(r"delete queue runs every (\d+) s", section)[0]) == params.delete_queue_interval_s
    assert int(_find(r"VLAN id \(1\.\.(\d+)\)", section)[0]) == params.max_vlan_id
    gate = _find(r"([\d,]+) SGP pods Ready within (\d+) minutes", section)
    assert (int(gate[0].replace(",", "")), float(gate[1]) * 60) == (
        params.release_gate_pods,
        params.release_gate_s,
    )
    latencies = _find(r"p50 (\d+) ms, p90 (\d+) ms, p99 (\d+) ms", section)
    assert tuple(int(v) / 1000 for v in latencies) == (
        params.annotate_latency_p50_s,
        params.annotate_latency_p90_s,
        params.annotate_latency_p99_s,
    )


def test_the_report_lists_every_field_notes_parameter_and_the_assumptions_apart() -> None:
    params = BaselineParams()
    items = dict(params.field_notes_items())
    assert items["pod workers"] == "30"
    assert "12 QPS / burst 18 each" in items["EC2 clients"] and "instance client" in items["EC2 clients"]
    assert "U[0, 1) × 2^attempt" in items["SDK retryer"]
    assert "100 ms" in items["DeleteNetworkInterface"]
    assert "10 workers, 1 requeue" in items["node initialisation"]
    assert items["Kubernetes client rate limit"] == "20 QPS / burst 30"
    assert "60 s" in items["branch ENI cool-down before delete"]
    assert "ModifyNetworkInterfaceAttribute" in items["per-node EC2 calls at registration"]
    assumptions = dict(params.assumption_items())
    assert "SDK retry token bucket" in assumptions and "SDK retry token bucket" not in items
    assert assumptions["SDK retry token bucket"].startswith("modelled")
