"""deploy/: netalloc only ever watches pods and nodes; the rest of the manifests are least-privilege too."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CRDS = REPO / "crds"
NAMESPACE = "netalloc-system"

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection", "*"})
READ_VERBS = frozenset({"get", "list", "watch"})
# Core-group resources whose writes change a Pod: the pod itself, any pod subresource, the legacy binding.
POD_WRITE_RESOURCES = ("pods", "bindings")


def load_manifests(*directories: Path, skip: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for directory in directories:
        for file in sorted(directory.rglob("*.yaml")):
            if any(file.is_relative_to(skipped) for skipped in skip):
                continue
            for document in yaml.safe_load_all(file.read_text()):
                if isinstance(document, dict) and document.get("kind") != "Kustomization":
                    documents.append(document)
    return documents


def of_kind(manifests: Iterable[Mapping[str, Any]], *kinds: str) -> list[Mapping[str, Any]]:
    return [m for m in manifests if m.get("kind") in kinds]


@dataclasses.dataclass(frozen=True)
class Violation:
    role: str
    rule_index: int
    resource: str
    verbs: tuple[str, ...]


def _grants_pod_write_resource(resource: str) -> bool:
    return resource == "*" or any(resource == r or resource.startswith(f"{r}/") for r in POD_WRITE_RESOURCES)


def pod_write_violations(role: Mapping[str, Any]) -> list[Violation]:
    """Every rule of ``role`` that lets its holder change a Pod (or anything in the core group)."""
    name = f"{role.get('kind')}/{role.get('metadata', {}).get('name')}"
    violations: list[Violation] = []
    if role.get("aggregationRule"):
        # An aggregated ClusterRole takes its rules from other roles: nothing here bounds it.
        violations.append(Violation(name, -1, "<aggregationRule>", ("*",)))
    for index, rule in enumerate(role.get("rules") or []):
        groups = rule.get("apiGroups") or []
        if "" not in groups and "*" not in groups:
            continue
        writes = tuple(sorted(set(rule.get("verbs") or []) & WRITE_VERBS))
        if not writes:
            continue
        for resource in rule.get("resources") or []:
            if _grants_pod_write_resource(resource):
                violations.append(Violation(name, index, resource, writes))
    return violations


def granted_verbs(roles: Iterable[Mapping[str, Any]], group: str, resource: str) -> set[str]:
    """The union of verbs the roles grant on ``group``/``resource`` (wildcards included)."""
    verbs: set[str] = set()
    for role in roles:
        for rule in role.get("rules") or []:
            groups = rule.get("apiGroups") or []
            resources = rule.get("resources") or []
            if (group in groups or "*" in groups) and (resource in resources or "*" in resources):
                verbs.update(rule.get("verbs") or [])
    return verbs


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return load_manifests(DEPLOY, CRDS, skip=(DEPLOY / "cni",))  # the node side: tests/cni/test_deploy.py


@pytest.fixture(scope="module")
def roles(manifests: list[dict[str, Any]]) -> list[Mapping[str, Any]]:
    found = of_kind(manifests, "ClusterRole", "Role")
    assert found, "deploy/ must define the controller's roles"
    return found


# --- the violation finder itself can fail ----------------------------------------------------------------


def _role(*rules: dict[str, Any], kind: str = "ClusterRole") -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "synthetic"}, "rules": list(rules)}


@pytest.mark.parametrize(
    "rule",
    [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "update"]},
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["pods/*"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["bindings"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["*"], "verbs": ["delete"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["deletecollection"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]},
        {"apiGroups": ["*"], "resources": ["pods"], "verbs": ["patch"]},
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
    ],
)
def test_violation_finder_flags_every_way_to_write_a_pod(rule: dict[str, Any]) -> None:
    assert pod_write_violations(_role({"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}, rule))


def test_violation_finder_flags_aggregated_roles() -> None:
    role = _role()
    role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}
    assert pod_write_violations(role)


def test_violation_finder_accepts_read_only_pods_and_writes_elsewhere() -> None:
    role = _role(
        {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["netalloc.dev"], "resources": ["*"], "verbs": ["*"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "update"]},
    )
    assert pod_write_violations(role) == []


def test_granted_verbs_follow_wildcards() -> None:
    role = _role({"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]})
    assert granted_verbs([role], "", "pods") == {"get"}
    assert granted_verbs([_role()], "", "pods") == set()


# --- the real manifests -------------------------------------------------------------------------------------


def test_no_role_in_deploy_can_write_a_pod(roles: list[Mapping[str, Any]]) -> None:
    violations = [v for role in roles for v in pod_write_violations(role)]
    assert violations == []


def test_pods_and_nodes_are_exactly_get_list_watch(roles: list[Mapping[str, Any]]) -> None:
    for resource in ("pods", "nodes"):
        assert granted_verbs(roles, "", resource) == READ_VERBS, resource
    for subresource in ("pods/status", "pods/binding", "pods/eviction", "nodes/status"):
        assert granted_verbs(roles, "", subresource) == set(), subresource


def test_watch_only_inputs(roles: list[Mapping[str, Any]]) -> None:
    assert granted_verbs(roles, "", "namespaces") == {"list", "watch"}
    assert granted_verbs(roles, "", "serviceaccounts") == {"list", "watch"}
    assert granted_verbs(roles, "vpcresources.k8s.aws", "securitygrouppolicies") == {"list", "watch"}
    assert granted_verbs(roles, "apiextensions.k8s.io", "customresourcedefinitions") == set()


def test_netalloc_resources_have_exactly_the_verbs_the_controller_uses(
    roles: list[Mapping[str, Any]],
) -> None:
    for plural in ("podnetworkallocations", "nodenetworkpools"):
        assert granted_verbs(roles, "netalloc.dev", plural) == {
            "get",
            "list",
            "watch",
            "create",
            "patch",
            "delete",
        }
        assert granted_verbs(roles, "netalloc.dev", f"{plural}/status") == {"patch"}
        assert granted_verbs(roles, "netalloc.dev", f"{plural}/finalizers") == set()


def test_events_are_create_only(roles: list[Mapping[str, Any]]) -> None:
    assert granted_verbs(roles, "", "events") == {"create"}
    assert granted_verbs(roles, "events.k8s.io", "events") == set()


def test_leases_only_through_a_role_in_the_controller_namespace(roles: list[Mapping[str, Any]]) -> None:
    cluster_roles = [r for r in roles if r["kind"] == "ClusterRole"]
    namespaced = [r for r in roles if r["kind"] == "Role"]
    assert granted_verbs(cluster_roles, "coordination.k8s.io", "leases") == set()
    assert all(r["metadata"]["namespace"] == NAMESPACE for r in namespaced)
    assert granted_verbs(namespaced, "coordination.k8s.io", "leases") == {"get", "create", "update"}


def test_no_peering_or_secrets_access(roles: list[Mapping[str, Any]]) -> None:
    assert granted_verbs(roles, "kopf.dev", "clusterkopfpeerings") == set()
    assert granted_verbs(roles, "", "secrets") == set()


def test_every_role_is_bound_to_the_netalloc_service_account(manifests: list[dict[str, Any]]) -> None:
    bindings = of_kind(manifests, "ClusterRoleBinding", "RoleBinding")
    bound = {(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings}
    for role in of_kind(manifests, "ClusterRole", "Role"):
        assert (role["kind"], role["metadata"]["name"]) in bound
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "netalloc", "namespace": NAMESPACE}]
    (account,) = of_kind(manifests, "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


# --- the rest of deploy/ -----------------------------------------------------------------------------------


def test_kustomization_lists_existing_files_and_the_crds() -> None:
    base = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert base["namespace"] == NAMESPACE
    assert "../crds" in base["resources"]
    for entry in base["resources"]:
        assert (DEPLOY / entry).exists(), entry
    crd_base = yaml.safe_load((CRDS / "Kustomization").read_text())
    assert sorted(crd_base["resources"]) == ["nodenetworkpools.yaml", "podnetworkallocations.yaml"]
    listed = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == set(base["resources"]) - {"../crds"}, "every manifest in deploy/ is applied"


def test_kubectl_apply_f_crds_finds_only_kubernetes_objects() -> None:
    """`kubectl apply -f crds/` reads every .yaml/.yml/.json file there (not sub-folders): each must
    be a Kubernetes object, not a kustomization."""
    files = sorted(p for p in CRDS.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    assert files
    for path in files:
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] == "CustomResourceDefinition", path
            assert document["apiVersion"] == "apiextensions.k8s.io/v1", path
            assert document["metadata"]["name"], path


def test_the_network_policy_opens_only_the_metrics_and_health_ports(manifests: list[dict[str, Any]]) -> None:
    (policy,) = of_kind(manifests, "NetworkPolicy")
    (deployment,) = of_kind(manifests, "Deployment")
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert ports == {p["name"] for p in container["ports"]}


def test_controller_deployment_is_locked_down(manifests: list[dict[str, Any]]) -> None:
    (deployment,) = of_kind(manifests, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    assert pod["serviceAccountName"] == "netalloc"
    assert container["image"] == "ghcr.io/netalloc/netalloc:0.1.0"
    assert container["command"] == ["netalloc", "run", "--ec2", "aws"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["securityContext"]["runAsNonRoot"] is True
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["envFrom"] == [{"configMapRef": {"name": "netalloc-settings"}}]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()


def test_settings_use_the_vpc_cni_names(manifests: list[dict[str, Any]]) -> None:
    (config,) = of_kind(manifests, "ConfigMap")
    assert config["metadata"]["name"] == "netalloc-settings"
    data = config["data"]
    assert all(isinstance(value, str) for value in data.values()), "ConfigMap values must be strings"
    assert data["WARM_ENI_TARGET"] == "1"
    assert data["WARM_PREFIX_TARGET"] == "1"
    assert data["ENABLE_PREFIX_DELEGATION"] == "false"
    assert data["ENABLE_POD_ENI"] == "true"
    assert data["WARM_BRANCH_ENI_TARGET"] == "4"
    assert data["MANAGED_NAMESPACE_SELECTOR"] == "netalloc.dev/managed=true"
    assert data["CLUSTER_NAME"]


def test_settings_parse_with_the_controller_reader(manifests: list[dict[str, Any]]) -> None:
    from controller.settings import pool_settings_from_env

    (config,) = of_kind(manifests, "ConfigMap")
    settings = pool_settings_from_env(config["data"])
    assert settings.enable_pod_eni is True
    assert settings.warm_branch_eni_target == 4


def test_pdb_and_metrics_service_select_the_controller(manifests: list[dict[str, Any]]) -> None:
    (deployment,) = of_kind(manifests, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (pdb,) = of_kind(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (service,) = of_kind(manifests, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8080, "metrics")]


def test_everything_namespaced_lives_in_netalloc_system(manifests: list[dict[str, Any]]) -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
    for manifest in manifests:
        if manifest["kind"] not in cluster_scoped:
            assert manifest["metadata"].get("namespace") == NAMESPACE, manifest["metadata"]["name"]


# --- IAM ----------------------------------------------------------------------------------------------------


def _statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statements = policy["Statement"]
    return statements if isinstance(statements, list) else [statements]


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def unconditioned_eni_grants(policy: Mapping[str, Any], action: str) -> list[str]:
    """Sids of statements that allow ``action`` on any network interface without a cluster-tag condition."""
    found = []
    for statement in _statements(policy):
        if statement["Effect"] != "Allow" or action not in _as_list(statement["Action"]):
            continue
        resources = _as_list(statement["Resource"])
        on_enis = any(r == "*" or ":network-interface/" in r for r in resources)
        condition = json.dumps(statement.get("Condition", {}))
        if on_enis and "Tag/netalloc.dev/cluster" not in condition:
            found.append(statement.get("Sid", "?"))
    return found


@pytest.fixture(scope="module")
def iam_policy() -> dict[str, Any]:
    policy: dict[str, Any] = json.loads((DEPLOY / "iam-policy.json").read_text())
    return policy


def test_iam_policy_grants_the_actions_netalloc_uses(iam_policy: dict[str, Any]) -> None:
    granted = {a for s in _statements(iam_policy) if s["Effect"] == "Allow" for a in _as_list(s["Action"])}
    needed = {
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:AttachNetworkInterface",
        "ec2:DetachNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
        "ec2:ModifyNetworkInterfaceAttribute",
        "ec2:AssociateTrunkInterface",
        "ec2:DisassociateTrunkInterface",
        "ec2:DescribeTrunkInterfaceAssociations",
        "ec2:CreateTags",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeInstanceTypes",
    }
    reads = {"ec2:DescribeInstances", "ec2:DescribeSubnets", "ec2:GetSubnetCidrReservations"}
    assert granted == needed | reads, "only what the code calls"
    assert not any("*" in a.split(":", 1)[1] for a in granted), "no wildcard actions"
    assert not any(a.startswith("ec2:Assign") and "Ipv6" in a for a in granted)
    non_ec2_or_mutating_describe = [a for a in granted if not a.startswith("ec2:")]
    assert non_ec2_or_mutating_describe == []


@pytest.mark.parametrize(
    "action",
    [
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:CreateTags",
        "ec2:AttachNetworkInterface",
        "ec2:DetachNetworkInterface",
        "ec2:ModifyNetworkInterfaceAttribute",
    ],
)
def test_iam_mutations_of_enis_need_the_cluster_tag(iam_policy: dict[str, Any], action: str) -> None:
    assert unconditioned_eni_grants(iam_policy, action) == []


def test_iam_address_actions_are_scoped_to_the_cluster_vpc(iam_policy: dict[str, Any]) -> None:
    for action in ("ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"):
        statements = [s for s in _statements(iam_policy) if action in _as_list(s["Action"])]
        assert statements, action
        for statement in statements:
            assert "ec2:Vpc" in json.dumps(statement.get("Condition", {})), statement.get("Sid")


def test_iam_tag_check_can_fail() -> None:
    loose = {"Statement": [{"Effect": "Allow", "Action": "ec2:DeleteNetworkInterface", "Resource": "*"}]}
    assert unconditioned_eni_grants(loose, "ec2:DeleteNetworkInterface") == ["?"]
