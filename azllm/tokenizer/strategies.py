"""The three vocabulary strategies (CPT arms): keep, extend or replace the base tokenizer.

- `baseline`: the base tokenizer as is; Llama 3's chat specials appended if missing and
  `LLAMA3_CHAT_TEMPLATE` set, so every arm is fine-tuned with the same chat format.
- `extend`: continued BPE (`azllm.tokenizer.extend`): new merges learned over the base
  tokenizer's own segmentation of the corpus, appended after all base merges, so every
  base token keeps its id and a pre-token whose base segmentation has no adjacent pair of
  a new merge is encoded exactly as before (tested). The base's pre-tokenizer is kept.
  Ids: base vocabulary (with its added tokens), then the new tokens in merge order, then
  any missing chat specials (`azllm.model.vocab` copies base rows by token string and
  initialises the new ones by FVT).
- `replace`: the new tokenizer (it already carries the specials and the template).

    >>> path = build_arm_tokenizer("extend", base=load_tokenizer("llama-3.2"), new=None,
    ...                            corpus=texts, out_dir=Path("runs/arms/extend"), num_new_tokens=12_000)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from azllm.tokenizer.extend import extend_with_continued_bpe
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


def build_arm_tokenizer(strategy: str, *, base: PreTrainedTokenizerFast,
                        new: PreTrainedTokenizerFast | None, out_dir: Path, num_new_tokens: int = 0,
                        corpus: Iterable[str] | None = None, min_frequency: int = 2) -> Path:
    """Write the arm's PreTrainedTokenizerFast directory to `out_dir` and return it.

    `replace` needs `new`; `extend` needs `corpus` (texts to learn `num_new_tokens` continued-BPE
    merges on, 0 = all the corpus supports at `min_frequency`)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown tokenizer strategy {strategy!r}; accepted: {list(STRATEGIES)}")
    if strategy == "replace" and new is None:
        raise ValueError(f"strategy {strategy!r} needs the new tokenizer (new=...); train one first "
                         "(the flow's train_tokenizer step, or `azllm tokenizer train`)")
    if strategy == "extend" and corpus is None:
        raise ValueError("strategy 'extend' needs a corpus (corpus=texts) to learn its new merges on; "
                         "pass the training texts (the flow passes the prepared train.jsonl)")
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
        backend, added = extend_with_continued_bpe(base, corpus, num_new_tokens, min_frequency=min_frequency)
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
