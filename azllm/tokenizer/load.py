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


def tokenizer_differences(a, b) -> list[str]:
    """What differs between two loaded fast tokenizers, as short phrases (empty = the same tokenizer):
    vocabulary, merges, the pipeline around them (normalizer, pre-tokenizer, post-processor, decoder),
    added tokens, special tokens, chat template. Equal means equal token ids for every text."""
    import json

    backend_a, backend_b = (json.loads(t.backend_tokenizer.to_str()) for t in (a, b))
    pipeline = ("normalizer", "pre_tokenizer", "post_processor", "decoder")
    checks = {"vocabulary": (a.get_vocab(), b.get_vocab()),
              "merges": (backend_a["model"].get("merges"), backend_b["model"].get("merges")),
              "normalizer/pre-tokenizer/post-processor/decoder": ([backend_a.get(k) for k in pipeline],
                                                                  [backend_b.get(k) for k in pipeline]),
              "added tokens": ({k: str(v) for k, v in a.added_tokens_decoder.items()},
                               {k: str(v) for k, v in b.added_tokens_decoder.items()}),
              "special tokens": (a.special_tokens_map, b.special_tokens_map),
              "chat template": (a.chat_template, b.chat_template)}
    return [name for name, (x, y) in checks.items() if x != y]


def check_model_tokenizer(model_dir: Path, tokenizer_dir: Path, *, what: str) -> None:
    """A model directory is self-contained: the tokenizer saved with it must be `tokenizer_dir`'s
    (the CPT worker copies the adapted model's tokenizer files into its export). ValueError naming
    what differs otherwise, so the later steps may load the tokenizer from the model directory."""
    saved = load_tokenizer(model_dir) if Path(model_dir, "tokenizer.json").is_file() else None
    if saved is None:
        raise ValueError(f"{what}: model directory {model_dir} has no tokenizer.json; a model reference must "
                         "hold its tokenizer (the CPT export copies it from the adapted model)")
    differences = tokenizer_differences(saved, load_tokenizer(tokenizer_dir))
    if differences:
        raise ValueError(f"{what}: the tokenizer saved in {model_dir} is not the arm's tokenizer {tokenizer_dir} "
                         f"({', '.join(differences)} differ); the model was trained with another tokenizer: "
                         "retrain the arm from its own tokenizer (the flow's train_tokenizer -> pack_arm -> cpt_*)")
