"""Assistant-token loss of a chat model, and the right-padded batches BPB and it share.

    >>> from azllm.eval.loss import assistant_token_loss
    >>> assistant_token_loss(model, tokenizer, read_chat_messages("sft_validation.jsonl"))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from azllm.data.sft import Messages
from azllm.tokenizer.chat_records import fit_record, tokenize_chat


def pad_batch(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask), both (B, T): the batch layout BPB and SFT scoring share."""
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, ids in enumerate(sequences):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        attention[i, :len(ids)] = 1
    return input_ids, attention


@torch.inference_mode()
def assistant_token_loss(model, tokenizer, records: Sequence[Messages], *, max_length: int | None = None,
                         batch_size: int = 8) -> float:
    """Mean negative log-likelihood (nats) per assistant token, summed over all records then divided.

    Records are fitted to `max_length` like the training records (dropped ones are skipped).
    """
    examples = []
    for messages in records:
        if max_length is not None:
            messages, _ = fit_record(tokenizer, messages, max_length)
            if messages is None:
                continue
        ids, mask = tokenize_chat(tokenizer, messages)
        if sum(mask):
            examples.append((ids, mask))
    if not examples:
        return float("nan")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    examples.sort(key=lambda e: len(e[0]))
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        input_ids, attention = pad_batch([ids for ids, _ in batch], pad_id)
        labels = torch.full(input_ids.shape, -100, dtype=torch.long)
        for i, (ids, mask) in enumerate(batch):
            labels[i, :len(ids)] = torch.where(torch.tensor(mask) == 1, torch.tensor(ids), -100)
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
        targets = labels[:, 1:].to(device)  # (B, T-1)
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets,
                                                ignore_index=-100, reduction="sum")
        total_nll += nll.item()
        total_tokens += int((targets != -100).sum())
    if was_training:
        model.train()
    return total_nll / total_tokens
