"""Every Kubernetes write the controller makes reaches the Prometheus counter."""

from kubernetes import client as k8s

from controller.k8s.api_emulator import KubeApiEmulator
from controller.k8s.kube_api import KubeApi
from controller.observability import Metrics


async def test_writes_are_counted_in_the_metric() -> None:
    metrics = Metrics()
    async with KubeApiEmulator() as emulator:
        configuration = k8s.Configuration()
        configuration.host = emulator.base_url
        configuration.api_key = {"authorization": "Bearer x"}
        kube = KubeApi.for_configuration(configuration, on_write=metrics.observe_kube_write)
        try:
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            }
            await kube.post_event(pod, event_type="Normal", reason="Allocated", message="x")
            await kube.post_event(pod, event_type="Normal", reason="Released", message="y")
        finally:
            await kube.close()
    value = metrics.registry.get_sample_value(
        "netalloc_kubernetes_writes_total", {"verb": "create", "resource": "events"}
    )
    assert value == 2
    assert kube.writes[("create", "events")] == 2
