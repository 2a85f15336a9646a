"""Compute profiles: which capacity each flow step runs on.

A profile is a TOML file under ``configs/compute/`` (or any path): a ``[default]``
table and optional ``[steps.<step_name>]`` tables that override it field by field.
A preset picks one with ``[compute] profile = "<name or path>"``; the flow's
:class:`~azllm.compute.mutator.compute_from_profile` turns it into decorators.

    >>> profile = load_compute_profile("kubernetes-a100")
    >>> profile.for_step("cpt_full").nodes, profile.for_step("cpt_full").instance_type
    (2, 'p4d.24xlarge')

On-demand prices live in ``configs/compute/prices.toml`` (data, not code);
:func:`hourly_cost` combines them with a profile.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from azllm.config import PROJECT_ROOT, ConfigError, section_from_dict

BACKENDS = ("local", "kubernetes", "batch")
PROFILES_DIR = PROJECT_ROOT / "configs" / "compute"
PRICES_PATH = PROFILES_DIR / "prices.toml"
PARALLEL_STEPS = ("cpt_embeddings", "cpt_full")
"""Steps the flow gang-schedules with ``@parallel``: only these may have ``nodes > 1``."""


@dataclass(frozen=True, kw_only=True)
class GpuType:
    """One GPU family and the AWS instance that carries it (docs/DESIGN.md §10)."""

    instance_type: str
    gpus_per_instance: int
    gpu_product: str
    """The ``nvidia.com/gpu.product`` node label (NVIDIA GPU feature discovery)."""
    vcpus: int
    memory_mib: int
    efa_devices: int
    """EFA network interfaces on the instance (``@batch(efa=...)`` for multi-node NCCL)."""


GPU_TYPES: dict[str, GpuType] = {
    # AWS instance specs: https://aws.amazon.com/ec2/instance-types/p4/, /p5/, /g5/
    "a100": GpuType(instance_type="p4d.24xlarge", gpus_per_instance=8, gpu_product="NVIDIA-A100-SXM4-40GB",
                    vcpus=96, memory_mib=1152 * 1024, efa_devices=4),
    "h100": GpuType(instance_type="p5.48xlarge", gpus_per_instance=8, gpu_product="NVIDIA-H100-80GB-HBM3",
                    vcpus=192, memory_mib=2048 * 1024, efa_devices=32),
    "a10g": GpuType(instance_type="g5.8xlarge", gpus_per_instance=1, gpu_product="NVIDIA-A10G",
                    vcpus=32, memory_mib=128 * 1024, efa_devices=0),
}


@dataclass(frozen=True, kw_only=True)
class StepCompute:
    """Where one step runs. Validated when built; errors name the field."""

    backend: str = "local"
    """local, kubernetes or batch."""
    gpu_type: str = ""
    """a100, h100, a10g (see GPU_TYPES), or empty for a CPU step."""
    gpus_per_node: int = 0
    """GPUs per node; 1..the instance's GPU count. One torchrun process per GPU."""
    nodes: int = 1
    """More than 1 runs the step as a multi-node ``@parallel`` gang (CPT steps only)."""
    cpu: int = 2
    """vCPUs requested per node."""
    memory: int = 8000
    """MiB of RAM requested per node."""
    disk: int = 0
    """MiB of ephemeral disk (Kubernetes; Batch takes disk from its launch template); 0 = default."""
    shared_memory: int = 0
    """MiB of /dev/shm (NCCL and data loaders need a lot on multi-GPU nodes); 0 = backend default."""
    image: str = ""
    """Container image with azllm and its requirements installed; empty = METAFLOW_*_CONTAINER_IMAGE."""
    retries: int = 0
    """``@retry(times=...)``: reruns of a failed task (spot reclaim, node loss); 0 = none."""
    queue: str = ""
    """AWS Batch job queue (required for backend = batch)."""
    node_selector: dict[str, str] = field(default_factory=dict)
    """Kubernetes node labels; empty = ``node.kubernetes.io/instance-type`` of gpu_type."""
    tolerations: tuple[dict[str, str], ...] = ()
    """Kubernetes tolerations, e.g. for the ``nvidia.com/gpu`` taint of GPU node groups."""
    secrets: tuple[str, ...] = ()
    """Metaflow ``@secrets`` sources (e.g. an AWS Secrets Manager secret holding HF_TOKEN); their
    keys become environment variables of the task, never artifacts (azllm.compute.secrets)."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend={self.backend!r}; accepted: {list(BACKENDS)}")
        if self.gpu_type and self.gpu_type not in GPU_TYPES:
            raise ConfigError(f"gpu_type={self.gpu_type!r} is not a known GPU type; accepted: "
                              f"{sorted(GPU_TYPES)} (or empty for CPU)")
        if self.gpu_type:
            gpu = GPU_TYPES[self.gpu_type]
            if not 1 <= self.gpus_per_node <= gpu.gpus_per_instance:
                raise ConfigError(f"gpus_per_node={self.gpus_per_node} but a {self.gpu_type} node "
                                  f"({gpu.instance_type}) has {gpu.gpus_per_instance} GPU(s); use "
                                  f"1..{gpu.gpus_per_instance}")
            if self.cpu > gpu.vcpus:
                raise ConfigError(f"cpu={self.cpu} but {gpu.instance_type} has {gpu.vcpus} vCPUs; "
                                  "leave a few for the kubelet/ECS agent")
            if self.memory > gpu.memory_mib:
                raise ConfigError(f"memory={self.memory} MiB but {gpu.instance_type} has {gpu.memory_mib} MiB")
        elif self.gpus_per_node:
            raise ConfigError(f"gpus_per_node={self.gpus_per_node} needs a gpu_type ({sorted(GPU_TYPES)})")
        if self.backend == "batch" and not self.queue:
            raise ConfigError("queue is empty but backend='batch' needs an AWS Batch job queue "
                              "(set queue, e.g. the queue of a p4d compute environment)")
        if self.backend == "local" and (self.queue or self.node_selector or self.tolerations or self.image):
            raise ConfigError("backend='local' takes no queue, node_selector, tolerations or image; "
                              "set backend to 'kubernetes' or 'batch'")
        for name in ("nodes", "cpu", "memory"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("disk", "shared_memory", "retries"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def instance_type(self) -> str:
        """The AWS instance of gpu_type; empty for CPU steps."""
        return GPU_TYPES[self.gpu_type].instance_type if self.gpu_type else ""

    @property
    def is_remote(self) -> bool:
        return self.backend != "local"


@dataclass(frozen=True, kw_only=True)
class ComputeProfile:
    """A validated profile. ``for_step`` resolves a step: ``[default]`` overlaid by ``[steps.<name>]``."""

    name: str
    path: Path
    default_raw: dict[str, Any]
    steps_raw: dict[str, dict[str, Any]]

    def for_step(self, step_name: str) -> StepCompute:
        """The step's compute; a ConfigError names the profile, the step and the field."""
        merged = {**self.default_raw, **self.steps_raw.get(step_name, {})}
        try:
            compute = section_from_dict(StepCompute, merged, f"steps.{step_name}")
        except ConfigError as e:
            own = f"its [steps.{step_name}] table" if step_name in self.steps_raw else "[default]"
            raise ConfigError(f"compute profile {self.name!r} ({self.path}), step {step_name!r} "
                              f"(from {own}): {e}") from None
        if compute.nodes > 1 and step_name not in PARALLEL_STEPS:
            raise ConfigError(f"compute profile {self.name!r} ({self.path}), step {step_name!r}: nodes="
                              f"{compute.nodes} but only {list(PARALLEL_STEPS)} run multi-node; set nodes = 1")
        return compute

    def check_steps(self, flow_steps: list[str]) -> dict[str, StepCompute]:
        """Resolve every flow step; a ``[steps.X]`` table for a step the flow lacks is an error."""
        unknown = sorted(set(self.steps_raw) - set(flow_steps))
        if unknown:
            raise ConfigError(f"compute profile {self.name!r} ({self.path}) has [steps.{unknown[0]}] but the "
                              f"flow has no such step; flow steps: {sorted(flow_steps)}")
        return {name: self.for_step(name) for name in flow_steps}


