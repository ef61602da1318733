"""The Kubernetes API emulator, driven by the real kubernetes client, raw HTTP, and a real kopf operator."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import kopf
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

from controller.k8s import resources
from controller.k8s.api_emulator import (
    FieldSelector,
    KubeApiEmulator,
    KubeApiError,
    LabelSelector,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    emulated_cluster,
)

CRDS = Path(__file__).resolve().parents[2] / "crds"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
GROUP, VERSION, PNA = resources.GROUP, resources.VERSION, resources.POD_NETWORK_ALLOCATION.plural
T = TypeVar("T")
NOW = "2025-03-01T12:00:00Z"


@pytest.fixture
async def emulator() -> AsyncIterator[KubeApiEmulator]:
    async with emulated_cluster(CRDS, CRDS / "optional") as running:
        yield running


@pytest.fixture
async def api(emulator: KubeApiEmulator) -> AsyncIterator[k8s.ApiClient]:
    configuration = k8s.Configuration()
    configuration.host = emulator.base_url
    api_client = k8s.ApiClient(configuration)
    yield api_client
    api_client.close()


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking kubernetes-client call off the loop that serves the emulator."""
    return await asyncio.to_thread(function, *args, **kwargs)


async def call_error(function: Callable[..., Any], *args: Any, **kwargs: Any) -> ApiException:
    with pytest.raises(ApiException) as caught:
        await call(function, *args, **kwargs)
    return caught.value


def pod(name: str, *, node: str = "node-a", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.example/app:1"}]},
    }


def pna(name: str, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": resources.API_VERSION,
        "kind": "PodNetworkAllocation",
        "metadata": {"name": name, "namespace": "default"} | metadata,
        "spec": {"podName": name, "podUID": "uid-" + name, "nodeName": "node-a", "mode": "SecondaryIP"},
    }


# --- discovery ---------------------------------------------------------------------------------------------


async def test_discovery_serves_builtins_and_installed_crds(api: k8s.ApiClient) -> None:
    core = await call(k8s.CoreV1Api(api).get_api_resources)
    core_names = {r.name for r in core.resources}
    assert {"pods", "pods/status", "pods/eviction", "nodes", "namespaces", "events"} <= core_names
    groups = await call(k8s.ApisApi(api).get_api_versions)
    assert {"netalloc.dev", "vpcresources.k8s.aws", "coordination.k8s.io", "events.k8s.io"} <= {
        g.name for g in groups.groups
    }
    listing = await call(
        api.call_api,
        f"/apis/{GROUP}/{VERSION}",
        "GET",
        response_type="object",
        _return_http_data_only=True,
    )
    by_name = {r["name"]: r for r in listing["resources"]}
    assert by_name[PNA]["namespaced"] is True and by_name[PNA]["shortNames"] == ["pna"]
    assert by_name["nodenetworkpools"]["namespaced"] is False
    assert {f"{PNA}/status", "nodenetworkpools/status"} <= set(by_name)


async def test_crd_posted_over_http_is_served_and_its_removal_drops_objects(
    emulator: KubeApiEmulator, api: k8s.ApiClient
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "properties": {"size": {"type": "integer"}}}
                    },
                }
            ],
        },
    }
    created = await call(k8s.ApiextensionsV1Api(api).create_custom_resource_definition, crd)
    assert {c.type for c in created.status.conditions} == {"Established", "NamesAccepted"}
    objects = k8s.CustomObjectsApi(api)
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "size": 3}
    assert (await call(objects.create_cluster_custom_object, "example.com", "v1", "widgets", widget))[
        "size"
    ] == 3
    await call(k8s.ApiextensionsV1Api(api).delete_custom_resource_definition, "widgets.example.com")
    error = await call_error(objects.list_cluster_custom_object, "example.com", "v1", "widgets")
    assert error.status == 404
    assert "widgets" not in {r.plural for r in emulator.resources()}


# --- CRUD with the kubernetes client -----------------------------------------------------------------------


