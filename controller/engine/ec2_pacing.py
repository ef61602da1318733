"""Pacing of netalloc's EC2 calls: one bucket per action, and pods before warm-pool work.

EC2 throttles each action against its own bucket (field notes §4). One client-wide limiter does not
keep a burst of `CreateNetworkInterface` under that action's 5/s, and it lets warm-pool refills spend
the tokens that pods are waiting for. So every call takes one token from its action's bucket (one per
logical call: the adapters make one attempt, and a retry is a new call), and the caller says who waits
on it:
- `Priority.POD` (the default): a pod is waiting. It reserves the next token and queues in arrival order.
- `Priority.POOL` (inside `pool_work()`): warm-pool work no pod waits on. It takes a token only while no
  pod waits for an allocation (`pods_seeking`, from the runtime) or is queued on that action, and the
  bucket stays above `POOL_RESERVE` of its burst: refills use spare capacity, and a burst of pods that
  follows still finds the bucket's headroom.
A pod that comes to wait on pool work already in flight promotes it (`PriorityCell.promote`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from enum import IntEnum
from typing import TypeVar

from controller.clock import Clock
from controller.core.ec2_limits import DEFAULT_ACTION_BUCKETS, default_spec_for
from controller.core.token_bucket import BucketSpec, TokenBucket
from controller.ports.ec2 import (
    Ec2Port,
    InstanceInfo,
    InstanceTypeInfo,
    InterfaceType,
    NetworkInterface,
    SubnetCidrReservation,
    SubnetInfo,
    TrunkAssociation,
)

T = TypeVar("T")
POOL_RESERVE = 0.5  # pool work leaves this share of each bucket's burst to pods
POOL_POLL_S = 1.0  # pool work waiting for spare tokens looks again at least this often


class Priority(IntEnum):
    POD = 0  # a pod waits on this call
    POOL = 1  # warm-pool work: spare tokens only


class PriorityCell:
    """The priority of one piece of work; mutable, so a pod that waits on it can promote it."""

    __slots__ = ("_promoted", "priority")

    def __init__(self, priority: Priority) -> None:
        self.priority = priority
        self._promoted: asyncio.Event | None = None

    def promote(self) -> None:
        self.priority = Priority.POD
        if self._promoted is not None:
            self._promoted.set()  # wakes pool work waiting for spare tokens at once

    async def wait_promoted(self, clock: Clock, seconds: float) -> None:
        """Sleep `seconds`, or less if the work is promoted meanwhile."""
        if self._promoted is None:
            self._promoted = asyncio.Event()
        sleeper = asyncio.ensure_future(clock.sleep(seconds))
        waiter = asyncio.ensure_future(self._promoted.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waiter):
                task.cancel()


_CURRENT: ContextVar[PriorityCell | None] = ContextVar("netalloc_ec2_priority", default=None)


def current_priority() -> Priority:
    cell = _CURRENT.get()
    return Priority.POD if cell is None else cell.priority


@contextlib.contextmanager
def pool_work(cell: PriorityCell | None = None) -> Iterator[PriorityCell]:
    """Run the block's EC2 calls (and those of tasks it starts) as pool work."""
    cell = cell or PriorityCell(Priority.POOL)
    token = _CURRENT.set(cell)
    try:
        yield cell
    finally:
        _CURRENT.reset(token)


def _scaled(spec: BucketSpec, share: float) -> BucketSpec:
    return BucketSpec(capacity=max(1.0, spec.capacity * share), refill_per_s=spec.refill_per_s * share)


class Ec2Pacer:
    """One token bucket per EC2 action, `share` of the account's (other callers use the rest)."""

    def __init__(
        self, clock: Clock, *, share: float = 1.0, table: Mapping[str, BucketSpec] = DEFAULT_ACTION_BUCKETS
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"ec2 pacing share must be in (0, 1], not {share}")
        self.clock = clock
        self.share = share
        self.table = table
        self._buckets: dict[str, TokenBucket] = {}
        self._pods_waiting: Counter[str] = Counter()
        # Are pods waiting on allocations that will call EC2 (beyond those queued here right now)? The
        # runtime knows: its workers may be busy elsewhere while more pods wait in its work queue.
        self.pods_seeking: Callable[[], bool] = lambda: False

    def bucket(self, action: str) -> TokenBucket:
        bucket = self._buckets.get(action)
        if bucket is None:
            spec = _scaled(default_spec_for(action, self.table), self.share)
            bucket = self._buckets[action] = TokenBucket(spec, self.clock.now())
        return bucket

    async def acquire(self, action: str) -> None:
        """Wait until this call of `action` may go."""
        bucket = self.bucket(action)
        clock = self.clock
        cell = _CURRENT.get()
        reserve = bucket.spec.capacity * POOL_RESERVE
        while cell is not None and cell.priority is Priority.POOL:
            now = clock.now()
            tokens = bucket.tokens(now)
            if self._pods_waiting[action] == 0 and tokens >= reserve + 1 and not self.pods_seeking():
                bucket.take(now)
                return
            wait = max(reserve + 1 - tokens, 1.0) / bucket.spec.refill_per_s
            await cell.wait_promoted(clock, min(wait, POOL_POLL_S))
        delay = bucket.reserve(clock.now())
        if delay > 0:
            self._pods_waiting[action] += 1
            try:
                await clock.sleep(delay)
            finally:
                self._pods_waiting[action] -= 1


