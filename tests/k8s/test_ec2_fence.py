"""EC2 writes go through only while this replica holds the lease for the call's whole length."""

from __future__ import annotations

import pytest

from controller.adapters.sim_vpc import LatencyConfig
from controller.clock import ManualClock
from controller.core.errors import Ec2Error, ErrorClass
from controller.k8s.ec2_fence import LEASE_NOT_HELD, LeaseFencedEc2
from controller.sim_fleet import SimFleet


async def test_writes_are_refused_without_the_lease_and_reads_are_not() -> None:
    fleet = SimFleet(clock=ManualClock(), latency=LatencyConfig.none())
    instance = fleet.vpc.launch_instance("m5.large", fleet.subnet.subnet_id)
    asked: list[float] = []
    holding = [False]

    def may_write(seconds: float) -> bool:
        asked.append(seconds)
        return holding[0]

    ec2 = LeaseFencedEc2(fleet.vpc, may_write, max_call_s=7.0)
    assert (await ec2.describe_instance(instance.instance_id)).instance_id == instance.instance_id
    with pytest.raises(Ec2Error) as refused:
        await ec2.assign_private_ips(instance.primary_eni_id, count=1)
    assert refused.value.code == LEASE_NOT_HELD
    assert refused.value.error_class is ErrorClass.TRANSIENT  # retried, never a permanent Failed
    assert fleet.vpc.network_interface(instance.primary_eni_id).secondary_ips == ()  # type: ignore[union-attr]
    holding[0] = True
    assert len(await ec2.assign_private_ips(instance.primary_eni_id, count=1)) == 1
    assert asked == [7.0, 7.0] and ec2.refused == 1