async def test_pod_crud_list_selectors_and_patch(emulator: KubeApiEmulator, api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    web = await call(core.create_namespaced_pod, "default", pod("web", labels={"app": "web", "tier": "a"}))
    assert web.metadata.uid and web.metadata.resource_version.isdigit()
    assert web.metadata.namespace == "default" and web.metadata.creation_timestamp is not None
    await call(core.create_namespaced_pod, "default", pod("db", node="node-b", labels={"app": "db"}))

    duplicate = await call_error(core.create_namespaced_pod, "default", pod("web"))
    assert duplicate.status == 409 and json.loads(duplicate.body)["reason"] == "AlreadyExists"

    listed = await call(core.list_namespaced_pod, "default", label_selector="app=web")
    assert [p.metadata.name for p in listed.items] == ["web"]
    assert listed.metadata.resource_version == str(emulator.resource_version)
    by_node = await call(core.list_pod_for_all_namespaces, field_selector="spec.nodeName=node-b")
    assert [p.metadata.name for p in by_node.items] == ["db"]
    set_based = await call(core.list_namespaced_pod, "default", label_selector="app in (web,db),tier!=a")
    assert [p.metadata.name for p in set_based.items] == ["db"]

    patched = await call(core.patch_namespaced_pod, "web", "default", {"metadata": {"labels": {"x": "y"}}})
    assert patched.metadata.labels == {"app": "web", "tier": "a", "x": "y"}
    assert int(patched.metadata.resource_version) > int(web.metadata.resource_version)

    await call(core.delete_namespaced_pod, "web", "default")
    missing = await call_error(core.read_namespaced_pod, "web", "default")
    assert missing.status == 404 and json.loads(missing.body)["reason"] == "NotFound"


async def test_status_subresource_generation_and_schema(api: k8s.ApiClient) -> None:
    objects = k8s.CustomObjectsApi(api)
    body = pna("web-0")
    body["status"] = {"state": "Allocated"}
    created = await call(objects.create_namespaced_custom_object, GROUP, VERSION, "default", PNA, body)
    assert "status" not in created, "create ignores status when the status subresource is on"
    assert created["metadata"]["generation"] == 1

    status = {"status": {"state": "Allocating", "attempts": 1}}
    after_status = await call(
        objects.patch_namespaced_custom_object_status, GROUP, VERSION, "default", PNA, "web-0", status
    )
    assert after_status["status"] == {"state": "Allocating", "attempts": 1}
    assert after_status["metadata"]["generation"] == 1

    main = {"spec": {"nodeName": "node-b"}, "status": {"state": "Failed"}}
    after_main = await call(
        objects.patch_namespaced_custom_object, GROUP, VERSION, "default", PNA, "web-0", main
    )
    assert after_main["spec"]["nodeName"] == "node-b"
    assert after_main["status"]["state"] == "Allocating", "the main resource ignores status"
    assert after_main["metadata"]["generation"] == 2

    labels = {"metadata": {"labels": {"a": "b"}}}
    after_labels = await call(
        objects.patch_namespaced_custom_object, GROUP, VERSION, "default", PNA, "web-0", labels
    )
    assert after_labels["metadata"]["generation"] == 2

    bad = {"status": {"eniId": "eni-bad"}}
    invalid = await call_error(
        objects.patch_namespaced_custom_object_status, GROUP, VERSION, "default", PNA, "web-0", bad
    )
    assert invalid.status == 422 and "status.eniId" in json.loads(invalid.body)["message"]


async def test_replace_with_a_stale_resource_version_is_a_conflict(api: k8s.ApiClient) -> None:
    objects = k8s.CustomObjectsApi(api)
    stale = await call(objects.create_namespaced_custom_object, GROUP, VERSION, "default", PNA, pna("p"))
    await call(
        objects.patch_namespaced_custom_object,
        GROUP,
        VERSION,
        "default",
        PNA,
        "p",
        {"metadata": {"labels": {"a": "1"}}},
    )
    stale["spec"]["nodeName"] = "node-z"
    conflict = await call_error(
        objects.replace_namespaced_custom_object, GROUP, VERSION, "default", PNA, "p", stale
    )
    assert conflict.status == 409 and json.loads(conflict.body)["reason"] == "Conflict"

    fresh = await call(objects.get_namespaced_custom_object, GROUP, VERSION, "default", PNA, "p")
    fresh["spec"]["nodeName"] = "node-z"
    replaced = await call(
        objects.replace_namespaced_custom_object, GROUP, VERSION, "default", PNA, "p", fresh
    )
    assert replaced["spec"]["nodeName"] == "node-z"
    assert int(replaced["metadata"]["resourceVersion"]) > int(fresh["metadata"]["resourceVersion"])

    same = await call(objects.replace_namespaced_custom_object, GROUP, VERSION, "default", PNA, "p", replaced)
    assert same["metadata"]["resourceVersion"] == replaced["metadata"]["resourceVersion"], (
        "no-op writes are free"
    )


async def test_json_patch_with_a_failed_test_is_422_like_kopf_expects(emulator: KubeApiEmulator) -> None:
    created = emulator.create(pna("p"))
    url = f"{emulator.base_url}{resources.POD_NETWORK_ALLOCATION.object_path('p', 'default')}"

    def ops(version: str) -> list[dict[str, Any]]:
        return [
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}},
        ]

    headers = {"Content-Type": "application/json-patch+json"}
    async with aiohttp.ClientSession() as session:
        async with session.patch(url, data=json.dumps(ops("1")), headers=headers) as response:
            assert response.status == 422
        version = created["metadata"]["resourceVersion"]
        async with session.patch(url, data=json.dumps(ops(version)), headers=headers) as response:
            assert response.status == 200
            assert (await response.json())["metadata"]["annotations"] == {"k": "v"}


