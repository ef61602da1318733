"""The simulated API server: resourceVersion and 409, pod admission and the exact 422, watches, QPS."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from controller.clock import LoopClock
from controller.research.api_server import (
    POD,
    ApiServer,
    ConflictError,
    InvalidError,
    KubeObject,
    LatencyModel,
    pod_invalid_first_line,
)
from controller.research.security_group_policy import PRESTOP_POLICY_LABEL, prestop_policy_webhook
from controller.research.virtual_time import run_virtual

# A real kube-apiserver v1.26's answer (copied from shared/captures/pod-update-422.json).
CAPTURE = json.loads((Path(__file__).parent / "data" / "pod-update-422.json").read_text(encoding="utf-8"))
REAL_BODY = CAPTURE["body"]
REAL_NAME = REAL_BODY["details"]["name"]


def _first_line_for(name: str) -> str:
    return REAL_BODY["message"].splitlines()[0].replace(f'"{REAL_NAME}"', f'"{name}"')


FIELD_NOTES_422 = _first_line_for("web-1")


def _server() -> ApiServer:
    loop = asyncio.get_running_loop()
    return ApiServer(
        LoopClock(),
        schedule_at=lambda when, cb: (loop.call_at(when, cb), None)[1],
        seed=1,
        latency=LatencyModel(0.015, 0.084),
        watch_delay_s=0.5,
    )


def _pod(name: str, *, prestop: bool) -> KubeObject:
    labels = {PRESTOP_POLICY_LABEL: "true"} if prestop else {}
    return KubeObject(
        kind=POD,
        namespace="apps",
        name=name,
        labels=labels,
        spec={"containers": [{"name": "app", "image": "web:v1"}], "terminationGracePeriodSeconds": 30},
    )


def test_the_422_first_line_is_the_real_servers_without_a_leading_the() -> None:
    assert pod_invalid_first_line(REAL_NAME) == REAL_BODY["message"].splitlines()[0]
    assert not pod_invalid_first_line("web-1").startswith("The ")


def test_annotation_patch_through_a_spec_mutating_update_webhook_answers_422() -> None:
    async def main() -> tuple[InvalidError, int]:
        server = _server()
        server.webhooks.append(prestop_policy_webhook())
        client = server.client("rc", qps=None, burst=None)
        await client.create(_pod("web-1", prestop=True))
        with pytest.raises(InvalidError) as caught:
            await client.merge_patch((POD, "apps", "web-1"), {"metadata": {"annotations": {"a": "b"}}})
        stored = server.peek(POD, "apps", "web-1")
        assert stored is not None and "a" not in stored.annotations  # nothing was written
        return caught.value, client.stats.invalid_422

    error, count = run_virtual(main())
    assert (error.code, error.reason, error.cause, error.field_path) == (
        422,
        "Invalid",
        "FieldValueForbidden",
        "spec",
    )
    assert error.message.splitlines()[0] == FIELD_NOTES_422
    assert "Lifecycle" in error.message.split("\n", 1)[1]  # the diff names the field the webhook added
    body = error.status_body()
    for key in ("kind", "apiVersion", "status", "reason", "code"):
        assert body[key] == REAL_BODY[key], key
    assert body["details"]["kind"] == REAL_BODY["details"]["kind"]
    (cause,) = body["details"]["causes"]
    (real_cause,) = REAL_BODY["details"]["causes"]
    assert (cause["reason"], cause["field"]) == (real_cause["reason"], real_cause["field"])
    assert cause["message"].splitlines()[0] == real_cause["message"].splitlines()[0]
    assert count == 1


def test_the_same_patch_succeeds_for_a_pod_the_policy_does_not_select() -> None:
    async def main() -> KubeObject:
        server = _server()
        server.webhooks.append(prestop_policy_webhook())
        client = server.client("rc", qps=None, burst=None)
        await client.create(_pod("web-2", prestop=False))
        return await client.merge_patch((POD, "apps", "web-2"), {"metadata": {"annotations": {"a": "b"}}})

    assert run_virtual(main()).annotations == {"a": "b"}


def test_image_change_is_allowed_but_another_spec_change_is_not() -> None:
    async def main() -> None:
        server = _server()
        client = server.client("c", qps=None, burst=None)
        stored = await client.create(_pod("web-3", prestop=False))
        new_image = replace(stored, spec={**stored.spec, "containers": [{"name": "app", "image": "web:v2"}]})
        stored = await client.update(new_image)
        other = replace(
            stored, spec={**stored.spec, "containers": [{"name": "app", "image": "web:v2", "x": 1}]}
        )
        with pytest.raises(InvalidError):
            await client.update(other)

    run_virtual(main())


def test_stale_resource_version_is_a_409_and_bindings_bypass_pod_webhooks() -> None:
    async def main() -> int:
        server = _server()
        server.webhooks.append(prestop_policy_webhook())
        client = server.client("c", qps=None, burst=None)
        first = await client.create(_pod("web-4", prestop=True))
        await client.bind(first.key, "node-1")  # not a pod UPDATE: the policy does not run
        with pytest.raises(ConflictError):
            await client.update_status(replace(first, status={"phase": "Running"}))
        return client.stats.conflicts_409

    assert run_virtual(main()) == 1


def test_watch_events_arrive_after_the_delay_in_order() -> None:
    async def main() -> list[tuple[str, str, float]]:
        server = _server()
        seen: list[tuple[str, str, float]] = []
        server.watch(POD, lambda event, obj: seen.append((event, obj.name, server.clock.now())))
        server.apply_create(_pod("a", prestop=False))
        await asyncio.sleep(0.2)
        server.apply_create(_pod("b", prestop=False))
        server.apply_delete((POD, "apps", "a"))
        await asyncio.sleep(5)
        return seen

    assert run_virtual(main()) == [("ADDED", "a", 0.5), ("ADDED", "b", 0.7), ("DELETED", "a", 0.7)]


def test_client_qps_bucket_spaces_requests_out() -> None:
    async def main() -> float:
        server = _server()
        client = server.client("slow", qps=2.0, burst=1)
        await asyncio.gather(*(client.create(_pod(f"p{i}", prestop=False)) for i in range(5)))
        return server.clock.now()

    # burst 1 then 2 per second: the fifth request is sent at t=2 s (plus its latency)
    assert 2.0 <= run_virtual(main()) < 3.0
