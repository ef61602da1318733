"""The metrics and probe endpoints, over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from controller.k8s.http_endpoints import Endpoints
from controller.observability import Metrics


class Readiness:
    def __init__(self) -> None:
        self.ready = False
        self.reason = "caches not primed"

    def __call__(self) -> bool:
        return self.ready


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def readiness() -> Readiness:
    return Readiness()


@pytest.fixture
async def endpoints(metrics: Metrics, readiness: Readiness) -> AsyncIterator[Endpoints]:
    served = Endpoints(
        metrics,
        readiness,
        not_ready_reason=lambda: readiness.reason,
        host="127.0.0.1",
        metrics_port=0,
        health_port=0,
    )
    await served.start()
    yield served
    await served.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


async def test_metrics_serves_the_prometheus_exposition(
    endpoints: Endpoints, metrics: Metrics, http: aiohttp.ClientSession
) -> None:
    metrics.ec2_calls.labels(action="CreateNetworkInterface", outcome="ok").inc(3)
    async with http.get(url(endpoints.ports.metrics, "/metrics")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
        body = await response.text()
    assert 'netalloc_ec2_calls_total{action="CreateNetworkInterface",outcome="ok"} 3.0' in body
    assert body.encode() == metrics.exposition()


async def test_probes_are_on_the_health_port_and_metrics_on_the_metrics_port(
    endpoints: Endpoints, http: aiohttp.ClientSession
) -> None:
    ports = endpoints.ports
    assert ports.metrics != ports.health
    async with http.get(url(ports.health, "/metrics")) as response:
        assert response.status == 404
    async with http.get(url(ports.metrics, "/healthz")) as response:
        assert response.status == 404


async def test_healthz_answers_200(endpoints: Endpoints, http: aiohttp.ClientSession) -> None:
    async with http.get(url(endpoints.ports.health, "/healthz")) as response:
        assert response.status == 200
        assert (await response.text()).strip() == "ok"


async def test_readyz_follows_the_readiness_check(
    endpoints: Endpoints, readiness: Readiness, http: aiohttp.ClientSession
) -> None:
    readyz = url(endpoints.ports.health, "/readyz")
    async with http.get(readyz) as response:
        assert response.status == 503
        assert (await response.text()).strip() == "not ready: caches not primed"

    readiness.ready = True
    async with http.get(readyz) as response:
        assert response.status == 200

    readiness.ready = False
    readiness.reason = "lease not observed yet"
    async with http.get(readyz) as response:
        assert response.status == 503
        assert "lease not observed yet" in await response.text()


async def test_readyz_is_503_when_the_check_itself_fails(
    metrics: Metrics, http: aiohttp.ClientSession
) -> None:
    def broken() -> bool:
        raise RuntimeError("cache gone")

    served = Endpoints(metrics, broken, host="127.0.0.1", metrics_port=0, health_port=0)
    await served.start()
    try:
        async with http.get(url(served.ports.health, "/readyz")) as response:
            assert response.status == 503
            assert "RuntimeError" in await response.text()
    finally:
        await served.stop()


async def test_stop_closes_the_ports(
    metrics: Metrics, readiness: Readiness, http: aiohttp.ClientSession
) -> None:
    served = Endpoints(metrics, readiness, host="127.0.0.1", metrics_port=0, health_port=0)
    await served.start()
    health = served.ports.health
    await served.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(url(health, "/healthz")):
            pass
    with pytest.raises(RuntimeError):
        _ = served.ports


def test_the_same_fixed_port_for_both_is_refused(metrics: Metrics, readiness: Readiness) -> None:
    with pytest.raises(ValueError, match="different ports"):
        Endpoints(metrics, readiness, metrics_port=9000, health_port=9000)
