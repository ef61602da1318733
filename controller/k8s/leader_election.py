"""Leader election through a ``coordination.k8s.io/v1`` Lease, as client-go's ``leaderelection`` does it.

kopf's peering only pauses handlers when it sees another operator; it is not a lease, and two replicas
can both act during a rollout. netalloc calls EC2 on behalf of the cluster, so exactly one replica may
lead. The rules:

- A candidate takes the Lease when it does not exist (create), when nobody holds it (``holderIdentity``
  empty: the previous leader released it), or when it has expired. Every write carries the
  ``resourceVersion`` last read, so of two candidates racing for the same Lease the API server accepts
  one write and answers the other 409: that one goes back to waiting.
- Expired means both: ``renewTime + leaseDurationSeconds`` is past on our wall clock (what the brief and
  kubectl show), and the record has not changed for ``leaseDurationSeconds`` on our own monotonic clock
  since we first saw it (client-go's rule, which does not trust another node's clock). A clock running
  ahead of the leader's therefore cannot take a live lease.
- The leader renews every ``retry_period_s``. If no renewal has succeeded for ``renew_deadline_s``, or the
  Lease is seen held by someone else, ``lead()`` is cancelled and ``LeadershipLost`` raised: the process
  exits and Kubernetes restarts it, as controller-runtime does. ``renew_deadline_s < lease_duration_s``
  so the old leader has stopped before a standby may take over.
- When ``lead()`` returns or raises (or ``run`` is cancelled), the Lease is released: ``holderIdentity``
  "" and ``leaseDurationSeconds`` 1, so a standby takes over at its next retry instead of waiting for
  expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.k8s.kube_api import JsonObject, KubeApi, KubeError

log = logging.getLogger(__name__)

WallClock = Callable[[], datetime.datetime]
ACQUIRE_JITTER = 0.2  # the acquire loop waits retry_period * (1 + up to 20 %), as client-go's JitterFactor
RELEASED_LEASE_DURATION_S = 1  # what client-go writes on release
# Failures of one attempt that are worth retrying: API errors (5xx, 429, 403 while RBAC settles),
# connection errors, and our own per-attempt timeout.
TRANSIENT_ERRORS = (KubeError, OSError, TimeoutError)


def default_identity() -> str:
    """``<hostname>_<random>``, as client-go's callers build it: unique even for two processes on a host."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:10]}"


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def micro_time(moment: datetime.datetime) -> str:
    """Kubernetes ``MicroTime``: RFC 3339 in UTC with exactly six fractional digits."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElectionConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str = "netalloc-controller"
    identity: str = Field(default_factory=default_identity, min_length=1)
    lease_duration_s: float = Field(default=15, gt=0)
    renew_deadline_s: float = Field(default=10, gt=0)
    retry_period_s: float = Field(default=2, gt=0)

    @model_validator(mode="after")
    def _durations_nest(self) -> LeaderElectionConfig:
        if not self.lease_duration_s > self.renew_deadline_s:
            raise ValueError("lease_duration_s must be greater than renew_deadline_s")
        if not self.renew_deadline_s > self.retry_period_s * (1 + ACQUIRE_JITTER):
            raise ValueError("renew_deadline_s must be greater than retry_period_s * 1.2")
        return self

    @property
    def lease_duration_seconds(self) -> int:
        """The Lease field is whole seconds; round up so nobody is told a shorter lease than we keep."""
        return max(1, math.ceil(self.lease_duration_s))

    @property
    def request_timeout_s(self) -> float:
        """One HTTP call's timeout, as client-go's leader election sets it: max(renew deadline / 2, 1 s)."""
        return max(self.renew_deadline_s / 2, 1.0)


class LeaseRecord(BaseModel):
    """The fields of a Lease that leader election reads, with the resourceVersion to write it back."""

    resource_version: str
    holder_identity: str = ""
    lease_duration_seconds: int | None = None
    acquire_time: datetime.datetime | None = None
    renew_time: datetime.datetime | None = None
    lease_transitions: int = 0

    @classmethod
    def from_object(cls, lease: JsonObject) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            resource_version=str(lease["metadata"]["resourceVersion"]),
            holder_identity=spec.get("holderIdentity") or "",
            lease_duration_seconds=spec.get("leaseDurationSeconds"),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            lease_transitions=spec.get("leaseTransitions") or 0,
        )


class LeadershipLost(Exception):
    """The Lease could not be renewed in time, or another candidate holds it: ``lead()`` was cancelled."""


AttemptOutcome = Literal["leading", "held-by-other", "failed"]


class LeaseElector:
    """One candidate: ``run(lead)`` waits for the Lease, runs ``lead()`` while holding it, releases it."""

    def __init__(
        self, api: KubeApi, config: LeaderElectionConfig, *, wall_clock: WallClock = utc_now
    ) -> None:
        self.api = api
        self.config = config
        self._wall_clock = wall_clock
        self._is_leader = False
        self._record: LeaseRecord | None = None  # the last version of the Lease we read or wrote
        self._observed_at = 0.0  # loop time at which `_record` last changed (client-go's observedTime)
        self._renewed_at: float | None = None  # loop time at which our last successful write started

    # -- for the readiness probe --------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    def holds_lease_for(self, seconds: float) -> bool:
        """Will no standby take over within `seconds` from now? Checked before every EC2 write.

        A standby may take the Lease `lease_duration_s` after our last successful renewal began, so a
        call that starts now and lasts at most `seconds` ends while we still hold it.
        """
        if not self._is_leader or self._renewed_at is None:
            return False
        return asyncio.get_running_loop().time() + seconds < self._renewed_at + self.config.lease_duration_s

    @property
    def holder(self) -> str | None:
        """The holder in the last version of the Lease seen; None if none seen or nobody holds it."""
        if self._record is None or not self._record.holder_identity:
            return None
        return self._record.holder_identity

    # -- the election ---------------------------------------------------------------------------------

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Acquire, run ``lead()`` while renewing; returns (or raises) what ``lead()`` does.

        Raises ``LeadershipLost`` if the Lease is lost while ``lead()`` runs (``lead()`` is cancelled first).
        """
        renewed_at = await self._acquire()

        async def run_lead() -> None:
            await lead()

        lead_task = asyncio.create_task(run_lead(), name=f"lead:{self.config.identity}")
        renew_task = asyncio.create_task(self._keep_renewing(renewed_at), name="lease-renewal")
        try:
            await asyncio.wait({lead_task, renew_task}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await _cancel_and_wait(renew_task)
            await self._stop_lead(lead_task)
            await self._release()
            raise
        if lead_task.done():
            await _cancel_and_wait(renew_task)
            await self._release()
            lead_task.result()  # lead()'s exception, if any, propagates
            return
        await self._stop_lead(lead_task)
        reason = renew_task.exception()
        if isinstance(reason, LeadershipLost):
            raise reason
        raise LeadershipLost(f"lease renewal stopped: {reason!r}") from reason

    async def _acquire(self) -> float:
        """Try every retry period (jittered) until we hold the Lease; returns the loop time of that write."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            outcome = await self._attempt()
            if outcome == "leading":
                self._is_leader = True
                self._renewed_at = started
                log.info("%s became the leader (lease %s/%s)", *self._who())
                return started
            await asyncio.sleep(self.config.retry_period_s * (1 + random.random() * ACQUIRE_JITTER))

    async def _keep_renewing(self, renewed_at: float) -> None:
        """Renew every retry period; raise ``LeadershipLost`` past the renew deadline or when ousted."""
        loop = asyncio.get_running_loop()
        deadline_s = self.config.renew_deadline_s
        while True:
            remaining = renewed_at + deadline_s - loop.time()
            await asyncio.sleep(min(self.config.retry_period_s, max(0.0, remaining)))
            started = loop.time()
            remaining = renewed_at + deadline_s - started
            if remaining <= 0:
                self._is_leader = False
                raise LeadershipLost(f"{self.config.identity} could not renew the lease for {deadline_s} s")
            outcome: AttemptOutcome
            try:
                async with asyncio.timeout(remaining):
                    outcome = await self._attempt()
            except TimeoutError:
                outcome = "failed"
            if outcome == "leading":
                renewed_at = self._renewed_at = started
            elif outcome == "held-by-other":
                self._is_leader = False
                holder = self.holder
                if holder is not None and holder != self.config.identity:
                    raise LeadershipLost(f"{self.config.identity} lost the lease to {holder}")
                raise LeadershipLost(f"another writer changed the lease held by {self.config.identity}")

    async def _attempt(self) -> AttemptOutcome:
        """One try to acquire or renew (client-go's ``tryAcquireOrRenew``); errors count as a failed try."""
        try:
            return await self._try_acquire_or_renew()
        except TRANSIENT_ERRORS as exc:
            log.warning("%s: attempt on the lease %s/%s failed: %s", *self._who(), _short(exc))
            return "failed"

    async def _try_acquire_or_renew(self) -> AttemptOutcome:
        cfg = self.config
        timeout = cfg.request_timeout_s
        # Fast path for the leader: write over the version we last wrote, no read.
        if self._is_leader and self._record is not None and self._record.holder_identity == cfg.identity:
            renewed = await self.api.replace_lease(
                cfg.namespace, cfg.name, self._lease_body(self._record), timeout_s=timeout
            )
            if renewed is not None:
                self._observe(renewed)
                return "leading"
        current = await self.api.get_lease(cfg.namespace, cfg.name, timeout_s=timeout)
        if current is None:
            created = await self.api.create_lease(cfg.namespace, self._lease_body(None), timeout_s=timeout)
            if created is None:
                return "held-by-other"  # another candidate created it between our read and our write
            self._observe(created)
            return "leading"
        record = self._observe(current)
        if record.holder_identity != cfg.identity and not self._available(record):
            return "held-by-other"
        written = await self.api.replace_lease(
            cfg.namespace, cfg.name, self._lease_body(record), timeout_s=timeout
        )
        if written is None:
            return "held-by-other"  # 409: someone else wrote after our read; they won
        self._observe(written)
        return "leading"

    def _available(self, record: LeaseRecord) -> bool:
        """Nobody holds it, or it has expired by both the wall clock and our own observation."""
        if not record.holder_identity:
            return True
        duration = record.lease_duration_seconds or self.config.lease_duration_seconds
        wall_expired = record.renew_time is None or (
            record.renew_time + datetime.timedelta(seconds=duration) <= self._wall_clock()
        )
        unchanged_for = asyncio.get_running_loop().time() - self._observed_at
        return wall_expired and unchanged_for >= duration

    def _observe(self, lease: JsonObject) -> LeaseRecord:
        record = LeaseRecord.from_object(lease)
        if self._record is None or record.resource_version != self._record.resource_version:
            self._observed_at = asyncio.get_running_loop().time()
        self._record = record
        return record

    def _lease_body(self, current: LeaseRecord | None) -> JsonObject:
        """The Lease naming us holder, renewed now; written over ``current`` (None: a new Lease)."""
        cfg = self.config
        now = micro_time(self._wall_clock())
        acquire_time, transitions = now, 0
        if current is not None and current.holder_identity == cfg.identity:  # a renewal
            acquire_time = micro_time(current.acquire_time) if current.acquire_time else now
            transitions = current.lease_transitions
        elif current is not None:  # a takeover
            transitions = current.lease_transitions + 1
        spec: dict[str, Any] = {
            "holderIdentity": cfg.identity,
            "leaseDurationSeconds": cfg.lease_duration_seconds,
            "acquireTime": acquire_time,
            "renewTime": now,
            "leaseTransitions": transitions,
        }
        metadata: dict[str, Any] = {"name": cfg.name, "namespace": cfg.namespace}
        if current is not None:
            metadata["resourceVersion"] = current.resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    async def _release(self) -> None:
        """Hand the Lease back (best effort): holder "", so a standby need not wait for it to expire."""
        cfg = self.config
        self._is_leader = False
        for _ in range(2):  # a second try if a renewal still in flight moved the resourceVersion on
            record = self._record
            if record is None or record.holder_identity != cfg.identity:
                return
            body = self._lease_body(record)
            body["spec"].update(holderIdentity="", leaseDurationSeconds=RELEASED_LEASE_DURATION_S)
            try:
                released = await self.api.replace_lease(
                    cfg.namespace, cfg.name, body, timeout_s=cfg.request_timeout_s
                )
                if released is not None:
                    self._observe(released)
                    log.info("%s released the lease %s/%s", *self._who())
                    return
                current = await self.api.get_lease(cfg.namespace, cfg.name, timeout_s=cfg.request_timeout_s)
            except TRANSIENT_ERRORS as exc:
                log.warning("%s could not release the lease %s/%s: %s", *self._who(), _short(exc))
                return
            if current is None:
                return
            self._observe(current)

    async def _stop_lead(self, lead_task: asyncio.Task[None]) -> None:
        """Cancel ``lead()`` and wait for it, but no longer than the margin before a standby may take over."""
        self._is_leader = False
        lead_task.cancel()
        margin = self.config.lease_duration_s - self.config.renew_deadline_s
        done, _ = await asyncio.wait({lead_task}, timeout=margin)
        if not done:
            log.error(
                "lead() of %s did not stop within %.1f s of being cancelled", self.config.identity, margin
            )
            return
        if not lead_task.cancelled() and lead_task.exception() is not None:
            log.warning(
                "lead() of %s ended with %r while stopping", self.config.identity, lead_task.exception()
            )

    def _who(self) -> tuple[str, str, str]:
        return self.config.identity, self.config.namespace, self.config.name


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
        await task


def _short(exc: BaseException) -> str:
    if isinstance(exc, KubeError):
        return f"HTTP {exc.code} {exc.reason}" if exc.code else f"{exc.reason}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
