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
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory  # kopf is pinned
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


class ForgetfulMemories(ResourceMemories):
    """kopf's per-object memories, never kept.

    kopf remembers every object it ever saw (about 1 KiB each: a memo, an error throttler, index and
    daemon state) until the object is deleted; 10,000 pods cost 9 MiB. They serve daemons, timers,
    indexes and the resumption of change handlers, none of which netalloc registers: `on.event`
    handlers only need a memory for the event at hand, which an ephemeral one is.
    """

    async def recall(
        self,
        raw_body: Any,
        *,
        memobase: Any = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        return await super().recall(
            raw_body, memobase=memobase, noticed_by_listing=noticed_by_listing, ephemeral=True
        )


class NoDiffBase(kopf.DiffBaseStorage):
    """No last-handled configuration: it feeds change handlers only, and netalloc has none.

    kopf's default deep-copies every watched body to build one on each event (6% of the controller's
    CPU in a burst, measured with py-spy), then throws it away unless a change handler stores it.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class NoProgress(kopf.ProgressStorage):
    """No handler progress: it exists for retried change handlers; `on.event` handlers keep none."""

    def fetch(self, *, key: Any, body: kopf.Body) -> Any:
        return None

    def store(self, *, key: Any, record: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def purge(self, *, key: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        return None

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        return essence


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
        settings.persistence.diffbase_storage = NoDiffBase()
        settings.persistence.progress_storage = NoProgress()
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
        memories=ForgetfulMemories(),
        clusterwide=True,
        standalone=True,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
