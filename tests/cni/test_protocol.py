"""The CNI protocol edges, in-process and without root: environment, config, errors and result form."""

from __future__ import annotations

import json

from controller.cni import errors
from controller.cni.plugin import run
from controller.cni.result import CniResult, Interface, IpConfig, Route

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/var/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}
CONF = {"cniVersion": "1.0.0", "name": "n", "type": "netalloc-cni", "delegate": {"type": "aws-cni"}}


def error_of(environ: dict[str, str], stdin: bytes) -> dict[str, object]:
    out, code = run(environ, stdin)
    assert code == 1
    body = json.loads(out)
    assert set(body) == {"cniVersion", "code", "msg", "details"}
    return dict(body)


def test_a_missing_variable_is_code_4_naming_it() -> None:
    body = error_of({k: v for k, v in ENV.items() if k != "CNI_NETNS"}, json.dumps(CONF).encode())
    assert body["code"] == errors.INVALID_ENVIRONMENT and "CNI_NETNS" in str(body["msg"])


def test_an_unknown_command_is_code_4() -> None:
    assert error_of({**ENV, "CNI_COMMAND": "UP"}, b"{}")["code"] == errors.INVALID_ENVIRONMENT


def test_config_that_is_not_json_is_code_6() -> None:
    assert error_of(ENV, b"{nope")["code"] == errors.DECODE_FAILURE


def test_an_unsupported_cni_version_is_code_1() -> None:
    body = error_of(ENV, json.dumps({**CONF, "cniVersion": "0.2.0"}).encode())
    assert body["code"] == errors.INCOMPATIBLE_VERSION and "1.0.0" in str(body["details"])


def test_an_invalid_field_is_code_7_naming_it() -> None:
    body = error_of(ENV, json.dumps({**CONF, "allocationTimeoutSeconds": 600}).encode())
    assert body["code"] == errors.INVALID_NETWORK_CONFIG and "allocationTimeoutSeconds" in str(body["msg"])


def test_a_bad_kubeconfig_is_a_cni_error_in_the_configs_version() -> None:
    body = error_of(ENV, json.dumps({**CONF, "cniVersion": "0.4.0", "kubeconfig": "/nonexistent"}).encode())
    assert body["code"] == errors.INVALID_NETWORK_CONFIG and "/nonexistent" in str(body["msg"])
    assert body["cniVersion"] == "0.4.0"


def test_check_is_refused_for_0_3_configs() -> None:
    body = error_of({**ENV, "CNI_COMMAND": "CHECK"}, json.dumps({**CONF, "cniVersion": "0.3.1"}).encode())
    assert body["code"] == errors.INCOMPATIBLE_VERSION


def result(version: str) -> CniResult:
    return CniResult(
        cniVersion=version,
        interfaces=[Interface(name="nac1", mac="aa:aa:aa:aa:aa:aa"), Interface(name="eth0", sandbox="/ns")],
        ips=[IpConfig(address="10.0.0.5/32", gateway="169.254.1.1", interface=1)],
        routes=[Route(dst="0.0.0.0/0", gw="169.254.1.1")],
    )


def test_results_before_1_0_name_each_ips_version_and_1_0_does_not() -> None:
    assert result("0.4.0").to_wire()["ips"][0]["version"] == "4"
    wire = result("1.0.0").to_wire()
    assert "version" not in wire["ips"][0]
    assert "sandbox" not in wire["interfaces"][0] and wire["interfaces"][1]["sandbox"] == "/ns"
