"""CNI errors: the spec's codes, and netalloc's own (100+), so the runtime and a person both see why."""

from __future__ import annotations

from pydantic import BaseModel

# CNI spec 1.0.0, "Error" section.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
TRY_AGAIN_LATER = 11

# Plugin-specific codes (the spec reserves 100 and up for these).
ALLOCATION_FAILED = 100  # the PNA is Failed: a permanent error the controller will not retry
POD_UID_MISMATCH = 101  # the PNA belongs to another pod of the same name
NO_8021Q = 102  # the kernel cannot make the VLAN sub-interface a branch ENI needs
VLAN_IN_USE = 103
TRUNK_MISSING = 104
NETLINK_FAILURE = 105
API_FAILURE = 106  # the Kubernetes API could not be read
DELEGATE_FAILURE = 107  # the delegate plugin is missing or answered something unreadable
CHECK_FAILED = 108  # CHECK found the pod's or the host's networking differing from the PNA


class CniErrorBody(BaseModel):
    """What goes on stdout for a failed command (spec: cniVersion, code, msg, details)."""

    cniVersion: str
    code: int
    msg: str
    details: str = ""


class CniError(Exception):
    """Raised anywhere in the plugin; plugin.main prints it as the spec's error object and exits 1."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def body(self, cni_version: str) -> CniErrorBody:
        return CniErrorBody(cniVersion=cni_version, code=self.code, msg=self.msg, details=self.details)
