"""Chat records as tokens: the assistant-token mask, and fitting a record to `max_length`.

Shared by SFT training (which records it sees) and evaluation (the assistant-token
loss scores records fitted the same way), so it lives below both.

    >>> ids, mask = tokenize_chat(tokenizer, [{"role": "user", "content": "Salam"},
    ...                                       {"role": "assistant", "content": "Salam!"}])
"""

from __future__ import annotations

from azllm.data.sft import Messages


def tokenize_chat(tokenizer, messages: Messages) -> tuple[list[int], list[int]]:
    """Token ids of a rendered conversation and its assistant mask (1 = token inside `{% generation %}`)."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    ids = list(out["input_ids"])
    mask = list(out["assistant_masks"])
    assert len(ids) == len(mask), f"{len(ids)} ids but {len(mask)} mask entries"
    return ids, mask


def _num_tokens(tokenizer, messages: Messages) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


def fit_record(tokenizer, messages: Messages, max_length: int) -> tuple[Messages | None, bool]:
    """Cut the prompt side of one record to `max_length` tokens; (None, False) if the answer cannot fit.

    Returns (messages, truncated). Order of cuts: drop the earliest non-system turns
    (keeping the last user turn and the final assistant answer), then cut the last
    user text from the left, as little as needed (binary search on characters kept).
    """
    if not messages or messages[-1]["role"] != "assistant":
        return None, False
    if _num_tokens(tokenizer, messages) <= max_length:
        return messages, False
    system = messages[:1] if messages[0]["role"] == "system" else []
    rest = messages[len(system):]
    # 1. Drop earliest turns; keep the conversation starting on a user turn.
    while len(rest) > 2:
        rest = rest[1:]
        while len(rest) > 1 and rest[0]["role"] != "user":
            rest = rest[1:]
        if _num_tokens(tokenizer, system + rest) <= max_length:
            return system + rest, True
    answer = rest[-1]
    user = rest[0] if len(rest) == 2 else {"role": "user", "content": ""}

    def candidate(keep_chars: int) -> Messages:
        text = user["content"][len(user["content"]) - keep_chars:] if keep_chars else ""
        return system + [{"role": user["role"], "content": text}, answer]

    # 2. The answer alone (empty user text) must fit, else drop the record.
    if _num_tokens(tokenizer, candidate(0)) > max_length:
        return None, False
    lo, hi = 0, len(user["content"])  # invariant: candidate(lo) fits, candidate(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _num_tokens(tokenizer, candidate(mid)) <= max_length:
            lo = mid
        else:
            hi = mid
    return candidate(lo), True
