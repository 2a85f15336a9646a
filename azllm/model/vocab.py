"""Move a base model onto a new tokenizer: resize the embeddings and initialise the new rows.

Each row of the resized matrix is, for the new tokenizer's token with that id:

- **copied** when the token's string exists in the base vocabulary (exact match by
  token string: ``extend`` keeps the base ids, ``replace`` reuses shared tokens);
- otherwise, by ``init``:
  - ``fvt`` (Fast Vocabulary Transfer, Gee et al. 2022, https://aclanthology.org/2022.emnlp-industry.41):
    the token's text is encoded with the base tokenizer (no special tokens) and
    the row is the mean of those base rows. Byte-level tokens that are not whole
    UTF-8 characters are split into base tokens at the BPE-model level instead;
  - ``mean``: the mean of all base rows (exact, no noise; new rows start identical);
  - ``random``: normal(0, ``config.initializer_range``), seeded.
- special tokens without a base counterpart, tokens FVT cannot encode, and the
  padding rows up to a multiple of ``pad_to_multiple_of``: the mean of the base rows.

An untied output head gets the same treatment from its own base rows; a tied one
stays tied (one tensor). ``config.vocab_size`` and the bos/eos/pad ids in the config
and generation config follow the new tokenizer.

    >>> stats = adapt_vocabulary(model, base_tok, new_tok, init="fvt")
    >>> stats["num_copied"], stats["num_fvt"], stats["padded_vocab_size"]
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

INIT_METHODS = ("fvt", "mean", "random")
REPLACEMENT_CHAR = "\ufffd"


def _is_byte_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    return decoder.get("type") == "ByteLevel" or any(
        d.get("type") == "ByteLevel" for d in decoder.get("decoders", []) or [])


def _check_special_tokens(tokenizer: PreTrainedTokenizerBase) -> None:
    missing = [name for name in ("bos_token", "eos_token") if getattr(tokenizer, name, None) is None]
    if missing:
        raise ValueError(
            f"the new tokenizer has no {' and no '.join(missing)}: the model needs "
            f"{', '.join(missing)} ids for packing and generation. Set them when saving the tokenizer "
            "(PreTrainedTokenizerFast(..., bos_token=..., eos_token=...)); azllm's trained tokenizers use "
            "<|begin_of_text|> / <|end_of_text|>"
        )


def _fvt_encodings(base_tokenizer, new_tokenizer, new_ids: list[int], base_rows: int) -> list[list[int]]:
    """Base-tokenizer ids for each new token's text; [] where it cannot be encoded."""
    if not new_ids:
        return []
    texts = new_tokenizer.batch_decode([[i] for i in new_ids], clean_up_tokenization_spaces=False)
    encodings = base_tokenizer(texts, add_special_tokens=False)["input_ids"]
    byte_level = _is_byte_level(base_tokenizer) and _is_byte_level(new_tokenizer)
    bpe_model = base_tokenizer.backend_tokenizer.model if byte_level else None
    out = []
    for new_id, text, enc in zip(new_ids, texts, encodings, strict=True):
        token = new_tokenizer.convert_ids_to_tokens(new_id)
        if bpe_model is not None and REPLACEMENT_CHAR in text and REPLACEMENT_CHAR not in token:
            # A partial UTF-8 sequence: decoding lost its bytes. Both tokenizers share the
            # GPT-2 byte alphabet, so split the raw token string with the base BPE model.
            enc = [t.id for t in bpe_model.tokenize(token)]
        out.append([i for i in enc if 0 <= i < base_rows])
    return out


@torch.no_grad()
def _build_rows(base: torch.Tensor, plan: dict[str, Any], num_rows: int, *, init: str, std: float,
                generator: torch.Generator) -> torch.Tensor:
    """The new (num_rows, H) matrix from the base rows ``base`` (V_old, H), following ``plan``."""
    base32 = base.float()
    mean = base32.mean(dim=0)  # (H,)
    rows = mean.expand(num_rows, -1).clone()  # (V_new_padded, H): fallback / special / padding rows
    if plan["copy_dst"]:
        rows[plan["copy_dst"]] = base32[plan["copy_src"]]
    if init == "fvt" and plan["fvt_dst"]:
        flat = torch.tensor([i for enc in plan["fvt_src"] for i in enc], dtype=torch.long)
        offsets = torch.tensor([0] + [len(e) for e in plan["fvt_src"][:-1]], dtype=torch.long).cumsum(0)
        rows[plan["fvt_dst"]] = F.embedding_bag(flat, base32, offsets, mode="mean")
    elif init == "random" and plan["init_dst"]:
        noise = torch.randn(len(plan["init_dst"]), base.shape[1], generator=generator) * std
        rows[plan["init_dst"]] = noise
    return rows.to(base.dtype)


