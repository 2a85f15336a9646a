"""The Llama 3 / 3.2 tokenizer, rebuilt offline, and the settings we copy from it.

Meta's tokenizer is tiktoken over a rank table (id = rank) with a regex
pre-tokenizer. We rebuild it as a `tokenizers` byte-level BPE from the ranks
bundled with `quicktok-v1` (no hub download): merges are derived from the ranks
exactly as transformers' `TikTokenConverter` does, and `ignore_merges=True`
reproduces tiktoken's shortcut (a pre-token that is itself in the vocabulary is
one token, whatever the merges would do). `tests/test_tokenizer_llama3.py`
checks it token for token against `tiktoken.Encoding` over the same ranks.

    >>> from azllm.tokenizer.llama3 import build_llama3_tokenizer
    >>> tok = build_llama3_tokenizer()          # ~10 s the first time, then cached
    >>> tok.encode("Salam dünya", add_special_tokens=False)

The special-token names follow Meta's Llama 3.1 / 3.2 release (id 128004 is
`<|finetune_right_pad_id|>`, 128008 `<|eom_id|>`, 128010 `<|python_tag|>`);
quicktok bundles the Llama 3.0 names for the same ids, which differ only in
those three reserved slots.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    pre_tokenizers,
    processors,
)
from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Llama 3's pre-tokenizer regex (Meta's `pat_str`): words with one leading non-letter,
numbers in groups of at most 3 digits, punctuation runs, newlines, spaces."""

NUM_BASE_TOKENS = 128_000
"""Ids 0..127,999 are BPE ranks; the 256 special tokens follow."""

NUM_SPECIAL_TOKENS = 256


def _llama3_special_names() -> list[str]:
    named = [
        "<|begin_of_text|>", "<|end_of_text|>",
        "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
        "<|start_header_id|>", "<|end_header_id|>",
        "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
    ]
    reserved = [f"<|reserved_special_token_{i}|>" for i in range(3, 3 + NUM_SPECIAL_TOKENS - len(named))]
    return named + reserved


LLAMA3_SPECIAL_TOKENS: dict[str, int] = {
    name: NUM_BASE_TOKENS + i for i, name in enumerate(_llama3_special_names())
}
"""The 256 special tokens of Llama 3.1/3.2, name -> id (128000..128255), in id order."""

CHAT_SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                       "<|end_header_id|>", "<|eot_id|>")
"""The specials the chat template needs; every arm's tokenizer must have them."""

BOS_TOKEN = "<|begin_of_text|>"
EOS_TOKEN = "<|end_of_text|>"
PAD_TOKEN = "<|finetune_right_pad_id|>"

LLAMA3_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first -%}{{- '<|begin_of_text|>' -}}{%- endif -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}{{- message['content'] | trim + '<|eot_id|>' -}}{%- endgeneration -%}"
    "{%- else -%}"
    "{{- message['content'] | trim + '<|eot_id|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}{%- endif -%}"
)
"""Llama 3's chat template (no system-date preamble). The assistant content and its
`<|eot_id|>` sit inside `{% generation %}` so `return_assistant_tokens_mask` (and TRL's
`assistant_only_loss`) select exactly them. `<|begin_of_text|>` is written literally, not
as `bos_token`, so a base tokenizer with another BOS (SmolLM2) gets the same format."""


# ---------------------------------------------------------------------------
# Ranks and the tiktoken reference
# ---------------------------------------------------------------------------


def llama3_mergeable_ranks() -> dict[bytes, int]:
    """Meta's rank table {token bytes: rank} for ids < 128,000, from quicktok's bundled vocab."""
    import quicktok

    enc = quicktok.get_encoding("llama3")
    ranks = {enc.decode_single_token_bytes(i): i for i in range(NUM_BASE_TOKENS)}
    assert len(ranks) == NUM_BASE_TOKENS, f"expected {NUM_BASE_TOKENS} distinct ranks, got {len(ranks)}"
    return ranks