async def test_list_pagination_with_limit_and_continue(emulator: KubeApiEmulator, api: k8s.ApiClient) -> None:
    for index in range(5):
        emulator.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{index}"}})
    core = k8s.CoreV1Api(api)
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = await call(core.list_namespaced_config_map, "default", limit=2, _continue=token)
        names += [item.metadata.name for item in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"cm-{i}" for i in range(5)] and pages == 3


# --- watches -----------------------------------------------------------------------------------------------


async def test_watch_replays_added_modified_deleted_from_a_resource_version(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    start = (await call(core.list_namespaced_pod, "default")).metadata.resource_version
    await call(core.create_namespaced_pod, "default", pod("w"))
    await call(core.patch_namespaced_pod, "w", "default", {"metadata": {"labels": {"seen": "yes"}}})
    await call(core.delete_namespaced_pod, "w", "default")

    def collect() -> list[tuple[str, str, dict[str, str] | None]]:
        watcher = k8s_watch.Watch()
        events = []
        for event in watcher.stream(
            core.list_namespaced_pod, "default", resource_version=start, timeout_seconds=30
        ):
            events.append((event["type"], event["object"].metadata.name, event["object"].metadata.labels))
            if len(events) == 3:
                watcher.stop()
        return events

    assert await call(collect) == [
        ("ADDED", "w", {}),
        ("MODIFIED", "w", {"seen": "yes"}),
        ("DELETED", "w", {"seen": "yes"}),
    ]


async def _read_events(response: aiohttp.ClientResponse, count: int) -> list[tuple[str, str]]:
    events = []
    for _ in range(count):
        line = await response.content.readline()
        event = json.loads(line)
        events.append((event["type"], event["object"]["metadata"].get("name", "")))
    return events


async def test_live_watch_honours_label_selectors_like_the_watch_cache(emulator: KubeApiEmulator) -> None:
    emulator.create(pod("old-web", labels={"app": "web"}))
    url = f"{emulator.base_url}/api/v1/namespaces/default/pods"
    params = {"watch": "true", "labelSelector": "app=web"}
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.get(url, params=params) as response,
    ):
        # Without a resourceVersion a watch starts with the current state.
        assert await _read_events(response, 1) == [("ADDED", "old-web")]
        emulator.create(pod("web", labels={"app": "web"}))
        emulator.create(pod("db", labels={"app": "db"}))
        emulator.patch("v1", "Pod", "web", {"metadata": {"labels": {"app": "other"}}}, "default")
        emulator.patch("v1", "Pod", "db", {"metadata": {"labels": {"app": "web"}}}, "default")
        emulator.delete("v1", "Pod", "db", "default")
        assert await _read_events(response, 4) == [
            ("ADDED", "web"),
            ("DELETED", "web"),  # stopped matching the selector
            ("ADDED", "db"),  # started matching it
            ("DELETED", "db"),
        ]
    assert [r.is_watch for r in emulator.requests] == [True], "direct helper calls are not recorded"


