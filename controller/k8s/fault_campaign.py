"""The runtime-level fault campaign: the real controller under seeded random schedules of faults.

Each schedule starts a `SimCluster` (API emulator without garbage collection, simulated VPC) and the
real kopf controller over HTTP, then mixes, at random points: controller crashes with SIGKILL semantics
and restarts (pods deleted and created while it is down), API faults (500, 409, 422, timeouts whose
request took effect, failed lists), dropped watches followed by a 410 relist with changes in the gap,
EC2 faults (throttling, 5xx, answers lost after the call took effect), nodes deleted or replaced
by a new instance under the same name, same-name pod re-creation, PNAs deleted or made by hand, and
SecurityGroupPolicy changes.

After every step the safety invariants are checked:
- no address and no branch ENI is held by two live PodNetworkAllocations;
- no ENI or address of a running pod on a current node is gone from EC2.
Once the faults stop, liveness: within `recovery_timeout_s` every managed pod is Allocated on its
node's instance and no PNA is left without its pod. Then every pod and node is deleted, and nothing
netalloc tagged may be left in EC2.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controller.core import tags as tagging
from controller.core.pod_selection import ENI_SHARING_ANNOTATION, ENI_SHARING_NODE
from controller.k8s.api_emulator import ApiFault
from controller.k8s.harness import MANAGED_NAMESPACE, SimCluster, fast_config, wait_until
from controller.k8s.objects import JsonObject
from controller.k8s.reconcilers.context import ControllerConfig
from controller.k8s.sandbox import policy_manifest
from controller.ports.ec2 import InterfaceType
from controller.settings import PoolSettings

logger = logging.getLogger("netalloc.campaign")
NODE_TYPES = ("m5.large", "c5.4xlarge", "m5.xlarge")
EC2_ACTIONS = (
    "CreateNetworkInterface",
    "AttachNetworkInterface",
    "AssociateTrunkInterface",
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "DescribeNetworkInterfaces",
    "DescribeInstances",
    "DeleteNetworkInterface",
    "DisassociateTrunkInterface",
    "ModifyNetworkInterfaceAttribute",
    "DetachNetworkInterface",
    "DescribeTrunkInterfaceAssociations",
)
PNA_PATH = r"/podnetworkallocations"
NNP_PATH = r"/nodenetworkpools"


class Violation(BaseModel):
    model_config = ConfigDict(frozen=True)

    seed: int
    step: int
    invariant: str
    detail: str


class ScheduleResult(BaseModel):
    seed: int
    steps: list[str]
    violations: list[Violation]
    recovery_s: float
    elapsed_s: float
    allocated_by_mode: dict[str, int] = Field(default_factory=dict)  # at the end, once recovered


class CampaignResult(BaseModel):
    schedules: int
    violations: list[Violation]
    failed_seeds: list[int]
    slowest_recovery_s: float
    slowest_recovery_seed: int | None
    elapsed_s: float
    steps_by_kind: dict[str, int]
    allocated_by_mode: dict[str, int] = Field(default_factory=dict)  # so a reader sees every mode ran


class CampaignSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    steps: tuple[int, int] = (8, 14)
    recovery_timeout_s: float = 30.0
    teardown_timeout_s: float = 30.0
    pause_s: tuple[float, float] = (0.02, 0.3)
    planted: str = Field(default="", description="a deliberate bug to plant, to show the campaign catches it")


def campaign_config(rng: random.Random) -> ControllerConfig:
    """Fast timings (`fast_config`) and a random pool mode and warm targets per schedule."""
    pool = PoolSettings(
        enable_pod_eni=True,
        enable_prefix_delegation=rng.random() < 0.5,
        warm_branch_eni_target=rng.choice((0, 1, 2)),
        warm_prefix_target=1,
        warm_eni_target=rng.choice((0, 1)),
        ip_cooldown_s=0.3,
        branch_cooldown_s=0.3,
        excess_release_delay_s=0.5,
    )
    return fast_config(pool, cluster_name="campaign")


class Schedule:
    """One seeded schedule against one fresh cluster."""

    def __init__(self, seed: int, settings: CampaignSettings) -> None:
        self.seed = seed
        self.settings = settings
        self.rng = random.Random(seed)
        self.cluster = SimCluster(config=campaign_config(self.rng), seed=seed)
        self.steps: list[str] = []
        self.violations: list[Violation] = []
        self.eni_instance: dict[str, str] = {}  # every ENI seen -> the instance it was made for
        self.shared_groups: dict[str, tuple[str, ...]] = {}  # shared ENI -> its groups when first seen
        self.allocated_by_mode: Counter[str] = Counter()
        self._pod_serial = 0
        self._node_serial = 0

    # ----- the schedule ----------------------------------------------------------------------------
    def run(self) -> ScheduleResult:
        with planted_bug(self.settings.planted):
            return self._run()

    def _run(self) -> ScheduleResult:
        started = time.monotonic()
        recovery = 0.0
        cluster = self.cluster
        with cluster:
            groups = cluster.fleet.app_groups
            cluster.add_security_group_policy("web-sg", "web", [groups[0]])
            self._add_sharing_policy([groups[2]])
            for _ in range(2):
                self._add_node()
            cluster.start_controller()
            self._create_pods(self.rng.randint(4, 10))
            for step in range(self.rng.randint(*self.settings.steps)):
                action = self._pick()
                self.steps.append(action.__name__.lstrip("_"))
                try:
                    action()
                except Exception as error:  # a broken step is a harness problem; record, go on
                    self._violate(step, "step-error", f"{action.__name__}: {error!r}")
                time.sleep(self.rng.uniform(*self.settings.pause_s))
                self._check_safety(step)
            recovery = self._recover()
            self._teardown()
        return ScheduleResult(
            seed=self.seed,
            steps=self.steps,
            violations=self.violations,
            recovery_s=round(recovery, 3),
            elapsed_s=round(time.monotonic() - started, 3),
            allocated_by_mode=dict(sorted(self.allocated_by_mode.items())),
        )

    def _pick(self) -> Callable[[], None]:
        actions: list[tuple[Callable[[], None], int]] = [
            (self._more_pods, 4),
            (self._fewer_pods, 3),
            (self._same_name_again, 2),
            (self._crash_and_restart, 4),
            (self._api_faults, 3),
            (self._watch_gap, 2),
            (self._ec2_faults, 4),
            (self._replace_node, 1),
            (self._delete_and_add_node, 1),
            (self._delete_pna_by_hand, 1),
            (self._strip_finalizer_and_delete, 1),
            (self._hand_made_pna, 1),
            (self._change_policy, 1),
        ]
        funcs = [action for action, _ in actions]
        chosen: Callable[[], None] = self.rng.choices(funcs, weights=[w for _, w in actions])[0]
        return chosen

    # ----- helpers ---------------------------------------------------------------------------------
    def _violate(self, step: int, invariant: str, detail: str) -> None:
        self.violations.append(Violation(seed=self.seed, step=step, invariant=invariant, detail=detail))

    def _add_node(self) -> str:
        self._node_serial += 1
        name = f"node-{self._node_serial}"
        self.cluster.add_node(name, self.rng.choice(NODE_TYPES))
        return name

    def _current_nodes(self) -> list[str]:
        return sorted(n["metadata"]["name"] for n in self.cluster.nodes())

    def _pod_names(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.cluster.pods())

    def _create_pods(self, count: int) -> None:
        nodes = self._current_nodes()
        if not nodes:
            return
        for _ in range(count):
            self._pod_serial += 1
            draw = self.rng.random()
            app = "web" if draw < 0.25 else "shared" if draw < 0.45 else "api"
            self.cluster.add_pod(f"pod-{self._pod_serial}", self.rng.choice(nodes), app=app)

    def _delete_pods(self, count: int) -> None:
        names = self._pod_names()
        for name in self.rng.sample(names, min(count, len(names))):
            self.cluster.delete_pod(name)

    # ----- actions -----------------------------------------------------------------------------------
    def _more_pods(self) -> None:
        self._create_pods(self.rng.randint(1, 5))

    def _fewer_pods(self) -> None:
        self._delete_pods(self.rng.randint(1, 3))

    def _same_name_again(self) -> None:
        names = self._pod_names()
        nodes = self._current_nodes()
        if names and nodes:
            name = self.rng.choice(names)
            self.cluster.delete_pod(name)
            self.cluster.add_pod(name, self.rng.choice(nodes), app=self.rng.choice(("web", "api", "shared")))

    def _crash_and_restart(self) -> None:
        time.sleep(self.rng.uniform(0.0, 0.2))  # land anywhere in the controller's work
        self.cluster.crash_controller()
        if self.rng.random() < 0.7:
            self._delete_pods(self.rng.randint(1, 4))
        if self.rng.random() < 0.5:
            self._create_pods(self.rng.randint(1, 3))
        if self.rng.random() < 0.2 and self._current_nodes():
            self.cluster.delete_node(self.rng.choice(self._current_nodes()))
        self.cluster.start_controller()

    def _api_faults(self) -> None:
        emulator = self.cluster.emulator
        kind = self.rng.choice(
            (
                "status-500",
                "status-409",
                "status-422",
                "create-500",
                "lost-answer",
                "nnp-500",
                "list-500",
                "delete-500",
            )
        )
        times = self.rng.randint(1, 4)
        if kind == "status-500":
            emulator.inject_fault(
                ApiFault(methods=frozenset({"PATCH"}), path=PNA_PATH + r".*/status$", code=500, times=times)
            )
        elif kind == "status-409":
            emulator.inject_fault(
                ApiFault(methods=frozenset({"PATCH"}), path=PNA_PATH, code=409, times=times)
            )
        elif kind == "status-422":
            emulator.inject_fault(
                ApiFault(methods=frozenset({"PATCH"}), path=PNA_PATH + r".*/status$", code=422, times=times)
            )
        elif kind == "create-500":
            emulator.inject_fault(
                ApiFault(methods=frozenset({"POST"}), path=PNA_PATH + "$", code=500, times=times)
            )
        elif kind == "lost-answer":
            emulator.inject_fault(ApiFault(path=PNA_PATH, code=504, times=times, delay_s=2.5, effect=True))
        elif kind == "nnp-500":
            emulator.inject_fault(ApiFault(path=NNP_PATH, code=500, times=times))
        elif kind == "list-500":
            emulator.inject_fault(
                ApiFault(
                    methods=frozenset({"GET"}),
                    path=r"/(pods|podnetworkallocations|nodes)$",
                    code=500,
                    times=times,
                )
            )
        else:
            emulator.inject_fault(
                ApiFault(methods=frozenset({"DELETE"}), path=PNA_PATH, code=500, times=times)
            )

    def _watch_gap(self) -> None:
        """Watches drop and history expires (410 on reconnect); changes land in the gap."""
        emulator = self.cluster.emulator
        emulator.expire_watch_history()
        emulator.drop_watches()
        roll = self.rng.random()
        if roll < 0.5:
            self._delete_pods(self.rng.randint(1, 3))
        elif roll < 0.8:
            self._change_policy()
        else:
            self._same_name_again()

    def _ec2_faults(self) -> None:
        vpc = self.cluster.fleet.vpc
        action = self.rng.choice(EC2_ACTIONS)
        kind = self.rng.random()

        def inject() -> None:
            if kind < 0.4:
                vpc.faults.inject_throttling(action, times=self.rng.randint(1, 6))
            elif kind < 0.7:
                vpc.inject(
                    action,
                    "InternalError",
                    "An internal error has occurred.",
                    times=self.rng.randint(1, 3),
                    http_status=500,
                )
            else:
                vpc.inject(
                    action,
                    "InternalError",
                    "An internal error has occurred.",
                    times=self.rng.randint(1, 2),
                    http_status=500,
                    after_effect=True,
                )

        self.cluster.in_controller(inject)

    def _replace_node(self) -> None:
        """The node's instance goes and a new one registers under the same name (its pods stay bound)."""
        nodes = self._current_nodes()
        if not nodes:
            return
        name = self.rng.choice(nodes)
        self.cluster.delete_node(name)
        time.sleep(self.rng.uniform(0.0, 0.3))
        self.cluster.add_node(name, self.rng.choice(NODE_TYPES))

    def _delete_and_add_node(self) -> None:
        """Scale-down (the node's pods are deleted, as pod GC would) and scale-up."""
        nodes = self._current_nodes()
        if len(nodes) > 1:
            name = self.rng.choice(nodes)
            for pod in self.cluster.pods():
                if pod["spec"].get("nodeName") == name:
                    self.cluster.delete_pod(pod["metadata"]["name"])
            self.cluster.delete_node(name)
        self._add_node()

    def _delete_pna_by_hand(self) -> None:
        pnas = self.cluster.pnas()
        if pnas:
            name = self.rng.choice(pnas)["metadata"]["name"]
            with contextlib.suppress(Exception):
                self.cluster.emulator.delete(
                    "netalloc.dev/v1alpha1", "PodNetworkAllocation", name, MANAGED_NAMESPACE
                )

    def _strip_finalizer_and_delete(self) -> None:
        """A PNA goes without netalloc's release (its finalizer removed by hand)."""
        pnas = self.cluster.pnas()
        if not pnas:
            return
        name = self.rng.choice(pnas)["metadata"]["name"]
        emulator = self.cluster.emulator
        with contextlib.suppress(Exception):
            emulator.patch(
                "netalloc.dev/v1alpha1",
                "PodNetworkAllocation",
                name,
                {"metadata": {"finalizers": None}},
                namespace=MANAGED_NAMESPACE,
            )
            emulator.delete("netalloc.dev/v1alpha1", "PodNetworkAllocation", name, MANAGED_NAMESPACE)

    def _hand_made_pna(self) -> None:
        nodes = self._current_nodes()
        if not nodes:
            return
        self._pod_serial += 1
        name = f"ghost-{self._pod_serial}"
        with contextlib.suppress(Exception):
            self.cluster.emulator.create(
                {
                    "apiVersion": "netalloc.dev/v1alpha1",
                    "kind": "PodNetworkAllocation",
                    "metadata": {"name": name, "namespace": MANAGED_NAMESPACE},
                    "spec": {
                        "podName": name,
                        "podUID": f"00000000-0000-0000-0000-{self._pod_serial:012d}",
                        "nodeName": self.rng.choice(nodes),
                        "mode": "BranchENI",
                        "securityGroupIds": [self.cluster.fleet.app_groups[1]],
                    },
                }
            )

    def _add_sharing_policy(self, group_ids: list[str]) -> None:
        """The pods of app=shared share an ENI per node and group set (SharedENI)."""
        manifest = policy_manifest("shared-sg", "shared", group_ids)
        manifest["metadata"]["annotations"] = {ENI_SHARING_ANNOTATION: ENI_SHARING_NODE}
        self.cluster.emulator.create(manifest)

    def _change_policy(self) -> None:
        emulator = self.cluster.emulator
        groups = self.cluster.fleet.app_groups
        if self.rng.random() < 0.3:  # the sharing policy's groups change: new pods form a new set
            with contextlib.suppress(Exception):
                emulator.patch(
                    "vpcresources.k8s.aws/v1beta1",
                    "SecurityGroupPolicy",
                    "shared-sg",
                    {"spec": {"securityGroups": {"groupIds": sorted(set(self.rng.sample(groups, 2)))}}},
                    namespace=MANAGED_NAMESPACE,
                )
            return
        with contextlib.suppress(Exception):
            if emulator.get(
                "vpcresources.k8s.aws/v1beta1", "SecurityGroupPolicy", "web-sg", MANAGED_NAMESPACE
            ):
                if self.rng.random() < 0.5:
                    emulator.delete(
                        "vpcresources.k8s.aws/v1beta1", "SecurityGroupPolicy", "web-sg", MANAGED_NAMESPACE
                    )
                else:
                    emulator.patch(
                        "vpcresources.k8s.aws/v1beta1",
                        "SecurityGroupPolicy",
                        "web-sg",
                        {"spec": {"securityGroups": {"groupIds": [self.rng.choice(groups)]}}},
                        namespace=MANAGED_NAMESPACE,
                    )
            else:
                self.cluster.add_security_group_policy("web-sg", "web", [self.rng.choice(groups)])

    # ----- invariants ----------------------------------------------------------------------------------
    def _vpc_view(self) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            vpc = self.cluster.fleet.vpc
            return {eni.eni_id: eni for eni in vpc.network_interfaces()}

        return self.cluster.in_controller(read)

    def _check_safety(self, step: int) -> None:
        cluster = self.cluster
        pnas = cluster.pnas()
        pods = {p["metadata"]["name"]: p for p in cluster.pods()}
        nodes = {n["metadata"]["name"]: n["spec"]["providerID"].rsplit("/", 1)[1] for n in cluster.nodes()}
        enis = self._vpc_view()
        for eni_id, eni in enis.items():
            instance = _instance_of(eni)
            if instance:
                self.eni_instance[eni_id] = instance
        by_ip: dict[str, list[str]] = {}
        by_branch: dict[str, list[str]] = {}
        for pna in pnas:
            status = pna.get("status") or {}
            if status.get("state") not in ("Allocated", "Releasing") or not status.get("ip"):
                continue
            name = pna["metadata"]["name"]
            by_ip.setdefault(status["ip"], []).append(name)
            if pna["spec"]["mode"] == "BranchENI":
                by_branch.setdefault(status["eniId"], []).append(name)
            if pna["spec"]["mode"] == "SharedENI" and status["eniId"] in enis:
                self._check_shared(step, name, status, enis[status["eniId"]])
            if status.get("state") != "Allocated":
                continue
            pod = pods.get(pna["spec"]["podName"])
            node = pna["spec"]["nodeName"]
            if pod is None or pod["metadata"]["uid"] != pna["spec"]["podUID"] or node not in nodes:
                continue
            made_for = self.eni_instance.get(status["eniId"])
            if made_for != nodes[node]:
                continue  # recorded on a former instance of the node: corrected as ResourcesLost
            eni = enis.get(status["eniId"])
            if eni is None:
                self._violate(
                    step, "live-eni-deleted", f"{name}: {status['eniId']} of running pod on {node} is gone"
                )
            elif not _has_address(eni, status["ip"], status.get("prefix")):
                self._violate(
                    step, "live-address-taken", f"{name}: {status['ip']} no longer on {status['eniId']}"
                )
        for ip, holders in by_ip.items():
            if len(holders) > 1:
                self._violate(step, "ip-held-twice", f"{ip}: {sorted(holders)}")
        for eni_id, holders in by_branch.items():
            if len(holders) > 1:
                self._violate(step, "branch-held-twice", f"{eni_id}: {sorted(holders)}")

    def _check_shared(self, step: int, name: str, status: dict[str, Any], eni: Any) -> None:
        """A shared pod's address is on an ENI with exactly its groups, and a shared ENI's groups never
        change while it lives (a modify would change them for every pod on it)."""
        groups = tuple(sorted(status.get("securityGroupIds") or ()))
        if tuple(sorted(eni.security_group_ids)) != groups:
            self._violate(
                step,
                "shared-groups-wrong",
                f"{name}: {eni.eni_id} has {eni.security_group_ids}, not {groups}",
            )
        first = self.shared_groups.setdefault(eni.eni_id, tuple(sorted(eni.security_group_ids)))
        if first != tuple(sorted(eni.security_group_ids)):
            self._violate(
                step, "shared-eni-modified", f"{eni.eni_id}: {first} became {eni.security_group_ids}"
            )

    def _converged(self) -> str:
        """ "" when every managed pod is Allocated on its node's instance and no PNA lacks its pod."""
        cluster = self.cluster
        pods = {p["metadata"]["name"]: p for p in cluster.pods()}
        nodes = {n["metadata"]["name"]: n["spec"]["providerID"].rsplit("/", 1)[1] for n in cluster.nodes()}
        pnas = {p["metadata"]["name"]: p for p in cluster.pnas()}
        enis = self._vpc_view()
        for name, pod in pods.items():
            if pod["spec"]["nodeName"] not in nodes:
                continue
            pna = pnas.get(name)
            if pna is None or pna["spec"]["podUID"] != pod["metadata"]["uid"]:
                return f"pod {name} has no PodNetworkAllocation of its own"
            status = pna.get("status") or {}
            if status.get("state") != "Allocated":
                why = str(status.get("message", ""))[:200]
                return f"pod {name}: {status.get('state')} {status.get('reason')}: {why}"
            eni = enis.get(status.get("eniId", ""))
            expected = nodes[pod["spec"]["nodeName"]]
            owner = _instance_of(eni) if eni is not None else ""
            if eni is None or owner != expected or not _has_address(eni, status["ip"], status.get("prefix")):
                return (
                    f"pod {name}: {status.get('ip')} on {status.get('eniId')} is not on instance {expected}"
                )
        for name, record in pnas.items():
            owner_pod = pods.get(name)
            if owner_pod is None or owner_pod["metadata"]["uid"] != record["spec"]["podUID"]:
                return f"PodNetworkAllocation {name} has no pod"
        return ""

    def _recover(self) -> float:
        cluster = self.cluster
        cluster.emulator.clear_faults()
        cluster.in_controller(cluster.fleet.vpc.faults.clear)
        if cluster.controller is None:
            cluster.start_controller()
        started = time.monotonic()
        why = ""

        def done() -> bool:
            nonlocal why
            why = self._converged()
            return not why

        if not wait_until(done, timeout=self.settings.recovery_timeout_s, interval=0.1):
            self._violate(len(self.steps), "not-recovered", why)
        recovery = time.monotonic() - started
        self._check_safety(len(self.steps))
        for pna in self.cluster.pnas():
            if (pna.get("status") or {}).get("state") == "Allocated":
                self.allocated_by_mode[pna["spec"]["mode"]] += 1
        return recovery

    def _teardown(self) -> None:
        cluster = self.cluster
        for name in self._pod_names():
            cluster.delete_pod(name)
        for name in self._current_nodes():
            cluster.delete_node(name)

        def clean() -> bool:
            if cluster.pnas() or cluster.pools():
                return False
            census = cluster.in_controller(cluster.fleet.census)
            return census.total == 0 and census.unattached == 0

        if not wait_until(clean, timeout=self.settings.teardown_timeout_s, interval=0.1):
            census = cluster.in_controller(cluster.fleet.census)
            self._violate(
                len(self.steps) + 1,
                "left-behind",
                f"{len(cluster.pnas())} PNAs, {len(cluster.pools())} NNPs, ENIs {census.model_dump()}",
            )
        cluster.stop_controller()


