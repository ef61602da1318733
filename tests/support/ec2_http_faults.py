"""Fault injection for boto3 EC2 clients at the HTTP layer, below botocore's retry handler.

`Ec2HttpFaults(client)` registers a `before-send.ec2` handler on one client. For each action it
can fail the next N HTTP attempts with an EC2 error document, or answer with a canned success body;
otherwise the request passes through: to moto under `mock_aws`, else to the real endpoint. Because a
`before-send` answer is an HTTP response, botocore parses it and its real retry code runs, exactly as
against EC2 (a `Stubber` would bypass that). It also counts the HTTP attempts each action saw and
keeps their decoded query parameters.

botocore emits `before-send` to every handler and keeps the first answer, so moto's own handler would
still execute a request we answered (a "failed" create would create an ENI, and actions moto lacks
would raise). The helper therefore takes moto's handler out of this client's chain and calls it
itself only for the attempts it passes through.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from botocore.retries import standard
from moto.core.models import botocore_stubber as moto_stubber

EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"
REQUEST_LIMIT_EXCEEDED = "Request limit exceeded."
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


@dataclass(frozen=True)
class CannedAnswer:
    status: int
    body: str


@dataclass(frozen=True)
class DroppedConnection:
    """No HTTP answer at all: the attempt fails as if the endpoint could not be reached."""


class _RawBody:
    """The `raw` of an AWSResponse: botocore reads it through `stream()`."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def request_id() -> str:
    return str(uuid.uuid4())


def error_body(code: str, message: str, *, request_id_: str | None = None) -> str:
    """EC2's error document (the same shape for every EC2 error)."""
    return (
        f"{XML_DECLARATION}<Response><Errors><Error><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{request_id_ or request_id()}</RequestID></Response>"
    )


def _response(action: str, inner: str) -> str:
    return (
        f'{XML_DECLARATION}<{action}Response xmlns="{EC2_XMLNS}">'
        f"<requestId>{request_id()}</requestId>{inner}</{action}Response>"
    )


def _association_xml(
    tag: str, *, association_id: str, branch_eni_id: str, trunk_eni_id: str, vlan_id: int
) -> str:
    return (
        f"<{tag}><associationId>{association_id}</associationId>"
        f"<branchInterfaceId>{branch_eni_id}</branchInterfaceId>"
        f"<trunkInterfaceId>{trunk_eni_id}</trunkInterfaceId>"
        f"<interfaceProtocol>VLAN</interfaceProtocol><vlanId>{vlan_id}</vlanId>"
        f"<tagSet/></{tag}>"
    )


def associate_trunk_interface_body(
    *, association_id: str, branch_eni_id: str, trunk_eni_id: str, vlan_id: int, client_token: str
) -> str:
    association = _association_xml(
        "interfaceAssociation",
        association_id=association_id,
        branch_eni_id=branch_eni_id,
        trunk_eni_id=trunk_eni_id,
        vlan_id=vlan_id,
    )
    return _response(
        "AssociateTrunkInterface", f"{association}<clientToken>{escape(client_token)}</clientToken>"
    )


def disassociate_trunk_interface_body(*, client_token: str = "") -> str:
    token = f"<clientToken>{escape(client_token)}</clientToken>" if client_token else ""
    return _response("DisassociateTrunkInterface", f"<return>true</return>{token}")


def describe_trunk_interface_associations_body(
    associations: Sequence[Mapping[str, Any]], *, next_token: str | None = None
) -> str:
    """`associations`: dicts with association_id, branch_eni_id, trunk_eni_id, vlan_id."""
    items = "".join(_association_xml("item", **dict(a)) for a in associations)
    token = f"<nextToken>{next_token}</nextToken>" if next_token else ""
    return _response(
        "DescribeTrunkInterfaceAssociations",
        f"<interfaceAssociationSet>{items}</interfaceAssociationSet>{token}",
    )


def create_network_interface_permission_body(
    *, eni_id: str, aws_account_id: str, permission_id: str = "eni-perm-0a1b2c3d4e5f60718"
) -> str:
    return _response(
        "CreateNetworkInterfacePermission",
        "<interfacePermission>"
        f"<networkInterfacePermissionId>{permission_id}</networkInterfacePermissionId>"
        f"<networkInterfaceId>{eni_id}</networkInterfaceId>"
        f"<awsAccountId>{aws_account_id}</awsAccountId>"
        "<permission>INSTANCE-ATTACH</permission>"
        "<permissionState><state>granted</state></permissionState>"
        "</interfacePermission>",
    )


