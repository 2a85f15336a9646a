"""azllm.data: read, repair, filter, dedup, mix and split the corpus; the SFT chat records.

The flow's `plan_data`, `prepare_shards` (one task per group of shards) and `join_data` steps
call the three parts of :func:`prepare_corpus` (`corpus.plan_corpus`, `prepare_group`,
`join_corpus`) and :func:`prepare_sft`. The corpus is cut into shards (`shards`, grouped
for fan-out in `groups`) filtered by a process pool (`shard_worker`: ftfy/NFC/look-alikes/PII
in `textfix`, language ID in `langid`, Gopher/FineWeb filters in `quality`), then
deduplicated across shards (`dedup.dedup_shards`: exact + MinHash; 13-gram decontamination) and
mixed (`mix`) into the files of :class:`~azllm.data.layout.PreparedData` (`layout`); only the
current line, per-document hashes and MinHash signatures are held in memory.
"""

from azllm.data.clean import clean_text, count_words, latin_fraction
from azllm.data.corpus import PreparedCorpus, prepare_corpus
from azllm.data.layout import PreparedData
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
from azllm.data.stats import corpus_stats, filter_rows, merge_stats

__all__ = [
    "BadLines", "DataError", "PreparedCorpus", "PreparedData", "PreparedSft", "clean_text", "corpus_stats",
    "count_words", "filter_rows",
    "iter_documents", "iter_jsonl_texts", "iter_records", "latin_fraction", "merge_stats", "prepare_corpus",
    "prepare_sft", "read_chat_records", "validate_chat_record",
]
