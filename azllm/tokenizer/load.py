"""Resolve a tokenizer name, directory or hub id to a PreTrainedTokenizerFast.

    >>> load_tokenizer("llama-3.2")        # built offline from quicktok's ranks, cached
    >>> load_tokenizer("smollm2-135m")     # the builtin model's own tokenizer
    >>> load_tokenizer("runs/tok/bbpe-50000")
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

LLAMA3_ALIASES = ("llama-3.2", "llama-3", "llama3", "llama-3.1", "llama3.2")


def _builtin_models() -> tuple[str, ...]:
    from azllm.model.registry import BUILTIN_MODELS

    return tuple(BUILTIN_MODELS)


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _from_dir(path: Path) -> PreTrainedTokenizerFast:
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as e:
        raise ValueError(f"tokenizer directory {path} could not be read ({type(e).__name__}: {e}); "
                         "expected a saved tokenizer (tokenizer.json + tokenizer_config.json), e.g. from "
                         "`azllm tokenizer train`") from e


def load_tokenizer(name_or_dir: str | Path) -> PreTrainedTokenizerFast:
    """`llama-3.2` (aliases `llama-3`, `llama3`) -> the rebuilt Llama 3 tokenizer; a local
    directory -> AutoTokenizer; a builtin model (`smollm2-135m`) -> its converted model's
    tokenizer; anything else -> a Hugging Face hub id (needs network)."""
    name = str(name_or_dir)
    if name.lower() in LLAMA3_ALIASES:
        from azllm.tokenizer.llama3 import build_llama3_tokenizer

        return build_llama3_tokenizer()
    path = Path(name).expanduser()
    if path.is_dir():
        return _from_dir(path)
    if path.exists():
        raise ValueError(f"tokenizer path {path} is a file, not a directory; pass the directory that "
                         "holds tokenizer.json")
    if name in _builtin_models():
        from azllm.model.registry import resolve_model_dir

        return _from_dir(resolve_model_dir(name))
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ValueError(f"tokenizer directory {name} does not exist; pass 'llama-3.2', a builtin model "
                         f"({', '.join(_builtin_models())}), a saved tokenizer directory or a hub id")
    if name.count("/") != 1 or _hub_offline():  # decided here, before any hub call and its retry lines
        why = ("the Hugging Face hub is switched off here (HF_HUB_OFFLINE)" if name.count("/") == 1
               else "it is not a local directory nor a known name, and hub ids have the form OWNER/NAME")
        raise ValueError(f"cannot load tokenizer {name!r}: {why}. Use 'llama-3.2', a builtin model "
                         f"({', '.join(_builtin_models())}), an existing tokenizer directory or a hub id "
                         "(OWNER/NAME, with network)")
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:
        raise ValueError(
            f"cannot load tokenizer {name!r}: it is not a local directory, and the Hugging Face hub could "
            "not provide it (no network here, or an unknown id). Use 'llama-3.2', a builtin model "
            f"({', '.join(_builtin_models())}), or an existing tokenizer directory "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from e
