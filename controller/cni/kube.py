"""A small synchronous Kubernetes client for a process that lives well under a second.

The controller's aiohttp client suits a long-running loop; a CNI command makes two or three
requests, so plain http.client keeps start-up (which the ADD benchmark measures) short.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.cni import errors
from controller.cni.errors import CniError


class _Cluster(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    server: str
    certificate_authority: str | None = Field(default=None, alias="certificate-authority")
    certificate_authority_data: str | None = Field(default=None, alias="certificate-authority-data")
    insecure_skip_tls_verify: bool = Field(default=False, alias="insecure-skip-tls-verify")


class _User(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    token: str | None = None
    token_file: str | None = Field(default=None, alias="tokenFile")
    client_certificate: str | None = Field(default=None, alias="client-certificate")
    client_certificate_data: str | None = Field(default=None, alias="client-certificate-data")
    client_key: str | None = Field(default=None, alias="client-key")
    client_key_data: str | None = Field(default=None, alias="client-key-data")


class _Named(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    cluster: _Cluster | None = None
    user: _User | None = None
    context: dict[str, str] | None = None


class Kubeconfig(BaseModel):
    """The parts of a kubeconfig a token- or certificate-authenticated client needs."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    clusters: list[_Named]
    users: list[_Named] = Field(default_factory=list)
    contexts: list[_Named]
    current_context: str = Field(alias="current-context")

    def resolve(self) -> tuple[_Cluster, _User]:
        context = next((c.context for c in self.contexts if c.name == self.current_context), None)
        if context is None:
            raise ValueError(f"context {self.current_context!r} is not in the kubeconfig")
        cluster = next((c.cluster for c in self.clusters if c.name == context.get("cluster")), None)
        user = next((u.user for u in self.users if u.name == context.get("user")), None)
        if cluster is None:
            raise ValueError(f"cluster {context.get('cluster')!r} is not in the kubeconfig")
        return cluster, user or _User()


class KubeClient:
    """GET and watch over one keep-alive connection; every failure becomes a CNI error naming the URL."""

    def __init__(self, kubeconfig_path: str, *, timeout_s: float = 10.0) -> None:
        try:
            loaded = yaml.load(
                Path(kubeconfig_path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            )
            cluster, user = Kubeconfig.model_validate(loaded).resolve()
        except (OSError, yaml.YAMLError, ValidationError, ValueError) as error:
            raise CniError(
                errors.INVALID_NETWORK_CONFIG, f"cannot read kubeconfig {kubeconfig_path}: {error}"
            ) from error
        url = urlsplit(cluster.server)
        self.server = cluster.server.rstrip("/")
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._timeout_s = timeout_s
        self._context = _ssl_context(cluster, user) if url.scheme == "https" else None
        self._headers = {"Accept": "application/json", "User-Agent": "netalloc-cni"}
        token = user.token or (Path(user.token_file).read_text().strip() if user.token_file else None)
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self, timeout_s: float) -> http.client.HTTPConnection:
        if self._context is not None:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout_s, context=self._context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)

    def get(self, path: str, **query: str) -> dict[str, Any] | None:
        """The object at `path`, or None on 404."""
        target = path + (f"?{urlencode(query)}" if query else "")
        for attempt in range(2):  # a keep-alive connection the server closed is retried once
            if self._connection is None:
                self._connection = self._connect(self._timeout_s)
            try:
                self._connection.request("GET", target, headers=self._headers)
                response = self._connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as error:
                self.close()
                if attempt == 0 and isinstance(error, http.client.RemoteDisconnected | ConnectionResetError):
                    continue
                raise CniError(errors.API_FAILURE, f"GET {self.server}{target}: {error}") from error
            if response.status == 404:
                return None
            if response.status >= 400:
                raise CniError(
                    errors.API_FAILURE, f"GET {self.server}{target}: {response.status} {body[:300]!r}"
                )
            loaded = json.loads(body)
            return loaded if isinstance(loaded, dict) else None
        raise AssertionError("unreachable")

    def watch(self, path: str, *, timeout_s: float, **query: str) -> Iterator[dict[str, Any]]:
        """Watch events until the server ends the stream or `timeout_s` passes (then the iterator stops)."""
        params = {**query, "watch": "true", "timeoutSeconds": str(max(1, int(timeout_s + 0.999)))}
        target = f"{path}?{urlencode(params)}"
        connection = self._connect(timeout_s)
        try:
            connection.request("GET", target, headers=self._headers)
            response = connection.getresponse()
            if response.status >= 400:
                body = response.read()
                if response.status == 410:
                    return  # history compacted: the caller lists again
                raise CniError(
                    errors.API_FAILURE, f"watch {self.server}{target}: {response.status} {body[:300]!r}"
                )
            while True:
                try:
                    line = response.readline()
                except TimeoutError:
                    return
                if not line:
                    return
                if line.strip():
                    event = json.loads(line)
                    if isinstance(event, dict):
                        yield event
        except (OSError, http.client.HTTPException) as error:
            raise CniError(errors.API_FAILURE, f"watch {self.server}{target}: {error}") from error
        finally:
            connection.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _material(path: str | None, data: str | None) -> str | None:
    """A file path for PEM given inline (ssl wants files for client certificates)."""
    if data:
        handle, name = tempfile.mkstemp(prefix="netalloc-cni-", suffix=".pem")
        with os.fdopen(handle, "wb") as out:
            out.write(base64.b64decode(data))
        return name
    return path


def _ssl_context(cluster: _Cluster, user: _User) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cluster.insecure_skip_tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cluster.certificate_authority_data:
        context.load_verify_locations(cadata=base64.b64decode(cluster.certificate_authority_data).decode())
    elif cluster.certificate_authority:
        context.load_verify_locations(cafile=cluster.certificate_authority)
    cert = _material(user.client_certificate, user.client_certificate_data)
    key = _material(user.client_key, user.client_key_data)
    if cert:
        try:
            context.load_cert_chain(cert, key)
        finally:
            for name, inline in ((cert, user.client_certificate_data), (key, user.client_key_data)):
                if inline and name:
                    os.unlink(name)
    return context
