"""Model FLOPs utilisation (MFU): the FLOPs a training step actually computes against the
accelerator's dense bf16 peak (docs/DESIGN.md §9).

Per token, with ``N_mm`` the parameters used in matmuls (every parameter but the input
embedding table, which is a lookup; the output head counts even when tied to it) and
``N_mm_trainable`` those of them that train:

    forward                    2 N_mm
    backward, input grads      2 N_mm            (the gradient must reach the embeddings)
    backward, weight grads     2 N_mm_trainable  (frozen weights get none: phase 1)
    attention (fwd + bwd)      12 L T H          (PaLM appendix B; nanochat's estimate_flops)

so the full phase gives the usual ``6 N_mm + 12 L T H`` and the embeddings phase
``4 N_mm + 2 N_head + 12 L T H``. Recomputation under activation checkpointing is not
counted (that would be hardware FLOPs utilisation).
"""

from __future__ import annotations

import torch

PEAK_FLOPS_BF16 = (
    # (substring of torch.cuda.get_device_name().upper(), dense bf16 FLOP/s, no sparsity), the
    # first match wins: the PCIe and NVL variants come before the bare name, which is the SXM card.
    ("H100 PCIE", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # "NVIDIA H100 80GB HBM3" is the SXM5 card
    ("H200", 989e12),
    ("GH200", 989e12),
    ("A100", 312e12),  # SXM4 and PCIe have the same tensor-core peak
    ("A10G", 125e12),  # AWS g5, as NVIDIA's A10 datasheet
    ("L40S", 362e12),
    ("L4", 121e12),
)


def matmul_params(model: torch.nn.Module) -> tuple[int, int]:
    """(N_mm, N_mm_trainable): parameters used in matmuls, all and trainable (see the module docstring)."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is embedding
    total = trainable = 0
    for p in model.parameters():  # a tied head is one Parameter, yielded once
        if p is embedding and not tied:
            continue
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def flops_per_token(n_matmul: int, n_matmul_trainable: int, *, num_layers: int, seq_len: int,
                    hidden: int) -> int:
    """Training FLOPs per token: 4 N_mm + 2 N_mm_trainable + 12 L T H."""
    return 4 * n_matmul + 2 * n_matmul_trainable + 12 * num_layers * seq_len * hidden


def peak_flops_for_name(device_name: str) -> float | None:
    """Dense bf16 peak of the card called ``device_name`` (as CUDA names it), or None if unknown."""
    name = device_name.upper()
    return next((value for key, value in PEAK_FLOPS_BF16 if key in name), None)


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak FLOP/s of one accelerator, or None (CPU, unknown GPU: MFU is then not reported)."""
    if device.type != "cuda":
        return None
    return peak_flops_for_name(torch.cuda.get_device_name(device))
