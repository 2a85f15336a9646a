"""azllm.data: read, clean, dedup and split the corpus and the SFT chat records.

The flow's `prepare_data` step calls :func:`prepare_corpus` and :func:`prepare_sft`;
everything streams, so the corpus never sits in memory.
"""

from azllm.data.clean import clean_text, count_words, latin_fraction
from azllm.data.corpus import PreparedCorpus, prepare_corpus
from azllm.data.readers import (
    BadLines,
    DataError,
    iter_documents,
    iter_jsonl_texts,
    iter_records,
)
from azllm.data.sft import (
    PreparedSft,
    prepare_sft,
    read_chat_records,
    validate_chat_record,
)
from azllm.data.stats import corpus_stats, merge_stats

__all__ = [
    "BadLines", "DataError", "PreparedCorpus", "PreparedSft", "clean_text", "corpus_stats", "count_words",
    "iter_documents", "iter_jsonl_texts", "iter_records", "latin_fraction", "merge_stats", "prepare_corpus",
    "prepare_sft", "read_chat_records", "validate_chat_record",
]
