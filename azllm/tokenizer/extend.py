"""Continued BPE: extend a byte-level BPE tokenizer with merges learned on top of its own output.

The `extend` arm keeps every base token, id and merge and appends new ones. The new merges
are learned over the *base tokenizer's segmentation* of the target-language corpus, so each
one joins two tokens the base really emits next to each other (NVIDIA's Nemotron tokenizer
extension; Purason et al. 2025, "in-place tokenizer expansion"). An independently trained
BPE's merges, appended after the base's, mostly need intermediate tokens the base never
produces and rarely fire.

Algorithm (`learn_continued_merges`):

1. pre-tokenize every document with the base's own normalizer and pre-tokenizer and count
   the distinct pre-tokens (word -> frequency), as `tokenizers`' BpeTrainer does;
2. segment each distinct pre-token with the base's BPE model (`model.tokenize`);
3. count adjacent token pairs weighted by pre-token frequency; repeatedly merge the most
   frequent pair (ties: the smaller (left, right) token strings) whose concatenation is not
   already a token, until `num_new_tokens` merges or no pair reaches `min_frequency`.
   Pair counts are updated incrementally, only in the pre-tokens that hold the merged pair,
   and a max-heap with lazy re-push picks the next pair (HF's trainer does the same).

What `tokenizers` does: normalizing, pre-tokenizing, the base segmentation, the BPE model
itself (encode with base merges first, then the new ones by rank; `ignore_merges` as the
base has it) and serialization. What it cannot do and is written here: step 3, since
`BpeTrainer` always starts from single characters, never from an existing segmentation.

Why the extended tokenizer encodes like the simulation: every new merge ranks after all
base merges, and a new merge never creates a pair of base tokens, so `tokenizers`' BPE
first reproduces the base segmentation, then applies the new merges in the learned order.
With `ignore_merges=True` (Llama 3) a pre-token that is itself a token is one token, which
can only shorten the simulated segmentation.

    >>> tok, new_tokens = extend_with_continued_bpe(load_tokenizer("smollm2-135m"), texts, num_new_tokens=16_000)
"""

from __future__ import annotations

import heapq
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContinuedMerges:
    merges: list[tuple[str, str]]
    """New merges in rank order; token `left + right` is new token number i."""
    num_pretokens: int
    """Distinct pre-tokens of the corpus that the base splits into 2+ tokens."""
    num_merge_applications: list[int]
    """Per merge: weighted number of times it applied on the corpus when it was learned."""


def merge_pair(m: Any) -> tuple[str, str]:
    """tokenizers stores merges as ["a", "b"] (>= 0.20) or "a b" (older files)."""
    if isinstance(m, str):
        a, b = m.split(" ", 1)
        return a, b
    return m[0], m[1]


def byte_level_bpe_state(tok: Any, role: str = "base") -> dict:
    """The tokenizer.json state of a byte-level BPE, or a ValueError naming what it is instead."""
    state = json.loads(tok.backend_tokenizer.to_str())
    model = state["model"]
    kind = model.get("type")
    if kind != "BPE":
        raise ValueError(f"the {role} tokenizer is a {kind} model; continued BPE needs a byte-level BPE "
                         "(tokenizers `BPE` model with a `ByteLevel` pre-tokenizer, as GPT-2, SmolLM2, Llama 3)")
    blob = json.dumps(state.get("pre_tokenizer"))
    if '"ByteLevel"' not in blob:
        pre = (state.get("pre_tokenizer") or {}).get("type")
        raise ValueError(f"the {role} tokenizer is a BPE model with a {pre} pre-tokenizer, not byte-level BPE; "
                         "continued BPE needs a `ByteLevel` pre-tokenizer (byte_fallback/Metaspace BPEs such "
                         "as Llama 2's are not supported)")
    odd = {k: model.get(k) for k in ("dropout", "continuing_subword_prefix", "end_of_word_suffix") if model.get(k)}
    if odd:
        raise ValueError(f"the {role} BPE model sets {odd}; continued BPE supports plain byte-level BPE only")
    return state


