"""Leader election against the emulated API server: one leader at a time, handover, loss on failed renewal."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pydantic
import pytest
from kubernetes import client as k8s

from controller.k8s.api_emulator import ApiFault, KubeApiEmulator
from controller.k8s.kube_api import KubeApi
from controller.k8s.leader_election import LeaderElectionConfig, LeadershipLost, LeaseElector, micro_time

NAMESPACE = "kube-system"
LEASE = "netalloc-controller"
# Short durations for tests; the lease is written in whole seconds (1 s here).
LEASE_DURATION_S = 1.0
RENEW_DEADLINE_S = 0.6
RETRY_PERIOD_S = 0.1
GUARD_S = 10.0  # only so that a broken elector fails the test instead of hanging it


@dataclasses.dataclass
class Interval:
    identity: str
    start: float
    end: float | None = None
    cancelled: bool = False


class LeadershipRecorder:
    """Records when each candidate's ``lead()`` runs; checks that no two ever ran at the same time."""

    def __init__(self) -> None:
        self.intervals: list[Interval] = []

    def lead(self, identity: str, until: asyncio.Event | None = None) -> Callable[[], Awaitable[None]]:
        async def lead() -> None:
            loop = asyncio.get_running_loop()
            interval = Interval(identity, loop.time())
            self.intervals.append(interval)
            try:
                if until is None:
                    await asyncio.Event().wait()  # lead until cancelled
                else:
                    await until.wait()
            except asyncio.CancelledError:
                interval.cancelled = True
                raise
            finally:
                interval.end = loop.time()

        return lead

    def leaders(self) -> list[str]:
        return [interval.identity for interval in self.intervals]

    def leading_now(self) -> list[str]:
        return [interval.identity for interval in self.intervals if interval.end is None]

    def assert_never_overlapping(self) -> None:
        ordered = sorted(self.intervals, key=lambda interval: interval.start)
        for before, after in itertools.pairwise(ordered):
            assert before.end is not None, f"{before.identity} still leads while {after.identity} leads"
            assert before.end <= after.start, f"{before.identity} and {after.identity} led at the same time"


class LeaderSampler:
    """Polls ``is_leader`` of every elector; remembers any moment when more than one said yes."""

    def __init__(self, electors: list[LeaseElector]) -> None:
        self.electors = electors
        self.overlaps: list[list[str]] = []
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            leaders = [e.config.identity for e in self.electors if e.is_leader]
            if len(leaders) > 1:
                self.overlaps.append(leaders)
            await asyncio.sleep(0.005)

    def __enter__(self) -> LeaderSampler:
        self._task = asyncio.create_task(self._sample())
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()


@pytest.fixture
async def emulator() -> AsyncIterator[KubeApiEmulator]:
    async with KubeApiEmulator() as emu:
        yield emu


@pytest.fixture
async def new_api(emulator: KubeApiEmulator) -> AsyncIterator[Callable[[], KubeApi]]:
    """A separate KubeApi (own connection pool) per candidate, as separate processes would have."""
    made: list[KubeApi] = []

    def make() -> KubeApi:
        configuration = k8s.Configuration()
        configuration.host = emulator.base_url
        configuration.api_key = {"authorization": "Bearer x"}
        api = KubeApi.for_configuration(configuration)
        made.append(api)
        return api

    yield make
    for api in made:
        await api.close()


def config(identity: str) -> LeaderElectionConfig:
    return LeaderElectionConfig(
        namespace=NAMESPACE,
        identity=identity,
        lease_duration_s=LEASE_DURATION_S,
        renew_deadline_s=RENEW_DEADLINE_S,
        retry_period_s=RETRY_PERIOD_S,
    )


def lease_spec(emulator: KubeApiEmulator) -> dict[str, object]:
    lease = emulator.get("coordination.k8s.io/v1", "Lease", LEASE, NAMESPACE)
    assert lease is not None
    spec: dict[str, object] = lease["spec"]
    return spec


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD_S):
        while not predicate():
            await asyncio.sleep(0.01)


async def next_renewal(emulator: KubeApiEmulator) -> None:
    """Wait until the Lease's renewTime changes."""
    renewed = lease_spec(emulator)["renewTime"]
    await until(lambda: lease_spec(emulator)["renewTime"] != renewed)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_config_requires_lease_longer_than_renew_deadline_longer_than_retry() -> None:
    with pytest.raises(pydantic.ValidationError, match="renew_deadline_s"):
        LeaderElectionConfig(namespace="x", lease_duration_s=10, renew_deadline_s=10)
    with pytest.raises(pydantic.ValidationError, match="retry_period_s"):
        LeaderElectionConfig(namespace="x", renew_deadline_s=2, retry_period_s=2)
    defaults = LeaderElectionConfig(namespace="x")
    assert (defaults.name, defaults.lease_duration_s, defaults.renew_deadline_s, defaults.retry_period_s) == (
        "netalloc-controller",
        15,
        10,
        2,
    )
    assert defaults.identity != LeaderElectionConfig(namespace="x").identity


