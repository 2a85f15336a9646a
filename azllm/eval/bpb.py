"""Bits per byte (docs/DESIGN.md §9): comparable across tokenizers because the unit is bytes.

BPB = sum of token negative log-likelihoods in nats / (ln 2 x UTF-8 bytes of the
scored text). Each document is scored whole, NFC-normalised, its first token
conditioned on BOS (EOS if the tokenizer has no BOS). A document longer than the
scoring context (the trained context: ``[cpt] block_size`` in the model comparison, at most
``DEFAULT_CONTEXT_LENGTH`` by default) is scored in overlapping windows: every token exactly once, with
at least `context_length - stride` tokens of left context.

    >>> from azllm.eval.bpb import evaluate_bpb
    >>> evaluate_bpb(model, tokenizer, ["Bakı Azərbaycanın paytaxtıdır."])["bpb"]
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import torch

from azllm.eval.load import load_model_and_tokenizer
from azllm.eval.loss import pad_batch
from azllm.model.device import Placement

DEFAULT_CONTEXT_LENGTH = 2048
"""The default scoring window, capped by the model's `max_position_embeddings`: the production presets'
trained context ([cpt] block_size). Not the model's 131,072 positions (Llama 3.2): one window per long
document would score far beyond the context trained on, and its bf16 logits, their fp32 copy and the
loss buffers (~10 x tokens x vocab bytes) exceed an A100-40GB past ~28k tokens at vocab 128,256."""
MAX_BATCH_TOKENS = 8192
"""Padded tokens per forward pass: bounds the (B, T, vocab) logits (8192 x 49k fp32 = 1.6 GB)."""


def _prefix_id(tokenizer) -> int:
    bos = tokenizer.bos_token_id
    if bos is None:
        bos = tokenizer.eos_token_id
    if bos is None:
        raise ValueError(f"{type(tokenizer).__name__} has neither a BOS nor an EOS token to condition the "
                         "first token on; set tokenizer.bos_token")
    return bos


def score_windows(seq_len: int, context_length: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows (begin, end, num_targets) over a sequence of `seq_len` positions, position 0 being BOS.

    The first window scores positions 1..end-1; each later window moves its end by
    `stride` and scores only the new positions, so every target is scored once.
    """
    assert 1 <= stride < context_length, f"need 1 <= stride={stride} < context_length={context_length}"
    end = min(context_length, seq_len)
    windows = [(0, end, end - 1)]
    while end < seq_len:
        new_end = min(end + stride, seq_len)
        windows.append((new_end - context_length, new_end, new_end - end))
        end = new_end
    return windows


@torch.inference_mode()
def evaluate_bpb(model, tokenizer, texts: Sequence[str], *, max_documents: int = 0,
                 context_length: int | None = None, stride: int | None = None, batch_size: int = 8,
                 show_progress: bool = True) -> dict:
    """Bits per byte of `model` on `texts`.

    Returns `bpb`, `nats` (summed NLL), `bytes` (UTF-8, NFC), `tokens` (scored), `documents`,
    `context_length` (the window) and `longest_window` (tokens of the longest forward row).
    `max_documents` > 0 scores only the first N non-empty documents. `context_length`
    defaults to `DEFAULT_CONTEXT_LENGTH` capped by the model's `max_position_embeddings`; `stride` (new tokens per
    window) to half of it. Windows of similar length are scored `batch_size` per forward pass
    (at most MAX_BATCH_TOKENS padded tokens), right-padded with the padding masked out of the
    sums, on the model's device and in its dtype; the sums are taken on the CPU in float64.
    """
    if context_length is None:
        positions = getattr(model.config, "max_position_embeddings", None) or DEFAULT_CONTEXT_LENGTH
        context_length = min(positions, DEFAULT_CONTEXT_LENGTH)
    if stride is None:
        stride = max(1, context_length // 2)
    prefix = _prefix_id(tokenizer)

    # -- documents -> windows -------------------------------------------------
    pieces: list[tuple[list[int], int]] = []  # (window token ids, number of targets at its end)
    num_bytes = num_documents = 0
    for text in texts:
        text = unicodedata.normalize("NFC", text)
        if not text:
            continue
        ids = [prefix] + tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) < 2:
            continue
        num_documents += 1
        num_bytes += len(text.encode("utf-8"))
        for begin, end, num_targets in score_windows(len(ids), context_length, stride):
            pieces.append((ids[begin:end], num_targets))
        if max_documents and num_documents >= max_documents:
            break

    if not num_documents:
        raise ValueError(f"no document to score: all {len(texts)} texts are empty (or a single token); "
                         "BPB needs at least one non-empty text")
    # -- score ------------------------------------------------------------------
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pieces.sort(key=lambda p: len(p[0]))
    batches, start = [], 0
    while start < len(pieces):
        width = len(pieces[min(start + batch_size, len(pieces)) - 1][0])
        rows = max(1, min(batch_size, MAX_BATCH_TOKENS // width))
        batches.append(pieces[start:start + rows])
        start += rows
    progress = batches
    if show_progress:
        try:
            from tqdm.auto import tqdm

            progress = tqdm(batches, desc="bpb", unit="batch")
        except ImportError:
            pass
    total_nats, total_tokens = 0.0, 0
    for batch in progress:
        input_ids, attention = pad_batch([ids for ids, _ in batch], prefix)
        labels = torch.full(input_ids.shape, -100, dtype=torch.long)
        for i, (ids, num_targets) in enumerate(batch):
            labels[i, len(ids) - num_targets:len(ids)] = torch.tensor(ids[len(ids) - num_targets:])
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits  # (B, T, V)
        targets = labels[:, 1:]  # (B, T-1), on the CPU: padding and prefixes are -100
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets.to(device),
                                                ignore_index=-100, reduction="none")  # (B, T-1)
        total_nats += nll.float().cpu().double().sum().item()
        total_tokens += int((targets != -100).sum())
    if was_training:
        model.train()
    bpb = total_nats / (math.log(2) * num_bytes)
    return {"bpb": bpb, "nats": total_nats, "bytes": num_bytes, "tokens": total_tokens,
            "documents": num_documents, "context_length": context_length,
            "longest_window": max((len(ids) for ids, _ in pieces), default=0)}


def read_texts(path: Path | str, text_field: str = "text") -> list[str]:
    """Documents of a JSONL file (`{"text": ...}` per line) or a text file (one per line), via the data layer."""
    from azllm.data.readers import iter_documents

    return list(iter_documents(str(path), text_field=text_field))


def evaluate_bpb_files(model_dir: Path | str, tokenizer_dir: Path | str, files: dict[str, Path], *,
                       max_documents: int = 0, placement: Placement | None = None, **kwargs) -> dict[str, dict]:
    """BPB of one model on several files, loading the model once: {name: evaluate_bpb(...) result}.

    The model goes to `placement` (default: the hardware's choice, `select_placement`)."""
    model, tokenizer = load_model_and_tokenizer(model_dir, tokenizer_dir, placement=placement)
    return {name: evaluate_bpb(model, tokenizer, read_texts(path), max_documents=max_documents, **kwargs)
            for name, path in files.items()}
