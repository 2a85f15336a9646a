"""Liger kernels (fused RMSNorm, RoPE, SwiGLU, fused linear cross-entropy) on CUDA only.

Liger is written in Triton, which needs a GPU: on CPU this is a no-op and
``liger_kernel`` is never imported. The fused linear cross-entropy never
materialises the (B, T, V) logits, which matters most with large vocabularies.

    >>> applied = apply_liger(model, enabled=cfg.cpt.liger)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)


def apply_liger(model: PreTrainedModel, *, enabled: bool = True) -> bool:
    """Patch ``model`` in place with Liger kernels; True if they were applied.

    Applied only when ``enabled``, CUDA is available, ``liger_kernel`` imports and it
    supports ``model.config.model_type``; otherwise the model is left untouched.
    """
    if not enabled:
        return False
    if not torch.cuda.is_available():
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
