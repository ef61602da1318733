"""The built wheel works on its own: a fresh virtualenv, the wheel installed, `netalloc sandbox` run from a
folder outside the checkout (the CRDs come as package data, not from crds/ beside the code)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_in_a_fresh_venv_and_runs_the_sandbox_outside_the_checkout(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--quiet", "-w", str(wheels)],
        check=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("netalloc-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], check=True, timeout=900)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [str(venv / "bin" / "netalloc"), "sandbox", "--nodes", "1", "--pods", "2", "--output", "json"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["allocated"] == 2 and summary["pod_writes"] == 0 and summary["leaked_enis"] == 0
    cni = subprocess.run(
        [str(venv / "bin" / "netalloc-cni")],
        input='{"cniVersion": "1.0.0"}',
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cni.returncode == 0, cni.stdout + cni.stderr[-2000:]
    assert "1.0.0" in json.loads(cni.stdout)["supportedVersions"]  # the CNI plugin ships in the wheel