def count_pretokens(tok: Any, texts: Iterable[str], *, show_progress: bool = False) -> Counter:
    """Distinct pre-tokens (byte-level strings) of `texts` with their frequencies, per the base's
    normalizer and pre-tokenizer."""
    from tqdm.auto import tqdm

    backend = tok.backend_tokenizer
    norm, pre = backend.normalizer, backend.pre_tokenizer
    counts: Counter = Counter()
    for text in tqdm(texts, desc="pre-tokenize", disable=not show_progress, unit="doc"):
        if norm is not None:
            text = norm.normalize_str(text)
        counts.update(piece for piece, _ in pre.pre_tokenize_str(text))
    return counts


class _PairTable:
    """Words as lists of symbol ids with frequencies; pair counts and where each pair occurs."""

    def __init__(self, words: list[list[int]], freqs: list[int]):
        self.words, self.freqs = words, freqs
        self.counts: dict[tuple[int, int], int] = {}
        self.where: dict[tuple[int, int], set[int]] = {}
        for wi, (w, f) in enumerate(zip(words, freqs)):
            for pair in zip(w, w[1:]):
                self.counts[pair] = self.counts.get(pair, 0) + f
                self.where.setdefault(pair, set()).add(wi)

    def merge(self, pair: tuple[int, int], new_id: int) -> tuple[int, set[tuple[int, int]]]:
        """Merge `pair` into `new_id` everywhere (left to right, non-overlapping, as BPE does).
        Returns (weighted applications, the new pairs that contain `new_id`)."""
        a, b = pair
        applied, created = 0, set()
        for wi in sorted(self.where.pop(pair, ())):
            w, f = self.words[wi], self.freqs[wi]
            out, i, n = [], 0, 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(new_id)
                    i += 2
                    n += 1
                else:
                    out.append(w[i])
                    i += 1
            if not n:
                continue  # stale: an earlier merge consumed the pair in this word
            applied += n * f
            for p in zip(w, w[1:]):
                c = self.counts[p] - f
                if c:
                    self.counts[p] = c
                else:
                    del self.counts[p]
            for p in zip(out, out[1:]):
                self.counts[p] = self.counts.get(p, 0) + f
                self.where.setdefault(p, set()).add(wi)
                if new_id in p:
                    created.add(p)
            self.words[wi] = out
        self.counts.pop(pair, None)
        return applied, created


def learn_continued_merges(tok: Any, texts: Iterable[str], num_new_tokens: int, *, min_frequency: int = 2,
                           show_progress: bool = False) -> ContinuedMerges:
    """Up to `num_new_tokens` merges (0 = as many as the corpus supports) over `tok`'s segmentation.

    Raises ValueError when the corpus supports fewer merges than asked (saying how many).
    """
    from tqdm.auto import tqdm

    if num_new_tokens < 0:
        raise ValueError(f"num_new_tokens must be >= 0 (0 = all the corpus supports), got {num_new_tokens}")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    byte_level_bpe_state(tok)
    backend = tok.backend_tokenizer
    model = backend.model
    known = set(backend.get_vocab(with_added_tokens=True))
    pretokens = count_pretokens(tok, texts, show_progress=show_progress)
    if not pretokens:
        raise ValueError("empty corpus: no pre-token to learn merges from; check the corpus path and text field")

    symbols: list[str] = []
    ids: dict[str, int] = {}

    def sym(s: str) -> int:
        if s not in ids:
            ids[s] = len(symbols)
            symbols.append(s)
        return ids[s]

    words, freqs = [], []
    for piece, f in sorted(pretokens.items()):
        seg = [t.value for t in model.tokenize(piece)]
        if len(seg) > 1:
            words.append([sym(s) for s in seg])
            freqs.append(f)
    table = _PairTable(words, freqs)
    heap = [(-c, symbols[a], symbols[b], a, b) for (a, b), c in table.counts.items()]
    heapq.heapify(heap)
    log.info("continued BPE: %d distinct pre-tokens, %d split by the base, %d distinct pairs",
             len(pretokens), len(words), len(table.counts))

    limit = num_new_tokens or None
    merges: list[tuple[str, str]] = []
    applied: list[int] = []
    bar = tqdm(total=limit, desc="continued BPE merges", disable=not show_progress, unit="merge")
    while heap and (limit is None or len(merges) < limit):
        neg, left, right, a, b = heapq.heappop(heap)
        count = table.counts.get((a, b), 0)
        if count != -neg:  # stale upper bound: counts of old pairs only fall
            if count:
                heapq.heappush(heap, (-count, left, right, a, b))
            continue
        if count < min_frequency:
            break
        token = left + right
        if token in known:  # already a token (base, special or earlier merge): not new
            continue
        known.add(token)
        n, created = table.merge((a, b), sym(token))
        merges.append((left, right))
        applied.append(n)
        for p in created:
            heapq.heappush(heap, (-table.counts[p], symbols[p[0]], symbols[p[1]], p[0], p[1]))
        bar.update(1)
    bar.close()
    if limit is not None and len(merges) < limit:
        raise ValueError(f"the corpus supports only {len(merges)} new tokens over the base segmentation at "
                         f"min_frequency={min_frequency}, not the requested {num_new_tokens}; set "
                         f"extend_num_tokens <= {len(merges)} (or --num-tokens), lower min_frequency or add text")
    log.info("continued BPE: learned %d merges (last one applied %d times)", len(merges),
             applied[-1] if applied else 0)
    return ContinuedMerges(merges=merges, num_pretokens=len(words), num_merge_applications=applied)


