"""A real kube-apiserver and etcd on loopback, the envtest way (controller-runtime's envtest flags).

`KUBEBUILDER_ASSETS` names a folder holding `kube-apiserver` and `etcd` (what `setup-envtest use`
downloads). The server runs with RBAC on and a static token file: one token for an admin (group
system:masters) that sets the cluster up as kubectl would, and one that authenticates as the
ServiceAccount `netalloc-system/netalloc`, so the controller has exactly what deploy/rbac.yaml grants.
No controller-manager runs: no garbage collection, no default ServiceAccounts, as field notes §8 say.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ADMIN_TOKEN = "envtest-admin-token"
CONTROLLER_TOKEN = "envtest-netalloc-token"
CONTROLLER_USER = "system:serviceaccount:netalloc-system:netalloc"


def assets() -> Path | None:
    """The folder with kube-apiserver and etcd, or None (the tests are then skipped)."""
    folder = os.environ.get("KUBEBUILDER_ASSETS", "")
    if not folder:
        return None
    path = Path(folder)
    if all(
        (path / binary).is_file() and os.access(path / binary, os.X_OK)
        for binary in ("kube-apiserver", "etcd")
    ):
        return path
    return None


SKIP_REASON = "KUBEBUILDER_ASSETS does not name a folder with kube-apiserver and etcd"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RealApiServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.workdir = Path(tempfile.mkdtemp(prefix="netalloc-envtest-"))
        self.etcd_port, self.peer_port, self.api_port = _free_port(), _free_port(), _free_port()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.url = f"https://127.0.0.1:{self.api_port}"
        self._context = ssl.create_default_context()
        self._context.check_hostname = False
        self._context.verify_mode = ssl.CERT_NONE

    def start(self, timeout: float = 60.0) -> None:
        work = self.workdir
        subprocess.run(
            ["openssl", "genrsa", "-out", str(work / "sa.key"), "2048"], check=True, capture_output=True
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(work / "sa.key"), "-pubout", "-out", str(work / "sa.pub")],
            check=True,
            capture_output=True,
        )
        (work / "tokens.csv").write_text(
            f'{ADMIN_TOKEN},envtest-admin,1,"system:masters"\n'
            f'{CONTROLLER_TOKEN},{CONTROLLER_USER},2,"system:serviceaccounts,system:serviceaccounts:netalloc-system"\n'
        )
        etcd_log = (work / "etcd.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                [
                    str(self.folder / "etcd"),
                    "--data-dir",
                    str(work / "etcd"),
                    "--listen-client-urls",
                    f"http://127.0.0.1:{self.etcd_port}",
                    "--advertise-client-urls",
                    f"http://127.0.0.1:{self.etcd_port}",
                    "--listen-peer-urls",
                    f"http://127.0.0.1:{self.peer_port}",
                    "--initial-advertise-peer-urls",
                    f"http://127.0.0.1:{self.peer_port}",
                    "--initial-cluster",
                    f"default=http://127.0.0.1:{self.peer_port}",
                ],
                stdout=etcd_log,
                stderr=subprocess.STDOUT,
            )
        )
        api_log = (work / "kube-apiserver.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                [
                    str(self.folder / "kube-apiserver"),
                    f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                    f"--cert-dir={work / 'certs'}",
                    f"--secure-port={self.api_port}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--allow-privileged=true",
                    "--authorization-mode=RBAC",
                    f"--token-auth-file={work / 'tokens.csv'}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={work / 'sa.pub'}",
                    f"--service-account-signing-key-file={work / 'sa.key'}",
                ],
                stdout=api_log,
                stderr=subprocess.STDOUT,
            )
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, urllib.error.URLError):
                if self.request("GET", "/readyz", raw=True) == "ok":
                    return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"kube-apiserver did not become ready; see {work}/kube-apiserver.log")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            if process.poll() is None:
                process.kill()
        self.processes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ----- as the admin (kubectl) ---------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bool = False,
        content_type: str = "application/json",
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": content_type},
        )
        with urllib.request.urlopen(request, context=self._context, timeout=30) as response:
            text = response.read().decode()
        return text if raw else json.loads(text)

    def apply(self, document: dict[str, Any]) -> dict[str, Any]:
        """Create a manifest (the collection path from its apiVersion and kind)."""
        path = collection_path(document)
        result: dict[str, Any] = self.request("POST", path, document)
        return result

    def apply_file(self, path: Path) -> None:
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") != "Kustomization":
                self.apply(document)

    def wait_for_crds(self, names: list[str], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            established = 0
            for name in names:
                with contextlib.suppress(urllib.error.HTTPError):
                    crd = self.request(
                        "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
                    )
                    conditions = {
                        c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions", [])
                    }
                    established += conditions.get("Established") == "True"
            if established == len(names):
                return
            time.sleep(0.2)
        raise RuntimeError(f"CRDs not established: {names}")


PLURALS = {
    "Namespace": ("namespaces", False),
    "ServiceAccount": ("serviceaccounts", True),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "Node": ("nodes", False),
    "Pod": ("pods", True),
    "SecurityGroupPolicy": ("securitygrouppolicies", True),
    "ConfigMap": ("configmaps", True),
}


def collection_path(document: dict[str, Any]) -> str:
    plural, namespaced = PLURALS[document["kind"]]
    api_version = document["apiVersion"]
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    namespace = (document.get("metadata") or {}).get("namespace")
    if namespaced:
        return f"{root}/namespaces/{namespace or 'default'}/{plural}"
    return f"{root}/{plural}"


@contextlib.contextmanager
def real_api_server() -> Iterator[RealApiServer]:
    folder = assets()
    if folder is None:
        raise RuntimeError(SKIP_REASON)
    server = RealApiServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
