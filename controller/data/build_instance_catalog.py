"""Regenerate `instance_types.json` from moto's bundled DescribeInstanceTypes data.

Run `python -m controller.data.build_instance_catalog` (needs the dev extra, which has moto).
The output keeps only the fields netalloc uses, so the package does not depend on moto at run time.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("instance_types.json")


def build() -> dict[str, dict[str, Any]]:
    source = resources.files("moto.ec2.resources").joinpath("instance_types.json.gz")
    with source.open("rb") as raw, gzip.open(raw) as unzipped:
        described: dict[str, dict[str, Any]] = json.load(unzipped)
    catalog: dict[str, dict[str, Any]] = {}
    for name, info in sorted(described.items()):
        network = info.get("NetworkInfo") or {}
        vcpu = info.get("VCpuInfo") or {}
        if not network.get("MaximumNetworkInterfaces") or not network.get("Ipv4AddressesPerInterface"):
            continue
        catalog[name] = {
            "max_enis": int(network["MaximumNetworkInterfaces"]),
            "ipv4_per_eni": int(network["Ipv4AddressesPerInterface"]),
            "vcpus": int(vcpu.get("DefaultVCpus", 1)),
            "nitro": info.get("Hypervisor") == "nitro" or bool(info.get("BareMetal")),
        }
    return catalog


def main() -> None:
    catalog = build()
    OUTPUT.write_text(json.dumps(catalog, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"wrote {len(catalog)} instance types to {OUTPUT}")


if __name__ == "__main__":
    main()
