"""Test-session hooks."""

from __future__ import annotations

import os
import sys

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT] = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Controllers killed with SIGKILL semantics leave event loops stopped mid-step; finalizing their
    coroutines at interpreter exit crashes CPython 3.11 (a segfault in garbage collection, seen here).
    A killed process runs nothing on the way out either: end without finalization, keeping the status."""
    from controller.k8s.harness import killed_controllers

    if killed_controllers():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash.get(_EXIT, 0))


_EXIT = pytest.StashKey[int]()
