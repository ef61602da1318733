"""`netalloc-cni`: CNI 1.0.0 ADD, DEL, CHECK and VERSION for pods with a PodNetworkAllocation.

Pods netalloc manages are wired from their PNA (a VLAN sub-interface and its table for a branch ENI,
a veth with a host route for a pool address); every other pod goes to the configured delegate
(aws-cni in EKS) untouched. Errors are the spec's JSON object on stdout with a non-zero exit.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from controller.cni import branch, errors, names, state
from controller.cni.check import verify
from controller.cni.config import (
    SPEC_VERSION,
    SUPPORTED_VERSIONS,
    CniEnv,
    NetConf,
    read_env,
    read_netconf,
    require_delegate,
)
from controller.cni.delegate import run_delegate
from controller.cni.errors import CniError
from controller.cni.kube import KubeClient
from controller.cni.netns import NetnsGone, open_netns, route_in
from controller.cni.pna import PNA_PATH, Pna, find_allocation, verdict
from controller.cni.pod_link import PodLink, add_host_route, configure_pod_side, create_veth, first_index
from controller.cni.result import CniResult, Interface, IpConfig, Route, VersionResult
from controller.cni.teardown import undo

Answer = tuple[bytes, int]


def _json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body).encode() + b"\n"


def _record_for(conf: NetConf, env: CniEnv, pna: Pna) -> state.Record:
    record = state.Record(
        container_id=env.container_id,
        ifname=env.ifname,
        netns=env.netns,
        kind=pna.spec.mode,
        pna=pna.key,
        ip=pna.status.ip or "",
        host_veth=names.host_veth(env.container_id, env.ifname),
    )
    if pna.spec.mode == "BranchENI" and pna.status.vlanId:
        vlan_id = pna.status.vlanId
        record.vlan_id = vlan_id
        record.table = names.route_table(vlan_id)
        record.vlan_link = "" if conf.test_branch_uplink else names.vlan_link(vlan_id)
        record.uplink = conf.test_branch_uplink or record.vlan_link
    return record


def _branch_uplink_checked(host: IPRoute, conf: NetConf, record: state.Record) -> int | None:
    """Before anything is made: the trunk exists and the VLAN is free. The trunk's index, or None when a
    test stand-in replaces the VLAN link (then that link must exist)."""
    vlan_id = record.vlan_id or 0
    if conf.test_branch_uplink:
        if first_index(host, conf.test_branch_uplink) is None:
            raise CniError(errors.TRUNK_MISSING, f"test uplink {conf.test_branch_uplink} is not on this node")
        branch.ensure_vlan_free(host, conf.test_branch_uplink, -1, vlan_id)
        return None
    trunk_idx = branch.trunk_index(host, conf.trunk_interface)
    branch.ensure_vlan_free(host, conf.trunk_interface or "", trunk_idx, vlan_id)
    return trunk_idx


def _wire(
    host: IPRoute, pod: IPRoute, conf: NetConf, record: state.Record, pna: Pna, netns_fd: int
) -> PodLink:
    trunk_idx = _branch_uplink_checked(host, conf, record) if record.kind == "BranchENI" else None
    stale = first_index(host, record.host_veth)
    if stale is not None:  # named after this very container: left by an ADD that died midway
        host.link("del", index=stale)
    state.save(conf.state_dir, record)
    try:
        uplink_idx: int | None = None
        if record.kind == "BranchENI":
            if trunk_idx is not None:
                uplink_idx = branch.create_vlan(
                    host,
                    trunk_idx=trunk_idx,
                    name=record.vlan_link,
                    vlan_id=record.vlan_id or 0,
                    mac=pna.status.macAddress,
                    mtu=conf.mtu,
                )
            else:
                uplink_idx = first_index(host, record.uplink)
        link = create_veth(
            host, pod, netns_fd=netns_fd, host_name=record.host_veth, pod_name=record.ifname, mtu=conf.mtu
        )
        configure_pod_side(pod, link, record.ip)
        if record.kind == "BranchENI" and uplink_idx is not None:
            branch.route_via_uplink(
                host,
                uplink_idx=uplink_idx,
                uplink_name=record.uplink,
                host_veth=record.host_veth,
                vlan_id=record.vlan_id or 0,
                gateway=branch.gateway_of(pna.status.subnetCidr or ""),
            )
            add_host_route(host, link, record.ip, record.table)
        else:
            add_host_route(host, link, record.ip)
    except BaseException as error:
        undo(host, record)
        state.remove(conf.state_dir, record.container_id, record.ifname)
        if isinstance(error, NetlinkError):
            raise CniError(errors.NETLINK_FAILURE, f"wiring {pna.key}: {error}") from error
        raise
    return link


def _result(conf: NetConf, env: CniEnv, link: PodLink, ip: str) -> CniResult:
    return CniResult(
        cniVersion=conf.cni_version,
        interfaces=[
            Interface(name=link.host_name, mac=link.host_mac),
            Interface(name=link.pod_name, mac=link.pod_mac, sandbox=env.netns),
        ],
        ips=[IpConfig(address=f"{ip}/32", gateway=names.POD_GATEWAY, interface=1)],
        routes=[Route(dst="0.0.0.0/0", gw=names.POD_GATEWAY)],
        dns=conf.dns,
    )


def add(conf: NetConf, delegate: Mapping[str, Any], env: CniEnv, environ: Mapping[str, str]) -> Answer:
    if state.load(conf.state_dir, env.container_id, env.ifname) is not None:
        raise CniError(
            errors.INVALID_ENVIRONMENT, f"{env.container_id}/{env.ifname} was already added; DEL it first"
        )
    client = KubeClient(conf.kubeconfig)
    try:
        pna = find_allocation(client, conf, env)
    finally:
        client.close()
    if pna is None:
        record = state.Record(
            container_id=env.container_id, ifname=env.ifname, netns=env.netns, kind="delegated"
        )
        state.save(conf.state_dir, record)
        answer = run_delegate(conf, delegate, env, environ)
        if answer.returncode != 0:
            state.remove(conf.state_dir, env.container_id, env.ifname)
        return answer.stdout, answer.returncode
    record = _record_for(conf, env, pna)
    try:
        netns_fd = open_netns(env.netns)
    except NetnsGone as error:
        raise CniError(errors.UNKNOWN_CONTAINER, f"netns {env.netns} does not exist") from error
    try:
        with IPRoute() as host, route_in(netns_fd) as pod:
            link = _wire(host, pod, conf, record, pna, netns_fd)
    finally:
        os.close(netns_fd)
    result = _result(conf, env, link, record.ip)
    record.result = result.to_wire()
    state.save(conf.state_dir, record)
    return _json(record.result), 0


def delete(conf: NetConf, delegate: Mapping[str, Any], env: CniEnv, environ: Mapping[str, str]) -> Answer:
    record = state.load(conf.state_dir, env.container_id, env.ifname)
    if record is None or record.kind == "delegated":
        answer = run_delegate(conf, delegate, env, environ)
        if answer.returncode != 0:
            return answer.stdout, answer.returncode
        if record is None:  # no record (a lost state dir): still remove the veth named after this container
            record = state.Record(
                container_id=env.container_id,
                ifname=env.ifname,
                netns=env.netns,
                kind="delegated",
                host_veth=names.host_veth(env.container_id, env.ifname),
            )
    with IPRoute() as host:
        undo(host, record)
    state.remove(conf.state_dir, env.container_id, env.ifname)
    return b"", 0


def check(conf: NetConf, delegate: Mapping[str, Any], env: CniEnv, environ: Mapping[str, str]) -> Answer:
    if conf.cni_version in ("0.3.0", "0.3.1"):
        raise CniError(errors.INCOMPATIBLE_VERSION, f"CHECK is not defined for cniVersion {conf.cni_version}")
    record = state.load(conf.state_dir, env.container_id, env.ifname)
    if record is None:
        raise CniError(errors.UNKNOWN_CONTAINER, f"no ADD is recorded for {env.container_id}/{env.ifname}")
    if record.kind == "delegated":
        answer = run_delegate(conf, delegate, env, environ)
        return answer.stdout, answer.returncode
    namespace, _, name = record.pna.partition("/")
    client = KubeClient(conf.kubeconfig)
    try:
        listing = (
            client.get(PNA_PATH.format(namespace=namespace), fieldSelector=f"metadata.name={name}") or {}
        )
    finally:
        client.close()
    items = listing.get("items") or []
    if not items:
        raise CniError(errors.UNKNOWN_CONTAINER, f"PNA {record.pna} is gone")
    pna = Pna.from_object(items[0])
    if verdict(pna, env.pod_uid) is None:
        raise CniError(
            errors.UNKNOWN_CONTAINER, f"PNA {record.pna} no longer holds this pod's address: {pna.describe()}"
        )
    try:
        netns_fd = open_netns(env.netns)
    except NetnsGone as error:
        raise CniError(errors.UNKNOWN_CONTAINER, f"netns {env.netns} does not exist") from error
    try:
        with IPRoute() as host, route_in(netns_fd) as pod:
            verify(host, pod, record, pna)
    finally:
        os.close(netns_fd)
    return b"", 0


COMMANDS = {"ADD": add, "DEL": delete, "CHECK": check}


def run(environ: Mapping[str, str], stdin: bytes) -> Answer:
    """One CNI command: (stdout, exit code). Never raises."""
    version = SPEC_VERSION
    try:
        env = read_env(environ)
        if env.command == "VERSION":
            try:
                asked = json.loads(stdin or b"{}").get("cniVersion") or SPEC_VERSION
            except (ValueError, AttributeError):
                asked = SPEC_VERSION
            body = VersionResult(cniVersion=asked, supportedVersions=list(SUPPORTED_VERSIONS))
            return _json(body.model_dump()), 0
        conf, _ = read_netconf(stdin)
        version = conf.cni_version
        delegate = require_delegate(conf)
        return COMMANDS[env.command](conf, delegate, env, environ)
    except CniError as error:
        return _json(error.body(version).model_dump()), 1
    except NetlinkError as error:
        return _json(CniError(errors.NETLINK_FAILURE, f"netlink: {error}").body(version).model_dump()), 1
    except OSError as error:
        return _json(CniError(errors.IO_FAILURE, str(error)).body(version).model_dump()), 1


def main() -> None:
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    out, code = run(os.environ, stdin)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