def llama3_tiktoken_encoding():
    """`tiktoken.Encoding` over the same ranks: how Meta's reference code encodes."""
    import tiktoken

    return tiktoken.Encoding(name="llama3-azllm", pat_str=LLAMA3_PATTERN,
                             mergeable_ranks=llama3_mergeable_ranks(), special_tokens={})


# ---------------------------------------------------------------------------
# Shared pipeline pieces (also used by train.py)
# ---------------------------------------------------------------------------


def llama3_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Regex split (isolated), then bytes -> GPT-2 unicode without a prefix space."""
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def bos_post_processor(bos_token: str, bos_id: int) -> processors.PostProcessor:
    """What Meta's tokenizer.json does: byte-level offsets, then BOS in front when asked."""
    return processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos_token} $A", pair=f"{bos_token} $A {bos_token} $B",
                                      special_tokens=[(bos_token, bos_id)]),
    ])


def add_llama3_specials(tok: Tokenizer) -> None:
    """Append the 256 Llama 3 specials in Meta's order (ids = current size .. +255)."""
    tok.add_special_tokens([AddedToken(name, normalized=False, special=True)
                            for name in LLAMA3_SPECIAL_TOKENS])


def wrap_llama3_style(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """A `tokenizers.Tokenizer` carrying the Llama 3 specials -> PreTrainedTokenizerFast with
    bos/eos/pad and the chat template set (pad = `<|finetune_right_pad_id|>`)."""
    bos_id = tok.token_to_id(BOS_TOKEN)
    assert bos_id is not None, "add the Llama 3 special tokens before wrapping"
    tok.post_processor = bos_post_processor(BOS_TOKEN, bos_id)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN,
                                   pad_token=PAD_TOKEN, clean_up_tokenization_spaces=False,
                                   model_max_length=131_072)
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    return fast


# ---------------------------------------------------------------------------
# The Llama 3 tokenizer
# ---------------------------------------------------------------------------


def _build_backend(ranks: dict[bytes, int]) -> Tokenizer:
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class _RanksConverter(TikTokenConverter):
        """TikTokenConverter reading ranks from memory instead of a tiktoken file."""

        def load_tiktoken_bpe(self, _url):
            return ranks

    vocab, merges = _RanksConverter(vocab_file="<quicktok llama3>").extract_vocab_merges_from_model("")
    tok = Tokenizer(BPE(vocab, merges, fuse_unk=False, ignore_merges=True))
    tok.pre_tokenizer = llama3_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    add_llama3_specials(tok)
    assert tok.get_vocab_size() == NUM_BASE_TOKENS + NUM_SPECIAL_TOKENS, tok.get_vocab_size()
    return tok


def llama3_cache_dir() -> Path:
    from azllm.config import cache_dir

    return cache_dir() / "tokenizers" / "llama-3.2"


def build_llama3_tokenizer(*, rebuild: bool = False) -> PreTrainedTokenizerFast:
    """The exact Llama 3 / 3.2 tokenizer (128,256 tokens), built offline and cached.

    First call: ~10 s (derive ~280k merges from the ranks); later calls load the cached
    directory under `cache_dir()/tokenizers/llama-3.2` (written atomically).
    bos = `<|begin_of_text|>` (added by `encode`), eos = `<|end_of_text|>` as in Meta's base
    model, pad = `<|finetune_right_pad_id|>`, chat template = LLAMA3_CHAT_TEMPLATE.
    """
    target = llama3_cache_dir()
    if rebuild and target.exists():
        shutil.rmtree(target)
    if not (target / "tokenizer.json").is_file():
        log.info("building the Llama 3 tokenizer from quicktok's ranks into %s", target)
        fast = wrap_llama3_style(_build_backend(llama3_mergeable_ranks()))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".llama-3.2-", dir=target.parent))
        fast.save_pretrained(tmp)
        (tmp / "azllm_source.json").write_text(json.dumps({"source": "quicktok-v1 llama3 ranks"}))
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race: use its copy
            shutil.rmtree(tmp, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(str(target))
