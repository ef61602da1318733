"""The opt-in client-side Kubernetes limit (KUBE_CLIENT_QPS): off by default, client-go's bucket when set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from controller.clock import ManualClock
from controller.k8s.app import kube_client_limit
from controller.k8s.kube_api import JsonObject, JsonPage
from controller.k8s.kube_limit import RateLimitedKube
from controller.k8s.reconcilers.context import ControllerConfig
from controller.k8s.resources import POD_NETWORK_ALLOCATION as PNAS
from controller.k8s.resources import ResourceRef
from controller.k8s.runtime import ControllerRuntime


class RecordingKube:
    """Answers at once and notes the clock's time of every request it is sent."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.sent: list[tuple[str, float]] = []

    def _note(self, verb: str) -> None:
        self.sent.append((verb, self.clock.now()))

    async def list(self, ref: ResourceRef, namespace: str | None = None) -> tuple[list[JsonObject], str]:
        self._note("list")
        return [], "1"

    async def pages(
        self, ref: ResourceRef, namespace: str | None = None
    ) -> AsyncIterator[tuple[JsonPage, str]]:
        for n in range(3):
            self._note("page")
            yield [{"n": n}], "1"

    async def get(self, ref: ResourceRef, name: str, namespace: str | None = None) -> JsonObject | None:
        self._note("get")
        return None

    async def create(self, ref: ResourceRef, body: JsonObject) -> JsonObject:
        self._note("create")
        return body

    async def merge_patch(
        self,
        ref: ResourceRef,
        name: str,
        patch: JsonObject,
        namespace: str | None = None,
        *,
        subresource: str = "",
    ) -> JsonObject:
        self._note(f"patch{'/' + subresource if subresource else ''}")
        return patch

    async def delete(
        self, ref: ResourceRef, name: str, namespace: str | None = None, *, uid: str | None = None
    ) -> JsonObject | None:
        self._note("delete")
        return None

    async def post_event(
        self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str
    ) -> None:
        self._note("event")


def test_every_request_past_the_burst_waits_its_turn_at_the_qps() -> None:
    clock = ManualClock()
    inner = RecordingKube(clock)
    kube = RateLimitedKube(inner, qps=10.0, burst=2, clock=clock)

    async def main() -> None:
        await kube.create(PNAS, {"metadata": {"name": "a"}})
        await kube.merge_patch(PNAS, "a", {"status": {}}, "ns", subresource="status")
        await kube.get(PNAS, "a", "ns")
        await kube.delete(PNAS, "a", "ns", uid="u")
        await kube.post_event({}, event_type="Normal", reason="R", message="m")
        await kube.list(PNAS)

    asyncio.run(main())
    verbs = [verb for verb, _ in inner.sent]
    assert verbs == ["create", "patch/status", "get", "delete", "event", "list"]
    times = [at for _, at in inner.sent]
    # Two from the burst at once, then one every 1/10 s; the Event has a bucket of its own (full).
    assert times == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.2, 0.3])


def test_events_never_take_the_tokens_an_allocation_s_writes_need() -> None:
    clock = ManualClock()
    inner = RecordingKube(clock)
    kube = RateLimitedKube(inner, qps=1.0, burst=1, clock=clock)

    async def main() -> None:
        for _ in range(3):
            await kube.post_event({}, event_type="Warning", reason="R", message="m")
        await kube.create(PNAS, {"metadata": {"name": "a"}})

    asyncio.run(main())
    assert inner.sent[-1] == ("create", pytest.approx(2.0))  # at once after the Events' own waits


def test_each_page_of_a_list_takes_a_token() -> None:
    clock = ManualClock()
    inner = RecordingKube(clock)
    kube = RateLimitedKube(inner, qps=4.0, burst=1, clock=clock)

    async def main() -> list[JsonPage]:
        return [page async for page, _ in kube.pages(PNAS)]

    pages = asyncio.run(main())
    assert [p[0]["n"] for p in pages] == [0, 1, 2]
    assert [at for _, at in inner.sent] == pytest.approx([0.0, 0.25, 0.5])


def test_the_runtime_has_no_client_limit_unless_configured() -> None:
    clock = ManualClock()
    inner = RecordingKube(clock)

    async def limits_for(instance_type: str) -> Any:
        raise AssertionError("not asked")

    shipped = ControllerRuntime(
        config=ControllerConfig(cluster_name="c1"),
        ec2=None,
        limits_for=limits_for,
        kube=inner,
        clock=clock,  # type: ignore[arg-type]
    )
    assert shipped.kube is inner and shipped.ctx.kube is inner
    limited = ControllerRuntime(
        config=ControllerConfig(cluster_name="c1", kube_client_qps=5.0, kube_client_burst=7),
        ec2=None,  # type: ignore[arg-type]
        limits_for=limits_for,
        kube=inner,
        clock=clock,
    )
    assert isinstance(limited.kube, RateLimitedKube) and limited.ctx.kube is limited.kube
    assert limited.kube.limiter.spec.refill_per_s == 5.0 and limited.kube.limiter.spec.capacity == 7


def test_kube_client_qps_from_the_environment() -> None:
    assert kube_client_limit({}) == {}
    assert kube_client_limit({"KUBE_CLIENT_QPS": "-1", "KUBE_CLIENT_BURST": "30"}) == {
        "kube_client_burst": 30
    }
    assert kube_client_limit({"KUBE_CLIENT_QPS": "50", "KUBE_CLIENT_BURST": "75"}) == {
        "kube_client_qps": 50.0,
        "kube_client_burst": 75,
    }
    with pytest.raises(SystemExit, match="KUBE_CLIENT_QPS='fast'"):
        kube_client_limit({"KUBE_CLIENT_QPS": "fast"})
    with pytest.raises(SystemExit, match="KUBE_CLIENT_QPS='0'"):
        kube_client_limit({"KUBE_CLIENT_QPS": "0"})
    with pytest.raises(SystemExit, match="KUBE_CLIENT_BURST='0'"):
        kube_client_limit({"KUBE_CLIENT_BURST": "0"})


def test_the_shipped_configmap_sets_no_client_limit() -> None:
    from pathlib import Path

    import yaml

    data = yaml.safe_load((Path(__file__).parents[2] / "deploy" / "configmap.yaml").read_text())["data"]
    assert ControllerConfig(cluster_name="c1", **kube_client_limit(data)).kube_client_qps is None