async def test_watch_from_an_expired_version_is_410_and_initial_events_end_with_a_bookmark(
    emulator: KubeApiEmulator,
) -> None:
    emulator.create(pod("p"))
    old_version = str(emulator.resource_version - 1)
    emulator.expire_watch_history()
    url = f"{emulator.base_url}/api/v1/namespaces/default/pods"
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        async with session.get(url, params={"watch": "true", "resourceVersion": old_version}) as response:
            event = json.loads(await response.content.readline())
            assert event["type"] == "ERROR" and event["object"]["code"] == 410
        params = {"watch": "true", "sendInitialEvents": "true", "allowWatchBookmarks": "true"}
        async with session.get(url, params=params) as response:
            first = json.loads(await response.content.readline())
            bookmark = json.loads(await response.content.readline())
            assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "p"
            assert bookmark["type"] == "BOOKMARK"
            assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_direct_calls_from_another_thread_reach_watchers(emulator: KubeApiEmulator) -> None:
    url = f"{emulator.base_url}/api/v1/namespaces/default/pods"
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.get(url, params={"watch": "1"}) as response,
    ):
        await asyncio.to_thread(emulator.create, pod("from-thread"))
        assert await _read_events(response, 1) == [("ADDED", "from-thread")]


async def test_kubectl_tables_carry_the_crd_printer_columns() -> None:
    clock = [datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)]
    emulator = KubeApiEmulator(wall_clock=lambda: clock[0])
    emulator.install_crds_from(CRDS)
    emulator.create(
        pna("web-0")
        | {
            "status": {
                "state": "Allocated",
                "vlanId": 3,
                "conditions": [
                    {
                        "type": "Other",
                        "status": "False",
                        "reason": "X",
                        "message": "",
                        "lastTransitionTime": NOW,
                    },
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Y",
                        "message": "",
                        "lastTransitionTime": NOW,
                    },
                ],
            }
        }
    )
    clock[0] += datetime.timedelta(hours=3)
    accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    async with emulator, aiohttp.ClientSession(headers=accept) as session:
        url = emulator.base_url + resources.POD_NETWORK_ALLOCATION.collection_path("default")
        async with session.get(url) as response:
            table = await response.json()
    assert table["kind"] == "Table"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == [
        "Name",
        "Node",
        "Mode",
        "State",
        "IP",
        "ENI",
        "Ready",
        "Age",
        "VLAN",
        "Attempts",
        "Reason",
        "Groups",
    ]
    (row,) = table["rows"]
    cells = dict(zip(names, row["cells"], strict=True))
    assert cells["Name"] == "web-0" and cells["State"] == "Allocated" and cells["Ready"] == "True"
    assert cells["VLAN"] == 3 and cells["IP"] is None and cells["Age"] == "3h"
    assert row["object"]["kind"] == "PartialObjectMetadata"


# --- deletion: finalizers, garbage collection, namespaces --------------------------------------------------


async def test_finalizers_delay_deletion_until_removed(api: k8s.ApiClient) -> None:
    objects = k8s.CustomObjectsApi(api)
    body = pna("held", finalizers=["netalloc.dev/release"])
    await call(objects.create_namespaced_custom_object, GROUP, VERSION, "default", PNA, body)
    await call(objects.delete_namespaced_custom_object, GROUP, VERSION, "default", PNA, "held")
    held = await call(objects.get_namespaced_custom_object, GROUP, VERSION, "default", PNA, "held")
    assert held["metadata"]["deletionTimestamp"]

    more = {"metadata": {"finalizers": ["netalloc.dev/release", "other/one"]}}
    forbidden = await call_error(
        objects.patch_namespaced_custom_object, GROUP, VERSION, "default", PNA, "held", more
    )
    assert forbidden.status == 422

    release = {"metadata": {"finalizers": None}}
    await call(objects.patch_namespaced_custom_object, GROUP, VERSION, "default", PNA, "held", release)
    gone = await call_error(objects.get_namespaced_custom_object, GROUP, VERSION, "default", PNA, "held")
    assert gone.status == 404


def _owned_by(owner: dict[str, Any]) -> list[dict[str, Any]]:
    meta = owner["metadata"]
    return [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}]


async def test_garbage_collection_removes_objects_whose_owners_are_gone(
    emulator: KubeApiEmulator, api: k8s.ApiClient
) -> None:
    owner = emulator.create(pod("owner"))
    emulator.create(pna("owned", ownerReferences=_owned_by(owner)))
    emulator.create(pna("unrelated"))
    await call(k8s.CoreV1Api(api).delete_namespaced_pod, "owner", "default")
    assert emulator.get(resources.API_VERSION, "pna", "owned", "default") is None
    assert emulator.get(resources.API_VERSION, "pna", "unrelated", "default") is not None

    emulator.create(pna("dangling", ownerReferences=[{**_owned_by(owner)[0], "uid": "gone-uid"}]))
    assert emulator.get(resources.API_VERSION, "pna", "dangling", "default") is None


