"""The API emulator answers as the real kube-apiserver v1.26 did, byte for byte where it can be.

`../shared/captures/` holds the real server's answers. Each case is replayed against the emulator
over HTTP and compared field by field: status code, reason, message, details and causes. Where the
real server lists several field errors, their order comes from a Go map walk (kube-openapi's object
validator), so it is not fixed: those are compared as sets, everything else exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from controller.k8s.api_emulator import KubeApiEmulator
from controller.k8s.sandbox import crd_directory


def _captures() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "captures"
        if candidate.is_dir():
            return candidate
    return None


CAPTURES = _captures()
pytestmark = pytest.mark.skipif(CAPTURES is None, reason="shared/captures is not beside this checkout")
BASE = "/apis/netalloc.dev/v1alpha1/namespaces/bench/podnetworkallocations"
GOOD = {
    "apiVersion": "netalloc.dev/v1alpha1",
    "kind": "PodNetworkAllocation",
    "metadata": {"name": "capture-1"},
    "spec": {
        "mode": "SecondaryIP",
        "nodeName": "bench-node-0",
        "podName": "capture-1",
        "podUID": "00000000-0000-0000-0000-000000000001",
        "securityGroupIds": [],
    },
}
MERGE = {"Content-Type": "application/merge-patch+json"}


def capture(name: str) -> dict[str, Any]:
    assert CAPTURES is not None
    cases: dict[str, Any] = json.loads((CAPTURES / "pna-api-responses.json").read_text())["responses"]
    return cases[name]  # type: ignore[no-any-return]


# The capture was taken when spec.mode had these values; the real server lists a CRD's enum in order,
# each quoted, joined by ", ". The CRD has gained SharedENI since, so the expected text lists the
# shipped CRD's values in the same format (only the list changes, never the format).
CAPTURED_MODES = '"BranchENI", "PrefixIP", "SecondaryIP"'


def _shipped_modes() -> str:
    crd = yaml.safe_load((crd_directory() / "podnetworkallocations.yaml").read_text())
    enum = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["mode"]
    return ", ".join(f'"{value}"' for value in enum["enum"])


def with_shipped_modes(value: Any) -> Any:
    """The captured answer, as the real server gives it for the shipped CRD's list of modes."""
    text = json.dumps(value).replace(CAPTURED_MODES.replace('"', '\\"'), _shipped_modes().replace('"', '\\"'))
    return json.loads(text)


@pytest.fixture
async def server() -> AsyncIterator[tuple[KubeApiEmulator, aiohttp.ClientSession]]:
    emulator = KubeApiEmulator(garbage_collection=False)
    emulator.install_crds_from(crd_directory(), recursive=True)
    emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
    async with emulator, aiohttp.ClientSession(base_url=emulator.base_url) as session:
        created = await session.post(BASE, json=GOOD)
        assert created.status == 201
        yield emulator, session


async def answer(response: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    return response.status, await response.json()


def split_list(message: str) -> tuple[str, set[str]]:
    head, _, rest = message.partition("[")
    return head, set(re.split(r", (?=spec\.|status\.|metadata\.)", rest.rstrip("]")))


@pytest.mark.parametrize(
    ("case", "request_"),
    [
        ("create_pna_exists_409", ("POST", BASE, GOOD, None)),
        ("get_pna_missing_404", ("GET", f"{BASE}/nope", None, None)),
        (
            "status_merge_patch_stale_rv_409",
            (
                "PATCH",
                f"{BASE}/capture-1/status",
                {"metadata": {"resourceVersion": "1"}, "status": {"state": "Pending"}},
                MERGE,
            ),
        ),
        (
            "status_patch_invalid_enum_422",
            ("PATCH", f"{BASE}/capture-1/status", {"status": {"state": "Done"}}, MERGE),
        ),
        (
            "replace_stale_rv_409",
            (
                "PUT",
                f"{BASE}/capture-1",
                {**GOOD, "metadata": {"name": "capture-1", "resourceVersion": "1"}},
                None,
            ),
        ),
    ],
)
async def test_the_emulator_answers_exactly_as_the_real_server(
    server: tuple[KubeApiEmulator, aiohttp.ClientSession], case: str, request_: tuple[str, str, Any, Any]
) -> None:
    _, session = server
    method, path, body, headers = request_
    data = json.dumps(body) if body is not None and headers else None
    response = await session.request(method, path, json=None if data else body, data=data, headers=headers)
    code, got = await answer(response)
    want = capture(case)
    assert code == want["code"]
    assert got == want["body"]


async def test_several_schema_errors_carry_the_real_message_and_causes(
    server: tuple[KubeApiEmulator, aiohttp.ClientSession],
) -> None:
    _, session = server
    bad = {
        **GOOD,
        "metadata": {"name": "capture-bad"},
        "spec": {
            **GOOD["spec"],
            "podName": "capture-bad",
            "mode": "Overlay",
            "securityGroupIds": ["sg-NOTHEX"],
        },
    }
    code, got = await answer(await session.post(BASE, json=bad))
    want = with_shipped_modes(capture("create_pna_invalid_422"))
    assert code == want["code"] == 422
    assert {k: v for k, v in got.items() if k not in ("message", "details")} == {
        k: v for k, v in want["body"].items() if k not in ("message", "details")
    }
    assert split_list(got["message"]) == split_list(want["body"]["message"])
    details, wanted = dict(got["details"]), dict(want["body"]["details"])
    causes, wanted_causes = details.pop("causes"), wanted.pop("causes")
    assert details == wanted
    assert sorted(causes, key=lambda c: c["field"]) == sorted(wanted_causes, key=lambda c: c["field"])


async def test_a_pod_update_that_changes_the_spec_is_refused_like_the_real_server(
    server: tuple[KubeApiEmulator, aiohttp.ClientSession],
) -> None:
    emulator, session = server
    emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "app-03", "namespace": "bench"},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
        }
    )
    patch = {
        "metadata": {"annotations": {"vpc.amazonaws.com/pod-eni": "[]"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "nginx",
                    "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
                }
            ]
        },
    }
    response = await session.patch(
        "/api/v1/namespaces/bench/pods/app-03",
        data=json.dumps(patch),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    code, got = await answer(response)
    assert CAPTURES is not None
    real = json.loads((CAPTURES / "pod-update-422.json").read_text())
    want = real["body"]
    assert code == real["http_status"] == 422
    assert (got["status"], got["reason"], got["code"]) == (want["status"], want["reason"], want["code"])
    assert got["message"].split("\n")[0] == want["message"].split("\n")[0]  # the server's diff follows
    (cause,) = got["details"]["causes"]
    (wanted,) = want["details"]["causes"]
    assert (cause["reason"], cause["field"]) == (wanted["reason"], wanted["field"])
    assert cause["message"].split("\n")[0] == wanted["message"].split("\n")[0]
    assert {k: v for k, v in got["details"].items() if k != "causes"} == {
        k: v for k, v in want["details"].items() if k != "causes"
    }
    image_only = {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}
    allowed = await session.patch(
        "/api/v1/namespaces/bench/pods/app-03",
        data=json.dumps(image_only),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert allowed.status == 200
