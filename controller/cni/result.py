"""The CNI result ADD prints: what chained plugins (egress-cni, portmap, bandwidth) read as prevResult."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from controller.cni.config import Dns


class Interface(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    mac: str = ""
    sandbox: str = ""  # the netns path for interfaces inside the container; "" for host interfaces


class IpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str  # CIDR form, e.g. 10.0.1.5/32
    gateway: str | None = None
    interface: int  # index into `interfaces`


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dst: str
    gw: str | None = None


class CniResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cniVersion: str
    interfaces: list[Interface]
    ips: list[IpConfig]
    routes: list[Route]
    dns: Dns | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON object for this result's cniVersion: 0.3.x and 0.4.0 name each IP's version."""
        body = self.model_dump(exclude_none=True)
        for interface in body["interfaces"]:
            if not interface.get("sandbox"):
                interface.pop("sandbox", None)
        if self.cniVersion != "1.0.0":
            for ip in body["ips"]:
                ip["version"] = "6" if ":" in ip["address"] else "4"
        if "dns" not in body:
            body["dns"] = {}
        return body


class VersionResult(BaseModel):
    cniVersion: str
    supportedVersions: list[str]