def test_micro_time_always_has_six_fractional_digits() -> None:
    whole_second = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert micro_time(whole_second) == "2025-01-02T03:04:05.000000Z"
    offset = datetime.timezone(datetime.timedelta(hours=2))
    assert (
        micro_time(datetime.datetime(2025, 1, 2, 5, 4, 5, 7, tzinfo=offset)) == "2025-01-02T03:04:05.000007Z"
    )


async def test_one_candidate_leads_the_other_waits_and_takes_over_when_the_leader_stops(
    emulator: KubeApiEmulator, new_api: Callable[[], KubeApi]
) -> None:
    recorder = LeadershipRecorder()
    a, b = LeaseElector(new_api(), config("a")), LeaseElector(new_api(), config("b"))
    with LeaderSampler([a, b]) as sampler:
        runs = {
            e.config.identity: asyncio.create_task(e.run(recorder.lead(e.config.identity))) for e in (a, b)
        }
        await until(lambda: len(recorder.intervals) == 1)
        leader_id = recorder.leaders()[0]
        leader, standby = (a, b) if leader_id == "a" else (b, a)
        # The standby has seen the lease held by the leader and keeps waiting through several renewals.
        await until(lambda: standby.holder == leader_id)
        await next_renewal(emulator)
        await next_renewal(emulator)
        assert leader.is_leader and not standby.is_leader
        assert recorder.leading_now() == [leader_id]
        assert lease_spec(emulator)["holderIdentity"] == leader_id

        await stop(runs[leader_id])  # the leader's process is shutting down: it releases the lease

        async with asyncio.timeout(LEASE_DURATION_S):  # a released lease is taken at once, not after expiry
            await until(lambda: standby.is_leader and len(recorder.intervals) == 2)
        await stop(runs[standby.config.identity])

    assert recorder.leaders() == [leader_id, standby.config.identity]
    assert all(interval.cancelled for interval in recorder.intervals)
    recorder.assert_never_overlapping()
    assert sampler.overlaps == []
    assert lease_spec(emulator)["leaseTransitions"] == 1
    assert lease_spec(emulator)["holderIdentity"] == ""  # the second leader released it too


async def test_lead_returning_releases_the_lease_and_run_returns(
    emulator: KubeApiEmulator, new_api: Callable[[], KubeApi]
) -> None:
    recorder = LeadershipRecorder()
    done = asyncio.Event()
    elector = LeaseElector(new_api(), config("only"))
    run = asyncio.create_task(elector.run(recorder.lead("only", until=done)))
    await until(lambda: elector.is_leader)
    assert lease_spec(emulator)["holderIdentity"] == "only"
    done.set()
    await run
    assert not elector.is_leader
    assert elector.holder is None
    spec = lease_spec(emulator)
    assert (spec["holderIdentity"], spec["leaseDurationSeconds"]) == ("", 1)
    assert recorder.intervals[0].cancelled is False


async def test_lead_raising_releases_the_lease_and_propagates(
    emulator: KubeApiEmulator, new_api: Callable[[], KubeApi]
) -> None:
    class Boom(Exception):
        pass

    async def lead() -> None:
        raise Boom("lead failed")

    elector = LeaseElector(new_api(), config("only"))
    with pytest.raises(Boom):
        await elector.run(lead)
    assert lease_spec(emulator)["holderIdentity"] == ""
    assert not elector.is_leader


async def test_candidates_take_turns_one_at_a_time(
    emulator: KubeApiEmulator, new_api: Callable[[], KubeApi]
) -> None:
    """Four candidates start together; each leads briefly and returns; every handover is exclusive."""
    recorder = LeadershipRecorder()
    identities = ["c0", "c1", "c2", "c3"]
    electors = [LeaseElector(new_api(), config(identity)) for identity in identities]
    finish = {identity: asyncio.Event() for identity in identities}

    async def end_each_leadership_after_a_renewal() -> None:
        while len(recorder.intervals) < len(identities) or recorder.leading_now():
            current = recorder.leading_now()
            if current:
                await next_renewal(emulator)
                finish[current[0]].set()
            await asyncio.sleep(0.01)

    with LeaderSampler(electors) as sampler:
        runs = [
            asyncio.create_task(e.run(recorder.lead(e.config.identity, until=finish[e.config.identity])))
            for e in electors
        ]
        async with asyncio.timeout(GUARD_S):
            await end_each_leadership_after_a_renewal()
            await asyncio.gather(*runs)

    assert sorted(recorder.leaders()) == identities
    recorder.assert_never_overlapping()
    assert sampler.overlaps == []
    assert lease_spec(emulator)["leaseTransitions"] == 3