async def test_orphan_propagation_and_disabled_gc_keep_dependents(api: k8s.ApiClient) -> None:
    emulator = KubeApiEmulator(garbage_collection=False)
    emulator.install_crds_from(CRDS)
    owner = emulator.create(pod("owner"))
    emulator.create(pna("kept", ownerReferences=_owned_by(owner)))
    emulator.delete("v1", "Pod", "owner", "default")
    assert emulator.get(resources.API_VERSION, "pna", "kept", "default") is not None

    emulator.garbage_collection = True
    owner = emulator.create(pod("owner2"))
    emulator.create(pna("orphan", ownerReferences=_owned_by(owner)))
    emulator.delete("v1", "Pod", "owner2", "default", propagation_policy="Orphan")
    orphan = emulator.get(resources.API_VERSION, "pna", "orphan", "default")
    assert orphan is not None and "ownerReferences" not in orphan["metadata"]


async def test_deleting_a_namespace_deletes_what_is_in_it(emulator: KubeApiEmulator) -> None:
    emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    emulator.create(pna("in-shop", namespace="shop"))
    emulator.create(pna("in-default"))
    emulator.delete("v1", "Namespace", "shop")
    assert emulator.list(resources.API_VERSION, "pna") == [
        emulator.get(resources.API_VERSION, "pna", "in-default")
    ]


# --- recorded requests -------------------------------------------------------------------------------------


async def test_pod_writes_sees_every_pod_write_and_nothing_else(
    emulator: KubeApiEmulator, api: k8s.ApiClient
) -> None:
    core, objects = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    emulator.create(pod("p"))
    emulator.create(pod("q"))
    await call(core.read_namespaced_pod, "p", "default")
    await call(core.list_pod_for_all_namespaces)
    await call(objects.create_namespaced_custom_object, GROUP, VERSION, "default", PNA, pna("p"))
    assert emulator.pod_writes() == []
    assert [(r.method, r.is_write) for r in emulator.writes()] == [("POST", True)]

    await call(core.patch_namespaced_pod_status, "p", "default", {"status": {"phase": "Running"}})
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "q", "namespace": "default"},
    }
    await call(core.create_namespaced_pod_eviction, "q", "default", eviction)
    writes = emulator.pod_writes()
    assert [(w.method, w.path) for w in writes] == [
        ("PATCH", "/api/v1/namespaces/default/pods/p/status"),
        ("POST", "/api/v1/namespaces/default/pods/q/eviction"),
    ]
    assert writes[0].body == {"status": {"phase": "Running"}} and writes[0].status == 200
    assert emulator.get("v1", "Pod", "q", "default") is None


async def test_enforced_rbac_of_deploy_forbids_pod_writes_but_not_the_controller_work(
    emulator: KubeApiEmulator, api: k8s.ApiClient
) -> None:
    emulator.enforce_rbac(yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()))
    emulator.create(pod("p"))
    core, objects = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    assert (await call(core.read_namespaced_pod, "p", "default")).metadata.name == "p"
    await call(objects.create_namespaced_custom_object, GROUP, VERSION, "default", PNA, pna("p"))
    status = {"status": {"state": "Allocating"}}
    await call(objects.patch_namespaced_custom_object_status, GROUP, VERSION, "default", PNA, "p", status)

    denied = await call_error(core.patch_namespaced_pod, "p", "default", {"metadata": {"labels": {"a": "b"}}})
    assert denied.status == 403 and 'cannot patch resource "pods"' in json.loads(denied.body)["message"]
    denied = await call_error(
        core.patch_namespaced_pod_status, "p", "default", {"status": {"phase": "Failed"}}
    )
    assert denied.status == 403
    denied = await call_error(core.list_namespaced_secret, "default")
    assert denied.status == 403
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "netalloc"}}
    leases = k8s.CoordinationV1Api(api)
    assert (await call_error(leases.create_namespaced_lease, "default", lease)).status == 403
    await call(leases.create_namespaced_lease, "netalloc-system", lease)
    assert emulator.get("v1", "Pod", "p", "default") is not None


# --- the building blocks -----------------------------------------------------------------------------------


