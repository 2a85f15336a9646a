"""The global stage after the shards' dedup (:func:`azllm.data.dedup.dedup_shards`): validation by hash,
weights, shuffle.

Every decision is a function of a document's SHA-1 and the seed, never of the order in
which shards finished, so 1 and N workers give the same files.

- validation (without explicit sources): documents whose split hash is below
  `validation_fraction`, the lowest `max_validation_documents` of them when capped;
- weights: `copies_for` copies of each training document, every copy placed by its own
  hash (a hash-ordered shuffle), then no document is left next to its own copy.
"""

from __future__ import annotations

import hashlib
import heapq
import math

from azllm.config import DataConfig
from azllm.data.dedup import DocRef


def unit_hash(seed: int, purpose: str, digest: bytes) -> float:
    """A deterministic uniform number in [0, 1) for a document: streaming, reproducible sampling."""
    h = hashlib.sha1(f"{seed}:{purpose}:".encode() + digest).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def copies_for(weight: float, seed: int, digest: bytes) -> int:
    """How many times a document of a source with `weight` goes to train.

    floor(weight) copies, plus one more with probability frac(weight), decided by
    the document's hash: weight 3.0 -> 3 copies, 0.25 -> a fixed quarter of documents once.
    """
    whole = math.floor(weight)
    return whole + (unit_hash(seed, "weight", digest) < weight - whole)


def split_validation(docs: list[DocRef], cfg: DataConfig) -> tuple[list[DocRef], list[DocRef]]:
    """(train, validation) of the corpus survivors when there is no explicit validation source.

    Validation: split hash below `validation_fraction`, capped to the lowest
    `max_validation_documents`; if that leaves none and there are two or more
    documents, the one with the lowest hash (a small corpus still gets a validation split).
    """
    if cfg.validation:
        return docs, []
    keyed = [(unit_hash(cfg.seed, "split", d.digest), i) for i, d in enumerate(docs)]
    chosen = [k for k in keyed if k[0] < cfg.validation_fraction]
    if cfg.max_validation_documents and len(chosen) > cfg.max_validation_documents:
        chosen = heapq.nsmallest(cfg.max_validation_documents, chosen)
    if not chosen and len(docs) > 1:
        chosen = [min(keyed)]
    val_idx = {i for _, i in chosen}
    return ([d for i, d in enumerate(docs) if i not in val_idx],
            [d for i, d in enumerate(docs) if i in val_idx])


def train_order(docs: list[DocRef], cfg: DataConfig) -> list[DocRef]:
    """Weighted copies in hash order, no document directly after its own copy.

    Copy c of a document sits at `unit_hash(seed, "order:c", sha1)`. A copy that lands
    right after another copy of itself swaps with the next different document.
    """
    weights = cfg.corpus_weights or (1.0,) * len(cfg.corpus)
    keyed = [(unit_hash(cfg.seed, f"order:{c}", d.digest), d)
             for d in docs for c in range(copies_for(weights[d.source_index], cfg.seed, d.digest))]
    keyed.sort(key=lambda kd: kd[0])
    order = [d for _, d in keyed]
    i = 1
    while i < len(order):
        if order[i].digest == order[i - 1].digest:
            j = next((j for j in range(i + 1, len(order)) if order[j].digest != order[i].digest), None)
            if j is not None:
                order[i], order[j] = order[j], order[i]
            elif not _move_back(order, i):
                break  # too few distinct documents to keep every copy apart
            else:
                continue  # a new element is at i now: check it too
        i += 1
    return order


def _move_back(order: list[DocRef], i: int) -> bool:
    """Only copies of one document are left from `i` on: move this one to an earlier gap that fits."""
    doc = order[i]
    for p in range(i - 1):
        if order[p].digest != doc.digest and (p == 0 or order[p - 1].digest != doc.digest):
            order.insert(p, order.pop(i))
            return True
    return False