def _profile_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix != ".toml":
        return PROFILES_DIR / f"{name_or_path}.toml"
    if p.is_absolute() or p.exists():
        return p
    return PROJECT_ROOT / p


def known_profiles() -> list[str]:
    return sorted(q.stem for q in PROFILES_DIR.glob("*.toml") if q != PRICES_PATH)


def load_compute_profile(name_or_path: str) -> ComputeProfile:
    """Read a profile (a name under configs/compute/ or a .toml path) and validate its tables."""
    path = _profile_path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"compute profile {name_or_path!r}: {path} does not exist; known profiles: "
                          f"{known_profiles()} (remote images need the repository's configs/compute too)")
    with open(path, "rb") as f:
        try:
            raw: dict[str, Any] = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"compute profile {path}: not valid TOML: {e}") from None
    unknown = sorted(set(raw) - {"default", "steps"})
    if unknown:
        raise ConfigError(f"compute profile {path}: unknown table(s) {unknown}; allowed: [default], "
                          "[steps.<step>] (prices are in configs/compute/prices.toml)")
    allowed = {f.name for f in fields(StepCompute)}
    tables = {"default": raw.get("default", {}), **{f"steps.{k}": v for k, v in raw.get("steps", {}).items()}}
    for where, table in tables.items():
        bad = sorted(set(table) - allowed)
        if bad:
            raise ConfigError(f"compute profile {path}: [{where}] unknown key(s) {bad}; allowed: {sorted(allowed)}")
    profile = ComputeProfile(name=path.stem, path=path, default_raw=dict(raw.get("default", {})),
                             steps_raw={k: dict(v) for k, v in raw.get("steps", {}).items()})
    for step_name in profile.steps_raw:  # fail at load time for the steps the profile names
        profile.for_step(step_name)
    return profile


