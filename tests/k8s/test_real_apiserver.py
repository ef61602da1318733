"""End to end against a real kube-apiserver and etcd, the envtest way (see tests/support/envtest.py).

Runs when `KUBEBUILDER_ASSETS` names a folder with `kube-apiserver` and `etcd`; skipped otherwise,
with that reason. `crds/` and deploy/'s RBAC are applied as an admin would, and the controller runs
with the shipped ServiceAccount's rights only. There is no controller-manager, so no garbage
collection: a pod deleted while the controller is down must lose its PNA by the controller's hand.
"""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.clock import WallClock
from controller.k8s.harness import ControllerProcess, fast_config, wait_until
from controller.sim_fleet import SimFleet
from tests.support.envtest import CONTROLLER_TOKEN, SKIP_REASON, RealApiServer, assets, real_api_server

pytestmark = [pytest.mark.slow, pytest.mark.skipif(assets() is None, reason=SKIP_REASON)]
ROOT = Path(__file__).resolve().parents[2]
PNAS = "/apis/netalloc.dev/v1alpha1/namespaces/shop/podnetworkallocations"


@pytest.fixture(scope="module")
def server() -> Iterator[RealApiServer]:
    with real_api_server() as running:
        for crd in [
            *sorted((ROOT / "crds").glob("*.yaml")),
            ROOT / "crds" / "optional" / "securitygrouppolicies.yaml",
        ]:
            running.apply_file(crd)
        running.wait_for_crds(
            [
                "podnetworkallocations.netalloc.dev",
                "nodenetworkpools.netalloc.dev",
                "securitygrouppolicies.vpcresources.k8s.aws",
            ]
        )
        for manifest in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
            running.apply_file(ROOT / "deploy" / manifest)
        running.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "shop", "labels": {"netalloc.dev/managed": "true"}},
            }
        )
        running.apply(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": "shop"},
            }
        )
        yield running


def pnas(server: RealApiServer) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in server.request("GET", PNAS)["items"]}


def allocated(server: RealApiServer, names: list[str]) -> bool:
    current = pnas(server)
    return all((current.get(n, {}).get("status") or {}).get("state") == "Allocated" for n in names)


def add_pod(server: RealApiServer, name: str, node: str, app: str = "api") -> None:
    server.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
        }
    )


def force_delete(server: RealApiServer, name: str) -> None:
    """No kubelet runs: a pod goes at once only with a zero grace period."""
    try:
        server.request("DELETE", f"/api/v1/namespaces/shop/pods/{name}", {"gracePeriodSeconds": 0})
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise


def test_a_pod_deleted_while_the_controller_is_down_loses_its_pna_and_no_address_is_given_twice(
    server: RealApiServer,
) -> None:
    fleet = SimFleet(seed=5, cluster_name="envtest", clock=WallClock())
    instance = fleet.vpc.launch_instance(
        "c5.4xlarge", fleet.subnet.subnet_id, security_group_ids=[fleet.vpc.default_security_group_id]
    )
    server.apply(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": "envtest-node",
                "labels": {"node.kubernetes.io/instance-type": "c5.4xlarge"},
            },
            "spec": {"providerID": f"aws:///{instance.availability_zone}/{instance.instance_id}"},
        }
    )
    server.apply(
        {
            "apiVersion": "vpcresources.k8s.aws/v1beta1",
            "kind": "SecurityGroupPolicy",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "web"}},
                "securityGroups": {"groupIds": [fleet.app_groups[0]]},
            },
        }
    )

    def controller(seed: int) -> ControllerProcess:
        process = ControllerProcess(
            base_url=server.url,
            fleet=fleet,
            config=fast_config(cluster_name="envtest"),
            seed=seed,
            token=CONTROLLER_TOKEN,
            verify_ssl=False,
        )
        process.start()
        return process

    first = controller(1)
    names = [f"web-{i}" for i in range(4)] + [f"api-{i}" for i in range(6)]
    for name in names:
        add_pod(server, name, "envtest-node", app="web" if name.startswith("web") else "api")
    assert wait_until(lambda: allocated(server, names), timeout=60)
    first.crash()
    gone = ["web-0", "api-0", "api-1"]
    for name in gone:
        force_delete(server, name)
    time.sleep(1)
    second = controller(2)
    try:
        assert wait_until(lambda: not set(gone) & set(pnas(server)), timeout=60), "orphan PNAs stayed"
        fresh = ["web-10", "api-10", "api-11"]
        for name in fresh:
            add_pod(server, name, "envtest-node", app="web" if name.startswith("web") else "api")
        kept = [n for n in names if n not in gone] + fresh
        assert wait_until(lambda: allocated(server, kept), timeout=60)
        held = [(p["status"]["ip"], p["status"]["eniId"], p["spec"]["mode"]) for p in pnas(server).values()]
        ips = [ip for ip, _, _ in held]
        branches = [eni for _, eni, mode in held if mode == "BranchENI"]
        assert len(set(ips)) == len(ips) and len(set(branches)) == len(branches)
    finally:
        second.stop()
