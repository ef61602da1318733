"""The controller refuses a default or placeholder cluster name: the leak sweep deletes by it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from controller.k8s.reconcilers.context import ClusterNameError, ControllerConfig, check_cluster_name


@pytest.mark.parametrize("name", ["", "netalloc", "my-cluster", "My-Cluster", "default"])
def test_placeholders_are_refused_with_how_to_fix_it(name: str) -> None:
    with pytest.raises(ClusterNameError, match="CLUSTER_NAME"):
        check_cluster_name(name)
    with pytest.raises(ValidationError):
        ControllerConfig(cluster_name=name or "netalloc")


def test_a_real_name_is_accepted() -> None:
    assert ControllerConfig(cluster_name="prod-eu-1").cluster_name == "prod-eu-1"


def test_netalloc_run_without_a_cluster_name_exits_2_and_says_why() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLUSTER_NAME"}
    done = subprocess.run(  # noqa: PLW1510 - the exit code is what is tested
        [sys.executable, "-m", "controller.cli", "run", "--ec2", "sim", "--kubeconfig", "/nonexistent"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "CLUSTER_NAME" in done.stderr + done.stdout