async def test_leader_whose_renewals_fail_steps_down_before_the_standby_takes_over(
    emulator: KubeApiEmulator, new_api: Callable[[], KubeApi]
) -> None:
    recorder = LeadershipRecorder()
    leader_api = new_api()
    leader = LeaseElector(leader_api, config("leader"))
    standby = LeaseElector(new_api(), config("standby"))
    with LeaderSampler([leader, standby]) as sampler:
        leader_run = asyncio.create_task(leader.run(recorder.lead("leader")))
        await until(lambda: leader.is_leader)
        standby_run = asyncio.create_task(standby.run(recorder.lead("standby")))
        await until(lambda: standby.holder == "leader")

        leader_api.configuration.host = "http://127.0.0.1:9"  # the leader loses the API server

        with pytest.raises(LeadershipLost, match="could not renew"):
            async with asyncio.timeout(GUARD_S):
                await leader_run
        assert not leader.is_leader
        await until(lambda: standby.is_leader and len(recorder.intervals) == 2)
        await stop(standby_run)

    assert recorder.leaders() == ["leader", "standby"]
    assert recorder.intervals[0].cancelled  # lead() was cancelled, not left running
    recorder.assert_never_overlapping()
    assert sampler.overlaps == []


async def test_leader_steps_down_at_once_when_another_holder_overwrites_the_lease(
    emulator: KubeApiEmulator, new_api: Callable[[], KubeApi]
) -> None:
    recorder = LeadershipRecorder()
    leader = LeaseElector(new_api(), config("leader"))
    run = asyncio.create_task(leader.run(recorder.lead("leader")))
    await until(lambda: leader.is_leader)

    lease = emulator.get("coordination.k8s.io/v1", "Lease", LEASE, NAMESPACE)
    assert lease is not None
    now = micro_time(datetime.datetime.now(datetime.UTC))
    lease["spec"].update(holderIdentity="intruder", acquireTime=now, renewTime=now, leaseDurationSeconds=60)
    emulator.replace(lease)  # a newer resourceVersion: the leader's next renewal gets 409

    with pytest.raises(LeadershipLost, match="lost the lease to intruder"):
        async with asyncio.timeout(GUARD_S):
            await run
    assert recorder.intervals[0].cancelled
    assert leader.holder == "intruder"
    assert lease_spec(emulator)["holderIdentity"] == "intruder"  # not released: it is not ours any more


async def test_an_expired_lease_of_a_dead_holder_is_taken_over(
    emulator: KubeApiEmulator, new_api: Callable[[], KubeApi]
) -> None:
    long_ago = micro_time(datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1))
    emulator.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": NAMESPACE},
            "spec": {
                "holderIdentity": "dead",
                "leaseDurationSeconds": 1,
                "acquireTime": long_ago,
                "renewTime": long_ago,
                "leaseTransitions": 4,
            },
        }
    )
    recorder = LeadershipRecorder()
    elector = LeaseElector(new_api(), config("heir"))
    run = asyncio.create_task(elector.run(recorder.lead("heir")))
    await until(lambda: elector.is_leader)
    spec = lease_spec(emulator)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("heir", 5)
    assert spec["acquireTime"] != long_ago
    await stop(run)


async def test_a_candidate_whose_clock_runs_ahead_does_not_take_a_lease_that_is_being_renewed(
    emulator: KubeApiEmulator, new_api: Callable[[], KubeApi]
) -> None:
    recorder = LeadershipRecorder()
    leader = LeaseElector(new_api(), config("leader"))
    leader_run = asyncio.create_task(leader.run(recorder.lead("leader")))
    await until(lambda: leader.is_leader)

    def an_hour_ahead() -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)

    skewed = LeaseElector(new_api(), config("skewed"), wall_clock=an_hour_ahead)
    skewed_run = asyncio.create_task(skewed.run(recorder.lead("skewed")))
    # To the skewed clock every renewTime is an hour old; wait out twice the lease duration in renewals.
    renewals_to_wait = int(2 * LEASE_DURATION_S / RETRY_PERIOD_S)
    for _ in range(renewals_to_wait):
        await next_renewal(emulator)
    assert skewed.holder == "leader"
    assert not skewed.is_leader
    assert recorder.leaders() == ["leader"]
    await stop(skewed_run)
    await stop(leader_run)


async def test_the_lease_is_held_for_a_call_only_while_a_standby_cannot_take_over_before_it_ends(
    emulator: KubeApiEmulator, new_api: Callable[[], KubeApi]
) -> None:
    api = new_api()
    elector = LeaseElector(api, config("fenced"))
    assert not elector.holds_lease_for(0.1)  # not leading yet
    done = asyncio.Event()
    run = asyncio.create_task(elector.run(LeadershipRecorder().lead("fenced", until=done)))
    await until(lambda: elector.is_leader)
    assert elector.holds_lease_for(0.1)
    assert not elector.holds_lease_for(LEASE_DURATION_S)  # would outlast the lease
    emulator.inject_fault(
        ApiFault(methods=frozenset({"PUT", "GET", "POST"}), path="/leases", code=500, times=10_000)
    )
    await asyncio.sleep(LEASE_DURATION_S - RENEW_DEADLINE_S / 2)
    assert not elector.holds_lease_for(RENEW_DEADLINE_S / 2)  # renewals failed: writes stop first
    emulator.clear_faults()
    with contextlib.suppress(LeadershipLost):
        await run
    done.set()
