"""The kopf operator: only `on.event` handlers, each a one-line call into the runtime.

kopf's `on.event` writes nothing to the objects it reports (no finalizers, no progress or diff-base
annotations), so no Pod, Node or any other object is ever written by kopf on netalloc's behalf. All
durable state, finalizers and retries are netalloc's own, on its own objects, through the runtime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from kubernetes import client as k8s

from controller.k8s.runtime import REFS, ControllerRuntime

logger = logging.getLogger("netalloc.operator")
START_RETRY_S = (0.5, 30.0)  # backoff while the first lists fail (API server starting, RBAC settling)


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


async def start_with_retries(runtime: ControllerRuntime) -> None:
    delay = START_RETRY_S[0]
    while True:
        try:
            await runtime.start()
            return
        except Exception as error:
            logger.warning("could not start the controller (%s); retrying in %.1f s", error, delay)
            await asyncio.sleep(delay)
            delay = min(START_RETRY_S[1], delay * 2)


def build_registry(runtime: ControllerRuntime, configuration: k8s.Configuration) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(configuration)

    # kopf logs every handled watch event at INFO ("Handler 'pods' succeeded"): a line per event, not
    # per change. netalloc logs the changes it makes; kopf's warnings and errors still show.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # netalloc posts its own Events on its own objects
        settings.scanning.disabled = True  # the resources are fixed; no cluster-wide discovery polling
        settings.watching.connect_timeout = 10
        settings.watching.server_timeout = 300
        settings.watching.reconnect_backoff = 0.5
        settings.queueing.idle_timeout = 1.0  # per-object workers exit soon; thousands of pods come and go
        await start_with_retries(runtime)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await runtime.stop()

    def watcher(kind: str) -> Callable[..., Awaitable[None]]:
        async def on_event(event: kopf.RawEvent, **_: Any) -> None:
            await runtime.started.wait()
            runtime.on_event(kind, event.get("type"), event["object"])

        return on_event

    for kind, ref in REFS.items():
        kopf.on.event(*ref.kopf_resource, registry=registry, id=kind)(watcher(kind))
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
