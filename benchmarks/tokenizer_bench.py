"""Tokenizer training and encoding throughput: our byte-level BPE vs SentencePiece BPE.

Same corpus, same vocabulary size, same run; prints one JSON line with MB/s for training and
encoding (UTF-8 MB of the corpus per wall second) and the fertility each reaches on the
other-domain file (tokens per NFC whitespace word, no special tokens).

    .venv/bin/python benchmarks/tokenizer_bench.py                      # shared corpus, 32k
    .venv/bin/python benchmarks/tokenizer_bench.py --vocab-size 16000 --threads 2

SentencePiece: model_type=bpe, byte_fallback, identity normalisation (our tokenizer does
not normalise either), character_coverage 1.0, documents split into lines (its input is one
sentence per line). `--threads` is given to both (RAYON_NUM_THREADS for `tokenizers`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _read(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=SHARED / "az_corpus" / "train-00000.jsonl")
    ap.add_argument("--eval", type=Path, default=SHARED / "az_eval_other_domain.jsonl")
    ap.add_argument("--vocab-size", type=int, default=32_000, help="both tokenizers, specials included")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    os.environ["TOKENIZERS_PARALLELISM"] = "true"

    import sentencepiece as spm
    from transformers import AutoTokenizer

    from azllm.tokenizer.metrics import tokenizer_metrics
    from azllm.tokenizer.train import train_tokenizer

    texts = _read(args.corpus)
    eval_texts = _read(args.eval)
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    result: dict = {"corpus_mb": round(mb, 2), "documents": len(texts), "vocab_size": args.vocab_size,
                    "threads": args.threads, "cpu": platform.processor() or platform.machine()}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # --- ours: byte-level BPE with Llama 3's settings ---------------------------------
        t0 = time.perf_counter()
        trained = train_tokenizer(texts, vocab_size=args.vocab_size, min_frequency=2, out_dir=tmp / "bbpe",
                                  show_progress=False)
        train_s = time.perf_counter() - t0
        tok = AutoTokenizer.from_pretrained(str(trained.path))
        t0 = time.perf_counter()
        n_tokens = sum(len(e.ids) for e in tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False))
        enc_s = time.perf_counter() - t0
        result["azllm_bbpe"] = {
            "train_mb_per_s": round(mb / train_s, 3), "train_s": round(train_s, 2),
            "encode_mb_per_s": round(mb / enc_s, 3), "corpus_tokens": n_tokens,
            "vocab_size_reached": trained.vocab_size,
            "fertility_other_domain": round(tokenizer_metrics(tok, eval_texts)["fertility"], 4)}

        # --- SentencePiece BPE -------------------------------------------------------------
        lines_file = tmp / "corpus.txt"
        with open(lines_file, "w", encoding="utf-8") as f:
            for t in texts:
                for line in t.splitlines():
                    if line.strip():
                        f.write(line + "\n")
        t0 = time.perf_counter()
        spm.SentencePieceTrainer.train(
            input=str(lines_file), model_prefix=str(tmp / "spm"), model_type="bpe", vocab_size=args.vocab_size,
            byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
            num_threads=args.threads, max_sentence_length=1 << 16, input_sentence_size=0,
            train_extremely_large_corpus=False, minloglevel=2)
        sp_train_s = time.perf_counter() - t0
        sp = spm.SentencePieceProcessor(model_file=str(tmp / "spm.model"))
        t0 = time.perf_counter()
        sp_tokens = sum(len(ids) for ids in sp.encode(texts, num_threads=args.threads))
        sp_enc_s = time.perf_counter() - t0
        import unicodedata
        words = sum(len(unicodedata.normalize("NFC", t).split()) for t in eval_texts)
        sp_eval_tokens = sum(len(ids) for ids in sp.encode([unicodedata.normalize("NFC", t) for t in eval_texts]))
        result["sentencepiece_bpe"] = {
            "train_mb_per_s": round(mb / sp_train_s, 3), "train_s": round(sp_train_s, 2),
            "encode_mb_per_s": round(mb / sp_enc_s, 3), "corpus_tokens": sp_tokens,
            "vocab_size_reached": sp.get_piece_size(),
            "fertility_other_domain": round(sp_eval_tokens / words, 4)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
