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
# field-notes §2 "RC starts a trunk only after aws-node has marked the node (trunk label or the CNINode
# feature)".
HAS_TRUNK_ATTACHED_LABEL = "vpc.amazonaws.com/has-trunk-attached"
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
    # field-notes §2 "RC builds TWO clients of 12 QPS / burst 18 each: an instance client for
    # AssociateTrunkInterface, DisassociateTrunkInterface and DescribeTrunkInterfaceAssociations, and a
    # user client for the rest" (controller/research/rc_ec2.py routes them)
    ec2_client_qps: float = Field(default=12.0, gt=0)
    ec2_client_burst: int = Field(default=18, ge=1)
    # field-notes §2 "aws-sdk-go-v2 standard retryer, 3 attempts" (3 in all: the first call and 2 retries)
    sdk_max_attempts: int = Field(default=3, ge=1)
    # field-notes §2 "backoff uniform in [0, 1) × 2^attempt s, capped at 20 s"
    sdk_max_backoff_s: float = Field(default=20.0, gt=0)
    # aws-sdk-go-v2 standard.go (not in the field notes): the retry token bucket, modelled by default.
    sdk_retry_quota: bool = True
    # field-notes §2 "10 node workers, 1 requeue (a failed node init waits for the next node event)"
    node_init_workers: int = Field(default=10, ge=1)
    node_max_requeues: int = Field(default=1, ge=0)
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
    # field-notes §2 "Trunk at node init: DescribeInstances, create (type trunk) → permission → attach →
    # ModifyNetworkInterfaceAttribute (DeleteOnTermination) → poll DescribeNetworkInterfaces until attached"
    per_node_calls: tuple[str, ...] = (
        "DescribeInstances",
        "CreateNetworkInterface(trunk)",
        "CreateNetworkInterfacePermission",
        "AttachNetworkInterface",
        "ModifyNetworkInterfaceAttribute(DeleteOnTermination)",
        "DescribeNetworkInterfaces (poll from 1 s until attached)",
    )

    # ASSUMPTION (client-go DefaultControllerRateLimiter, which RC's worker queue uses): per item
    # 5 ms × 2^requeues capped at 1000 s, and an overall 10 QPS / burst 100 bucket; the larger wins.
    queue_base_delay_s: float = Field(default=0.005, gt=0)
    queue_max_delay_s: float = Field(default=1000.0, gt=0)
    queue_overall_qps: float = Field(default=10.0, gt=0)
    queue_overall_burst: int = Field(default=100, ge=1)

    def field_notes_items(self) -> list[tuple[str, str]]:
        """(parameter, value) pairs taken from field notes §2, in the order the report prints them."""
        return [
            ("pod workers", str(self.pod_workers)),
            ("max requeues per pod", str(self.max_requeues)),
            (
                "EC2 clients",
                f"instance client (AssociateTrunkInterface, DisassociateTrunkInterface, "
                f"DescribeTrunkInterfaceAssociations) and user client (the rest), "
                f"{self.ec2_client_qps:g} QPS / burst {self.ec2_client_burst} each, a token per attempt",
            ),
            (
                "SDK retryer",
                f"aws-sdk-go-v2 standard: {self.sdk_max_attempts} attempts, backoff U[0, 1) × 2^attempt s "
                f"≤ {self.sdk_max_backoff_s:g} s; retries throttles and HTTP 5xx",
            ),
            ("DeleteNetworkInterface", "retry.OnError: 100 ms × 3^n, jitter 0.1, 7 steps, cap 10 s"),
            ("failed association", "the branch ENI goes to the front of the delete queue"),
            (
                "node initialisation",
                f"{self.node_init_workers} workers, {self.node_max_requeues} requeue, then wait for the "
                "next Node event; trunk only once aws-node has marked the node",
            ),
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
                "SDK retry token bucket",
                ("modelled: " if self.sdk_retry_quota else "NOT modelled (off): ")
                + "500 per client, 5 per retry, +1 per first-attempt success, a retry's 5 back on its "
                "success (aws-sdk-go-v2 aws/retry/standard.go)",
            ),
            (
                "delete and attach-poll backoff shapes",
                "helper.go defaultBackOff {100 ms, ×3, 0.1, 7, 10 s} and waitForENIAttachment "
                "{1 s, ×2, 0.1, 7, 5 min}",
            ),
            ("RC's EC2 client placement", "the bucket sits in the HTTP client: every attempt takes a token"),
            (
                "work queue requeue delay",
                f"max({self.queue_base_delay_s * 1000:g} ms × 2^n ≤ {self.queue_max_delay_s:g} s, "
                f"{self.queue_overall_qps:g} QPS / burst {self.queue_overall_burst}) "
                "(client-go DefaultControllerRateLimiter)",
            ),
        ]
