"""The kopf operator: handlers registered on an explicit registry, each a one-line call into the runtime.

Pods, Nodes, Namespaces and SecurityGroupPolicies get only `on.event` handlers, which kopf
implements without writing anything to the object. Only NodeNetworkPools use kopf's create/resume/
delete handlers; kopf's finalizer and its progress and diff-base annotations live on those objects,
under netalloc's own prefix. PodNetworkAllocations are handled by the runtime's own work queue,
with netalloc's release finalizer set when the PNA is created.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from kubernetes import client as k8s

from controller.k8s.resources import NODE_NETWORK_POOL, POD_NETWORK_ALLOCATION, SECURITY_GROUP_POLICY
from controller.k8s.runtime import ControllerRuntime

logger = logging.getLogger("netalloc.operator")

KOPF_PREFIX = "kopf.netalloc.dev"
POOL_FINALIZER = "netalloc.dev/pool"


def connection_info(configuration: k8s.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from the kubernetes client's configuration (kubeconfig or in-cluster)."""
    token = None
    authorization = (configuration.api_key or {}).get("authorization") or (configuration.api_key or {}).get(
        "BearerToken"
    )
    if authorization:
        token = authorization.removeprefix("Bearer ").strip()
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        username=configuration.username or None,
        password=configuration.password or None,
    )


def build_registry(runtime: ControllerRuntime, configuration: k8s.Configuration) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    pna = POD_NETWORK_ALLOCATION
    nnp = NODE_NETWORK_POOL
    sgp = SECURITY_GROUP_POLICY

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(configuration)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = POOL_FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=KOPF_PREFIX, key="last-handled-configuration"
        )
        settings.posting.enabled = False  # netalloc posts its own Events on its own objects
        settings.scanning.disabled = True  # the resources are fixed; no cluster-wide discovery polling
        settings.watching.connect_timeout = 10
        settings.watching.server_timeout = 300
        settings.queueing.idle_timeout = 1.0  # per-object workers exit soon; thousands of pods come and go
        await runtime.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await runtime.stop()

    def watcher(handle: Callable[[str | None, dict[str, Any]], None]) -> Callable[..., Awaitable[None]]:
        async def on_event(event: kopf.RawEvent, **_: Any) -> None:
            await runtime.started.wait()
            handle(event.get("type"), dict(event["object"]))

        return on_event

    kopf.on.event("", "v1", "namespaces", registry=registry, id="namespaces")(watcher(runtime.on_namespace))
    kopf.on.event(*sgp.kopf_resource, registry=registry, id="securitygrouppolicies")(
        watcher(runtime.on_security_group_policy)
    )
    kopf.on.event("", "v1", "nodes", registry=registry, id="nodes")(watcher(runtime.on_node))
    kopf.on.event("", "v1", "pods", registry=registry, id="pods")(watcher(runtime.on_pod))
    kopf.on.event(*pna.kopf_resource, registry=registry, id="podnetworkallocations")(watcher(runtime.on_pna))

    @kopf.on.resume(*nnp.kopf_resource, registry=registry, id="pool")
    @kopf.on.create(*nnp.kopf_resource, registry=registry, id="pool")
    async def pool_registered(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        await runtime.started.wait()
        patch.status.update(await runtime.register_pool(body))

    @kopf.on.delete(*nnp.kopf_resource, registry=registry, id="drain")
    async def pool_deleted(body: kopf.Body, **_: Any) -> None:
        problems = await runtime.drain_pool(body)
        if problems:
            raise kopf.TemporaryError("; ".join(problems), delay=15)

    return registry


async def run_operator(
    runtime: ControllerRuntime,
    configuration: k8s.Configuration,
    *,
    stop_flag: asyncio.Event,
    ready_flag: asyncio.Event | None = None,
) -> None:
    registry = build_registry(runtime, configuration)
    await kopf.operator(
        registry=registry,
        clusterwide=True,
        standalone=True,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
