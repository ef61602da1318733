"""netalloc's overrides of kopf internals (kopf is pinned): they must still fit the kopf installed."""

from __future__ import annotations

import inspect

import kopf
from kopf._core.reactor.inventory import ResourceMemories

from controller.k8s.operator import ForgetfulMemories, NoDiffBase, NoProgress


async def test_kopf_keeps_no_memory_of_the_objects_it_reported() -> None:
    memories = ForgetfulMemories()
    body = {"metadata": {"uid": "u-1", "name": "p", "namespace": "ns"}}
    first = await memories.recall(body, noticed_by_listing=True)
    assert await memories.recall(body) is not first
    await memories.recall_memo(body)  # kopf's other entry point must go through the override too
    assert list(memories.iter_all_memories()) == []


def test_the_override_takes_every_argument_kopf_passes() -> None:
    ours = inspect.signature(ForgetfulMemories.recall).parameters
    theirs = inspect.signature(ResourceMemories.recall).parameters
    assert list(ours) == list(theirs)


def test_no_diff_base_and_no_progress_are_complete_kopf_storages() -> None:
    body = kopf.Body({"metadata": {"name": "p"}, "spec": {"a": 1}})
    diffbase, progress = NoDiffBase(), NoProgress()  # abstract methods left out would raise here
    assert diffbase.build(body=body) == {} and diffbase.fetch(body=body) is None
    essence = kopf.BodyEssence({"spec": {"a": 1}})
    assert progress.clear(essence=essence) is essence
