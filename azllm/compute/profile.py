"""Compute profiles: which capacity each flow step runs on.

A profile is a TOML file under ``configs/compute/`` (or any path): a ``[default]``
table and optional ``[steps.<step_name>]`` tables that override it field by field.

    >>> load_compute_profile("local").for_step("cpt_full").backend
    'local'
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from azllm.config import PROJECT_ROOT, ConfigError, section_from_dict

BACKENDS = ("local", "kubernetes", "batch")


@dataclass(frozen=True, kw_only=True)
class GpuType:
    """One GPU family and the AWS instance that carries it (DESIGN.md section 3)."""

    instance_type: str
    gpus_per_instance: int
    gpu_product: str
    """The `nvidia.com/gpu.product` node label."""


GPU_TYPES: dict[str, GpuType] = {
    "a100": GpuType(instance_type="p4d.24xlarge", gpus_per_instance=8, gpu_product="NVIDIA-A100-SXM4-40GB"),
    "h100": GpuType(instance_type="p5.48xlarge", gpus_per_instance=8, gpu_product="NVIDIA-H100-80GB-HBM3"),
    "a10g": GpuType(instance_type="g5.8xlarge", gpus_per_instance=1, gpu_product="NVIDIA-A10G"),
}


@dataclass(frozen=True, kw_only=True)
class StepCompute:
    backend: str = "local"
    """local, kubernetes or batch."""
    gpu_type: str = ""
    """a100, h100, a10g, or empty for CPU."""
    gpus_per_node: int = 0
    nodes: int = 1
    """More than 1 runs the step as a multi-node @parallel gang (CPT steps only)."""
    cpu: int = 2
    memory: int = 8000
    """MiB."""
    disk: int = 0
    """MiB of ephemeral disk (kubernetes); 0 = backend default."""
    shared_memory: int = 0
    """MiB of /dev/shm (NCCL and data loaders need a lot on multi-GPU nodes); 0 = default."""
    image: str = ""
    retries: int = 0
    queue: str = ""
    """AWS Batch job queue (required for backend = batch)."""
    node_selector: dict[str, str] = field(default_factory=dict)
    """Kubernetes node labels; default: the instance type of gpu_type."""
    tolerations: tuple[dict[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend={self.backend!r}; accepted: {list(BACKENDS)}")
        if self.gpu_type and self.gpu_type not in GPU_TYPES:
            raise ConfigError(f"gpu_type={self.gpu_type!r}; accepted: {sorted(GPU_TYPES)}")
        if self.gpu_type:
            have = GPU_TYPES[self.gpu_type].gpus_per_instance
            if not 1 <= self.gpus_per_node <= have:
                raise ConfigError(f"gpus_per_node={self.gpus_per_node} but a {self.gpu_type} node "
                                  f"({GPU_TYPES[self.gpu_type].instance_type}) has 1..{have} GPUs")
        elif self.gpus_per_node:
            raise ConfigError(f"gpus_per_node={self.gpus_per_node} needs a gpu_type")
        if self.backend == "batch" and not self.queue:
            raise ConfigError("backend='batch' needs a queue (an AWS Batch job queue name)")
        if self.nodes < 1:
            raise ConfigError(f"nodes must be >= 1, got {self.nodes}")

    @property
    def instance_type(self) -> str:
        return GPU_TYPES[self.gpu_type].instance_type if self.gpu_type else ""


@dataclass(frozen=True, kw_only=True)
class ComputeProfile:
    name: str
    default: StepCompute
    steps: dict[str, StepCompute]
    hourly_usd: dict[str, float] = field(default_factory=dict)
    """On-demand price per instance type, for cost estimates in docs and cards."""

    def for_step(self, step_name: str) -> StepCompute:
        return self.steps.get(step_name, self.default)


def _profile_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml":
        return p if p.is_absolute() else (PROJECT_ROOT / p if not p.exists() else p)
    return PROJECT_ROOT / "configs" / "compute" / f"{name_or_path}.toml"


def load_compute_profile(name_or_path: str) -> ComputeProfile:
    """Read and validate a profile; errors name the file, the step and the field."""
    path = _profile_path(name_or_path)
    if not path.exists():
        known = sorted(q.stem for q in (PROJECT_ROOT / "configs" / "compute").glob("*.toml"))
        raise ConfigError(f"compute profile {name_or_path!r}: {path} does not exist; known profiles: {known}")
    with open(path, "rb") as f:
        raw: dict[str, Any] = tomllib.load(f)
    unknown = sorted(set(raw) - {"default", "steps", "prices"})
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {unknown}; allowed: default, steps, prices")
    try:
        default = section_from_dict(StepCompute, raw.get("default", {}), "default")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    steps = {}
    for step_name, over in raw.get("steps", {}).items():
        merged = {**raw.get("default", {}), **over}
        try:
            steps[step_name] = section_from_dict(StepCompute, merged, f"steps.{step_name}")
        except ConfigError as e:
            raise ConfigError(f"{path}: step {step_name!r}: {e}") from None
    prices = {k: float(v) for k, v in raw.get("prices", {}).items()}
    return ComputeProfile(name=path.stem, default=default, steps=steps, hourly_usd=prices)


def with_overrides(step: StepCompute, **changes: Any) -> StepCompute:
    return replace(step, **changes)
