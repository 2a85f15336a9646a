"""Where a model step runs its model: the device and dtype the step's hardware offers.

Evaluation, SFT's before/after loss, generation and `azllm chat` all load through
:func:`select_placement`, so a GPU step scores on its GPU in bf16 and a CPU step keeps
today's fp32 CPU path unchanged.

    >>> from azllm.model.device import select_placement
    >>> select_placement()                    # Placement(device='cpu', dtype='float32') on a CPU host
    >>> select_placement("float16")           # an explicit dtype is kept
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Placement:
    device: str
    """`cuda` (the current CUDA device) or `cpu`."""
    dtype: str
    """Weights dtype: float32, bfloat16 or float16."""

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")


def select_placement(dtype: str | None = None) -> Placement:
    """CUDA when present (bfloat16 where the GPU supports it, else float16), else CPU in float32.

    `dtype` given (float32, bfloat16, float16) is kept as asked, on whichever device is present;
    bfloat16 on a GPU without bf16 raises, naming the fix.
    """
    import torch

    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; accepted: {list(DTYPES)} (or None to follow the hardware)")
    if not torch.cuda.is_available():
        return Placement(device="cpu", dtype=dtype or "float32")
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)  # emulated bf16 (V100, T4) is slow: fp16
    if dtype == "bfloat16" and not bf16:
        raise ValueError(f"dtype='bfloat16' but {torch.cuda.get_device_name()} has no bf16; "
                         "set [model] dtype = \"float16\" (or leave it at float32 to follow the hardware)")
    return Placement(device="cuda", dtype=dtype or ("bfloat16" if bf16 else "float16"))


def placement_for_model_dtype(model_dtype: str) -> Placement:
    """:func:`select_placement` for a `[model] dtype`: its default float32 (the training masters)
    leaves inference to the hardware's choice; bfloat16 or float16, set explicitly, are kept."""
    return select_placement(None if model_dtype == "float32" else model_dtype)


def autocast_for(placement: Placement):
    """`torch.autocast` in the placement's dtype on CUDA, for fp32 weights scored on a GPU
    (SFT keeps fp32 weights for training); a no-op on CPU or in float32."""
    import torch

    if placement.is_cuda and placement.dtype != "float32":
        return torch.autocast(device_type="cuda", dtype=placement.torch_dtype)
    return contextlib.nullcontext()


def release_memory(placement: Placement) -> None:
    """Return the CUDA caching allocator's free blocks after a model is dropped, so the next model
    of a loop (base, CPT, SFT ...) starts from an empty card; nothing to do on CPU."""
    import gc

    import torch

    gc.collect()
    if placement.is_cuda:
        torch.cuda.empty_cache()
