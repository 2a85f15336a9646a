"""Fertility of the `extend` arm (continued BPE) next to `replace` and the old extend method.

For each base (`smollm2-135m`, `llama-3.2`): the base itself, continued-BPE extend at each
`--extend` size (new tokens), the old extend method at the same sizes (`--legacy`: the tokens
of an independently trained BPE appended after the base's merges, what `extend` did before
issue 15), and the replace tokenizers (`azllm.tokenizer.train`, trained once, at each
`--replace` size, specials included). Fertility = tokens / NFC whitespace words on the eval
file (`azllm.tokenizer.metrics`). For each extend tokenizer also the share of its new tokens
that the tokenizer really emits on the training corpus (`fired_share`) and on the eval file.

stdout is JSON lines only (progress and logs go to stderr):

    .venv/bin/python benchmarks/extend_fertility.py                        # full table, ~15 min on 2 cores
    .venv/bin/python benchmarks/extend_fertility.py --bases smollm2-135m --extend 16000 --replace 32000
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _read(paths: list[Path]) -> list[str]:
    out = []
    for p in sorted(q for path in paths for q in ([path] if path.is_file() else path.glob("*.jsonl"))):
        if p.name.startswith("validation"):
            continue
        with open(p, encoding="utf-8") as f:
            out += [json.loads(line)["text"] for line in f if line.strip()]
    return out


def legacy_extend(base, new, num_new_tokens: int):
    """The extend method before issue 15: `new`'s tokens missing from the base, in `new`'s merge
    order, each with its merge, appended after all base merges (kept here for comparison)."""
    from tokenizers import Tokenizer

    from azllm.tokenizer.extend import byte_level_bpe_state, merge_pair

    state = byte_level_bpe_state(base)
    model = state["model"]
    vocab = model["vocab"]
    for t in state.get("added_tokens", []):
        vocab.setdefault(t["content"], t["id"])
    added, merges = [], []
    for m in byte_level_bpe_state(new, "new")["model"]["merges"]:
        left, right = merge_pair(m)
        if left + right in vocab:
            continue
        vocab[left + right] = len(vocab)
        added.append(left + right)
        merges.append([left, right])
        if len(added) >= num_new_tokens:
            break
    model["merges"] = [list(merge_pair(m)) for m in model["merges"]] + merges
    return Tokenizer.from_str(json.dumps(state)), added


def _fast(backend):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=backend)


def _row(**kw) -> None:
    print(json.dumps(kw), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, nargs="+",
                    default=[SHARED / "az_corpus", SHARED / "az_corpus_extra"])
    ap.add_argument("--eval", type=Path, default=SHARED / "az_eval_other_domain.jsonl")
    ap.add_argument("--bases", nargs="+", default=["smollm2-135m", "llama-3.2"])
    ap.add_argument("--extend", type=int, nargs="+", default=[16_000, 32_000, 48_000], help="new tokens")
    ap.add_argument("--replace", type=int, nargs="+", default=[32_000, 50_000, 100_000],
                    help="replace vocabulary sizes, specials included")
    ap.add_argument("--min-frequency", type=int, default=2)
    ap.add_argument("--legacy", action=argparse.BooleanOptionalAction, default=True,
                    help="also the old extend method, from the largest replace tokenizer")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    from azllm.tokenizer.extend import append_merges, learn_continued_merges, used_token_ids
    from azllm.tokenizer.load import load_tokenizer
    from azllm.tokenizer.metrics import tokenizer_metrics
    from azllm.tokenizer.train import train_tokenizer

    texts, eval_texts = _read(args.corpus), _read([args.eval])
    print(f"corpus: {len(texts)} documents, {sum(len(t.encode()) for t in texts) / 1e6:.1f} MB; "
          f"eval: {len(eval_texts)} documents", file=sys.stderr)

    def measure(kind: str, base: str, tok, new_tokens: int, **extra) -> None:
        m = tokenizer_metrics(tok, eval_texts)
        _row(kind=kind, base=base, new_tokens=new_tokens, vocab_size=m["vocab_size"],
             fertility=round(m["fertility"], 4), bytes_per_token=round(m["bytes_per_token"], 4), **extra)

    def fired(tok, first_new: int, n: int) -> dict:
        out = {}
        for name, corpus in (("fired_share", texts), ("fired_share_eval", eval_texts)):
            used = used_token_ids(tok, corpus)
            out[name] = round(sum(first_new <= i < first_new + n for i in used) / n, 4)
        return out

    with tempfile.TemporaryDirectory() as tmp:
        replaced = {}
        for size in sorted(args.replace):
            t0 = time.perf_counter()
            res = train_tokenizer(texts, vocab_size=size, min_frequency=args.min_frequency,
                                  out_dir=Path(tmp) / f"bbpe-{size}", show_progress=False)
            replaced[size] = load_tokenizer(res.path)
            measure("replace", "-", replaced[size], 0, train_s=round(time.perf_counter() - t0, 1))
        for base_name in args.bases:
            base = load_tokenizer(base_name)
            measure("base", base_name, base, 0)
            t0 = time.perf_counter()
            # 0 = every merge the corpus supports; the loop is greedy, so its first n merges are
            # exactly what a run asked for n would learn.
            learned = learn_continued_merges(base, texts, 0, min_frequency=args.min_frequency)
            learn_s = round(time.perf_counter() - t0, 1)
            first_new = len(base.backend_tokenizer.get_vocab(with_added_tokens=True))
            for n in sorted(args.extend):
                if n > len(learned.merges):
                    _row(kind="extend", base=base_name, new_tokens=n, status="unsupported",
                         reason=f"the corpus supports {len(learned.merges)} merges at min_frequency "
                                f"{args.min_frequency}")
                    continue
                tok = _fast(append_merges(base, learned.merges[:n])[0])
                measure("extend", base_name, tok, n, learn_s=learn_s, supported=len(learned.merges),
                        **fired(tok, first_new, n))
            if args.legacy and replaced:
                for n in sorted(args.extend):
                    backend, added = legacy_extend(base, replaced[max(replaced)], n)
                    tok = _fast(backend)
                    measure("legacy_extend", base_name, tok, len(added), **fired(tok, first_new, len(added)))


if __name__ == "__main__":
    main()
