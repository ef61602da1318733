"""crds/: structural schemas as apiextensions.k8s.io/v1 demands, printer columns that resolve, and
schemas that accept real objects and reject bad ones (checked with the emulator's own validator)."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from controller.core.allocation_model import AllocationMode
from controller.core.allocation_state import AllocationState
from controller.core.conditions import Condition, ConditionStatus, ConditionType, condition_reason
from controller.core.errors import ErrorClass
from controller.k8s import resources
from controller.k8s.api_emulator import evaluate_jsonpath, parse_jsonpath, validate_against_schema

REPO = Path(__file__).resolve().parents[2]
CRD_FILES = {
    "pna": REPO / "crds" / "podnetworkallocations.yaml",
    "nnp": REPO / "crds" / "nodenetworkpools.yaml",
    "sgp": REPO / "crds" / "optional" / "securitygrouppolicies.yaml",
}
TYPES = {"object", "array", "string", "integer", "number", "boolean"}
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")


def load_crd(key: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD_FILES[key].read_text())
    return crd


def only_version(crd: Mapping[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return dict(version)


def schema_of(key: str) -> dict[str, Any]:
    schema: dict[str, Any] = only_version(load_crd(key))["schema"]["openAPIV3Schema"]
    return schema


# --- a structural-schema checker (apiextensions.k8s.io/v1 rules) ------------------------------------------


def structural_violations(schema: Mapping[str, Any]) -> list[str]:
    """The ways ``schema`` breaks the structural-schema rules (and netalloc's stricter ones)."""
    problems: list[str] = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        problems.append("<root>: x-kubernetes-preserve-unknown-fields at the top level")
    if schema.get("type") != "object":
        problems.append("<root>: the root must be of type object")
    _check_structural(schema, "<root>", problems, at_root=True)
    metadata = schema.get("properties", {}).get("metadata")
    if metadata is not None:
        extra = set(metadata) - {"type", "description"}
        if extra - {"properties"} or set(metadata.get("properties", {})) - {"name", "generateName"}:
            problems.append(
                "metadata: only restrictions of metadata.name and metadata.generateName are allowed"
            )
    return problems


def _check_structural(node: Mapping[str, Any], path: str, problems: list[str], at_root: bool = False) -> None:
    int_or_string = bool(node.get("x-kubernetes-int-or-string"))
    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    node_type = node.get("type")
    if int_or_string and node_type is not None:
        problems.append(f"{path}: type must be empty with x-kubernetes-int-or-string")
    if node_type is None and not int_or_string and not (preserve and not at_root):
        problems.append(f"{path}: missing type")
    elif node_type is not None and node_type not in TYPES:
        problems.append(f"{path}: unknown type {node_type!r}")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: additionalProperties and properties are mutually exclusive")
    if node_type == "array" and not isinstance(node.get("items"), Mapping):
        problems.append(f"{path}: an array must specify items (one schema)")
    specified = "properties" in node or "additionalProperties" in node or preserve
    if node_type == "object" and not at_root and path != "<root>.metadata" and not specified:
        problems.append(f"{path}: an object must specify properties or additionalProperties")
    for required in node.get("required", []):
        if required not in node.get("properties", {}):
            problems.append(f"{path}: required field {required!r} is not in properties")
    for value in node.get("enum", []):
        if not _matches_type(value, node_type):
            problems.append(f"{path}: enum value {value!r} is not of type {node_type}")
    if "default" in node and not _matches_type(node["default"], node_type):
        problems.append(f"{path}: default {node['default']!r} is not of type {node_type}")
    if node.get("x-kubernetes-list-type") == "map":
        items = node.get("items", {})
        keys = node.get("x-kubernetes-list-map-keys") or []
        if not keys:
            problems.append(f"{path}: a list-type map needs x-kubernetes-list-map-keys")
        if items.get("type") != "object":
            problems.append(f"{path}: a list-type map needs object items")
        for key in keys:
            if key not in items.get("properties", {}) or (
                key not in items.get("required", []) and "default" not in items["properties"][key]
            ):
                problems.append(f"{path}: list-map key {key!r} must be a required (or defaulted) item field")
    for junctor in JUNCTORS:
        for branch in _branches(node.get(junctor)):
            for forbidden in ("type", "default", "additionalProperties", "nullable", "description"):
                if forbidden in branch:
                    problems.append(f"{path}.{junctor}: {forbidden} is not allowed inside a logical junctor")
            for field in branch.get("properties", {}):
                if field not in node.get("properties", {}):
                    problems.append(f"{path}.{junctor}: field {field!r} is not specified outside the junctor")
    for field, child in node.get("properties", {}).items():
        _check_structural(child, f"{path}.{field}", problems)
    if isinstance(node.get("additionalProperties"), Mapping):
        _check_structural(node["additionalProperties"], f"{path}.additionalProperties", problems)
    if isinstance(node.get("items"), Mapping):
        _check_structural(node["items"], f"{path}[]", problems)


def _branches(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, Mapping)]
    return []


