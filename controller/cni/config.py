"""The network config on stdin and the CNI_* environment, read once and validated at the boundary.

A runtime hands a plugin its input in two places; every later step works on these models only, so a
bad field is one clear CNI error (code 4, 6 or 7) before anything on the node changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from controller.cni import errors
from controller.cni.errors import CniError

SPEC_VERSION = "1.0.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION")


class Dns(BaseModel):
    """The spec's DNS object; returned in the result only when the network config sets it."""

    model_config = ConfigDict(extra="forbid")

    nameservers: list[str] = Field(default_factory=list)
    domain: str | None = None
    search: list[str] = Field(default_factory=list)
    options: list[str] = Field(default_factory=list)


class NetConf(BaseModel):
    """netalloc-cni's network config. Unknown keys are kept: runtimes add capabilities and runtimeConfig."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    cni_version: str = Field(alias="cniVersion")
    name: str
    type: str
    delegate: dict[str, Any] | None = None  # the plugin for pods netalloc does not manage (aws-cni)
    kubeconfig: str = "/etc/cni/net.d/netalloc-kubeconfig"
    node_name: str | None = Field(default=None, alias="nodeName")  # narrows PNA reads to this node
    trunk_interface: str | None = Field(default=None, alias="trunkInterface")
    allocation_timeout_s: float = Field(default=60.0, gt=0, le=200, alias="allocationTimeoutSeconds")
    namespace_selector: str = Field(default="netalloc.dev/managed=true", alias="namespaceSelector")
    state_dir: str = Field(default="/var/lib/netalloc-cni", alias="stateDir")
    mtu: int | None = Field(default=None, ge=576, le=9001)
    dns: Dns | None = None
    # TEST ONLY. An existing link used in place of the branch ENI's VLAN sub-interface, for kernels
    # without 802.1Q (this project's CI). Never set it on a node: without it, ADD creates the VLAN and
    # fails with a clear error when the kernel cannot. DEL never removes this link.
    test_branch_uplink: str | None = Field(default=None, alias="testBranchUplink")
    prev_result: dict[str, Any] | None = Field(default=None, alias="prevResult")

    @field_validator("cni_version")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value not in SUPPORTED_VERSIONS:
            raise ValueError(f"cniVersion {value} is not one of {', '.join(SUPPORTED_VERSIONS)}")
        return value


class CniEnv(BaseModel):
    """The CNI_* variables. K8S_POD_* come from CNI_ARGS (kubelet's `K=V;K=V` form)."""

    model_config = ConfigDict(frozen=True)

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = Field(default_factory=dict)
    path: tuple[str, ...] = ()

    @property
    def pod_namespace(self) -> str:
        return self.args.get("K8S_POD_NAMESPACE", "")

    @property
    def pod_name(self) -> str:
        return self.args.get("K8S_POD_NAME", "")

    @property
    def pod_uid(self) -> str:
        return self.args.get("K8S_POD_UID", "")


def parse_cni_args(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for part in filter(None, text.split(";")):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise CniError(errors.INVALID_ENVIRONMENT, f"CNI_ARGS has a malformed pair {part!r}")
        pairs[key] = value
    return pairs


def read_env(environ: Mapping[str, str]) -> CniEnv:
    """The environment, with the variables the command needs checked (spec: code 4 when one is missing)."""
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CniError(
            errors.INVALID_ENVIRONMENT, f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}"
        )
    env = CniEnv(
        command=command,
        container_id=environ.get("CNI_CONTAINERID", ""),
        netns=environ.get("CNI_NETNS", ""),
        ifname=environ.get("CNI_IFNAME", ""),
        args=parse_cni_args(environ.get("CNI_ARGS", "")),
        path=tuple(filter(None, environ.get("CNI_PATH", "").split(":"))),
    )
    needed = {
        "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
        "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
        "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    }.get(command, ())
    missing = [name for name in needed if not environ.get(name)]
    if missing:
        raise CniError(errors.INVALID_ENVIRONMENT, f"{command} needs {', '.join(missing)} in the environment")
    return env


def read_netconf(raw: bytes) -> tuple[NetConf, dict[str, Any]]:
    """The validated config and the raw object (the delegate gets the raw one's fields passed on)."""
    try:
        document = json.loads(raw or b"null")
    except ValueError as error:
        raise CniError(errors.DECODE_FAILURE, f"the network config on stdin is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise CniError(errors.DECODE_FAILURE, "the network config on stdin is not a JSON object")
    version = document.get("cniVersion")
    if isinstance(version, str) and version not in SUPPORTED_VERSIONS:
        raise CniError(
            errors.INCOMPATIBLE_VERSION,
            f"cniVersion {version} is not supported",
            f"supported: {', '.join(SUPPORTED_VERSIONS)}",
        )
    try:
        conf = NetConf.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise CniError(errors.INVALID_NETWORK_CONFIG, f"invalid network config: {problems}") from error
    return conf, document


def require_delegate(conf: NetConf) -> dict[str, Any]:
    if not conf.delegate or not isinstance(conf.delegate.get("type"), str):
        raise CniError(
            errors.INVALID_NETWORK_CONFIG,
            'network config has no "delegate" with a "type": netalloc-cni needs one (in EKS '
            '{"type": "aws-cni"}) for the pods it does not manage',
        )
    return conf.delegate
