"""azllm.model: base model directories, vocabulary adaptation, optional GPU kernels.

- :mod:`azllm.model.registry`: ``resolve_model_dir`` for names (``BUILTIN_MODELS``); the leaf the
  tokenizer loader may import too
- :mod:`azllm.model.load`: ``materialize_base_model``, ``load_model``
- :mod:`azllm.model.device`: ``select_placement`` (CUDA + bf16/fp16, else CPU + fp32) for every model step
- :mod:`azllm.model.vocab`: ``adapt_vocabulary`` (copy shared rows, FVT/mean/random for new ones)
- :mod:`azllm.model.kernels`: ``apply_liger`` (CUDA only; a no-op on CPU)
"""

from azllm.model.device import Placement, select_placement
from azllm.model.kernels import apply_liger
from azllm.model.load import load_model, materialize_base_model
from azllm.model.registry import BUILTIN_MODELS, resolve_model_dir
from azllm.model.vocab import adapt_vocabulary

__all__ = ["BUILTIN_MODELS", "Placement", "adapt_vocabulary", "apply_liger", "load_model", "materialize_base_model",
           "resolve_model_dir", "select_placement"]
