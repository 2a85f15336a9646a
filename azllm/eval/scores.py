"""Question answering on held-out chat records, scored with chrF against the reference answers.

chrF (character n-gram F-score, sacrebleu's defaults: n=6, beta=2) suits Azerbaijani's
long agglutinative words better than word BLEU. 0-100.

    >>> answers = answer_questions(model, tokenizer, records, max_new_tokens=64)
    >>> chrf(answers, reference_answers(records))
"""

from __future__ import annotations

from collections.abc import Sequence

from azllm.eval.generation import greedy_generate


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (0-100) of `hypotheses` against one reference each."""
    from sacrebleu.metrics import CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    return CHRF().corpus_score(list(hypotheses), [list(references)]).score


def reference_answers(records: Sequence[list[dict]]) -> list[str]:
    """The final assistant turn of each chat record."""
    return [messages[-1]["content"] for messages in records]


def answer_questions(model, tokenizer, records: Sequence[list[dict]], max_new_tokens: int) -> list[str]:
    """Greedy answers to each record's conversation minus its final assistant turn; stops at end of turn."""
    was_training = model.training
    model.eval()
    answers = []
    for messages in records:
        prompt = messages[:-1] if messages[-1]["role"] == "assistant" else messages
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"]
        new = greedy_generate(model, tokenizer, list(ids), max_new_tokens=max_new_tokens, fixed_length=False)
        answers.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    if was_training:
        model.train()
    return answers
