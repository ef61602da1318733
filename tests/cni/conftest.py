"""A node, its VPC and an API emulator holding PNAs, for driving netalloc-cni as a runtime does.

The emulator serves from a thread started inside the node's netns, so the plugin (run in that netns,
as on a node) reaches it on 127.0.0.1 and the test seeds PNAs through its direct helpers.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

PLUGINS = Path("/usr/lib/cni")
PLUGIN = Path(sys.executable).with_name("netalloc-cni")
NODE = "node-1"
MANAGED = "shop"
UNMANAGED = "plain"


def _why_not() -> str:
    if os.geteuid() != 0:
        return "needs root: network namespaces and netlink"
    if not shutil.which("nsenter"):
        return "needs nsenter (util-linux) to run the plugin in the node's netns"
    if not (PLUGINS / "ptp").exists():
        return f"needs Debian's containernetworking-plugins in {PLUGINS} (make cni-test-deps)"
    return ""


WHY_NOT = _why_not()
needs_root = pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT or "runs")


@dataclass
class Cni:
    """One node's worth of state: the lab, the emulator and the files the plugin reads and writes."""

    lab: Any
    emulator: Any
    kubeconfig: Path
    state_dir: Path
    ipam_dir: Path

    def conf(self, **overrides: Any) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "cniVersion": "1.0.0",
            "name": "netalloc",
            "type": "netalloc-cni",
            "kubeconfig": str(self.kubeconfig),
            "nodeName": NODE,
            "trunkInterface": self.lab.trunk,
            "stateDir": str(self.state_dir),
            "allocationTimeoutSeconds": 5,
            "delegate": {
                "type": "ptp",
                "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": str(self.ipam_dir)},
            },
        }
        conf.update(overrides)
        return {k: v for k, v in conf.items() if v is not None}

    def pna(
        self,
        name: str,
        mode: str,
        *,
        uid: str | None = None,
        state: str = "Allocated",
        reason: str = "",
        message: str = "",
        ip: str | None = None,
        vlan: int | None = None,
        mac: str | None = None,
        prefix: str | None = None,
    ) -> dict[str, Any]:
        status: dict[str, Any] = {"state": state, "reason": reason or state, "message": message}
        if state == "Allocated":
            status.update(ip=ip, eniId="eni-0123456789abcdef0", subnetCidr=self.lab.subnet)
            status.update({k: v for k, v in (("vlanId", vlan), ("macAddress", mac), ("prefix", prefix)) if v})
        return self.emulator.create(
            {
                "apiVersion": "netalloc.dev/v1alpha1",
                "kind": "PodNetworkAllocation",
                "metadata": {
                    "name": name,
                    "namespace": MANAGED,
                    "labels": {"netalloc.dev/node": NODE, "netalloc.dev/pod": name},
                },
                "spec": {"podName": name, "podUID": uid or f"uid-{name}", "nodeName": NODE, "mode": mode},
                "status": status,
            }
        )

    def set_status(self, name: str, status: dict[str, Any]) -> None:
        self.emulator.patch(
            "netalloc.dev/v1alpha1",
            "PodNetworkAllocation",
            name,
            {"status": status},
            MANAGED,
            subresource="status",
        )


@dataclass
class Outcome:
    code: int
    stdout: str

    @property
    def json(self) -> dict[str, Any]:
        loaded = json.loads(self.stdout)
        assert isinstance(loaded, dict)
        return loaded


def run_plugin(
    node: str,
    plugin: Path,
    command: str,
    conf: dict[str, Any],
    *,
    container: str,
    netns: str = "",
    ifname: str = "eth0",
    pod: tuple[str, str, str] | None = None,
    timeout: float = 30,
) -> Outcome:
    """`plugin` in the node's netns, with the environment and stdin a container runtime gives it."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": str(PLUGINS),
    }
    if pod is not None:
        namespace, name, uid = pod
        env["CNI_ARGS"] = (
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_UID={uid}"
        )
    done = subprocess.run(
        ["nsenter", f"--net=/var/run/netns/{node}", str(plugin)],
        input=json.dumps(conf).encode(),
        env=env,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return Outcome(done.returncode, done.stdout.decode())


@pytest.fixture
def cni(tmp_path: Path) -> Iterator[Cni]:
    if WHY_NOT:
        pytest.skip(WHY_NOT)
    from controller.cni.lab import Lab, entered
    from controller.k8s.api_emulator import KubeApiEmulator
    from controller.k8s.sandbox import EmulatorThread, crd_directory

    lab = Lab(tag=f"nat{os.getpid() % 100000}")
    try:
        lab.build()
        emulator = KubeApiEmulator()
        server = EmulatorThread(emulator)
        with entered(lab.node):
            server.start()
        try:
            emulator.install_crds_from(crd_directory(), recursive=True)
            for name, labels in ((MANAGED, {"netalloc.dev/managed": "true"}), (UNMANAGED, {})):
                emulator.create(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
                )
            kubeconfig = tmp_path / "kubeconfig"
            kubeconfig.write_text(yaml.safe_dump(emulator.kubeconfig()))
            yield Cni(lab, emulator, kubeconfig, tmp_path / "state", tmp_path / "ipam")
        finally:
            server.stop()
    finally:
        lab.close()


@functools.cache
def kernel_has_8021q() -> bool:
    """Probed once per run, in a scratch netns."""
    from controller.cni.lab import kernel_has_8021q as probe

    return probe()
