"""Language ID backends on this project's data: py3langid vs lingua, accuracy (Azerbaijani vs
Turkish/English) and speed. One JSON line per (backend, set).

    .venv/bin/python benchmarks/langid_compare.py

Sets: every document of ../shared/data's Azerbaijani files (repaired as preparation does);
the Turkish and English paragraphs of benchmarks/planted_texts.py, each mutated 25 times
(sentences shuffled, a tenth of the words dropped); single sentences (>= 5 words) of the
shared other-domain news, and of the Turkish paragraphs. Speed is MB of whole documents per
CPU second (each backend reads the first 1,000 characters, as `data.langid_chars`).
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from planted_texts import ENGLISH, TURKISH  # noqa: E402

from azllm.data.langid import language_of  # noqa: E402
from azllm.data.textfix import repair_text  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
LANGUAGES = ("azerbaijani", "turkish", "english", "russian", "kazakh")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def texts(path: Path) -> list[str]:
    return [repair_text(json.loads(line)["text"])[0] for line in path.read_text(encoding="utf-8").splitlines()]


def main() -> int:
    rng = random.Random(0)

    def mutate(t: str) -> str:
        parts = _SENTENCE.split(t)
        rng.shuffle(parts)
        return " ".join(w for w in " ".join(parts).split() if rng.random() > 0.1)

    az = [t for p in ("az_eval_other_domain.jsonl", "az_corpus/train-00000.jsonl", "az_corpus/validation.jsonl",
                      "az_corpus_extra/train-00000.jsonl") for t in texts(SHARED / p)]
    sets = {
        "az_documents": az,
        "tr_documents": [mutate(t) for t in TURKISH for _ in range(25)],
        "en_documents": [mutate(t) for t in ENGLISH for _ in range(25)],
        "az_sentences": [s for t in texts(SHARED / "az_eval_other_domain.jsonl") for s in _SENTENCE.split(t)
                         if len(s.split()) >= 5],
        "tr_sentences": [s for t in TURKISH for s in _SENTENCE.split(t)],
    }
    for backend in ("py3langid", "lingua"):
        for warm in (az[:30], ["qısa mətn"]):  # load the models (lingua: both modes) before timing
            [language_of(t, LANGUAGES, 1000, backend) for t in warm]
        for name, docs in sets.items():
            start = time.process_time()
            kept = sum(language_of(t, LANGUAGES, 1000, backend)[0] == "azerbaijani" for t in docs)
            seconds = time.process_time() - start
            mb = sum(len(t.encode()) for t in docs) / 1e6
            print(json.dumps({"backend": backend, "set": name, "documents": len(docs), "azerbaijani": kept,
                              "mb_per_cpu_s": round(mb / seconds, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