def append_merges(base: Any, merges: Sequence[tuple[str, str]]) -> tuple[Any, list[str]]:
    """The base backend with `merges` appended after its own and one new token per merge.

    Ids: the base vocabulary, its added (special) tokens at their ids, then the new tokens in
    merge order. Returns (tokenizers.Tokenizer, the new token strings in id order).
    """
    from tokenizers import Tokenizer

    state = byte_level_bpe_state(base)
    model = state["model"]
    vocab: dict[str, int] = model["vocab"]
    # tokenizers numbers added tokens from the model's vocabulary size when it loads a file, so a
    # model vocabulary with a hole where the base's specials sit would shift them. Give the
    # specials their slots in the model vocabulary too (they stay added tokens, matched first).
    for t in state.get("added_tokens", []):
        vocab.setdefault(t["content"], t["id"])
    assert sorted(vocab.values()) == list(range(len(vocab))), "base vocabulary ids are not contiguous"
    added = []
    for left, right in merges:
        assert left in vocab and right in vocab, f"merge parts missing for {left + right!r}: {left!r}, {right!r}"
        token = left + right
        assert token not in vocab, f"merge {left!r} + {right!r} builds an existing token"
        vocab[token] = len(vocab)
        added.append(token)
    model["merges"] = [list(merge_pair(m)) for m in model["merges"]] + [[a, b] for a, b in merges]
    return Tokenizer.from_str(json.dumps(state)), added


def extend_with_continued_bpe(base: Any, texts: Iterable[str], num_new_tokens: int, *, min_frequency: int = 2,
                              show_progress: bool = False) -> tuple[Any, list[str]]:
    """Learn continued-BPE merges on `texts` and append them to `base`: (tokenizers.Tokenizer, new tokens)."""
    learned = learn_continued_merges(base, texts, num_new_tokens, min_frequency=min_frequency,
                                     show_progress=show_progress)
    return append_merges(base, learned.merges)


def new_token_ids(tokenizer: Any, base: Any) -> set[int]:
    """Ids of `tokenizer` whose token string is not in `base`'s vocabulary (specials excluded),
    the same matching as FVT's row copy (azllm.model.vocab)."""
    base_vocab = base.get_vocab()
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    return {i for t, i in tokenizer.get_vocab().items() if t not in base_vocab and i not in special}


def used_token_ids(tokenizer: Any, texts: Iterable[str], batch_size: int = 256) -> set[int]:
    """Distinct ids emitted when encoding `texts` (no special tokens), with the Rust backend."""
    backend = tokenizer.backend_tokenizer
    seen: set[int] = set()
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            for e in backend.encode_batch(batch, add_special_tokens=False):
                seen.update(e.ids)
            batch = []
    for e in backend.encode_batch(batch, add_special_tokens=False):
        seen.update(e.ids)
    return seen
