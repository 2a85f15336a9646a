"""Greedy generations of a fixed length on fixed prompts, and how repetitive they are.

Repetition (docs/DESIGN.md §9) is measured on the generated words (`text.split()`
after NFC): `repeated_4gram_share` = word 4-grams that repeat an earlier 4-gram of
the same text / all 4-grams; `distinct_2` = unique word bigrams / all bigrams. A text with
too few words for a measure gets None and a `*_reason` (never NaN).
Generations have a fixed length (`min_new_tokens = max_new_tokens`, end-of-turn
suppressed) so that models are compared on the same number of tokens.

    >>> texts = generate_samples(model, tokenizer, ["Azərbaycan Respublikasının paytaxtı"], max_new_tokens=48)
    >>> aggregate_repetition(texts)
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import torch


def stop_token_ids(tokenizer) -> list[int]:
    """EOS and, where the vocabulary has it, Llama 3's `<|eot_id|>` (the end of a chat turn)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    if isinstance(eot, int) and eot != tokenizer.unk_token_id and eot not in ids:
        ids.append(eot)
    return ids


def prompt_ids(tokenizer, prompt: str, *, chat: bool) -> list[int]:
    """A chat prompt (user turn + assistant header) or plain text after BOS, as for BPB."""
    if chat:
        out = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            tokenize=True, return_dict=True)
        return list(out["input_ids"])
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    prefix = [bos] if bos is not None else []
    return prefix + tokenizer(unicodedata.normalize("NFC", prompt), add_special_tokens=False)["input_ids"]


@torch.inference_mode()
def greedy_generate(model, tokenizer, ids: list[int], *, max_new_tokens: int, fixed_length: bool) -> list[int]:
    """New token ids of a greedy continuation of `ids` (one sequence: no padding effects)."""
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    stops = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops[0] if stops else 0)
    out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                         max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens if fixed_length else 0,
                         do_sample=False, eos_token_id=stops or None, pad_token_id=pad)
    return out[0, len(ids):].tolist()


def generate_samples(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int,
                     chat: bool = False) -> list[str]:
    """Greedy continuations of exactly `max_new_tokens` tokens, decoded without special tokens."""
    was_training = model.training
    model.eval()
    texts = []
    for prompt in prompts:
        new = greedy_generate(model, tokenizer, prompt_ids(tokenizer, prompt, chat=chat),
                              max_new_tokens=max_new_tokens, fixed_length=True)
        texts.append(tokenizer.decode(new, skip_special_tokens=True))
    if was_training:
        model.train()
    return texts


MIN_WORDS = {"repeated_4gram_share": 4, "distinct_2": 2}
"""Words a text needs for each measure to be defined (one 4-gram, one bigram)."""


def repetition_metrics(text: str) -> dict[str, float | str | None]:
    """`repeated_4gram_share` and `distinct_2` of one text.

    A text too short for a measure (fewer than 4 / 2 whitespace words, e.g. a model that emits
    `1.1.1.1.0.0#` without spaces) gets None and a `{measure}_reason` instead of 0/0 = NaN."""
    words = unicodedata.normalize("NFC", text).split()
    fourgrams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for gram in fourgrams:
        repeats += gram in seen
        seen.add(gram)
    bigrams = [tuple(words[i:i + 2]) for i in range(len(words) - 1)]
    out: dict[str, float | str | None] = {
        "repeated_4gram_share": repeats / len(fourgrams) if fourgrams else None,
        "distinct_2": len(set(bigrams)) / len(bigrams) if bigrams else None,
    }
    for key, need in MIN_WORDS.items():
        if out[key] is None:
            out[f"{key}_reason"] = f"{len(words)} whitespace word(s), {need} needed"
    return out


def aggregate_repetition(texts: Sequence[str]) -> dict[str, float | int | str | None]:
    """Mean of each measure over the samples long enough for it (`{measure}_samples` of them).

    When no sample is long enough the measure is None with a `{measure}_reason` that gives the
    samples' word counts, never NaN."""
    per_text = [repetition_metrics(t) for t in texts]
    word_counts = [len(unicodedata.normalize("NFC", t).split()) for t in texts]
    out: dict[str, float | int | str | None] = {}
    for key, need in MIN_WORDS.items():
        values = [m[key] for m in per_text if m[key] is not None]
        out[key] = sum(values) / len(values) if values else None
        out[f"{key}_samples"] = len(values)
        if not values:
            out[f"{key}_reason"] = (f"no generation has {need} or more whitespace words (word counts "
                                    f"{word_counts}): the model emits text without spaces or stops early")
    out["num_samples"] = len(texts)
    return out