def assign_private_ip_addresses_body(
    *, eni_id: str, ips: Sequence[str] = (), prefixes: Sequence[str] = ()
) -> str:
    ip_items = "".join(f"<item><privateIpAddress>{ip}</privateIpAddress></item>" for ip in ips)
    prefix_items = "".join(f"<item><ipv4Prefix>{p}</ipv4Prefix></item>" for p in prefixes)
    return _response(
        "AssignPrivateIpAddresses",
        f"<networkInterfaceId>{eni_id}</networkInterfaceId>"
        f"<assignedPrivateIpAddressesSet>{ip_items}</assignedPrivateIpAddressesSet>"
        f"<assignedIpv4PrefixSet>{prefix_items}</assignedIpv4PrefixSet>",
    )


class Ec2HttpFaults:
    """Per-action canned HTTP answers for one boto3 EC2 client (see the module docstring)."""

    def __init__(self, client: Any, *, downstream: Callable[..., AWSResponse | None] = moto_stubber) -> None:
        """`downstream` answers the attempts passed through (moto's stubber; it answers None, i.e. lets
        botocore send the request for real, whenever `mock_aws` is not active)."""
        self._client = client
        self._downstream = downstream
        self._scripted: defaultdict[str, deque[CannedAnswer | DroppedConnection]] = defaultdict(deque)
        self._standing: dict[str, CannedAnswer] = {}
        self._attempts: Counter[str] = Counter()
        self._requests: defaultdict[str, list[dict[str, str]]] = defaultdict(list)
        client.meta.events.unregister("before-send", downstream)
        client.meta.events.register_first("before-send.ec2", self._before_send, unique_id=self._unique_id)

    @property
    def _unique_id(self) -> str:
        return f"ec2-http-faults-{id(self)}"

    def uninstall(self) -> None:
        self._client.meta.events.unregister("before-send.ec2", unique_id=self._unique_id)
        self._client.meta.events.register("before-send", self._downstream)

    def fail_next(self, action: str, times: int, *, status: int, code: str, message: str) -> None:
        """The next `times` HTTP attempts of `action` get this EC2 error; later ones pass through."""
        self._scripted[action].extend(CannedAnswer(status, error_body(code, message)) for _ in range(times))

    def throttle_next(self, action: str, times: int) -> None:
        """EC2's answer over the account's token bucket: HTTP 503 RequestLimitExceeded."""
        self.fail_next(action, times, status=503, code="RequestLimitExceeded", message=REQUEST_LIMIT_EXCEEDED)

    def drop_connection_next(self, action: str, times: int) -> None:
        """The next `times` HTTP attempts of `action` never reach EC2 (EndpointConnectionError)."""
        self._scripted[action].extend(DroppedConnection() for _ in range(times))

    def answer(self, action: str, body: str, *, status: int = 200, times: int | None = None) -> None:
        """Answer `action` with `body`: the next `times` attempts, or every attempt when None."""
        if times is None:
            self._standing[action] = CannedAnswer(status, body)
        else:
            self._scripted[action].extend(CannedAnswer(status, body) for _ in range(times))

    def attempts(self, action: str) -> int:
        """HTTP attempts `action` made (botocore retries included)."""
        return self._attempts[action]

    def requests(self, action: str) -> list[dict[str, str]]:
        """The decoded query parameters of each attempt, e.g. {"TagSpecification.1.Tag.1.Key": ...}."""
        return list(self._requests[action])

    def _before_send(self, request: Any, event_name: str = "", **_: Any) -> AWSResponse | None:
        action = event_name.rsplit(".", 1)[-1]
        self._attempts[action] += 1
        self._requests[action].append(dict(parse_qsl(_body_text(request.body))))
        scripted = self._scripted[action]
        canned = scripted.popleft() if scripted else self._standing.get(action)
        if canned is None:
            return self._downstream(event_name=event_name, request=request)
        if isinstance(canned, DroppedConnection):
            raise EndpointConnectionError(endpoint_url=request.url)
        body = canned.body.encode()
        headers = {
            "Content-Type": "text/xml;charset=UTF-8",
            "Content-Length": str(len(body)),
            "x-amzn-RequestId": request_id(),
        }
        return AWSResponse(request.url, canned.status, headers, _RawBody(body))


def _body_text(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        return body.decode()
    if isinstance(body, str):
        return body
    data = body.read()
    body.seek(0)
    return data.decode() if isinstance(data, bytes) else str(data)


def disable_retry_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make botocore's standard-mode retries immediate (the retry decision itself is unchanged)."""
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