# ---------------------------------------------------------------------------
# Prices
# ---------------------------------------------------------------------------


def load_prices(path: str | Path = PRICES_PATH) -> dict[str, Any]:
    """``{"instances": {type: usd_per_hour}, "cpu": {"usd_per_vcpu_hour": x}, "region", "as_of"}``."""
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    if "usd_per_vcpu_hour" not in raw.get("cpu", {}) or not raw.get("instances"):
        raise ConfigError(f"{path}: needs [instances] (USD per instance-hour) and [cpu] usd_per_vcpu_hour")
    missing = sorted({g.instance_type for g in GPU_TYPES.values()} - set(raw["instances"]))
    if missing:
        raise ConfigError(f"{path}: [instances] has no price for {missing}")
    return raw


def hourly_cost(profile: ComputeProfile, steps: list[str], prices: dict[str, Any] | None = None
                ) -> dict[str, float]:
    """On-demand USD per hour while each step runs (0 for local steps).

    GPU steps: the instance price x nodes (a whole instance, even for 1 of its GPUs: the
    upper bound; Kubernetes or Batch may pack other work beside it). CPU steps: requested
    vCPUs x the [cpu] per-vCPU price.
    """
    prices = load_prices() if prices is None else prices
    out = {}
    for name in steps:
        compute = profile.for_step(name)
        if not compute.is_remote:
            out[name] = 0.0
        elif compute.gpu_type:
            out[name] = prices["instances"][compute.instance_type] * compute.nodes
        else:
            out[name] = prices["cpu"]["usd_per_vcpu_hour"] * compute.cpu * compute.nodes
    return out