def _matches_type(value: Any, node_type: str | None) -> bool:
    checks: dict[str | None, Any] = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
    }
    check = checks.get(node_type)
    return check is None or bool(check(value))


# --- where a printer column points in the schema -------------------------------------------------------


def schema_at(schema: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The schema node a printer-column path points at (None when the schema has no such field)."""
    node: Mapping[str, Any] | None = schema
    for kind, name, _ in parse_jsonpath(path):
        if node is None:
            return None
        if kind == "field":
            if name == "creationTimestamp" and node is schema.get("properties", {}).get("metadata"):
                return {"type": "string", "format": "date-time"}
            node = node.get("properties", {}).get(name)
        else:
            node = node.get("items")
    return node


# --- realistic sample objects ---------------------------------------------------------------------------

NOW = "2025-03-01T12:00:00Z"


def _ready(status: str = "True") -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "lastTransitionTime": NOW,
        "reason": "Allocated",
        "message": "ok",
    }


def sample_pna() -> dict[str, Any]:
    return {
        "apiVersion": "netalloc.dev/v1alpha1",
        "kind": "PodNetworkAllocation",
        "metadata": {"name": "web-0", "namespace": "shop", "creationTimestamp": NOW},
        "spec": {
            "podName": "web-0",
            "podUID": "6f1c2d3e-1111-4222-8333-944455556666",
            "nodeName": "ip-10-0-1-23.ec2.internal",
            "mode": "BranchENI",
            "securityGroupIds": ["sg-0123456789abcdef0"],
        },
        "status": {
            "state": "Allocated",
            "reason": "Allocated",
            "message": "branch ENI associated",
            "attempts": 1,
            "releaseAttempts": 0,
            "lastTransitionTime": NOW,
            "nextAttemptTime": NOW,
            "observedGeneration": 1,
            "ip": "10.0.1.57",
            "eniId": "eni-0a1b2c3d4e5f60718",
            "vlanId": 3,
            "macAddress": "0a:1b:2c:3d:4e:5f",
            "subnetCidr": "10.0.1.0/24",
            "securityGroupIds": ["sg-0123456789abcdef0"],
            "lastError": {"code": "RequestLimitExceeded", "message": "slow down", "errorClass": "Throttling"},
            "conditions": [_ready(), {**_ready("False"), "type": "Released", "reason": "InUse"}],
        },
    }


def sample_nnp() -> dict[str, Any]:
    return {
        "apiVersion": "netalloc.dev/v1alpha1",
        "kind": "NodeNetworkPool",
        "metadata": {"name": "ip-10-0-1-23.ec2.internal", "creationTimestamp": NOW},
        "spec": {
            "nodeName": "ip-10-0-1-23.ec2.internal",
            "instanceId": "i-0123456789abcdef0",
            "instanceType": "m5.large",
            "subnetId": "subnet-0123456789abcdef0",
            "mode": "SecondaryIP",
            "podENI": True,
            "settings": {
                "warmEniTarget": 1,
                "warmIpTarget": 5,
                "minimumIpTarget": 10,
                "warmPrefixTarget": 1,
                "maxEni": 3,
                "warmBranchEniTarget": 4,
            },
        },
        "status": {
            "limits": {"maxEnis": 3, "ipv4PerEni": 10, "branchEnis": 9, "maxPods": 29, "vcpus": 2},
            "trunkEniId": "eni-0fedcba9876543210",
            "enis": [
                {
                    "eniId": "eni-00000000000000001",
                    "deviceIndex": 0,
                    "primary": True,
                    "ips": ["10.0.1.23", "10.0.1.24"],
                },
                {
                    "eniId": "eni-00000000000000002",
                    "deviceIndex": 1,
                    "primary": False,
                    "prefixes": ["10.0.1.32/28"],
                },
            ],
            "branchEnis": {"warm": 4, "inUse": 2, "coolingDown": 1, "total": 7},
            "freeIps": 8,
            "usedIps": 11,
            "lastPlan": ["attach eni on device 2", "assign 5 secondary IPs"],
            "observedGeneration": 1,
            "conditions": [_ready()],
        },
    }


def sample_sgp() -> dict[str, Any]:
    return {
        "apiVersion": "vpcresources.k8s.aws/v1beta1",
        "kind": "SecurityGroupPolicy",
        "metadata": {"name": "db-access", "namespace": "shop"},
        "spec": {
            "podSelector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend"]}],
            },
            "serviceAccountSelector": {"matchLabels": {"role": "db-client"}},
            "securityGroups": {"groupIds": ["sg-0123456789abcdef0", "sg-00000000000000001"]},
        },
    }


SAMPLES = {"pna": sample_pna, "nnp": sample_nnp, "sgp": sample_sgp}


# --- the checker and the evaluator can fail ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_schema", "expected"),
    [
        ({"type": "object", "x-kubernetes-preserve-unknown-fields": True}, "top level"),
        (
            {"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}},
            "missing type",
        ),
        (
            {
                "type": "object",
                "properties": {"m": {"type": "object", "properties": {}, "additionalProperties": {}}},
            },
            "mutually exclusive",
        ),
        ({"type": "object", "properties": {"l": {"type": "array"}}}, "must specify items"),
        ({"type": "object", "properties": {"o": {"type": "object"}}}, "properties or additionalProperties"),
        ({"type": "object", "required": ["spec"], "properties": {}}, "not in properties"),
        ({"type": "object", "properties": {"n": {"type": "integer", "enum": ["one"]}}}, "enum value"),
        (
            {"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {}}}}},
            "only restrictions of metadata.name",
        ),
        (
            {"type": "object", "properties": {"x": {"type": "string", "x-kubernetes-int-or-string": True}}},
            "type must be empty",
        ),
        (
            {
                "type": "object",
                "properties": {"s": {"type": "string", "anyOf": [{"type": "string"}]}},
            },
            "not allowed inside a logical junctor",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "c": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["type"],
                        "items": {"type": "object", "properties": {"type": {"type": "string"}}},
                    }
                },
            },
            "list-map key",
        ),
    ],
)
def test_structural_checker_rejects_non_structural_schemas(bad_schema: dict[str, Any], expected: str) -> None:
    problems = structural_violations(bad_schema)
    assert any(expected in problem for problem in problems), problems


def test_structural_checker_accepts_nested_preserve_and_int_or_string() -> None:
    schema = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object"},
            "raw": {"x-kubernetes-preserve-unknown-fields": True},
            "port": {"x-kubernetes-int-or-string": True},
        },
    }
    assert structural_violations(schema) == []


def test_jsonpath_evaluator_supports_the_kubectl_subset() -> None:
    obj = {"a": {"b": [{"type": "X", "v": 1}, {"type": "Ready", "v": 2}]}}
    assert evaluate_jsonpath(obj, ".a.b[1].v") == [2]
    assert evaluate_jsonpath(obj, '.a.b[?(@.type=="Ready")].v') == [2]
    assert evaluate_jsonpath(obj, ".a.b[*].type") == ["X", "Ready"]
    assert evaluate_jsonpath(obj, ".a.missing") == []
    assert evaluate_jsonpath(obj, '.a.b[?(@.type=="Nope")].v') == []
    with pytest.raises(ValueError, match="unsupported"):
        parse_jsonpath(".a{bad}")


# --- the CRDs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(CRD_FILES))
def test_crd_schema_is_structural(key: str) -> None:
    assert structural_violations(schema_of(key)) == []


@pytest.mark.parametrize("key", ["pna", "nnp"])
def test_netalloc_crd_identity(key: str) -> None:
    crd = load_crd(key)
    ref = resources.POD_NETWORK_ALLOCATION if key == "pna" else resources.NODE_NETWORK_POOL
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{ref.plural}.{ref.group}"
    assert spec["group"] == resources.GROUP == "netalloc.dev"
    assert spec["scope"] == ("Namespaced" if ref.namespaced else "Cluster")
    names = spec["names"]
    assert (names["plural"], names["singular"], names["kind"]) == (ref.plural, ref.singular, ref.kind)
    assert names["shortNames"] == [ref.short_name]
    assert names["categories"] == [resources.CATEGORY]
    version = only_version(crd)
    assert version["name"] == resources.VERSION == "v1alpha1"
    assert version["served"] is True and version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_sgp_crd_identity() -> None:
    crd = load_crd("sgp")
    ref = resources.SECURITY_GROUP_POLICY
    assert crd["spec"]["group"] == ref.group
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["shortNames"] == ["sgp"]
    assert only_version(crd)["name"] == ref.version
    group_ids = schema_of("sgp")["properties"]["spec"]["properties"]["securityGroups"]["properties"][
        "groupIds"
    ]
    assert group_ids["minItems"] == 1


def _enum(schema: Mapping[str, Any], *path: str) -> list[str]:
    node: Mapping[str, Any] = schema
    for step in path:
        node = node["items"] if step == "[]" else node["properties"][step]
    return list(node["enum"])


def test_crd_enums_match_the_python_enums() -> None:
    pna, nnp = schema_of("pna"), schema_of("nnp")
    assert _enum(pna, "spec", "mode") == [m.value for m in AllocationMode]
    assert _enum(pna, "status", "state") == [s.value for s in AllocationState]
    assert _enum(pna, "status", "lastError", "errorClass") == [c.value for c in ErrorClass]
    assert _enum(nnp, "spec", "mode") == [m.value for m in resources.PoolMode]
    for schema in (pna, nnp):
        assert _enum(schema, "status", "conditions", "[]", "status") == list(get_args(ConditionStatus))


EXPECTED_COLUMNS = {
    "pna": [
        ("Node", ".spec.nodeName", 0),
        ("Mode", ".spec.mode", 0),
        ("State", ".status.state", 0),
        ("IP", ".status.ip", 0),
        ("ENI", ".status.eniId", 0),
        ("Ready", '.status.conditions[?(@.type=="Ready")].status', 0),
        ("Age", ".metadata.creationTimestamp", 0),
        ("VLAN", ".status.vlanId", 1),
        ("Attempts", ".status.attempts", 1),
        ("Reason", ".status.reason", 1),
        ("Groups", ".status.securityGroupIds", 1),  # -o wide: which pods share a SharedENI's groups
    ],
    "nnp": [
        ("Instance-Type", ".spec.instanceType", 0),
        ("Trunk", ".status.trunkEniId", 0),
        ("Warm-Branch", ".status.branchEnis.warm", 0),
        ("Free-IPs", ".status.freeIps", 0),
        ("Ready", '.status.conditions[?(@.type=="Ready")].status', 0),
        ("Age", ".metadata.creationTimestamp", 0),
    ],
}
COLUMN_TYPES = {"string": str, "integer": int, "date": str, "number": float, "boolean": bool}


@pytest.mark.parametrize("key", sorted(EXPECTED_COLUMNS))
def test_printer_columns_are_the_agreed_ones(key: str) -> None:
    columns = only_version(load_crd(key))["additionalPrinterColumns"]
    actual = [(c["name"], c["jsonPath"], c.get("priority", 0)) for c in columns]
    assert actual == EXPECTED_COLUMNS[key]
    age = next(c for c in columns if c["name"] == "Age")
    assert age["type"] == "date"


@pytest.mark.parametrize("key", sorted(CRD_FILES))
def test_printer_columns_resolve_on_a_sample_and_exist_in_the_schema(key: str) -> None:
    schema = schema_of(key)
    sample = SAMPLES[key]()
    for column in only_version(load_crd(key))["additionalPrinterColumns"]:
        values = evaluate_jsonpath(sample, column["jsonPath"])
        assert values, f"{column['name']}: {column['jsonPath']} selects nothing on the sample"
        assert schema_at(schema, column["jsonPath"]) is not None, f"{column['jsonPath']} is not in the schema"
        if column["type"] != "string" or not isinstance(values[0], list):
            assert isinstance(values[0], COLUMN_TYPES[column["type"]]), (column, values)
        if column["type"] == "date":
            datetime.datetime.fromisoformat(str(values[0]).replace("Z", "+00:00"))


def test_ready_column_picks_the_ready_condition_not_the_first() -> None:
    sample = sample_pna()
    sample["status"]["conditions"].reverse()
    assert evaluate_jsonpath(sample, '.status.conditions[?(@.type=="Ready")].status') == ["True"]


# --- samples against the schemas --------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(CRD_FILES))
def test_realistic_samples_are_valid(key: str) -> None:
    sample = SAMPLES[key]()
    pruned = copy.deepcopy(sample)
    assert validate_against_schema(pruned, schema_of(key)) == []
    assert pruned == sample, "a valid sample loses no field to pruning"


def _mutated(sample: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(sample)
    *parents, last = path.split(".")
    node: Any = obj
    for step in parents:
        node = node[int(step)] if step.isdigit() else node[step]
    if value is _DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return obj


_DELETE = object()


@pytest.mark.parametrize(
    ("key", "path", "value", "field"),
    [
        ("pna", "status.eniId", "eni-XYZ", "status.eniId"),
        ("pna", "status.eniId", "i-0123456789abcdef0", "status.eniId"),
        ("pna", "spec.mode", "Annotation", "spec.mode"),
        ("pna", "spec.nodeName", _DELETE, "spec.nodeName"),
        ("pna", "spec.securityGroupIds.0", "sg-nothex!", "spec.securityGroupIds[0]"),
        ("pna", "status.state", "Done", "status.state"),
        ("pna", "status.vlanId", 0, "status.vlanId"),
        ("pna", "status.vlanId", 4095, "status.vlanId"),
        ("pna", "status.vlanId", "3", "status.vlanId"),
        ("pna", "status.attempts", -1, "status.attempts"),
        ("pna", "status.lastTransitionTime", "yesterday", "status.lastTransitionTime"),
        ("pna", "status.lastError.errorClass", "Fatal", "status.lastError.errorClass"),
        ("pna", "status.conditions.0.status", "Maybe", "status.conditions[0].status"),
        ("pna", "status.conditions.0.reason", "not camel case!", "status.conditions[0].reason"),
        ("pna", "status.conditions.1.type", "Ready", "status.conditions[1]"),
        ("nnp", "spec.instanceId", "i-123", "spec.instanceId"),
        ("nnp", "spec.subnetId", "sub-0123456789abcdef0", "spec.subnetId"),
        ("nnp", "spec.mode", "PrefixIP", "spec.mode"),
        ("nnp", "spec.settings.maxEni", 0, "spec.settings.maxEni"),
        ("nnp", "spec.settings.warmIpTarget", -2, "spec.settings.warmIpTarget"),
        ("nnp", "status.enis.0.eniId", "eni-bad", "status.enis[0].eniId"),
        ("nnp", "status.enis.1.eniId", "eni-00000000000000001", "status.enis[1]"),
        ("nnp", "spec.podENI", "yes", "spec.podENI"),
        ("sgp", "spec.securityGroups.groupIds", [], "spec.securityGroups.groupIds"),
    ],
)
def test_bad_objects_are_rejected(key: str, path: str, value: Any, field: str) -> None:
    obj = _mutated(SAMPLES[key](), path, value)
    problems = validate_against_schema(obj, schema_of(key))
    assert [f for f, _ in problems] == [field], problems


def test_unknown_fields_and_nulls_are_pruned_not_kept() -> None:
    obj = sample_pna()
    obj["spec"]["annotations"] = {"vpc.amazonaws.com/pod-eni": "[]"}
    obj["status"]["extra"] = 1
    obj["status"]["lastError"] = None
    assert validate_against_schema(obj, schema_of("pna")) == []
    assert "annotations" not in obj["spec"] and "extra" not in obj["status"]
    assert "lastError" not in obj["status"]
    obj["spec"]["nodeName"] = None
    assert validate_against_schema(obj, schema_of("pna")) == [("spec.nodeName", "Required value")]
    assert obj["metadata"] == sample_pna()["metadata"], "metadata is the server's, never pruned by the schema"


def test_core_conditions_fit_the_schema() -> None:
    conditions = [
        Condition(
            type=condition_type.value,
            status="Unknown",
            observed_generation=1,
            last_transition_time=NOW,
            reason=condition_reason("InvalidSubnetID.NotFound"),
            message="",
        ).model_dump(by_alias=True, mode="json")
        for condition_type in ConditionType
    ]
    for key in ("pna", "nnp"):
        obj = SAMPLES[key]()
        obj["status"]["conditions"] = copy.deepcopy(conditions)
        assert validate_against_schema(obj, schema_of(key)) == []
        assert obj["status"]["conditions"] == conditions


def test_resource_refs_build_api_paths() -> None:
    pna, nnp, pods = resources.POD_NETWORK_ALLOCATION, resources.NODE_NETWORK_POOL, resources.PODS
    assert pna.object_path("web-0", "shop", "status") == (
        "/apis/netalloc.dev/v1alpha1/namespaces/shop/podnetworkallocations/web-0/status"
    )
    assert pna.collection_path() == "/apis/netalloc.dev/v1alpha1/podnetworkallocations"
    assert nnp.object_path("node-1") == "/apis/netalloc.dev/v1alpha1/nodenetworkpools/node-1"
    assert pods.collection_path("default") == "/api/v1/namespaces/default/pods"
    assert pods.api_version == "v1" and pna.api_version == "netalloc.dev/v1alpha1"
    with pytest.raises(ValueError, match="namespaced"):
        pna.object_path("web-0")
