"""Packaging as users expect it: license, dependencies, image, CRDs as package data."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from controller.k8s.resources import crd_directory

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_is_an_spdx_string_with_its_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]


def test_no_unused_dependency_and_plots_are_an_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[=<>\[]", d)[0] for d in project["dependencies"]}
    assert "kmock" not in names and "matplotlib" not in names
    assert any(d.startswith("matplotlib==") for d in project["optional-dependencies"]["research"])
    assert "kubectl-netalloc" in project["scripts"]


def test_the_image_base_is_pinned_by_digest_and_carries_no_extras() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE=\S+@sha256:[0-9a-f]{64}$", dockerfile, re.MULTILINE)
    assert all(
        line.split()[1].startswith("${BASE}") for line in dockerfile.splitlines() if line.startswith("FROM")
    )
    assert (
        "pip install --no-cache-dir ." in dockerfile
        and "[dev" not in dockerfile
        and "[research" not in dockerfile
    )


def test_the_crds_are_package_data_and_the_same_as_crds() -> None:
    packaged = crd_directory()
    for name in (
        "podnetworkallocations.yaml",
        "nodenetworkpools.yaml",
        "optional/securitygrouppolicies.yaml",
    ):
        assert (packaged / name).read_bytes() == (ROOT / "crds" / name).read_bytes()
