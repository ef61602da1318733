"""Running the configured delegate plugin (aws-cni in EKS) for pods netalloc does not manage.

The delegate gets the runtime's environment unchanged and its own config with the network's name and
cniVersion (and prevResult, when there is one), as libcni would; its stdout and exit code are passed
back as they are, so for an unmanaged pod the node behaves exactly as without netalloc-cni.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.cni import errors
from controller.cni.config import CniEnv, NetConf
from controller.cni.errors import CniError


@dataclass(frozen=True)
class DelegateAnswer:
    stdout: bytes
    returncode: int


def find_plugin(name: str, path: tuple[str, ...]) -> Path:
    for directory in path:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(
        errors.DELEGATE_FAILURE, f"delegate plugin {name!r} not found in CNI_PATH {':'.join(path)}"
    )


def delegate_config(conf: NetConf, delegate: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"cniVersion": conf.cni_version, "name": conf.name, **delegate}
    if conf.prev_result is not None:
        body["prevResult"] = conf.prev_result
    return body


def run_delegate(
    conf: NetConf, delegate: Mapping[str, Any], env: CniEnv, environ: Mapping[str, str]
) -> DelegateAnswer:
    plugin = find_plugin(str(delegate["type"]), env.path)
    try:
        done = subprocess.run(
            [str(plugin)],
            input=json.dumps(delegate_config(conf, delegate)).encode(),
            env=dict(environ),
            stdout=subprocess.PIPE,
            check=False,
            timeout=conf.allocation_timeout_s + 60,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CniError(errors.DELEGATE_FAILURE, f"delegate {plugin} did not run: {error}") from error
    return DelegateAnswer(stdout=done.stdout, returncode=done.returncode)
