"""Builders for pools in a known shape, shared by the core tests."""

from __future__ import annotations

from controller.core.node_pool import NodePool, PoolEni
from controller.instance_data import shipped_catalog
from controller.settings import PoolSettings


def new_pool(instance_type: str = "m5.large", **settings: object) -> NodePool:
    pool = NodePool(
        node_name="node-a",
        instance_id="i-0123456789abcdef0",
        subnet_id="subnet-0123456789abcdef0",
        subnet_cidr="10.0.0.0/16",
        limits=shipped_catalog().get(instance_type),
        settings=PoolSettings.model_validate(settings),
    )
    pool.add_eni(PoolEni(eni_id="eni-primary", device_index=0, primary=True))
    return pool


def prefix(n: int) -> str:
    return f"10.0.{n}.0/28"
