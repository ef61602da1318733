"""The Kubernetes resources netalloc reads and writes: API group, versions, plurals, and typed helpers.

The CRD manifests in ``crds/`` are the source of truth for field names and enum values; the tests in
``tests/k8s/test_crds.py`` check that the Python enums (here and in ``controller.core``) match them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path

GROUP = "netalloc.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "netalloc"


@dataclass(frozen=True)
class ResourceRef:
    """One Kubernetes resource type: enough to build its URLs and to name it to kopf."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str
    short_name: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def kopf_resource(self) -> tuple[str, str, str]:
        """``(group, version, plural)``, the positional form kopf's decorators accept."""
        return (self.group, self.version, self.plural)

    def collection_path(self, namespace: str | None = None) -> str:
        """The URL path of the collection, in one namespace or (``None``) across all of them."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            return f"{root}/namespaces/{namespace}/{self.plural}"
        return f"{root}/{self.plural}"

    def object_path(self, name: str, namespace: str | None = None, subresource: str = "") -> str:
        if self.namespaced and namespace is None:
            raise ValueError(f"{self.plural} is namespaced: the path of {name!r} needs a namespace")
        path = f"{self.collection_path(namespace if self.namespaced else None)}/{name}"
        return f"{path}/{subresource}" if subresource else path


POD_NETWORK_ALLOCATION = ResourceRef(
    GROUP,
    VERSION,
    "podnetworkallocations",
    "PodNetworkAllocation",
    namespaced=True,
    singular="podnetworkallocation",
    short_name="pna",
)
NODE_NETWORK_POOL = ResourceRef(
    GROUP,
    VERSION,
    "nodenetworkpools",
    "NodeNetworkPool",
    namespaced=False,
    singular="nodenetworkpool",
    short_name="nnp",
)
SECURITY_GROUP_POLICY = ResourceRef(
    "vpcresources.k8s.aws",
    "v1beta1",
    "securitygrouppolicies",
    "SecurityGroupPolicy",
    namespaced=True,
    singular="securitygrouppolicy",
    short_name="sgp",
)
PODS = ResourceRef("", "v1", "pods", "Pod", namespaced=True, singular="pod", short_name="po")
NODES = ResourceRef("", "v1", "nodes", "Node", namespaced=False, singular="node", short_name="no")
NAMESPACES = ResourceRef("", "v1", "namespaces", "Namespace", namespaced=False, singular="namespace")
SERVICE_ACCOUNTS = ResourceRef(
    "", "v1", "serviceaccounts", "ServiceAccount", namespaced=True, singular="serviceaccount", short_name="sa"
)
EVENTS = ResourceRef("", "v1", "events", "Event", namespaced=True, singular="event", short_name="ev")
LEASES = ResourceRef("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True, singular="lease")

NETALLOC_RESOURCES: tuple[ResourceRef, ...] = (POD_NETWORK_ALLOCATION, NODE_NETWORK_POOL)


class PoolMode(StrEnum):
    """``NodeNetworkPool.spec.mode``."""

    PREFIX_DELEGATION = "PrefixDelegation"
    SECONDARY_IP = "SecondaryIP"


def crd_directory() -> Path:
    """The CRD manifests: package data (``controller/data/crds`` is ``crds/`` of the checkout), so an
    installed wheel has them too."""
    return Path(str(resources.files("controller.data") / "crds"))
