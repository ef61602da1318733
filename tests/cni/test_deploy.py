"""deploy/cni/: the node side's manifests, the conflist it installs, and RBAC enough for the plugin."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import yaml

from controller.cni.config import NetConf
from controller.cni.kube import Kubeconfig
from tests.cni.conftest import MANAGED, PLUGIN, UNMANAGED, Cni, needs_root, run_plugin
from tests.k8s.test_rbac import granted_verbs, load_manifests, of_kind, pod_write_violations

CNI_DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "cni"


def manifests() -> list[dict[str, Any]]:
    return load_manifests(CNI_DEPLOY)


def config_data() -> dict[str, str]:
    (config,) = [m for m in of_kind(manifests(), "ConfigMap") if m["metadata"]["name"] == "netalloc-cni"]
    return dict(config["data"])


def test_node_rbac_reads_pnas_and_namespaces_and_nothing_on_pods() -> None:
    roles = of_kind(manifests(), "ClusterRole", "Role")
    assert [v for role in roles for v in pod_write_violations(role)] == []
    assert granted_verbs(roles, "netalloc.dev", "podnetworkallocations") == {"get", "list", "watch"}
    assert granted_verbs(roles, "netalloc.dev", "podnetworkallocations/status") == set()
    assert granted_verbs(roles, "", "namespaces") == {"get"}
    assert granted_verbs(roles, "", "pods") == set()
    assert granted_verbs(roles, "", "secrets") == set()
    (binding,) = of_kind(manifests(), "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "netalloc-cni", "namespace": "netalloc-system"}
    ]
    (daemonset,) = of_kind(manifests(), "DaemonSet")
    assert daemonset["spec"]["template"]["spec"]["serviceAccountName"] == "netalloc-cni"


def test_kustomization_applies_every_manifest() -> None:
    base = yaml.safe_load((CNI_DEPLOY / "kustomization.yaml").read_text())
    assert set(base["resources"]) == {p.name for p in CNI_DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}


def test_daemonset_mounts_only_declared_volumes_and_knows_its_node() -> None:
    (daemonset,) = of_kind(manifests(), "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    volumes = {v["name"] for v in pod["volumes"]}
    for container in pod["initContainers"] + pod["containers"]:
        assert {m["name"] for m in container["volumeMounts"]} <= volumes, container["name"]
    (install,) = pod["initContainers"]
    env = {e["name"]: e for e in install["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert "install.sh" in " ".join(install["command"]) and "install.sh" in config_data()


def rendered_conflist() -> dict[str, Any]:
    data = config_data()
    text = data["00-netalloc.conflist"].replace("@NODE_NAME@", "ip-10-0-1-5.ec2.internal")
    loaded = json.loads(text.replace("@TRUNK_INTERFACE@", data["TRUNK_INTERFACE"]))
    assert isinstance(loaded, dict)
    return loaded


def test_conflist_chains_netalloc_cni_then_egress_cni_then_portmap() -> None:
    conflist = rendered_conflist()
    assert [p["type"] for p in conflist["plugins"]] == ["netalloc-cni", "egress-cni", "portmap"]
    entry = conflist["plugins"][0]
    # What the runtime hands the plugin: its entry with the list's cniVersion and name.
    conf = NetConf.model_validate({"cniVersion": conflist["cniVersion"], "name": conflist["name"], **entry})
    assert conf.delegate is not None and conf.delegate["type"] == "aws-cni"
    assert conf.node_name == "ip-10-0-1-5.ec2.internal" and conf.trunk_interface == "eth1"
    assert conf.test_branch_uplink is None  # the test-only stand-in is never shipped


def test_kubeconfig_template_reads_a_token_file_and_the_cluster_ca() -> None:
    text = config_data()["netalloc-kubeconfig"]
    text = text.replace("@KUBERNETES_SERVICE_HOST@", "10.100.0.1").replace("@KUBERNETES_SERVICE_PORT@", "443")
    cluster, user = Kubeconfig.model_validate(yaml.safe_load(text)).resolve()
    assert cluster.server == "https://10.100.0.1:443"
    assert cluster.certificate_authority == "/var/lib/netalloc-cni/ca.crt"
    assert user.token_file == "/var/lib/netalloc-cni/token"


@needs_root
def test_the_shipped_node_rbac_allows_every_request_the_plugin_makes(cni: Cni) -> None:
    cni.emulator.enforce_rbac(manifests(), user="system:serviceaccount:netalloc-system:netalloc-cni")
    cni.lab.route_prefix("10.77.1.0/28")
    cni.pna("ruled", "PrefixIP", state="Pending")
    allocated = {
        "state": "Allocated",
        "ip": "10.77.1.12",
        "prefix": "10.77.1.0/28",
        "eniId": "eni-0123456789abcdef0",
        "subnetCidr": cni.lab.subnet,
    }
    timer = threading.Timer(0.5, cni.set_status, args=("ruled", allocated))
    timer.start()  # so ADD lists, then watches
    conf = cni.conf(allocationTimeoutSeconds=20)
    ruled_ns = cni.lab.pod("ruled")
    try:
        managed = run_plugin(
            cni.lab.node,
            PLUGIN,
            "ADD",
            conf,
            container="c-ruled",
            netns=ruled_ns,
            pod=(MANAGED, "ruled", "uid-ruled"),
        )
    finally:
        timer.cancel()
    assert managed.code == 0, managed.stdout
    checked = run_plugin(
        cni.lab.node,
        PLUGIN,
        "CHECK",
        {**conf, "prevResult": managed.json},
        container="c-ruled",
        netns=ruled_ns,
        pod=(MANAGED, "ruled", "uid-ruled"),
    )
    assert checked.code == 0, checked.stdout
    outsider = run_plugin(
        cni.lab.node,
        PLUGIN,
        "ADD",
        conf,
        container="c-out",
        netns=cni.lab.pod("out"),
        pod=(UNMANAGED, "out", "uid-out"),
    )  # reads the namespace, then delegates
    assert outsider.code == 0, outsider.stdout
    verbs = {(r.method, r.path.split("?")[0]) for r in cni.emulator.requests if r.status == 403}
    assert verbs == set()