@torch.no_grad()
def adapt_vocabulary(model: PreTrainedModel, base_tokenizer: PreTrainedTokenizerBase,
                     new_tokenizer: PreTrainedTokenizerBase, *, init: str = "fvt",
                     pad_to_multiple_of: int = 64, seed: int = 0) -> dict[str, Any]:
    """Resize ``model``'s embeddings (and untied head) in place for ``new_tokenizer``.

    Returns counts: ``num_copied`` (rows copied from the base by token string),
    ``num_new`` (tokens with no base counterpart), ``num_fvt`` (of those, FVT means),
    ``num_random`` / ``num_mean`` (of those, the other inits), ``num_fallback`` (of those,
    set to the base mean: specials and tokens FVT could not encode), ``num_padding``,
    and the vocabulary sizes.
    """
    if init not in INIT_METHODS:
        raise ValueError(f"init={init!r}; accepted: {list(INIT_METHODS)}")
    if pad_to_multiple_of < 1:
        raise ValueError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
    _check_special_tokens(new_tokenizer)

    inp = model.get_input_embeddings()
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is inp.weight
    base_in = inp.weight.detach().clone()  # (V_old, H)
    base_out = None if (out is None or tied) else out.weight.detach().clone()
    old_rows = base_in.shape[0]

    new_vocab_size = len(new_tokenizer)
    padded = -(-new_vocab_size // pad_to_multiple_of) * pad_to_multiple_of

    # ---- plan: which new id gets which base rows
    base_vocab = base_tokenizer.get_vocab()  # token string -> id (added tokens included)
    special = set(new_tokenizer.all_special_tokens)
    tokens = new_tokenizer.convert_ids_to_tokens(list(range(new_vocab_size)))
    plan: dict[str, Any] = {"copy_dst": [], "copy_src": [], "fvt_dst": [], "fvt_src": [], "init_dst": []}
    unmatched, num_special_fallback = [], 0
    for new_id, token in enumerate(tokens):
        base_id = base_vocab.get(token) if token is not None else None
        if base_id is not None and base_id < old_rows:
            plan["copy_dst"].append(new_id)
            plan["copy_src"].append(base_id)
        elif token is None or token in special:
            num_special_fallback += 1
        else:
            unmatched.append(new_id)
    num_new = new_vocab_size - len(plan["copy_dst"])

    num_fvt_fallback = 0
    if init == "fvt":
        for new_id, enc in zip(unmatched, _fvt_encodings(base_tokenizer, new_tokenizer, unmatched, old_rows),
                               strict=True):
            if enc:
                plan["fvt_dst"].append(new_id)
                plan["fvt_src"].append(enc)
            else:
                num_fvt_fallback += 1
    else:
        plan["init_dst"] = unmatched

    # ---- new matrices, computed from the base before any resize touches them
    std = float(getattr(model.config, "initializer_range", 0.02))
    gen = torch.Generator().manual_seed(seed)
    new_in = _build_rows(base_in, plan, padded, init=init, std=std, generator=gen)
    new_out = None
    if base_out is not None:
        new_out = _build_rows(base_out, plan, padded, init=init, std=std, generator=gen)

    # ---- resize, then overwrite every row (resize's own init and post_init are irrelevant)
    model.resize_token_embeddings(padded, mean_resizing=False)
    inp = model.get_input_embeddings()
    inp.weight.data = new_in.to(inp.weight.device)
    out = model.get_output_embeddings()
    if tied:
        model.tie_weights()
        out = model.get_output_embeddings()
        if out is not None and out.weight is not inp.weight:
            out.weight = inp.weight
    elif out is not None and new_out is not None:
        out.weight.data = new_out.to(out.weight.device)
        if getattr(out, "out_features", None) is not None:
            out.out_features = padded
    assert inp.weight.shape[0] == padded, f"input embeddings have {inp.weight.shape[0]} rows, expected {padded}"
    if out is not None:
        assert out.weight.shape[0] == padded, f"lm_head has {out.weight.shape[0]} rows, expected {padded}"
        assert (out.weight is inp.weight) == tied, f"tying changed: tied before={tied}"

    # ---- config follows the new tokenizer
    model.config.vocab_size = padded
    eos_id, bos_id, pad_id = new_tokenizer.eos_token_id, new_tokenizer.bos_token_id, new_tokenizer.pad_token_id
    model.config.bos_token_id = bos_id
    model.config.eos_token_id = eos_id
    model.config.pad_token_id = pad_id
    gen_cfg = getattr(model, "generation_config", None)
    if gen_cfg is not None:
        gen_cfg.bos_token_id = bos_id
        gen_cfg.eos_token_id = eos_id
        gen_cfg.pad_token_id = pad_id if pad_id is not None else eos_id

    return {
        "init": init,
        "tied": tied,
        "old_vocab_size": old_rows,
        "new_vocab_size": new_vocab_size,
        "padded_vocab_size": padded,
        "num_copied": len(plan["copy_dst"]),
        "num_new": num_new,
        "num_fvt": len(plan["fvt_dst"]),
        "num_mean": len(plan["init_dst"]) if init == "mean" else 0,
        "num_random": len(plan["init_dst"]) if init == "random" else 0,
        "num_fallback": num_special_fallback + num_fvt_fallback,
        "num_padding": padded - new_vocab_size,
    }
