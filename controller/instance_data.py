"""Where instance-type limits come from: the dataset shipped in the package, or EC2 itself (cached)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources

from controller.core.instance_limits import InstanceCatalog, InstanceLimits, UnknownInstanceTypeError
from controller.ports.ec2 import Ec2Port, InstanceTypeInfo


@cache
def shipped_instance_types() -> Mapping[str, InstanceTypeInfo]:
    raw = json.loads(resources.files("controller.data").joinpath("instance_types.json").read_text())
    return {name: InstanceTypeInfo(instance_type=name, **fields) for name, fields in raw.items()}


def shipped_catalog(branch_limits: Mapping[str, int] | None = None) -> InstanceCatalog:
    return InstanceCatalog(shipped_instance_types(), branch_limits)


class Ec2InstanceLimits:
    """Limits asked of EC2's DescribeInstanceTypes once per type, then served from the catalog."""

    def __init__(self, ec2: Ec2Port, catalog: InstanceCatalog) -> None:
        self._ec2 = ec2
        self._catalog = catalog

    async def get(self, instance_type: str) -> InstanceLimits:
        if instance_type not in self._catalog:
            described = await self._ec2.describe_instance_types([instance_type])
            if not described:
                raise UnknownInstanceTypeError(instance_type)
            for info in described:
                self._catalog.add(info)
        return self._catalog.get(instance_type)
