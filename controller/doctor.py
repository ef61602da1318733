"""`netalloc doctor`: why a pod, a node or a subnet is (not) networked, and one line on what to do.

It reads what the controller records (the pod's PodNetworkAllocation, the node's NodeNetworkPool,
their Events) and, with `--ec2 aws`, asks EC2 for the subnet's fragmentation itself. With `--ec2 sim`
or `--ec2 none` the subnet figures come from the NodeNetworkPools, where the controller publishes
them. Also a kubectl plugin: `kubectl netalloc doctor pod NS/NAME`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controller.core.subnet_report import SubnetReport, subnet_report
from controller.k8s.kube_api import Forbidden, KubePort
from controller.k8s.resources import (
    EVENTS,
    NAMESPACES,
    NODE_NETWORK_POOL,
    NODES,
    POD_NETWORK_ALLOCATION,
    PODS,
)
from controller.ports.ec2 import Ec2Port

JsonObject = dict[str, Any]
MANAGED_LABEL = "netalloc.dev/managed"


class Diagnosis(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str
    networked: bool | None = Field(description="True/False for a pod; None for a node or subnet")
    facts: dict[str, Any]
    advice: str


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or () if c.get("type") == kind), {})


def _subnet_from_pool(nnp: Mapping[str, Any] | None) -> SubnetReport | None:
    subnet = ((nnp or {}).get("status") or {}).get("subnet")
    if not subnet:
        return None
    return SubnetReport(
        subnet_id=subnet["subnetId"],
        cidr=subnet["cidr"],
        free_addresses=subnet["freeAddresses"],
        free_prefix_blocks=subnet["freePrefixBlocks"],
        prefix_reserved_blocks=subnet.get("prefixReservedBlocks", 0),
        threshold=2,
    )


async def _subnet(
    subnet_id: str, cidr: str | None, ec2: Ec2Port | None, nnp: Mapping[str, Any] | None
) -> SubnetReport | None:
    if ec2 is not None and subnet_id:
        info = await ec2.describe_subnet(subnet_id)
        interfaces = await ec2.describe_network_interfaces(subnet_id=subnet_id)
        reservations = await ec2.describe_subnet_cidr_reservations(subnet_id)
        return subnet_report(
            subnet_id=subnet_id,
            cidr=cidr or info.cidr_block,
            interfaces=interfaces,
            reservations=reservations,
        )
    return _subnet_from_pool(nnp)


async def _events(kube: KubePort, namespace: str, name: str) -> list[str]:
    try:
        items, _ = await kube.list(EVENTS, namespace)
    except Forbidden:
        return ["(events not readable with this kubeconfig)"]
    mine = [e for e in items if (e.get("involvedObject") or {}).get("name") == name]
    mine.sort(key=lambda e: str(e.get("lastTimestamp") or ""))
    return [f"{e.get('type')} {e.get('reason')}: {e.get('message')}" for e in mine[-5:]]


async def doctor_pod(kube: KubePort, namespace: str, name: str, ec2: Ec2Port | None = None) -> Diagnosis:
    subject = f"pod {namespace}/{name}"
    pod = await kube.get(PODS, name, namespace)
    if pod is None:
        return Diagnosis(subject=subject, networked=False, facts={}, advice=f"there is no {subject}")
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    node = str(spec.get("nodeName") or "")
    facts: dict[str, Any] = {"node": node, "phase": (pod.get("status") or {}).get("phase")}
    pna = await kube.get(POD_NETWORK_ALLOCATION, name, namespace)
    if pna is None:
        namespaces, _ = await kube.list(NAMESPACES)
        labels = next(
            (
                (n.get("metadata") or {}).get("labels") or {}
                for n in namespaces
                if n["metadata"]["name"] == namespace
            ),
            {},
        )
        if spec.get("hostNetwork"):
            advice = "the pod uses the host network: netalloc gives it nothing, and it needs nothing"
        elif not node:
            advice = "the pod is not scheduled yet: netalloc allocates once it is bound to a node"
        elif labels.get(MANAGED_LABEL) != "true":
            advice = f"namespace {namespace} is not managed: label it {MANAGED_LABEL}=true (new pods only)"
        else:
            advice = (
                "no PodNetworkAllocation yet: is the netalloc controller running? "
                "(kubectl -n netalloc-system get pods)"
            )
        return Diagnosis(subject=subject, networked=False, facts=facts, advice=advice)
    status = pna.get("status") or {}
    if (pna.get("spec") or {}).get("podUID") != meta.get("uid"):
        facts["allocation"] = {"podUID": (pna.get("spec") or {}).get("podUID")}
        return Diagnosis(
            subject=subject,
            networked=False,
            facts=facts,
            advice="its PodNetworkAllocation is an earlier pod's of this name: the controller replaces it",
        )
    last_error = status.get("lastError") or {}
    facts["allocation"] = {
        "state": status.get("state"),
        "reason": status.get("reason"),
        "message": status.get("message"),
        "mode": (pna.get("spec") or {}).get("mode"),
        "ip": status.get("ip"),
        "eniId": status.get("eniId"),
        "attempts": status.get("attempts"),
        "nextAttemptTime": status.get("nextAttemptTime"),
        "lastError": last_error or None,
    }
    nnp = await kube.get(NODE_NETWORK_POOL, node) if node else None
    pool_ready = _condition((nnp or {}).get("status") or {}, "Ready")
    facts["pool"] = {
        "exists": nnp is not None,
        "ready": pool_ready.get("status"),
        "reason": pool_ready.get("reason"),
        "message": pool_ready.get("message"),
    }
    subnet_id = str(((nnp or {}).get("spec") or {}).get("subnetId") or "")
    report = await _subnet(subnet_id, None, ec2, nnp)
    if report is not None:
        facts["subnet"] = _report_facts(report)
    facts["events"] = await _events(kube, namespace, name)
    facts["throttled"] = (
        last_error.get("errorClass") == "Throttling" or pool_ready.get("reason") == "RequestLimitExceeded"
    )
    return Diagnosis(
        subject=subject,
        networked=status.get("state") == "Allocated",
        facts=facts,
        advice=_pod_advice(status, last_error, pool_ready, report, node),
    )


def _report_facts(report: SubnetReport) -> JsonObject:
    return {
        "subnetId": report.subnet_id,
        "cidr": report.cidr,
        "freeAddresses": report.free_addresses,
        "freePrefixBlocks": report.free_prefix_blocks,
        "fragmented": report.fragmented,
    }


def _pod_advice(
    status: Mapping[str, Any],
    last_error: Mapping[str, Any],
    pool_ready: Mapping[str, Any],
    report: SubnetReport | None,
    node: str,
) -> str:
    state, reason = status.get("state"), str(status.get("reason") or "")
    code = str(last_error.get("code") or reason)
    if state == "Allocated":
        extra = " (a secondary IP: the subnet had no free /28 prefix)" if reason == "PrefixFallback" else ""
        return f"networked: {status.get('ip')} on {status.get('eniId')}{extra}"
    if code in ("InsufficientCidrBlocks", "InvalidParameterValue") or (
        report is not None and report.fragmented
    ):
        if report is not None:
            return report.advice
        return "no free aligned /28 in the subnet: add a prefix CIDR reservation or another subnet"
    if reason == "NodePoolNotReady" or code == "NodePoolNotReady":
        why = pool_ready.get("message") or status.get("message")
        return f"node {node}'s pool is not ready: {why}"
    if code in ("BranchInterfaceLimitExceeded", "NodeCannotTrunk"):
        return (
            f"{status.get('message')}: schedule security-group pods on a larger Nitro type, or fewer per node"
        )
    if code == "NodePoolExhausted":
        return f"{status.get('message')}: the node is at its address limit (max pods); use a larger type"
    if state == "Retrying":
        return (
            f"EC2 answers {code} (throttling or a transient fault): netalloc retries with backoff; "
            "no action unless it lasts"
        )
    if state == "Failed":
        why = last_error.get("message") or status.get("message")
        return f"a configuration error: {code}: {why}; fix it, then delete the pod"
    if state in ("Pending", "Allocating", None):
        return "the allocation has just started; look again in a few seconds"
    return f"{state} {reason}: {status.get('message')}"


async def doctor_node(kube: KubePort, name: str, ec2: Ec2Port | None = None) -> Diagnosis:
    subject = f"node {name}"
    nnp = await kube.get(NODE_NETWORK_POOL, name)
    node = await kube.get(NODES, name)
    if nnp is None:
        if node is None:
            return Diagnosis(subject=subject, networked=None, facts={}, advice=f"there is no {subject}")
        provider = str((node.get("spec") or {}).get("providerID") or "")
        return Diagnosis(
            subject=subject,
            networked=None,
            facts={"providerID": provider},
            advice=(
                "no NodeNetworkPool: the node is not an EC2 instance (its providerID is not aws:///ZONE/i-...)"
                if not provider.startswith("aws://")
                else "no NodeNetworkPool yet: is the netalloc controller running?"
            ),
        )
    status = nnp.get("status") or {}
    ready = _condition(status, "Ready")
    pnas, _ = await kube.list(POD_NETWORK_ALLOCATION)
    states: dict[str, int] = {}
    for pna in pnas:
        if (pna.get("spec") or {}).get("nodeName") == name:
            state = str((pna.get("status") or {}).get("state") or "Pending")
            states[state] = states.get(state, 0) + 1
    report = await _subnet(str((nnp.get("spec") or {}).get("subnetId") or ""), None, ec2, nnp)
    facts: dict[str, Any] = {
        "instanceId": (nnp.get("spec") or {}).get("instanceId"),
        "instanceType": (nnp.get("spec") or {}).get("instanceType"),
        "mode": (nnp.get("spec") or {}).get("mode"),
        "ready": ready.get("status"),
        "reason": ready.get("reason"),
        "message": ready.get("message"),
        "limits": status.get("limits"),
        "freeIps": status.get("freeIps"),
        "usedIps": status.get("usedIps"),
        "branchEnis": status.get("branchEnis"),
        "allocations": states,
    }
    if report is not None:
        facts["subnet"] = _report_facts(report)
    if node is None:
        advice = "the Node is gone: the controller drains this pool and deletes it"
    elif ready.get("status") != "True":
        advice = f"the pool is not ready: {ready.get('reason')}: {ready.get('message')}"
    elif report is not None and report.fragmented:
        advice = report.advice
    else:
        allocated = states.get("Allocated", 0)
        advice = f"the pool is ready: {status.get('freeIps')} free addresses, {allocated} pods allocated"
    return Diagnosis(subject=subject, networked=None, facts=facts, advice=advice)


async def doctor_subnet(kube: KubePort, subnet_id: str, ec2: Ec2Port | None = None) -> Diagnosis:
    subject = f"subnet {subnet_id}"
    pools, _ = await kube.list(NODE_NETWORK_POOL)
    on_it = [p for p in pools if (p.get("spec") or {}).get("subnetId") == subnet_id]
    report = await _subnet(subnet_id, None, ec2, on_it[0] if on_it else None)
    facts: dict[str, Any] = {"nodes": sorted(p["metadata"]["name"] for p in on_it)}
    if report is None:
        return Diagnosis(
            subject=subject,
            networked=None,
            facts=facts,
            advice="no node pool uses this subnet and no EC2 access was given (--ec2 aws) to look at it",
        )
    facts.update(_report_facts(report))
    return Diagnosis(subject=subject, networked=None, facts=facts, advice=report.advice)


def render(diagnosis: Diagnosis) -> str:
    """The text form: the facts, indented, then the advice."""
    lines = [diagnosis.subject]

    def walk(value: Any, indent: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(item, Mapping | list) and item:
                    lines.append(f"{indent}{key}:")
                    walk(item, indent + "  ")
                elif item not in (None, "", [], {}):
                    lines.append(f"{indent}{key}: {item}")
        elif isinstance(value, list):
            lines.extend(f"{indent}- {item}" for item in value)

    walk(diagnosis.facts, "  ")
    lines.append(f"=> {diagnosis.advice}")
    return "\n".join(lines)
