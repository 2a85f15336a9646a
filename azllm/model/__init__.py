"""azllm.model: base model directories, vocabulary adaptation, optional GPU kernels.

- :mod:`azllm.model.load`: ``resolve_model_dir``, ``materialize_base_model``, ``load_model``
- :mod:`azllm.model.vocab`: ``adapt_vocabulary`` (copy shared rows, FVT/mean/random for new ones)
- :mod:`azllm.model.kernels`: ``apply_liger`` (CUDA only; a no-op on CPU)
"""

from azllm.model.kernels import apply_liger
from azllm.model.load import (
           BUILTIN_MODELS,
           load_model,
           materialize_base_model,
           resolve_model_dir,
)
from azllm.model.vocab import adapt_vocabulary

__all__ = ["BUILTIN_MODELS", "adapt_vocabulary", "apply_liger", "load_model", "materialize_base_model",
           "resolve_model_dir"]
