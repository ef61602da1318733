"""Netlink sockets inside a pod's network namespace, without forking a helper process.

A netlink socket stays bound to the namespace it was opened in, so the plugin enters the pod's netns
only for the instant it opens the socket and returns at once; every later call on that socket acts
inside the pod. (pyroute2's own `netns=` argument forks a child per socket, which ADD's time shows.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns

from controller.cni import errors
from controller.cni.errors import CniError


class NetnsGone(Exception):
    """The netns path no longer exists (a DEL after the sandbox went)."""


def open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as error:
        raise NetnsGone(path) from error
    except OSError as error:
        raise CniError(errors.UNKNOWN_CONTAINER, f"cannot open netns {path}: {error}") from error


@contextlib.contextmanager
def route_in(netns_fd: int) -> Iterator[IPRoute]:
    """An IPRoute whose socket lives in the namespace `netns_fd` refers to."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        pr_netns.setns(netns_fd)
        try:
            ipr = IPRoute()
        finally:
            pr_netns.setns(home)
    finally:
        os.close(home)
    try:
        yield ipr
    finally:
        ipr.close()
