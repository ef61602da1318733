"""What ADD did for one container, kept on the node so DEL and CHECK never need the API.

By the time kubelet tears a sandbox down, the PNA may already be released or gone; DEL undoes what
this record says was made (or, for a delegated pod, calls the delegate), and is a no-op when asked twice.
The record is written before anything is created, so a failed ADD can undo exactly its partial work.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

Kind = Literal["delegated", "BranchENI", "PrefixIP", "SecondaryIP", "SharedENI"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    container_id: str
    ifname: str
    netns: str
    kind: Kind
    pna: str = ""  # namespace/name
    ip: str = ""
    host_veth: str = ""
    vlan_id: int | None = None
    vlan_link: str = ""  # set only when ADD created the sub-interface (never the test stand-in)
    uplink: str = ""  # the link the branch ENI's traffic leaves by (the VLAN link, or the stand-in)
    table: int | None = None
    result: dict[str, object] | None = None  # what ADD printed, for CHECK against prevResult


def _path(state_dir: str, container_id: str, ifname: str) -> Path:
    return Path(state_dir) / f"{container_id}-{ifname}.json"


def load(state_dir: str, container_id: str, ifname: str) -> Record | None:
    try:
        return Record.model_validate_json(_path(state_dir, container_id, ifname).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError):
        return None  # unreadable: DEL falls back to the derived names


def save(state_dir: str, record: Record) -> None:
    """Atomically: a crash mid-write leaves the old record or the new, never half of one."""
    path = _path(state_dir, record.container_id, record.ifname)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = path.with_suffix(".tmp")
    scratch.write_text(record.model_dump_json())
    os.replace(scratch, path)


def remove(state_dir: str, container_id: str, ifname: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        _path(state_dir, container_id, ifname).unlink()