def _instance_of(eni: Any) -> str:
    """The instance an ENI was made for: its tag, or (the untagged primary ENI) its attachment."""
    return str(eni.tags.get(tagging.TAG_INSTANCE) or (eni.attachment.instance_id if eni.attachment else ""))


def _has_address(eni: Any, ip: str, prefix: str | None) -> bool:
    if eni.interface_type is InterfaceType.BRANCH:
        return bool(eni.private_ip == ip)
    if prefix:
        return prefix in eni.prefixes and ipaddress.ip_address(ip) in ipaddress.ip_network(prefix)
    return ip in eni.secondary_ips


@contextlib.contextmanager
def planted_bug(name: str) -> Iterator[None]:
    """Plant a known bug for the duration, to show the campaign catches it.

    - ``drop-records``: a pool is registered without the PNAs' records and trusts every Allocated
      status (the old runtime popped the records before `register`, so a failed registration lost
      them): addresses in use look free.
    - ``keep-orphans``: PNAs whose pod is gone are never deleted (nothing else removes them without
      garbage collection).
    - ``trust-cache``: a node missing from the cache is drained without asking the API server.
    """
    from controller.k8s.reconcilers.node_pools import NodePools

    if not name:
        yield
        return
    if name == "drop-records":
        from controller.k8s.reconcilers.allocation import Allocation

        original_holdings, original_check = NodePools.holdings, Allocation._backed_by_pool
        NodePools.holdings = lambda self, node_name: {}  # type: ignore[method-assign]
        Allocation._backed_by_pool = lambda self, pna, status, network: None  # type: ignore[method-assign]
        try:
            yield
        finally:
            NodePools.holdings = original_holdings  # type: ignore[method-assign]
            Allocation._backed_by_pool = original_check  # type: ignore[method-assign]
        return
    if name == "keep-orphans":
        from controller.k8s.reconcilers.pod_binding import PodBinding

        original_delete = PodBinding._delete

        async def keeping(self: PodBinding, pna: Any, why: str) -> Any:
            return pna

        PodBinding._delete = keeping  # type: ignore[method-assign]
        try:
            yield
        finally:
            PodBinding._delete = original_delete  # type: ignore[method-assign]
        return
    if name == "trust-cache":
        original_confirm = NodePools._confirm_node

        async def trusting(self: NodePools, node_name: str, cached: Any) -> Any:
            return cached

        NodePools._confirm_node = trusting  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            NodePools._confirm_node = original_confirm  # type: ignore[method-assign]
        return
    raise ValueError(f"unknown planted bug {name!r}: use drop-records, keep-orphans or trust-cache")


def run_campaign(
    schedules: int,
    *,
    seed: int = 1,
    settings: CampaignSettings | None = None,
    on_result: Callable[[ScheduleResult], None] | None = None,
) -> CampaignResult:
    settings = settings or CampaignSettings()
    started = time.monotonic()
    violations: list[Violation] = []
    steps: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    slowest, slowest_seed = 0.0, None
    for index in range(schedules):
        schedule_seed = seed * 100_003 + index
        result = Schedule(schedule_seed, settings).run()
        violations.extend(result.violations)
        steps.update(result.steps)
        modes.update(result.allocated_by_mode)
        if result.recovery_s > slowest:
            slowest, slowest_seed = result.recovery_s, schedule_seed
        if on_result is not None:
            on_result(result)
    return CampaignResult(
        schedules=schedules,
        violations=violations,
        failed_seeds=sorted({v.seed for v in violations}),
        slowest_recovery_s=round(slowest, 3),
        slowest_recovery_seed=slowest_seed,
        elapsed_s=round(time.monotonic() - started, 3),
        steps_by_kind=dict(sorted(steps.items())),
        allocated_by_mode=dict(sorted(modes.items())),
    )


def summary(result: CampaignResult) -> JsonObject:
    return result.model_dump(mode="json")
