"""A FlowMutator that turns the preset's compute profile into step decorators.

The flow file never names capacity: ``@compute_from_profile`` on the flow class reads
``config.compute.profile`` when the flow is built and adds ``@kubernetes`` or
``@batch`` (never both), ``@retry`` per step. The ``local`` profile adds nothing
that needs a cloud.
"""

from __future__ import annotations

from typing import Any

from metaflow import FlowMutator

from azllm.compute.profile import GPU_TYPES, StepCompute, load_compute_profile


def decorator_kwargs(step: StepCompute) -> tuple[str | None, dict[str, Any]]:
    """(decorator name, kwargs) for a step's backend; (None, {}) for local."""
    if step.backend == "local":
        return None, {}
    kwargs: dict[str, Any] = {"cpu": step.cpu, "memory": step.memory}
    if step.gpu_type:
        kwargs["gpu"] = step.gpus_per_node
    if step.image:
        kwargs["image"] = step.image
    if step.shared_memory:
        kwargs["shared_memory"] = step.shared_memory
    if step.backend == "kubernetes":
        if step.disk:
            kwargs["disk"] = step.disk
        selector = dict(step.node_selector)
        if step.gpu_type and not selector:
            selector = {"node.kubernetes.io/instance-type": GPU_TYPES[step.gpu_type].instance_type}
        if selector:
            kwargs["node_selector"] = selector
        if step.tolerations:
            kwargs["tolerations"] = [dict(t) for t in step.tolerations]
        return "kubernetes", kwargs
    kwargs["queue"] = step.queue
    if step.gpu_type in ("a100", "h100") and step.gpus_per_node > 1:
        kwargs["efa"] = 1
    return "batch", kwargs


class compute_from_profile(FlowMutator):  # noqa: N801 - used as a decorator
    """Add capacity decorators to every step from the compute profile the preset names."""

    def pre_mutate(self, mutable_flow) -> None:
        cfg = dict(mutable_flow.configs).get("config")
        if cfg is None:
            return
        profile = load_compute_profile(cfg["compute"]["profile"])
        for step_name, step in mutable_flow.steps:
            compute = profile.for_step(step_name)
            name, kwargs = decorator_kwargs(compute)
            if name is not None:
                step.add_decorator(name, deco_kwargs=kwargs, duplicates=step.OVERRIDE)
            if compute.retries:
                step.add_decorator("retry", deco_kwargs={"times": compute.retries}, duplicates=step.OVERRIDE)
