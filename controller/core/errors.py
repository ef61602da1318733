"""EC2 error classification: throttling, capacity and permanent errors are told apart here, once."""

from __future__ import annotations

from enum import StrEnum


class ErrorClass(StrEnum):
    """How the allocation state machine reacts to an error."""

    THROTTLING = "Throttling"  # retry soon, with capped exponential backoff
    TRANSIENT = "Transient"  # 5xx and network faults: retried like throttling
    CAPACITY = "Capacity"  # subnet/prefix exhaustion, ENI or branch limit: wait visibly, never give up
    PERMANENT = "Permanent"  # bad configuration or authorisation: Failed until the spec changes


THROTTLING_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestThrottledException",
        "EC2ThrottledException",
        "TooManyRequestsException",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "RequestTimeout",
        "RequestExpired",
    }
)
CAPACITY_CODES = frozenset(
    {
        "InsufficientCidrBlocks",
        "InsufficientFreeAddressesInSubnet",
        "AttachmentLimitExceeded",
        "PrivateIpAddressLimitExceeded",
        "NetworkInterfaceLimitExceeded",
        "InsufficientAddressCapacity",
        # netalloc's own capacity reasons, raised by the pool rather than by EC2:
        "BranchInterfaceLimitExceeded",
        "NodePoolExhausted",
        "NodePoolNotReady",  # the node's pool is not registered (yet): the PNA message says why
        "NodeDraining",
        "TrunkNotReady",
        "NodePoolStale",  # EC2 lost an ENI or the instance the pool had: read again, then retried
        "SharedEniUnavailable",  # no ENI slot for the group set and no trunk: another set's may free one
    }
)
# InvalidParameterValue is permanent except for this one message, which EC2 uses for prefix exhaustion.
CAPACITY_MESSAGE_MARKERS = ("There aren't sufficient free Ipv4 addresses or prefixes",)


def classify(code: str, message: str = "", http_status: int | None = None) -> ErrorClass:
    """Classify an AWS error code (and, where the code is ambiguous, its message)."""
    if code in THROTTLING_CODES:
        return ErrorClass.THROTTLING
    if code in CAPACITY_CODES or any(marker in message for marker in CAPACITY_MESSAGE_MARKERS):
        return ErrorClass.CAPACITY
    if code in TRANSIENT_CODES or (http_status is not None and http_status >= 500):
        return ErrorClass.TRANSIENT
    return ErrorClass.PERMANENT


class Ec2Error(Exception):
    """An error answered by EC2 (or by the simulated VPC with EC2's exact code and message)."""

    def __init__(self, code: str, message: str, *, action: str = "", http_status: int | None = None) -> None:
        super().__init__(f"{action + ': ' if action else ''}{code}: {message}")
        self.code = code
        self.message = message
        self.action = action
        self.http_status = http_status
        self.error_class = classify(code, message, http_status)

    @property
    def retryable(self) -> bool:
        return self.error_class is not ErrorClass.PERMANENT


class NotFoundError(Ec2Error):
    """The named resource does not exist (for idempotent deletes this counts as done)."""
