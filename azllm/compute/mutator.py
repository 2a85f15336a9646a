"""A FlowMutator that turns the preset's compute profile into step decorators.

The flow file never names capacity: ``@compute_from_profile`` on the flow class reads
``config.compute.profile`` when the flow is built and gives each remote step

    @resources(cpu, memory, gpu, disk, shared_memory)     sizes, read by both backends
    @kubernetes(image, node_selector, tolerations)         or
    @batch(queue, image, efa)                              never both
    @retry(times)                                          when retries > 0
    @secrets(sources)                                      when the profile names secrets

and every step (local ones too) the error boundary ``expected_failures`` (azllm.compute.step_errors).

A local step gets nothing but ``@retry`` and ``@secrets`` (when asked for), so the ``local`` profile runs
on a laptop with no cloud configuration. The plan is a pure function
(:func:`compute_plan`), so tests check it without building a flow:

    >>> plan = compute_plan(load_compute_profile("batch-a100"), ["start", "cpt_full"], {"cpt_full"})
    >>> plan["cpt_full"][1]
    ('batch', {'queue': 'azllm-p4d', 'efa': 4})
"""

from __future__ import annotations

from typing import Any

from metaflow import FlowMutator

from azllm.compute.profile import GPU_TYPES, ComputeProfile, StepCompute, load_compute_profile
from azllm.compute.step_errors import expected_failures

Decorators = list[tuple[str, dict[str, Any]]]


def step_decorators(compute: StepCompute) -> Decorators:
    """(decorator name, kwargs) for one step, in the order they are added."""
    decos: Decorators = []
    if compute.backend != "local":
        resources: dict[str, Any] = {"cpu": compute.cpu, "memory": compute.memory}
        if compute.gpu_type:
            resources["gpu"] = compute.gpus_per_node
        if compute.disk and compute.backend == "kubernetes":
            resources["disk"] = compute.disk
        if compute.shared_memory:
            resources["shared_memory"] = compute.shared_memory
        decos.append(("resources", resources))
        backend: dict[str, Any] = {}
        if compute.backend == "kubernetes":
            selector = dict(compute.node_selector)
            if compute.gpu_type and not selector:
                selector = {"node.kubernetes.io/instance-type": compute.instance_type}
            if selector:
                backend["node_selector"] = selector
            if compute.tolerations:
                backend["tolerations"] = [dict(t) for t in compute.tolerations]
        else:
            backend["queue"] = compute.queue
            efa = GPU_TYPES[compute.gpu_type].efa_devices if compute.gpu_type else 0
            if efa and compute.nodes > 1:  # EFA carries NCCL between nodes; inside one node it is NVLink
                backend["efa"] = efa
        if compute.image:
            backend["image"] = compute.image
        decos.append((compute.backend, backend))
    if compute.retries:
        decos.append(("retry", {"times": compute.retries}))
    if compute.secrets:
        decos.append(("secrets", {"sources": list(compute.secrets)}))
    return decos


def compute_plan(profile: ComputeProfile, flow_steps: list[str], parallel_steps: set[str]) -> dict[str, Decorators]:
    """Decorators per flow step. Raises ConfigError naming the profile, the step and the field."""
    from azllm.config import ConfigError

    resolved = profile.check_steps(flow_steps)
    for name, compute in resolved.items():
        if compute.nodes > 1 and name not in parallel_steps:
            raise ConfigError(f"compute profile {profile.name!r}, step {name!r}: nodes={compute.nodes} "
                              "but the step is not @parallel in this flow; set nodes = 1")
    return {name: step_decorators(compute) for name, compute in resolved.items()}


class compute_from_profile(FlowMutator):  # noqa: N801 - used as a decorator
    """Add capacity decorators to every step from the compute profile the preset names."""

    def pre_mutate(self, mutable_flow) -> None:
        from metaflow.exception import MetaflowException

        from azllm.config import ConfigError

        steps = dict(mutable_flow.steps)
        for mutable_step in steps.values():  # one line for an expected failure (azllm.compute.step_errors)
            mutable_step.add_decorator(expected_failures, duplicates=mutable_step.IGNORE)
        cfg = dict(mutable_flow.configs).get("config")
        if cfg is None:
            return
        parallel = {name for name, step in steps.items() if step.has_decorator("parallel")}
        try:
            plan = compute_plan(load_compute_profile(cfg["compute"]["profile"]), list(steps), parallel)
        except ConfigError as e:
            raise MetaflowException(f"invalid compute profile: {e}") from None
        for name, decos in plan.items():
            for deco_name, kwargs in decos:
                steps[name].add_decorator(deco_name, deco_kwargs=kwargs, duplicates=steps[name].OVERRIDE)
