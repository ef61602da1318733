"""Prometheus metrics and logging set-up. Each controller instance owns its registry."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from controller.adapters.ec2_observer import CallOutcome

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.allocation_latency = Histogram(
            "netalloc_allocation_duration_seconds",
            "Time from PodNetworkAllocation creation to a final outcome of an allocation",
            ["mode", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.transitions = Counter(
            "netalloc_allocation_transitions_total",
            "State transitions of PodNetworkAllocations",
            ["from_state", "to_state", "reason"],
            registry=self.registry,
        )
        self.ec2_calls = Counter(
            "netalloc_ec2_calls_total",
            "EC2 API calls by action and outcome",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.ec2_throttles = Counter(
            "netalloc_ec2_throttled_total",
            "EC2 calls answered RequestLimitExceeded",
            ["action"],
            registry=self.registry,
        )
        self.pool_free_ips = Gauge(
            "netalloc_pool_free_ips", "Free pod addresses per node", ["node"], registry=self.registry
        )
        self.pool_used_ips = Gauge(
            "netalloc_pool_used_ips", "Pod addresses in use per node", ["node"], registry=self.registry
        )
        self.pool_warm_branches = Gauge(
            "netalloc_pool_warm_branch_enis", "Warm branch ENIs per node", ["node"], registry=self.registry
        )
        self.pool_branches_in_use = Gauge(
            "netalloc_pool_branch_enis_in_use",
            "Branch ENIs assigned to pods per node",
            ["node"],
            registry=self.registry,
        )
        self.subnet_free_addresses = Gauge(
            "netalloc_subnet_free_addresses",
            "Free single addresses per subnet the pools use, from what EC2 says",
            ["subnet"],
            registry=self.registry,
        )
        self.subnet_free_prefix_blocks = Gauge(
            "netalloc_subnet_free_prefix_blocks",
            "Free aligned /28 blocks per subnet the pools use (EC2 reports none of this)",
            ["subnet"],
            registry=self.registry,
        )
        self.pnas_by_state = Gauge(
            "netalloc_podnetworkallocations",
            "PodNetworkAllocations by state",
            ["state"],
            registry=self.registry,
        )
        self.kube_writes = Counter(
            "netalloc_kubernetes_writes_total",
            "Kubernetes API writes by verb and resource",
            ["verb", "resource"],
            registry=self.registry,
        )
        self.leak_sweeps = Counter(
            "netalloc_leak_sweeps_total",
            "Leak sweeps, run or skipped (a sweep is skipped while any node's pool is not registered)",
            ["outcome"],
            registry=self.registry,
        )
        self.orphan_holdings_released = Counter(
            "netalloc_orphan_holdings_released_total",
            "Pool holdings released because no PodNetworkAllocation or pod backed them",
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "netalloc_reconcile_errors_total",
            "Reconcile passes that failed and were retried with backoff, by work kind and error",
            ["kind", "error"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "netalloc_work_queue_depth", "Work items waiting for a worker", registry=self.registry
        )
        self.leaked_enis_deleted = Counter(
            "netalloc_leaked_enis_deleted_total",
            "Tagged ENIs deleted by the leak collector",
            registry=self.registry,
        )

    def observe_ec2(self, action: str, outcome: CallOutcome) -> None:
        self.ec2_calls.labels(action=action, outcome=outcome).inc()
        if outcome == "throttled":
            self.ec2_throttles.labels(action=action).inc()

    def observe_kube_write(self, verb: str, resource: str) -> None:
        self.kube_writes.labels(verb=verb, resource=resource).inc()

    def set_pnas_by_state(self, counts: Mapping[str, int]) -> None:
        for state, count in counts.items():
            self.pnas_by_state.labels(state=state).set(count)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(*, json_logs: bool, level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
