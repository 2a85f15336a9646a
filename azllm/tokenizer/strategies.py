"""The three vocabulary strategies (CPT arms): keep, extend or replace the base tokenizer.

- `baseline`: the base tokenizer as is; Llama 3's chat specials appended if missing and
  `LLAMA3_CHAT_TEMPLATE` set, so every arm is fine-tuned with the same chat format.
- `extend`: every base token keeps its id. The new tokenizer's tokens missing from the
  base are appended in the new tokenizer's merge order (its most frequent pairs first),
  each with the merge that builds it, after all base merges. Base merges keep their
  priority, so a pre-token whose base segmentation has no adjacent pair of a new merge
  is encoded exactly as before (tested). The base's pre-tokenizer is kept. Ids: base
  vocabulary (with its added tokens), then the new tokens, then any missing chat specials.
- `replace`: the new tokenizer (it already carries the specials and the template).

    >>> path = build_arm_tokenizer("extend", base=load_tokenizer("llama-3.2"),
    ...                            new=load_tokenizer("runs/tok/bbpe-50000"),
    ...                            out_dir=Path("runs/arms/extend"), num_new_tokens=12_000)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tokenizers import AddedToken
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from azllm.tokenizer.llama3 import CHAT_SPECIAL_TOKENS, LLAMA3_CHAT_TEMPLATE

log = logging.getLogger(__name__)

STRATEGIES = ("baseline", "extend", "replace")


def _ensure_chat_format(tok: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """Append the Llama 3 chat specials the tokenizer lacks; set the Llama 3 chat template."""
    vocab = tok.get_vocab()
    missing = [t for t in CHAT_SPECIAL_TOKENS if t not in vocab]
    if missing:
        tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
        log.info("added chat special tokens %s (ids %s)", missing, tok.convert_tokens_to_ids(missing))
    if missing or tok.chat_template != LLAMA3_CHAT_TEMPLATE:
        tok.chat_template = LLAMA3_CHAT_TEMPLATE
    return tok


def _merge_pair(m: Any) -> tuple[str, str]:
    """tokenizers stores merges as ["a", "b"] (>= 0.20) or "a b" (older files)."""
    if isinstance(m, str):
        a, b = m.split(" ", 1)
        return a, b
    return m[0], m[1]


def _bpe_model(tok: PreTrainedTokenizerFast, role: str) -> tuple[dict, dict]:
    state = json.loads(tok.backend_tokenizer.to_str())
    model = state["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"the {role} tokenizer is a {model.get('type')} model; the extend strategy needs "
                         "byte-level BPE tokenizers for both base and new")
    return state, model


def extend_tokenizer(base: PreTrainedTokenizerFast, new: PreTrainedTokenizerFast,
                     num_new_tokens: int = 0) -> tuple[Any, list[str]]:
    """The base backend with up to `num_new_tokens` (0 = all) of `new`'s tokens and merges appended.

    Returns (tokenizers.Tokenizer, the appended token strings in id order).
    """
    from tokenizers import Tokenizer

    state, model = _bpe_model(base, "base")
    _, new_model = _bpe_model(new, "new")
    vocab: dict[str, int] = model["vocab"]
    # tokenizers numbers added tokens from the model's vocabulary size when it loads a file, so a
    # model vocabulary with a hole where the base's specials sit would shift them. Give the
    # specials their slots in the model vocabulary too (they stay added tokens, matched first).
    for t in state.get("added_tokens", []):
        vocab.setdefault(t["content"], t["id"])
    known = set(vocab)
    next_id = len(vocab)
    assert sorted(vocab.values()) == list(range(len(vocab))), "base vocabulary ids are not contiguous"
    limit = num_new_tokens if num_new_tokens > 0 else None
    added: list[str] = []
    new_merges: list[list[str]] = []
    for m in new_model["merges"]:
        left, right = _merge_pair(m)
        token = left + right
        if token in known:
            continue
        # Both parts exist: each is a byte, a base token or a token appended earlier (merge order).
        assert left in known and right in known, f"merge parts missing for {token!r}: {left!r}, {right!r}"
        vocab[token] = next_id
        next_id += 1
        known.add(token)
        added.append(token)
        new_merges.append([left, right])
        if limit is not None and len(added) >= limit:
            break
    base_merges = [list(_merge_pair(m)) for m in model["merges"]]
    model["merges"] = base_merges + new_merges
    return Tokenizer.from_str(json.dumps(state)), added


def build_arm_tokenizer(strategy: str, *, base: PreTrainedTokenizerFast,
                        new: PreTrainedTokenizerFast | None, out_dir: Path, num_new_tokens: int = 0) -> Path:
    """Write the arm's PreTrainedTokenizerFast directory to `out_dir` and return it."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown tokenizer strategy {strategy!r}; accepted: {list(STRATEGIES)}")
    if strategy in ("extend", "replace") and new is None:
        raise ValueError(f"strategy {strategy!r} needs the new tokenizer (new=...); train one first "
                         "(the flow's train_tokenizer step, or `azllm tokenizer train`)")
    if num_new_tokens < 0:
        raise ValueError(f"num_new_tokens must be >= 0 (0 = all), got {num_new_tokens}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    if strategy == "replace":
        new.save_pretrained(str(out_dir))
        return out_dir
    if strategy == "baseline":
        base.save_pretrained(str(out_dir))
        tok = AutoTokenizer.from_pretrained(str(out_dir))
    else:
        backend, added = extend_tokenizer(base, new, num_new_tokens)
        # Keep the base's class-level settings (bos/eos/pad, add_bos ...): save the base, then swap
        # its tokenizer.json for the extended one and reload.
        base.save_pretrained(str(out_dir))
        backend.save(str(out_dir / "tokenizer.json"))
        tok = AutoTokenizer.from_pretrained(str(out_dir))
        expected = len(base) + len(added)
        assert len(tok) == expected, f"extended tokenizer has {len(tok)} tokens, expected {expected}"
        log.info("extend: %d base tokens + %d new tokens", len(base), len(added))
    _ensure_chat_format(tok).save_pretrained(str(out_dir))
    return out_dir
