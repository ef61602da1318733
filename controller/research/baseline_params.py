"""The annotation baseline's parameters, as the AWS VPC resource controller (RC) ships them.

Every value that comes from /work/shared/field-notes.md section 2 says which line it comes from.
A few behaviours the simulation needs are not in the field notes (the SDK's backoff shape, the
work queue's rate limiter, node initialisation concurrency): they are marked ASSUMPTION, take the
upstream libraries' defaults, and the report prints them apart so nobody mistakes them for facts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# field-notes §2, "Annotation value": the annotation key RC writes the branch ENI details under.
POD_ENI_ANNOTATION = "vpc.amazonaws.com/pod-eni"
# field-notes §2, "A mutating webhook adds the extended resource `vpc.amazonaws.com/pod-eni: 1`".
POD_ENI_RESOURCE = "vpc.amazonaws.com/pod-eni"
# field-notes §1: the pod event RC emits when the annotation patch fails.
REASON_BRANCH_ENI_ANNOTATION_FAILED = "BranchENIAnnotationFailed"
ANNOTATION_FAILED_PREFIX = "failed to annotate pod with branch ENI details: "
# field-notes §1: what the CNI reports when it finds no annotation.
CNI_NO_ADDRESS_MESSAGE = "failed to assign an IP address to container"


class BaselineParams(BaseModel):
    """RC's knobs (field notes §2) plus the marked assumptions the simulation needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # field-notes §2 "Concurrency: 30 pod workers"
    pod_workers: int = Field(default=30, ge=1)
    # field-notes §2 "Concurrency: ... 5 requeues"
    max_requeues: int = Field(default=5, ge=0)
    # field-notes §2 "TWO clients of 12 QPS / burst 18 each" (this model has one of them so far)
    ec2_client_qps: float = Field(default=12.0, gt=0)
    ec2_client_burst: int = Field(default=18, ge=1)
    # field-notes §2 "aws-sdk-go-v2 standard retryer, 3 attempts" (3 in all: the first call and 2 retries)
    sdk_max_attempts: int = Field(default=3, ge=1)
    # field-notes §2 "Kubernetes client 20 QPS / burst 30"
    k8s_client_qps: float = Field(default=20.0, gt=0)
    k8s_client_burst: int = Field(default=30, ge=1)
    # field-notes §2 "it waits a cool-down (default 60 s, minimum 30 s)"
    branch_cooldown_s: float = Field(default=60.0, ge=30.0)
    # field-notes §2 "the delete queue runs every 30 s per node"
    delete_queue_interval_s: float = Field(default=30.0, gt=0)
    # field-notes §2 "first free VLAN id (1..120)"
    max_vlan_id: int = Field(default=120, ge=1, le=4094)
    # field-notes §2 "Leak clean-up: per-node reconcile every 1–15 min"
    node_reconcile_min_s: float = Field(default=60.0, gt=0)
    node_reconcile_max_s: float = Field(default=900.0, gt=0)
    # field-notes §2 "cluster sweep every 30 min deletes `available` ENIs ... seen in two consecutive sweeps"
    cluster_sweep_interval_s: float = Field(default=1800.0, gt=0)
    cluster_sweep_sightings: int = Field(default=2, ge=1)
    # field-notes §2 "Its release gate: 1,000 SGP pods Ready within 5 minutes"
    release_gate_pods: int = 1000
    release_gate_s: float = 300.0
    # field-notes §2 "Its own scale test: annotate latency p50 15 ms, p90 35 ms, p99 84 ms"
    annotate_latency_p50_s: float = 0.015
    annotate_latency_p90_s: float = 0.035
    annotate_latency_p99_s: float = 0.084
    # field-notes §2 per-pod EC2 sequence and per-node trunk sequence (documentation for the report)
    per_pod_calls: tuple[str, ...] = (
        "CreateNetworkInterface",
        "CreateNetworkInterfacePermission",
        "AssociateTrunkInterface",
    )
    per_pod_delete_calls: tuple[str, ...] = ("DisassociateTrunkInterface", "DeleteNetworkInterface")
    per_node_calls: tuple[str, ...] = (
        "CreateNetworkInterface(trunk)",
        "CreateNetworkInterfacePermission",
        "AttachNetworkInterface",
    )

    # ASSUMPTION (aws-sdk-go DefaultRetryer): retry n waits 2^n × uniform[min, 2·min); min is 30 ms,
    # 500 ms for throttling errors.
    sdk_min_retry_delay_s: float = Field(default=0.030, gt=0)
    sdk_min_throttle_delay_s: float = Field(default=0.5, gt=0)
    # ASSUMPTION (client-go DefaultControllerRateLimiter, which RC's worker queue uses): per item
    # 5 ms × 2^requeues capped at 1000 s, and an overall 10 QPS / burst 100 bucket; the larger wins.
    queue_base_delay_s: float = Field(default=0.005, gt=0)
    queue_max_delay_s: float = Field(default=1000.0, gt=0)
    queue_overall_qps: float = Field(default=10.0, gt=0)
    queue_overall_burst: int = Field(default=100, ge=1)
    # ASSUMPTION: trunk initialisation runs in its own worker pool of this size.
    node_init_workers: int = Field(default=10, ge=1)

    def field_notes_items(self) -> list[tuple[str, str]]:
        """(parameter, value) pairs taken from field notes §2, in the order the report prints them."""
        return [
            ("pod workers", str(self.pod_workers)),
            ("max requeues per pod", str(self.max_requeues)),
            ("EC2 client rate limit", f"{self.ec2_client_qps:g} QPS / burst {self.ec2_client_burst}"),
            ("SDK attempts per EC2 call", str(self.sdk_max_attempts)),
            ("Kubernetes client rate limit", f"{self.k8s_client_qps:g} QPS / burst {self.k8s_client_burst}"),
            ("branch ENI cool-down before delete", f"{self.branch_cooldown_s:g} s (minimum 30 s)"),
            ("delete queue period per node", f"{self.delete_queue_interval_s:g} s"),
            ("VLAN ids per trunk", f"1..{self.max_vlan_id}"),
            ("warm pool", "none: one new branch ENI per pod"),
            ("per-pod EC2 calls", " → ".join(self.per_pod_calls)),
            ("per-pod release calls (after cool-down)", " + ".join(self.per_pod_delete_calls)),
            ("per-node EC2 calls at registration", " → ".join(self.per_node_calls)),
            (
                "node reconcile period",
                f"{self.node_reconcile_min_s / 60:g}–{self.node_reconcile_max_s / 60:g} min",
            ),
            (
                "cluster leak sweep",
                f"every {self.cluster_sweep_interval_s / 60:g} min, delete after "
                f"{self.cluster_sweep_sightings} sightings",
            ),
            (
                "annotate latency (API request latency model)",
                f"p50 {self.annotate_latency_p50_s * 1000:g} ms, "
                f"p90 {self.annotate_latency_p90_s * 1000:g} ms, "
                f"p99 {self.annotate_latency_p99_s * 1000:g} ms",
            ),
            ("release gate", f"{self.release_gate_pods} SGP pods Ready within {self.release_gate_s:g} s"),
        ]

    def assumption_items(self) -> list[tuple[str, str]]:
        """Parameters NOT in the field notes, with where the value comes from."""
        return [
            (
                "SDK retry backoff",
                f"2^n × U[{self.sdk_min_retry_delay_s * 1000:g} ms, 2×) ; throttled: "
                f"2^n × U[{self.sdk_min_throttle_delay_s * 1000:g} ms, 2×) (aws-sdk-go DefaultRetryer)",
            ),
            (
                "work queue requeue delay",
                f"max({self.queue_base_delay_s * 1000:g} ms × 2^n ≤ {self.queue_max_delay_s:g} s, "
                f"{self.queue_overall_qps:g} QPS / burst {self.queue_overall_burst}) "
                "(client-go DefaultControllerRateLimiter)",
            ),
            ("trunk initialisation workers", str(self.node_init_workers)),
        ]