def test_label_selector_grammar() -> None:
    labels = {"metadata": {"labels": {"app": "web", "tier": "front"}}}
    assert LabelSelector("app=web,tier in (front, back),!canary,tier").matches(labels)
    assert LabelSelector("app==web,env notin (prod),env!=prod").matches(labels)
    assert not LabelSelector("app!=web").matches(labels)
    assert not LabelSelector("canary").matches(labels)
    assert LabelSelector("").matches({"metadata": {}})
    with pytest.raises(KubeApiError) as caught:
        LabelSelector("app=(web")
    assert caught.value.code == 400


def test_field_selector_on_paths_and_missing_fields() -> None:
    obj = {"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    assert FieldSelector("spec.nodeName=n1,status.phase!=Pending").matches(obj)
    assert not FieldSelector("metadata.name==q").matches(obj)
    assert FieldSelector("spec.missing=").matches(obj)


def test_patch_flavours() -> None:
    target: dict[str, Any] = {
        "metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
        "spec": {"containers": [{"name": "app", "image": "v1"}, {"name": "side", "image": "s1"}]},
    }
    assert apply_merge_patch(target, {"metadata": {"labels": {"a": None}}})["metadata"]["labels"] == {
        "b": "2"
    }
    strategic = apply_strategic_merge_patch(
        target,
        {
            "metadata": {"finalizers": ["y"]},
            "spec": {"containers": [{"name": "app", "image": "v2"}, {"name": "side", "$patch": "delete"}]},
        },
    )
    assert strategic["spec"]["containers"] == [{"name": "app", "image": "v2"}]
    assert strategic["metadata"]["finalizers"] == ["x", "y"]
    moved = apply_json_patch(
        target, [{"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/c"}]
    )
    assert moved["metadata"]["labels"] == {"b": "2", "c": "1"}
    assert target["metadata"]["labels"] == {"a": "1", "b": "2"}, "patches never modify their input"


# --- a real kopf operator ----------------------------------------------------------------------------------


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.02)


async def test_a_real_kopf_operator_allocates_and_releases_a_pod_network_allocation(
    emulator: KubeApiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    # A generic kopf operator (on.create/on.delete, discovery) runs against the emulator. netalloc's own
    # controller runs under deploy/rbac.yaml in every harness test (tests/k8s/test_runtime_regressions.py).
    registry = kopf.OperatorRegistry()
    handled: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=emulator.base_url)

    @kopf.on.create(*resources.POD_NETWORK_ALLOCATION.kopf_resource, registry=registry)
    def allocate(name: str, patch: kopf.Patch, **_: Any) -> None:
        handled.append(f"create {name}")
        patch.status["state"] = "Allocated"
        patch.status["ip"] = "10.0.1.57"

    @kopf.on.delete(*resources.POD_NETWORK_ALLOCATION.kopf_resource, registry=registry)
    def release(name: str, status: kopf.Status, **_: Any) -> None:
        handled.append(f"delete {name} holding {status.get('ip')}")

    def current() -> dict[str, Any] | None:
        return emulator.get(resources.API_VERSION, "pna", "web-0", "default")

    stop_flag, ready_flag = asyncio.Event(), asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            registry=registry, clusterwide=True, standalone=True, stop_flag=stop_flag, ready_flag=ready_flag
        )
    )
    try:
        async with asyncio.timeout(30):  # a safety net against hangs, not a timing assertion
            await ready_flag.wait()
            emulator.create(pna("web-0"))
            await _until(lambda: (current() or {}).get("status", {}).get("state") == "Allocated")
            allocated = current()
            assert allocated is not None and allocated["metadata"]["finalizers"], (
                "kopf holds it for on.delete"
            )
            emulator.delete(resources.API_VERSION, "pna", "web-0", "default")
            await _until(lambda: current() is None)
    finally:
        stop_flag.set()
        await operator
    assert handled == ["create web-0", "delete web-0 holding 10.0.1.57"]
    assert allocated["status"] == {"state": "Allocated", "ip": "10.0.1.57"}
    assert "kopf.zalando.org/last-handled-configuration" in allocated["metadata"]["annotations"]
    status_writes = [r for r in emulator.writes() if r.path.endswith("/web-0/status")]
    assert [r.content_type for r in status_writes] == ["application/merge-patch+json"]
    assert emulator.pod_writes() == []
    assert "Failed" not in caplog.text
