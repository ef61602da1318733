"""The shared world of one run: the virtual clock, a simulated VPC with ENI accounting, the API server."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping

from controller.adapters.sim_vpc import SimulatedVpc
from controller.clock import LoopClock
from controller.core.errors import Ec2Error
from controller.core.instance_limits import BUILTIN_BRANCH_LIMITS
from controller.ports.ec2 import InstanceInfo, InstanceTypeInfo, InterfaceType, NetworkInterface
from controller.research.api_server import ApiServer, KubeObject, LatencyModel
from controller.research.baseline_params import BaselineParams
from controller.research.metrics import EniAccounting, MetricsRecorder
from controller.research.scenarios import INSTANCE_TYPES, ScenarioParams


class AccountedVpc(SimulatedVpc):
    """The simulated VPC, remembering which ENIs CreateNetworkInterface made and which were deleted.

    It also models what the port leaves out and RC's trunk sequence needs: an attachment is
    `attaching` for a drawn time before it is `attached` (field notes §3: "ENI create + attach can
    take up to 10 s"), and ModifyNetworkInterfaceAttribute(Attachment.DeleteOnTermination)."""

    def __init__(self, *, attach_delay_s: tuple[float, float] = (0.0, 0.0), **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.created_ids: dict[str, None] = {}
        self.deleted_ids: dict[str, None] = {}
        self.attach_delay_s = attach_delay_s
        self._attach_rng = random.Random(f"attach:{kwargs.get('seed', 0)}")
        self._attached_at: dict[str, float] = {}
        self.delete_on_termination: set[str] = set()

    async def attach_network_interface(self, eni_id: str, *, instance_id: str, device_index: int) -> str:
        attachment_id = await super().attach_network_interface(
            eni_id, instance_id=instance_id, device_index=device_index
        )
        low, high = self.attach_delay_s
        delay = self._attach_rng.uniform(low, high) if high > 0 else 0.0
        self._attached_at[eni_id] = self._clock.now() + delay
        return attachment_id

    def instance_network_interfaces(self, instance_id: str) -> list[NetworkInterface]:
        """The NetworkInterfaces a DescribeInstances answer lists for the instance (no API call here:
        the caller has paid for the DescribeInstances)."""
        return self.network_interfaces(instance_id=instance_id)

    def attachment_status(self, eni_id: str) -> str:
        """EC2's Attachment.Status: `attaching` until the drawn delay has passed, then `attached`."""
        eni = self.network_interface(eni_id)
        if eni is None or eni.attachment is None:
            return "detached"
        return "attached" if self._clock.now() >= self._attached_at.get(eni_id, 0.0) else "attaching"

    async def set_delete_on_termination(self, eni_id: str, attachment_id: str) -> None:
        """ModifyNetworkInterfaceAttribute with Attachment{AttachmentId, DeleteOnTermination: true}."""

        def body() -> None:
            eni = self._enis.get(eni_id)
            if eni is None or eni.attachment is None or eni.attachment.attachment_id != attachment_id:
                raise Ec2Error(
                    "InvalidAttachmentID.NotFound",
                    f"The network interface attachment ID '{attachment_id}' does not exist",
                )
            self.delete_on_termination.add(eni_id)

        await self._invoke("ModifyNetworkInterfaceAttribute", body)

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
        eni = await super().create_network_interface(
            subnet_id=subnet_id,
            security_group_ids=security_group_ids,
            interface_type=interface_type,
            tags=tags,
            client_token=client_token,
            secondary_ip_count=secondary_ip_count,
            prefix_count=prefix_count,
        )
        self.created_ids[eni.eni_id] = None
        return eni

    async def delete_network_interface(self, eni_id: str) -> None:
        await super().delete_network_interface(eni_id)
        self.deleted_ids[eni_id] = None

    def allocator_made_eni_ids(self) -> list[str]:
        """ENIs that exist now and were made by CreateNetworkInterface (instance primaries excluded)."""
        existing = self._enis  # the parent's ENI table: building 30,000 models just to count is slow
        return [eni_id for eni_id in self.created_ids if eni_id in existing]


class SimWorld:
    """Built inside the running virtual-time loop; one per approach per run."""

    def __init__(
        self, *, params: ScenarioParams, seed: int, recorder: MetricsRecorder, baseline: BaselineParams
    ) -> None:
        loop = asyncio.get_running_loop()
        self.params = params
        self.seed = seed
        self.clock = LoopClock()
        self.instance_types: Mapping[str, InstanceTypeInfo] = INSTANCE_TYPES
        self.branch_limits: Mapping[str, int] = BUILTIN_BRANCH_LIMITS
        self.vpc = AccountedVpc(
            instance_types=self.instance_types,
            branch_limits=self.branch_limits,
            clock=self.clock,
            seed=seed,
            observer=recorder.ec2_call,
            attach_delay_s=(params.attach_delay_min_s, params.attach_delay_max_s),
        )
        self.subnet_id = self.vpc.create_subnet(params.subnet_cidr).subnet_id
        self.node_security_group = self.vpc.create_security_group("nodes")
        self.pod_security_group = self.vpc.create_security_group("web-pods")
        # One group per SecurityGroupPolicy. The extra groups are made only when asked for: a group id
        # is a draw from the VPC's id generator, and one more draw would change every later ENI id.
        self.pod_security_groups: list[str] = [self.pod_security_group] + [
            self.vpc.create_security_group(f"web-pods-{index}") for index in range(1, params.group_sets)
        ]
        self.primary_eni_ids: set[str] = set()
        self.api = ApiServer(
            self.clock,
            schedule_at=loop.call_at,
            seed=seed,
            latency=LatencyModel(baseline.annotate_latency_p50_s, baseline.annotate_latency_p99_s),
            watch_delay_s=params.watch_delay_s,
        )
        self.policies: dict[str, list[KubeObject]] = {}

    def launch_node_instance(self) -> InstanceInfo:
        instance = self.vpc.launch_instance(
            self.params.instance_type, self.subnet_id, security_group_ids=[self.node_security_group]
        )
        self.primary_eni_ids.add(instance.primary_eni_id)
        return instance

    def eni_accounting(self, in_use: set[str], pooled: set[str]) -> EniAccounting:
        existing = set(self.vpc.allocator_made_eni_ids())
        leaked = sorted(existing - in_use - pooled)
        return EniAccounting(
            created=len(self.vpc.created_ids),
            deleted=len(self.vpc.deleted_ids),
            in_use=len(in_use),
            pooled=len(pooled),
            leaked=len(leaked),
            leaked_ids=tuple(leaked[:20]),
        )
