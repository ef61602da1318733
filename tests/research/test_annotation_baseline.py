"""The annotation baseline behaves as RC's code does; each test names its field-notes source (§2/§7).

Small worlds (1–12 nodes, a handful of pods) on the virtual-time loop: every test runs in well under
a second of wall time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from controller.adapters.ec2_observer import CallOutcome
from controller.clock import LoopClock
from controller.research.annotation_allocator import AnnotationAllocator, BranchRecord
from controller.research.baseline_params import BaselineParams
from controller.research.compare import _make_approach
from controller.research.metrics import MetricsRecorder
from controller.research.scenarios import ScenarioName, ScenarioParams, scenario_params
from controller.research.sim_world import SimWorld
from controller.research.virtual_time import run_virtual
from controller.research.workload import Workload

PERMANENT = ("InvalidParameterValue", "rejected", 400)  # not retried by the SDK


class LoggingRecorder(MetricsRecorder):
    """Also keeps every EC2 attempt in order: (virtual time, action, outcome)."""

    def __init__(self) -> None:
        super().__init__(LoopClock())
        self.log: list[tuple[float, str, CallOutcome]] = []

    def ec2_call(self, action: str, outcome: CallOutcome) -> None:
        super().ec2_call(action, outcome)
        self.log.append((self._clock.now(), action, outcome))

    def times(self, action: str, outcome: CallOutcome | None = None) -> list[float]:
        return [t for t, a, o in self.log if a == action and (outcome is None or o == outcome)]


@dataclass
class Run:
    recorder: LoggingRecorder
    world: SimWorld
    rc: AnnotationAllocator
    workload: Workload
    samples: list[Any] = field(default_factory=list)


def _run(
    *,
    until_s: float,
    setup: Callable[[Run], None] | None = None,
    during: Callable[[Run], Awaitable[None]] | None = None,
    baseline: BaselineParams | None = None,
    **overrides: Any,
) -> Run:
    params: ScenarioParams = scenario_params(
        ScenarioName.BATCH_SCALE_UP, **{"nodes": 1, "pods_per_node": 1, **overrides}
    )
    baseline = baseline or BaselineParams()

    async def main() -> Run:
        recorder = LoggingRecorder()
        world = SimWorld(params=params, seed=1, recorder=recorder, baseline=baseline)
        approach, _, _ = _make_approach("annotation", params, world, recorder, 1, baseline)
        assert isinstance(approach, AnnotationAllocator)
        workload = Workload(params=params, world=world, approach=approach, recorder=recorder, seed=1)
        run = Run(recorder, world, approach, workload)
        if setup is not None:
            setup(run)
        task = asyncio.get_running_loop().create_task(workload.run())
        if during is not None:
            await during(run)
        await world.clock.sleep(max(0.0, until_s - world.clock.now()))
        task.cancel()
        return run

    return run_virtual(main())


def test_field_notes_trunk_sequence_at_node_init_in_order() -> None:
    run = _run(until_s=60, node_ready_gap_s=0, pods_per_node=0)
    calls = [a for _, a, o in run.recorder.log if o == "ok"]
    trunk_part = calls[: calls.index("ModifyNetworkInterfaceAttribute") + 1]
    assert trunk_part == [
        "DescribeInstances",  # LoadDetails
        "DescribeSubnets",
        "DescribeInstances",  # GetInstanceNetworkInterface: no trunk yet
        "CreateNetworkInterface",
        "CreateNetworkInterfacePermission",
        "AttachNetworkInterface",
        "ModifyNetworkInterfaceAttribute",  # DeleteOnTermination
    ]
    assert run.world.vpc.delete_on_termination  # the attribute was set on the trunk
    # The attach takes 1–5 s here: the first poll (at once) sees `attaching`, polls follow from 1 s.
    polls = run.recorder.times("DescribeNetworkInterfaces")
    assert len(polls) >= 2 and polls[1] - polls[0] >= 1.0
    node = run.world.api.peek("Node", "", "node-0000")
    assert node is not None and node.status["capacity"]["vpc.amazonaws.com/pod-eni"] == "54"


def test_field_notes_trunk_starts_only_once_aws_node_has_marked_the_node() -> None:
    late = _run(until_s=60, node_ready_gap_s=30, pods_per_node=0)
    early = _run(until_s=60, node_ready_gap_s=0, pods_per_node=0)
    assert min(late.recorder.times("CreateNetworkInterface")) >= 30.0
    assert min(early.recorder.times("CreateNetworkInterface")) < 1.0


def test_field_notes_node_init_gets_one_requeue_then_waits_for_the_next_node_event() -> None:
    def fail_trunk_creates(run: Run) -> None:
        run.world.vpc.faults.inject("CreateNetworkInterface", *PERMANENT[:2], times=3, http_status=400)

    run = _run(
        until_s=150,
        setup=fail_trunk_creates,
        node_ready_gap_s=0,
        pods_per_node=0,
        kubelet_status_report_s=100,
    )
    creates = run.recorder.times("CreateNetworkInterface")
    assert len(creates) >= 3
    assert creates[1] - creates[0] < 1.0  # the one requeue (5 ms rate-limited)
    assert creates[2] >= 100.0  # then only the kubelet's next Node status report brings it back
    assert run.rc.node_inits_forgotten == 1


def test_field_notes_ten_node_workers() -> None:
    async def sample(run: Run) -> None:
        for _ in range(400):
            run.samples.append(getattr(run.rc, "node_queue", None) and run.rc.node_queue.in_flight)
            await asyncio.sleep(0.01)

    run = _run(until_s=10, during=sample, nodes=12, pods_per_node=0, node_ready_gap_s=0)
    assert max(s or 0 for s in run.samples) == 10


def test_field_notes_a_failed_association_goes_to_the_front_of_the_delete_queue() -> None:
    cooling = BranchRecord(eni_id="eni-cooling", vlan_id=99, association_id="assoc-x", pod_uid="old")

    async def inject_after_trunk(run: Run) -> None:
        while "node-0000" not in getattr(run.rc, "trunks", {}):
            await asyncio.sleep(0.1)
        trunk = run.rc.trunks["node-0000"]
        cooling.delete_after = run.world.clock.now() + 600  # cooling: must stay behind
        trunk.delete_queue.append(cooling)
        run.world.vpc.faults.inject("AssociateTrunkInterface", *PERMANENT[:2], http_status=400)
        while not run.recorder.times("AssociateTrunkInterface", "error"):
            await asyncio.sleep(0.01)
        run.samples.append([r.eni_id for r in trunk.delete_queue])
        run.samples.append(trunk.delete_queue[0].association_id)

    run = _run(until_s=120, during=inject_after_trunk, node_ready_gap_s=0, pods_per_node=1)
    order, association = run.samples
    assert order[-1] == "eni-cooling" and len(order) == 2  # the failed ENI is ahead of the cooling one
    assert association == ""  # nothing to disassociate
    failed_at = run.recorder.times("AssociateTrunkInterface", "error")[0]
    deletes = run.recorder.times("DeleteNetworkInterface", "ok")
    assert deletes and deletes[0] > failed_at  # deleted by the queue (next 30 s tick), not inline
    assert not run.recorder.times("DisassociateTrunkInterface")
    assert len(run.recorder.times("AssociateTrunkInterface", "ok")) == 1  # the requeued job made a new one


def test_field_notes_delete_network_interface_has_its_own_retry_loop_from_100_ms() -> None:
    async def fail_deletes(run: Run) -> None:
        while not run.recorder.is_ready("apps/web-v1-000001"):  # annotated: the pod holds its branch
            await asyncio.sleep(0.1)
        run.world.vpc.faults.inject("DeleteNetworkInterface", *PERMANENT[:2], times=2, http_status=400)
        run.workload.delete_pod("apps/web-v1-000001")

    run = _run(until_s=300, during=fail_deletes, node_ready_gap_s=0, pods_per_node=1, termination_s=0)
    deletes = run.recorder.times("DeleteNetworkInterface")
    assert len(deletes) == 3 and run.recorder.times("DeleteNetworkInterface", "ok") == deletes[2:]
    # gap = the backoff sleep (100 ms, then 300 ms, +≤10% jitter) + the next call's latency (50–150 ms)
    assert 0.15 <= deletes[1] - deletes[0] <= 0.11 + 0.15 + 1e-6
    assert 0.35 <= deletes[2] - deletes[1] <= 0.33 + 0.15 + 1e-6
    # ... after RC's cool-down (60 s) and on the delete queue's 30 s grid.
    assert deletes[0] - run.recorder.times("DisassociateTrunkInterface")[0] < 1.0
    assert deletes[0] >= 60.0


def test_field_notes_a_422_pod_costs_six_branch_enis_one_per_try() -> None:
    # 1 try + 5 requeues (field notes §2), each a new ENI queued for deletion after the 422.
    run = _run(until_s=600, node_ready_gap_s=0, pods_per_node=1, prestop_fraction=1.0)
    branch_creates = run.recorder.times("CreateNetworkInterface", "ok")[1:]  # the first is the trunk
    assert len(branch_creates) == 6
    assert run.rc.jobs_forgotten == 1


def test_quiet_hook_reports_a_pending_delete_and_then_none() -> None:
    async def watch(run: Run) -> None:
        while not run.recorder.is_ready("apps/web-v1-000001"):
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        run.samples.append(run.rc.next_action_due())
        run.workload.delete_pod("apps/web-v1-000001")
        await asyncio.sleep(1)
        run.samples.append((run.world.clock.now(), run.rc.next_action_due()))
        await asyncio.sleep(200)
        run.samples.append(run.rc.next_action_due())

    run = _run(until_s=260, during=watch, node_ready_gap_s=0, pods_per_node=1, termination_s=0)
    before, (now, pending), after = run.samples
    assert before is None
    assert pending is not None and pending >= now + 59  # the cool-down, then the queue's tick
    assert after is None and run.recorder.times("DeleteNetworkInterface", "ok")
