"""Base models as local directories (config + safetensors + tokenizer), and loading them.

Names (``smollm2-135m``, a local directory, a hub id) resolve through
:mod:`azllm.model.registry`; this module adds what needs a model config:

- ``tiny-random`` (through :func:`materialize_base_model` only): a seeded random
  Llama for tests, sized by ``ModelConfig.tiny``, vocabulary from ``ModelConfig.tokenizer``,
  cached under ``cache_dir() / "models"`` and written atomically like the registry's caches;
- :func:`load_model`: a causal LM from such a directory, on the device and in the dtype asked
  (:mod:`azllm.model.device` picks them from the hardware).

    >>> from azllm.config import ModelConfig
    >>> from azllm.model.load import load_model, materialize_base_model
    >>> model = load_model(materialize_base_model(ModelConfig()))
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from azllm.config import ModelConfig, cache_dir
from azllm.model.device import DTYPES as _DTYPES
from azllm.model.device import Placement
from azllm.model.registry import build_atomically, resolve_model_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel

def _tiny_cache_key(cfg: ModelConfig) -> str:
    payload = json.dumps({"tiny": asdict(cfg.tiny), "tokenizer": cfg.tokenizer, "seed": cfg.seed,
                          "tokenizer_files": _tokenizer_fingerprint(cfg.tokenizer)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _tokenizer_fingerprint(name: str) -> str:
    """For a tokenizer directory, a hash of its files (a retrained tokenizer gets a new model)."""
    d = Path(name).expanduser()
    if not d.is_dir():
        return ""
    h = hashlib.sha256()
    for f in sorted(d.glob("*.json")) + sorted(d.glob("*.model")) + sorted(d.glob("*.jinja")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _load_base_tokenizer(name: str):
    """``azllm.tokenizer.load.load_tokenizer`` for names (``llama-3.2`` ...); a directory directly."""
    d = Path(name).expanduser()
    if (d / "tokenizer.json").is_file() or (d / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(d)
    from azllm.tokenizer.load import load_tokenizer

    return load_tokenizer(name)


def materialize_base_model(cfg: ModelConfig) -> Path:
    """The directory of the base model for ``cfg`` (always with its tokenizer beside the weights)."""
    if cfg.name != "tiny-random":
        return resolve_model_dir(cfg.name)

    def build(out_dir: Path) -> None:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        tokenizer = _load_base_tokenizer(cfg.tokenizer)
        t = cfg.tiny
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=t.hidden_size,
            intermediate_size=t.intermediate_size,
            num_hidden_layers=t.num_hidden_layers,
            num_attention_heads=t.num_attention_heads,
            num_key_value_heads=t.num_key_value_heads,
            max_position_embeddings=t.max_position_embeddings,
            tie_word_embeddings=t.tie_word_embeddings,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(cfg.seed)
        model = LlamaForCausalLM(config)
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)

    return build_atomically(cache_dir() / "models" / f"tiny-random-{_tiny_cache_key(cfg)}", build)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_model(path: str | Path, *, dtype: str = "float32", attn_implementation: str = "sdpa",
               device: str | None = None, placement: Placement | None = None) -> PreTrainedModel:
    """A causal LM from a directory made by :func:`resolve_model_dir` / :func:`materialize_base_model`.

    ``dtype``: float32, bfloat16 or float16. ``device``: e.g. ``cuda:0``; None = CPU.
    ``placement`` (:func:`azllm.model.device.select_placement`) sets both instead. On an
    accelerator the weights are loaded straight onto it (``device_map``), without a CPU copy.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if placement is not None:
        dtype, device = placement.dtype, placement.device
    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r}; accepted: {list(_DTYPES)}")
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json, so it is not a model directory; pass a directory "
                                "written by `azllm cpt` (OUT/PHASE/model) or `azllm export`, or an HF model directory")
    on_accelerator = device is not None and device != "cpu"
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, dtype), attn_implementation=attn_implementation,
        **({"device_map": device} if on_accelerator else {}))
    if device is not None and not on_accelerator:
        model = model.to(device)
    return model
