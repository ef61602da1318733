"""The controller's HTTP endpoints: Prometheus metrics on one port, the kubelet's probes on another.

- ``GET /metrics`` (metrics port, default 8080): the Prometheus text exposition of ``Metrics``.
- ``GET /healthz`` (health port, default 8081): 200 while the process and its event loop answer.
- ``GET /readyz`` (health port): 200 when the supplied readiness check says so, else 503 with a short
  reason. The caller decides what ready means (caches primed, and leader or a healthy standby).

Two ports, as controller-runtime has them, so a NetworkPolicy can open metrics to Prometheus only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict

from controller.observability import Metrics

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], bool]
NotReadyReason = Callable[[], str]


class EndpointPorts(BaseModel):
    """The ports actually bound (a requested port 0 becomes the one the kernel chose)."""

    model_config = ConfigDict(frozen=True)

    metrics: int
    health: int


class Endpoints:
    """Serves ``/metrics`` and ``/healthz`` + ``/readyz`` until ``stop()``."""

    def __init__(
        self,
        metrics: Metrics,
        readiness: ReadinessCheck,
        *,
        not_ready_reason: NotReadyReason | None = None,
        host: str = "0.0.0.0",
        metrics_port: int = 8080,
        health_port: int = 8081,
    ) -> None:
        if metrics_port == health_port and metrics_port != 0:
            raise ValueError(f"metrics and health endpoints need different ports, both are {metrics_port}")
        self.metrics = metrics
        self.readiness = readiness
        self.not_ready_reason = not_ready_reason
        self.host = host
        self._requested = EndpointPorts(metrics=metrics_port, health=health_port)
        self._runners: list[web.AppRunner] = []
        self._ports: EndpointPorts | None = None

    @property
    def ports(self) -> EndpointPorts:
        if self._ports is None:
            raise RuntimeError("the endpoints are not started")
        return self._ports

    async def start(self) -> None:
        if self._ports is not None:
            return
        metrics_app = web.Application()
        metrics_app.router.add_get("/metrics", self._metrics)
        health_app = web.Application()
        health_app.router.add_get("/healthz", self._healthz)
        health_app.router.add_get("/readyz", self._readyz)
        try:
            metrics_port = await self._serve(metrics_app, self._requested.metrics)
            health_port = await self._serve(health_app, self._requested.health)
        except BaseException:
            await self.stop()
            raise
        self._ports = EndpointPorts(metrics=metrics_port, health=health_port)
        log.info("metrics on %s:%d, probes on %s:%d", self.host, metrics_port, self.host, health_port)

    async def stop(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
        self._ports = None

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None)  # probes every few seconds: no access log
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.host, port)
        await site.start()
        bound: int = runner.addresses[0][1]
        return bound

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        try:
            if self.readiness():
                return web.Response(text="ok\n")
            reason = (
                self.not_ready_reason() if self.not_ready_reason is not None else "readiness check is false"
            )
        except Exception as exc:  # a broken check must answer "not ready", not fail the probe handler
            log.warning("readiness check failed: %r", exc)
            reason = f"readiness check failed: {type(exc).__name__}"
        return web.Response(status=503, text=f"not ready: {reason}\n")