class PacedEc2:
    """An `Ec2Port` whose every call first waits for its action's token (`Ec2Pacer`)."""

    def __init__(self, port: Ec2Port, pacer: Ec2Pacer) -> None:
        self._port = port
        self.pacer = pacer

    async def _call(self, action: str, call: Callable[[], Awaitable[T]]) -> T:
        await self.pacer.acquire(action)
        return await call()

    async def describe_instance_types(self, instance_types: list[str]) -> list[InstanceTypeInfo]:
        return await self._call(
            "DescribeInstanceTypes", lambda: self._port.describe_instance_types(instance_types)
        )

    async def describe_instance(self, instance_id: str) -> InstanceInfo:
        return await self._call("DescribeInstances", lambda: self._port.describe_instance(instance_id))

    async def describe_subnet(self, subnet_id: str) -> SubnetInfo:
        return await self._call("DescribeSubnets", lambda: self._port.describe_subnet(subnet_id))

    async def create_network_interface(
        self,
        *,
        subnet_id: str,
        security_group_ids: list[str],
        interface_type: InterfaceType = InterfaceType.INTERFACE,
        tags: dict[str, str],
        client_token: str,
        secondary_ip_count: int = 0,
        prefix_count: int = 0,
    ) -> NetworkInterface:
        return await self._call(
            "CreateNetworkInterface",
            lambda: self._port.create_network_interface(
                subnet_id=subnet_id,
                security_group_ids=security_group_ids,
                interface_type=interface_type,
                tags=tags,
                client_token=client_token,
                secondary_ip_count=secondary_ip_count,
                prefix_count=prefix_count,
            ),
        )

    async def create_network_interface_permission(self, eni_id: str, *, aws_account_id: str) -> None:
        await self._call(
            "CreateNetworkInterfacePermission",
            lambda: self._port.create_network_interface_permission(eni_id, aws_account_id=aws_account_id),
        )

    async def attach_network_interface(self, eni_id: str, *, instance_id: str, device_index: int) -> str:
        return await self._call(
            "AttachNetworkInterface",
            lambda: self._port.attach_network_interface(
                eni_id, instance_id=instance_id, device_index=device_index
            ),
        )

    async def detach_network_interface(self, attachment_id: str, *, force: bool = False) -> None:
        await self._call(
            "DetachNetworkInterface", lambda: self._port.detach_network_interface(attachment_id, force=force)
        )

    async def delete_network_interface(self, eni_id: str) -> None:
        await self._call("DeleteNetworkInterface", lambda: self._port.delete_network_interface(eni_id))

    async def associate_trunk_interface(
        self, *, branch_eni_id: str, trunk_eni_id: str, vlan_id: int, client_token: str
    ) -> TrunkAssociation:
        return await self._call(
            "AssociateTrunkInterface",
            lambda: self._port.associate_trunk_interface(
                branch_eni_id=branch_eni_id,
                trunk_eni_id=trunk_eni_id,
                vlan_id=vlan_id,
                client_token=client_token,
            ),
        )

    async def disassociate_trunk_interface(self, association_id: str) -> None:
        await self._call(
            "DisassociateTrunkInterface", lambda: self._port.disassociate_trunk_interface(association_id)
        )

    async def describe_trunk_associations(self, trunk_eni_id: str) -> list[TrunkAssociation]:
        return await self._call(
            "DescribeTrunkInterfaceAssociations", lambda: self._port.describe_trunk_associations(trunk_eni_id)
        )

    async def assign_private_ips(self, eni_id: str, *, count: int) -> list[str]:
        return await self._call(
            "AssignPrivateIpAddresses", lambda: self._port.assign_private_ips(eni_id, count=count)
        )

    async def unassign_private_ips(self, eni_id: str, *, ips: list[str]) -> None:
        await self._call(
            "UnassignPrivateIpAddresses", lambda: self._port.unassign_private_ips(eni_id, ips=ips)
        )

    async def assign_prefixes(self, eni_id: str, *, count: int) -> list[str]:
        return await self._call(
            "AssignPrivateIpAddresses", lambda: self._port.assign_prefixes(eni_id, count=count)
        )

    async def unassign_prefixes(self, eni_id: str, *, prefixes: list[str]) -> None:
        await self._call(
            "UnassignPrivateIpAddresses", lambda: self._port.unassign_prefixes(eni_id, prefixes=prefixes)
        )

    async def modify_security_groups(self, eni_id: str, *, security_group_ids: list[str]) -> None:
        await self._call(
            "ModifyNetworkInterfaceAttribute",
            lambda: self._port.modify_security_groups(eni_id, security_group_ids=security_group_ids),
        )

    async def describe_network_interfaces(
        self,
        *,
        tags: dict[str, str] | None = None,
        eni_ids: list[str] | None = None,
        subnet_id: str | None = None,
    ) -> list[NetworkInterface]:
        return await self._call(
            "DescribeNetworkInterfaces",
            lambda: self._port.describe_network_interfaces(tags=tags, eni_ids=eni_ids, subnet_id=subnet_id),
        )

    async def describe_subnet_cidr_reservations(self, subnet_id: str) -> list[SubnetCidrReservation]:
        return await self._call(
            "GetSubnetCidrReservations", lambda: self._port.describe_subnet_cidr_reservations(subnet_id)
        )

    async def create_tags(self, resource_id: str, *, tags: dict[str, str]) -> None:
        await self._call("CreateTags", lambda: self._port.create_tags(resource_id, tags=tags))
