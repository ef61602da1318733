"""Benchmark: a burst of pods on warm pools, measured from outside as a user would.

Three processes, as in a cluster: the API emulator (`python -m controller.k8s.emulator_server`), the
controller (`netalloc run --ec2 sim`, its own interpreter, talking HTTP through a kubeconfig) and this
client, which creates the pods with 8 concurrent writers and watches the PodNetworkAllocations.

Printed (and with `--output json`, under these keys):
- allocations_per_s, p50_s, p99_s: from the API server's answer to a pod's create to the watch event
  that shows its PNA `Allocated`;
- cpu_ms_per_alloc: the controller process's own CPU time (utime + stime) over the burst, per pod;
  api_server_cpu_ms_per_alloc the same for the emulator;
- writes_per_alloc and requests_per_alloc (by verb and resource): the controller's requests, counted by
  the API server by the controller's bearer token;
- pool_status_writes_after: NodeNetworkPool status writes in the 11 s after the burst (the counts
  the burst moved, written once per pool by the coalescing; not in writes_per_alloc);
- peak_rss_mib (the controller's VmHWM), baseline_rss_mib (idle on warm pools, before the burst);
- with `--memory-pods N`: idle_pods_rss_above_baseline_mib (N pods in a namespace netalloc does not
  manage) and allocated_pnas_rss_above_baseline_mib (N pods allocated), each from a fresh controller.
Issue targets: <= 3 ms CPU and <= 2 writes per allocation, p99 <= 2 s, memory <= 30 MiB above baseline.
Run: `.venv/bin/python benchmarks/controller_burst.py --pods 1000 --memory-pods 10000`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from controller.k8s.sandbox import percentile, pod_manifest, policy_manifest
from controller.sim_fleet import SimFleet

CONTROLLER_TOKEN = "netalloc-controller"
CLIENT_TOKEN = "bench-client"
MANAGED, IDLE = "shop", "idle"
WRITERS = 8
PODS_PER_NODE = 100
# The memory phases read RSS once the controller is quiet and has given freed heap pages back (it
# trims every 5 s): the memory it keeps, not the burst's transient peak (peak_rss_mib is that).
SETTLE_S = 6.0
# The memory phases resync (list every kind again) this often, so the end figure includes what a
# full relist of the 10,000 objects leaves behind, as a controller running for hours would show.
MEMORY_RESYNC_S = 10.0
POOL_STATUS_INTERVAL_S = 10.0  # ControllerConfig.pool_status_interval_s, the default
PNA_PATH = "/apis/netalloc.dev/v1alpha1/podnetworkallocations"
NNP_PATH = "/apis/netalloc.dev/v1alpha1/nodenetworkpools"
WRITE_VERBS = ("create", "update", "patch", "delete")
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A child process and what /proc says of it."""

    def __init__(self, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=self._out)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime

    def status_mib(self, key: str) -> float:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(key)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()


