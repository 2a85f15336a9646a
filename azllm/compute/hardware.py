"""What a run ran on: library versions and hardware, stored by the `start` step."""

from __future__ import annotations

import os
import platform
from importlib import metadata

PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "peft", "trl", "accelerate",
            "metaflow", "metaflow-checkpoint", "liger-kernel")


def library_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def describe_hardware() -> dict[str, object]:
    import torch

    info: dict[str, object] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
        "gpus": [],
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["bf16"] = torch.cuda.is_bf16_supported(including_emulation=False)
    return info


def describe_environment() -> dict[str, object]:
    """Versions and hardware in one dict (a small Metaflow artifact)."""
    return {"versions": library_versions(), "hardware": describe_hardware()}
