"""Liger kernels (fused RMSNorm, RoPE, SwiGLU, fused linear cross-entropy) on CUDA.

Liger is written in Triton, which needs a GPU: on CPU this is a no-op and
``liger_kernel`` is never imported, unless Triton's interpreter is on
(``TRITON_INTERPRET=1`` in the environment before Triton is imported): then the kernels run
on CPU tensors, in fp32, slowly. That is for the tests (tests/liger_interpreter.py holds the
shims the interpreter needs), never for training. The fused linear cross-entropy never
materialises the (B, T, V) logits, which matters most with large vocabularies.

Liger's RoPE rotates q and k in place, in the buffers ``q_proj``/``k_proj`` returned:
selective activation checkpointing must not save those outputs (``INPLACE_OUTPUTS``, read by
:func:`azllm.train.parallelize.apply_activation_checkpointing`).

    >>> applied = apply_liger(model, enabled=cfg.cpt.runtime.liger)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

INPLACE_OUTPUTS = ("self_attn.q_proj", "self_attn.k_proj")
"""Submodules of a decoder layer whose forward outputs Liger's kernels overwrite in place
(its RoPE rotates q and k in the projections' output buffers)."""


def triton_interpreter_on() -> bool:
    """True when Triton's interpreter runs kernels on CPU (``TRITON_INTERPRET=1``; tests only)."""
    import os

    return os.environ.get("TRITON_INTERPRET") == "1"


def apply_liger(model: PreTrainedModel, *, enabled: bool = True) -> bool:
    """Patch ``model`` in place with Liger kernels; True if they were applied.

    Applied only when ``enabled``, CUDA is available (or Triton's interpreter is on, for the
    tests), ``liger_kernel`` imports and it supports ``model.config.model_type``; otherwise
    the model is left untouched.
    """
    if not enabled:
        return False
    if not torch.cuda.is_available() and not triton_interpreter_on():
        logger.info("Liger kernels skipped: no CUDA device (Triton needs a GPU)")
        return False
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    try:
        from liger_kernel.transformers.monkey_patch import (
            MODEL_TYPE_TO_APPLY_LIGER_FN,
            _apply_liger_kernel_to_instance,
        )
    except (ImportError, RuntimeError, OSError, AttributeError) as e:  # not installed, or Triton/driver mismatch
        logger.warning("Liger kernels skipped: liger_kernel does not import (%s: %s)", type(e).__name__, e)
        return False
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        logger.warning("Liger kernels skipped: no Liger support for model_type=%r", model_type)
        return False
    _apply_liger_kernel_to_instance(model=model)
    logger.info("Liger kernels applied to %s", model_type)
    return True


def liger_loss_kwargs(applied: bool) -> dict:
    """Keyword arguments for the forward of a Liger-patched model: its fused linear cross-entropy
    accumulates the LM-head (and tied embedding) gradient over its chunks in fp32, not in the
    bf16 of the weights (28 chunks per micro-batch in the 1B preset would round that gradient 28
    times; it is the very matrix the embeddings phase trains). Empty when Liger is not applied:
    the plain HF loss takes no such argument."""
    return {"accum_dtype": torch.float32} if applied else {}