class Cluster:
    """An emulator, a controller and a client session on a fresh temporary directory."""

    def __init__(self, workdir: Path, *, per_node: int, branch_per_node: int) -> None:
        self.workdir = workdir
        self.per_node = per_node
        self.branch_per_node = branch_per_node
        self.base = ""
        self.emulator: Process | None = None
        self.controller: Process | None = None
        self.session: aiohttp.ClientSession | None = None
        self.profile: Path | None = None
        self.profile_tool = str(Path(sys.executable).with_name("py-spy"))
        self.controller_env: dict[str, str] = {}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Cluster]:
        env = dict(os.environ)
        self.emulator = Process(
            [sys.executable, "-m", "controller.k8s.emulator_server", "--port", "0"],
            env=env,
            log=self.workdir / "emulator.log",
        )
        assert self.emulator.popen.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, self.emulator.popen.stdout.readline)
        self.base = line.decode().strip()
        if not self.base.startswith("http"):
            raise RuntimeError(f"the emulator did not start: {self.emulator.log.read_text()[-2000:]}")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        self.session = aiohttp.ClientSession(
            self.base,
            headers={"Authorization": f"Bearer {CLIENT_TOKEN}"},
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=WRITERS * 2),
        )
        try:
            yield self
        finally:
            await self.session.close()
            if self.controller is not None:
                self.controller.stop()
            self.emulator.stop()

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        assert self.session is not None
        async with self.session.request(method, path, json=body) as response:
            payload = await response.json(content_type=None)
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {response.status} {payload}")
            return payload

    async def create(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body)

    def start_profiler(self) -> subprocess.Popen[bytes] | None:
        """py-spy on the controller (`--profile`): collapsed stacks written when it is stopped."""
        if self.profile is None or self.controller is None:
            return None
        return subprocess.Popen(
            [
                *(self.profile_tool, "record", "--pid", str(self.controller.popen.pid)),
                *("--format", "raw", "--rate", "250", "--gil", "--nonblocking"),
                *("--output", str(self.profile)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start_controller(self) -> None:
        kubeconfig = self.workdir / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "bench", "cluster": {"server": self.base}}],
                    "users": [{"name": "netalloc", "user": {"token": CONTROLLER_TOKEN}}],
                    "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "netalloc"}}],
                    "current-context": "bench",
                }
            )
        )
        env = dict(os.environ)
        env.update(
            ENABLE_PREFIX_DELEGATION="true",
            WARM_IP_TARGET=str(self.per_node),
            ENABLE_POD_ENI="true" if self.branch_per_node else "false",
            WARM_BRANCH_ENI_TARGET=str(self.branch_per_node),
        )
        env.update(self.controller_env)
        self.controller = Process(
            [
                *(sys.executable, "-m", "controller.cli", "run", "--kubeconfig", str(kubeconfig)),
                *("--ec2", "sim", "--cluster-name", "bench", "--no-leader-election"),
                *("--metrics-port", str(free_port()), "--health-port", str(free_port())),
            ],
            env=env,
            log=self.workdir / "controller.log",
        )

    async def setup(self, nodes: int) -> None:
        await self.create("/api/v1/namespaces", namespace(MANAGED, managed=True))
        await self.create("/api/v1/namespaces", namespace(IDLE, managed=False))
        if self.branch_per_node:
            # The groups the simulated nodes have, which warm branch ENIs are made with: a pod takes one
            # with no EC2 call. (Other groups cost a ModifyNetworkInterfaceAttribute per pod today.)
            groups = [SimFleet().vpc.default_security_group_id]
            policy = policy_manifest("web-sg", "web", groups, namespace=MANAGED)
            await self.create(
                f"/apis/vpcresources.k8s.aws/v1beta1/namespaces/{MANAGED}/securitygrouppolicies", policy
            )
        for i in range(nodes):
            await self.create("/api/v1/nodes", node_manifest(i))
        self.start_controller()
        await self.wait_warm(nodes)
        await self.wait_records_settled()
        await self.wait_quiet()

    async def wait_records_settled(self, *, quiet_s: float = 11.0, timeout: float = 120) -> None:
        """Until no NodeNetworkPool has changed for `quiet_s`: the warm-up's last counts are held back up
        to `pool_status_interval_s` (10 s) before they are written, and such a write belongs to the
        warm-up, not to the burst that follows it."""
        deadline = time.monotonic() + timeout
        last: list[str] = []
        since = time.monotonic()
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                pools = (await self.request("GET", NNP_PATH))["items"]
                versions = sorted(str(p["metadata"].get("resourceVersion")) for p in pools)
                if versions != last:
                    last, since = versions, time.monotonic()
                elif time.monotonic() - since >= quiet_s:
                    return
            await asyncio.sleep(0.5)
        raise TimeoutError("the pool records kept changing")

    async def wait_warm(self, nodes: int, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.controller is not None
            if self.controller.popen.poll() is not None:
                raise RuntimeError(f"the controller exited: {self.controller.log.read_text()[-3000:]}")
            with contextlib.suppress(RuntimeError):
                pools = (await self.request("GET", NNP_PATH))["items"]
                if len(pools) == nodes and all(self.warm(p.get("status") or {}) for p in pools):
                    return
            await asyncio.sleep(1)
        raise TimeoutError("the pools did not get warm")

    def warm(self, status: dict[str, Any]) -> bool:
        branches = (status.get("branchEnis") or {}).get("warm", 0)
        return status.get("freeIps", 0) >= self.per_node and branches >= self.branch_per_node

    async def wait_quiet(self, *, window_s: float = 2.0, timeout: float = 120) -> None:
        """Until the controller spends under 2% of a core over `window_s` (its caches have settled)."""
        assert self.controller is not None
        deadline = time.monotonic() + timeout
        before = self.controller.cpu_s()
        while time.monotonic() < deadline:
            await asyncio.sleep(window_s)
            now = self.controller.cpu_s()
            if now - before <= 0.02 * window_s:
                return
            before = now

    async def request_counts(self) -> dict[str, int]:
        body = await self.request("GET", f"/_emulator/requests?user={CONTROLLER_TOKEN}")
        return dict(body["requests"]) | {"pod_writes": int(body["pod_writes"])}

    async def create_pods(self, names: Iterable[tuple[str, int, str]], ns: str) -> dict[str, float]:
        """Create pods (name, node index, app) with WRITERS concurrent writers; when each create returned."""
        created: dict[str, float] = {}
        queue: asyncio.Queue[tuple[str, int, str]] = asyncio.Queue()
        for item in names:
            queue.put_nowait(item)

        async def writer() -> None:
            while not queue.empty():
                name, node, app = queue.get_nowait()
                body = pod_manifest(name, f"node-{node}", app=app, namespace=ns, phase="Pending")
                await self.create(f"/api/v1/namespaces/{ns}/pods", body)
                created[name] = time.monotonic()

        await asyncio.gather(*(writer() for _ in range(WRITERS)))
        return created


def namespace(name: str, *, managed: bool) -> dict[str, Any]:
    labels = {"netalloc.dev/managed": "true"} if managed else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def node_manifest(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"node-{i}", "labels": {"node.kubernetes.io/instance-type": "c5.4xlarge"}},
        "spec": {"providerID": f"aws:///us-east-1a/i-{i + 1:017x}"},
    }


async def watch_allocated(
    cluster: Cluster, expected: int, seen: dict[str, float], ready: asyncio.Event
) -> None:
    """Record when each PNA is first seen Allocated, from a watch opened before the first pod."""
    assert cluster.session is not None
    listed = await cluster.request("GET", PNA_PATH)
    version = listed["metadata"]["resourceVersion"]
    params = {"watch": "1", "resourceVersion": version, "timeoutSeconds": "3600"}
    async with cluster.session.get(PNA_PATH, params=params) as response:
        ready.set()
        async for line in response.content:
            event = json.loads(line)
            obj = event.get("object") or {}
            if (obj.get("status") or {}).get("state") == "Allocated":
                seen.setdefault(obj["metadata"]["name"], time.monotonic())
                if len(seen) >= expected:
                    return


def writes(counts: dict[str, int]) -> int:
    return sum(n for label, n in counts.items() if label.split(" ")[0] in WRITE_VERBS)


def log_lines(path: Path) -> int:
    return sum(1 for _ in path.open("rb"))


async def allocate(
    cluster: Cluster, pods: int, nodes: int, *, branch_per_node: int, timeout: float
) -> dict[str, Any]:
    """Create `pods` managed pods; the figures of the burst, from the watch and the processes."""
    assert cluster.controller is not None and cluster.emulator is not None
    seen: dict[str, float] = {}
    ready = asyncio.Event()
    watcher = asyncio.create_task(watch_allocated(cluster, pods, seen, ready))
    await ready.wait()
    counts_before = await cluster.request_counts()
    cpu_before, api_cpu_before = cluster.controller.cpu_s(), cluster.emulator.cpu_s()
    logs_before = log_lines(cluster.controller.log)
    profiler = cluster.start_profiler()
    started = time.monotonic()
    names = [
        (f"pod-{i:05d}", i % nodes, "web" if (i // nodes) < branch_per_node else "api") for i in range(pods)
    ]
    created = await cluster.create_pods(names, MANAGED)
    created_s = time.monotonic() - started
    await asyncio.wait_for(watcher, timeout)
    elapsed = max(seen.values()) - started
    cpu = cluster.controller.cpu_s() - cpu_before
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)
    api_cpu = cluster.emulator.cpu_s() - api_cpu_before
    await asyncio.sleep(1.0)  # writes that trail the last Allocated (Events) are counted too
    counts_after = await cluster.request_counts()
    delta = {k: counts_after.get(k, 0) - counts_before.get(k, 0) for k in counts_after}
    delta = {k: v for k, v in sorted(delta.items()) if v}
    # Pool statuses whose conditions did not change are written at most every 10 s: the counts a
    # burst moved are written after it, once per node. Counted apart, over the next 11 s.
    await asyncio.sleep(POOL_STATUS_INTERVAL_S + 1.0)
    later = await cluster.request_counts()
    pool_writes_after = sum(
        later.get(k, 0) - counts_after.get(k, 0) for k in later if k.startswith("patch nodenetworkpools")
    )
    latencies = sorted(seen[name] - created[name] for name, _, _ in names)
    return {
        "pods": pods,
        "nodes": nodes,
        "branch_pods": branch_per_node * nodes,
        "create_s": round(created_s, 3),
        "elapsed_s": round(elapsed, 3),
        "allocations_per_s": round(pods / elapsed, 1),
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(percentile(latencies, 0.99), 3),
        "max_s": round(latencies[-1], 3),
        "cpu_ms_per_alloc": round(1000 * cpu / pods, 2),
        "api_server_cpu_ms_per_alloc": round(1000 * api_cpu / pods, 2),
        "writes_per_alloc": round(writes(delta) / pods, 3),
        "requests_per_alloc": {k: round(v / pods, 3) for k, v in delta.items() if k != "pod_writes"},
        "pod_writes": delta.get("pod_writes", 0),
        "pool_status_writes_after": pool_writes_after,
        "log_lines_per_alloc": round((log_lines(cluster.controller.log) - logs_before) / pods, 3),
    }


async def burst(
    pods: int, nodes: int, branch_share: float, workdir: Path, *, profile: bool = False
) -> dict[str, Any]:
    per_node = -(-pods // nodes)
    branch_per_node = min(int(per_node * branch_share), 54)
    cluster = Cluster(workdir, per_node=per_node, branch_per_node=branch_per_node)
    cluster.profile = workdir / "profile.txt" if profile else None
    async with cluster.running():
        setup_started = time.monotonic()
        await cluster.setup(nodes)
        setup_s = time.monotonic() - setup_started
        assert cluster.controller is not None
        await asyncio.sleep(SETTLE_S)  # the baseline settled as the end figure will be
        baseline = cluster.controller.status_mib("VmRSS")
        figures = await allocate(cluster, pods, nodes, branch_per_node=branch_per_node, timeout=600)
        return {
            **figures,
            "setup_s": round(setup_s, 1),
            "baseline_rss_mib": round(baseline, 1),
            "peak_rss_mib": round(cluster.controller.status_mib("VmHWM"), 1),
        }


async def memory_baseline(cluster: Cluster, nodes: int) -> float:
    """A memory phase's controller (resyncing often) on warm pools, and its settled RSS."""
    cluster.controller_env = {"RESYNC_INTERVAL_S": str(MEMORY_RESYNC_S)}
    await cluster.setup(nodes)
    assert cluster.controller is not None
    await asyncio.sleep(SETTLE_S)  # the baseline settled as the end figure will be
    return cluster.controller.status_mib("VmRSS")


async def idle_pods_memory(pods: int, nodes: int, workdir: Path) -> dict[str, float]:
    """RSS growth of an idle controller when `pods` pods appear in a namespace it does not manage."""
    cluster = Cluster(workdir, per_node=1, branch_per_node=0)
    async with cluster.running():
        baseline = await memory_baseline(cluster, nodes)
        assert cluster.controller is not None
        await cluster.create_pods(((f"idle-{i:05d}", i % nodes, "batch") for i in range(pods)), IDLE)
        await cluster.wait_quiet()
        await asyncio.sleep(SETTLE_S)
        return {
            "idle_pods": pods,
            "idle_pods_baseline_rss_mib": round(baseline, 1),
            "idle_pods_rss_above_baseline_mib": round(cluster.controller.status_mib("VmRSS") - baseline, 1),
        }


async def allocated_memory(pods: int, workdir: Path) -> dict[str, float]:
    """RSS growth of a controller on warm pools once `pods` pods are Allocated (their pods included)."""
    nodes = -(-pods // PODS_PER_NODE)
    cluster = Cluster(workdir, per_node=PODS_PER_NODE, branch_per_node=0)
    async with cluster.running():
        baseline = await memory_baseline(cluster, nodes)
        assert cluster.controller is not None
        figures = await allocate(cluster, pods, nodes, branch_per_node=0, timeout=1800)
        await cluster.wait_quiet()
        await asyncio.sleep(SETTLE_S)
        return {
            "allocated_pnas": pods,
            "allocated_pnas_nodes": nodes,
            "allocated_pnas_baseline_rss_mib": round(baseline, 1),
            "allocated_pnas_rss_above_baseline_mib": round(
                cluster.controller.status_mib("VmRSS") - baseline, 1
            ),
            "allocated_pnas_allocations_per_s": figures["allocations_per_s"],
        }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="netalloc-burst-") as tmp:
        root = Path(args.workdir or tmp)
        (root / "burst").mkdir(parents=True, exist_ok=True)
        figures = await burst(args.pods, args.nodes, args.branch_share, root / "burst", profile=args.profile)
        if args.profile:
            figures["profile_top"] = top_costs(root / "burst" / "profile.txt")
        if args.memory_pods:
            for name in ("idle", "allocated"):
                (root / name).mkdir(exist_ok=True)
            figures |= await idle_pods_memory(args.memory_pods, args.nodes, root / "idle")
            figures |= await allocated_memory(args.memory_pods, root / "allocated")
        return figures


def top_costs(path: Path, limit: int = 25) -> list[dict[str, Any]]:
    """py-spy's collapsed stacks -> the functions with the largest inclusive share of the samples."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [
            frame.split(" (")[0] + " (" + frame.rsplit("/", 1)[-1].split(":")[0] for frame in stack.split(";")
        ]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
        own[frames[-1]] = own.get(frames[-1], 0) + samples
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:limit]
    return (
        [
            {
                "function": name + ")",
                "inclusive_pct": round(100 * n / total, 1),
                "self_pct": round(100 * own.get(name, 0) / total, 1),
            }
            for name, n in ranked
        ]
        if total
        else []
    )


def report(f: dict[str, Any]) -> None:
    rows = [
        ("pods in the burst", f"{f['pods']} on {f['nodes']} nodes, {f['branch_pods']} with a branch ENI"),
        ("pools warm after (not timed)", f"{f['setup_s']} s; the creates took {f['create_s']} s"),
        ("allocations per second", f"{f['allocations_per_s']}"),
        (
            "pod created -> Allocated",
            f"p50 {f['p50_s']} s, p99 {f['p99_s']} s (target <= 2), max {f['max_s']} s",
        ),
        ("controller CPU per allocation", f"{f['cpu_ms_per_alloc']} ms (target <= 3)"),
        ("API server CPU per allocation", f"{f['api_server_cpu_ms_per_alloc']} ms (the emulator's)"),
        (
            "controller writes per allocation",
            f"{f['writes_per_alloc']} (target <= 2); pod writes {f['pod_writes']}",
        ),
        ("pool status writes in the 11 s after", str(f["pool_status_writes_after"])),
    ]
    rows += [(f"  {label}", str(n)) for label, n in f["requests_per_alloc"].items()]
    rows += [
        ("controller log lines per pod", str(f["log_lines_per_alloc"])),
        ("controller RSS", f"baseline {f['baseline_rss_mib']} MiB, peak {f['peak_rss_mib']} MiB"),
    ]
    if "idle_pods" in f:
        rows.append(
            (
                f"{f['idle_pods']} idle unmanaged pods",
                f"+{f['idle_pods_rss_above_baseline_mib']} MiB over "
                f"{f['idle_pods_baseline_rss_mib']} (target <= 30)",
            )
        )
        rows.append(
            (
                f"{f['allocated_pnas']} Allocated PNAs",
                f"+{f['allocated_pnas_rss_above_baseline_mib']} MiB over "
                f"{f['allocated_pnas_baseline_rss_mib']} on {f['allocated_pnas_nodes']} nodes (target <= 30)",
            )
        )
    for label, value in rows:
        print(f"{label:<40} {value}")
    for row in f.get("profile_top", []):
        print(f"  {row['inclusive_pct']:5.1f}% inclusive {row['self_pct']:5.1f}% self  {row['function']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--branch-share", type=float, default=0.2, help="share of pods with a branch ENI")
    parser.add_argument(
        "--memory-pods", type=int, default=0, help="also measure N idle pods and N Allocated PNAs"
    )
    parser.add_argument("--workdir", help="keep the processes' logs here (default: a temporary directory)")
    parser.add_argument("--profile", action="store_true", help="py-spy the controller during the burst")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    if args.output == "json":
        print(json.dumps(figures, indent=2))
    else:
        report(figures)


if __name__ == "__main__":
    main()
