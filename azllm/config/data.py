"""The `[data]` section and its `[data.quality]` thresholds: what preparation keeps (docs/DESIGN.md §4).

Split from :mod:`azllm.config.sections` to keep each file small; re-exported by :mod:`azllm.config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from azllm.config.errors import ConfigError, check_fraction


@dataclass(frozen=True, kw_only=True)
class QualityConfig:
    """Thresholds from FineWeb-2 `configs/azj_Latn.yml` (docs/DESIGN.md §4) unless said otherwise.

    Applied through datatrove's GopherRepetitionFilter, FineWebQualityFilter and
    GopherQualityFilter, set as in FineWeb-2's `fineweb-2-pipeline.py`.
    """

    enabled: bool = True
    """false = none of the filters below."""
    dup_line_frac: float = 0.879
    """Duplicated lines, fraction (azj_Latn.yml `dup_line_frac`)."""
    top_n_gram_fracs: tuple[float, ...] = (0.514, 0.475, 0.405)
    """Highest char fraction of the top word n-gram, n = 2, 3, 4 ... (azj_Latn.yml `top_n_grams`)."""
    dup_n_gram_fracs: tuple[float, ...] = (0.3, 0.271, 0.252, 0.227, 0.202, 0.179)
    """Highest char fraction in duplicated word n-grams, n = 5, 6 ... (azj_Latn.yml `dup_n_grams`)."""
    line_punct_thr: float = 0.188
    """Lowest fraction of lines ending in punctuation (azj_Latn.yml `line_punct_thr`)."""
    new_line_ratio: float = 0.179
    """Highest newlines per word (azj_Latn.yml `new_line_ratio`)."""
    char_duplicates_ratio: float = 0.1
    """Highest share of characters in duplicated lines (fineweb-2-pipeline.py: 0.1)."""
    min_words: int = 10
    """Fewest non-symbol words. Tuned: datatrove's GopherQualityFilter default 50 (kept by FineWeb-2)
    dropped 23 of the 225 shared other-domain news items and 1,052 short legal articles."""
    min_words_for_ratios: int = 30
    """Documents with fewer words pass the ratio checks (repetition, punctuation, stop words) unchecked.
    Ours: FineWeb-2 has no setting for them (Gopher drops them at 50 words), and on one sentence a
    top-4-gram share or a stop-word count says nothing: 7 of the 225 shared news items, all single
    sentences, failed them."""
    min_avg_word_length: float = 3.0
    max_avg_word_length: float = 13.0
    """Mean word length range in characters (azj_Latn.yml `min/max_avg_word_length`)."""
    max_non_alpha_words_ratio: float = 0.5
    """Lowest share of tokens holding a letter (datatrove's name). Tuned: azj_Latn.yml's 0.725 dropped
    9 of the 118 demo documents (tariffs: prices, quotes) with our punctuation-splitting tokenizer."""
    min_stop_words: int = 1
    """Distinct stop words that must occur. Tuned: fineweb-2-pipeline.py's 2 dropped 10 of the 225
    shared news items (short ones); the list is azj_Latn.yml `stopwords`."""
    stop_words: tuple[str, ...] = ("və", "ilə", "ildə", "bir", "bu", "azərbaycan", "olan", "üçün", "sonra",
                                   "də", "kimi", "il", "isə", "o", "görə", "da", "tərəfindən", "çox", "ki",
                                   "onun", "edir", "idi")

    def __post_init__(self) -> None:
        for key in ("dup_line_frac", "line_punct_thr", "new_line_ratio", "char_duplicates_ratio",
                    "max_non_alpha_words_ratio"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"[data.quality] {key} must be in [0, 1], got {getattr(self, key)}")
        if not all(0 < f <= 1 for f in self.top_n_gram_fracs + self.dup_n_gram_fracs):
            raise ConfigError("[data.quality] top_n_gram_fracs and dup_n_gram_fracs must each be in (0, 1], "
                              f"got {list(self.top_n_gram_fracs)}, {list(self.dup_n_gram_fracs)}")
        if not 0 < self.min_avg_word_length < self.max_avg_word_length:
            raise ConfigError("[data.quality] need 0 < min_avg_word_length < max_avg_word_length, got "
                              f"{self.min_avg_word_length}, {self.max_avg_word_length}")
        if min(self.min_words, self.min_stop_words, self.min_words_for_ratios) < 0:
            raise ConfigError("[data.quality] min_words, min_words_for_ratios and min_stop_words must be >= 0")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    corpus: tuple[str, ...] = ("data/sample/corpus.jsonl",)
    """Training text: files, directories, globs (.jsonl/.txt/.parquet, optionally .gz), s3:// URLs or HF dataset ids."""
    corpus_weights: tuple[float, ...] = ()
    """Per-source repeat factor, aligned with `corpus` (e.g. 3.0 up-weights a small diverse source). Empty = all 1."""
    text_field: str = "text"
    """JSON/parquet field holding the document text."""
    validation: tuple[str, ...] = ()
    """Explicit validation sources; empty = hold out `validation_fraction` of the corpus."""
    validation_fraction: float = 0.05
    other_domain: str = ""
    """Optional second evaluation file from another domain (BPB is reported on it too)."""
    min_chars: int = 20
    """Documents shorter than this after cleaning are dropped."""
    min_latin_fraction: float = 0.9
    """Share of letters that must be Latin script (Azerbaijani uses Latin since 1991)."""
    max_documents: int = 0
    """Cap on training documents read (0 = no cap); for quick runs."""
    skip_bad_lines: bool = False
    """Skip and count malformed lines instead of failing at the first one."""
    sft_train: str = "data/sample/sft.jsonl"
    """Chat records, one {"messages": [...]} per line (or an HF dataset id)."""
    sft_validation: str = ""
    """Held-out chat records; empty = hold out `sft_validation_fraction` of sft_train."""
    sft_validation_fraction: float = 0.1
    seed: int = 1234
    shard_mb: float = 256.0
    """Sources are cut into shards of about this many MB (uncompressed local JSONL/txt at line
    boundaries; other files are one shard each); a finished shard is kept and skipped on a rerun."""
    num_workers: int = 0
    """Processes filtering shards in parallel; 0 = the CPUs this process may use (cgroup limit)."""
    work_dir: str = ""
    """Where finished shards are kept between attempts; empty = AZLLM_CACHE/prepare."""
    max_validation_documents: int = 0
    """Cap on hash-held-out validation documents (the lowest split hashes win); 0 = no cap."""
    fix_encoding: bool = True
    """Repair mojibake with ftfy before NFC (as FineWeb-2's FTFYFormatter)."""
    map_lookalikes: bool = True
    """Cyrillic schwa (U+04D9/U+04D8) and other look-alikes inside Latin words -> Latin Azerbaijani letters."""
    replace_pii: bool = True
    """E-mail addresses -> `<email>`, phone numbers -> `<phone>`."""
    langid: bool = True
    """Keep only documents identified as Azerbaijani among `langid_languages`."""
    langid_backend: str = "py3langid"
    """py3langid (default: more accurate and faster on our data, see azllm/data/langid.py) or lingua."""
    langid_languages: tuple[str, ...] = ("azerbaijani", "turkish", "english", "russian", "kazakh")
    """Candidate languages, lower-case English names; must include azerbaijani."""
    min_language_score: float = 0.5
    """Lowest probability of Azerbaijani among the candidates to keep a document (FineWeb-2 keeps
    GlotLID scores >= 0.3, azj_Latn.yml `language_score`; another model, so not the same number)."""
    langid_chars: int = 1000
    """Characters of each document given to the language identifier (speed)."""
    quality: QualityConfig = field(default_factory=QualityConfig)
    """Gopher/FineWeb repetition and quality filters ([data.quality])."""
    near_dedup: bool = True
    """MinHash near-duplicate removal across all shards (FineWeb-2: word 5-grams, 14 bands x 8 rows)."""
    minhash_ngram: int = 5
    minhash_bands: int = 14
    minhash_rows: int = 8
    decontaminate_ngram: int = 13
    """Train documents sharing a word n-gram this long with validation/other-domain/SFT-validation
    text are dropped (GPT-3's 13-gram decontamination); 0 = off."""

    def __post_init__(self) -> None:
        if not self.corpus:
            raise ConfigError("[data] corpus must name at least one source")
        if self.corpus_weights and len(self.corpus_weights) != len(self.corpus):
            raise ConfigError(
                f"[data] corpus_weights has {len(self.corpus_weights)} entries but corpus has "
                f"{len(self.corpus)}; give one weight per source or leave it empty"
            )
        if any(w <= 0 for w in self.corpus_weights):
            raise ConfigError(f"[data] corpus_weights must all be > 0, got {list(self.corpus_weights)}")
        check_fraction("data.validation_fraction", self.validation_fraction, allow_zero=bool(self.validation))
        check_fraction("data.sft_validation_fraction", self.sft_validation_fraction,
                        allow_zero=bool(self.sft_validation))
        check_fraction("data.min_latin_fraction", self.min_latin_fraction, allow_zero=True)
        check_fraction("data.min_language_score", self.min_language_score, allow_zero=True)
        if self.shard_mb <= 0:
            raise ConfigError(f"[data] shard_mb must be > 0, got {self.shard_mb}")
        for key in ("minhash_ngram", "minhash_bands", "minhash_rows", "langid_chars"):
            if getattr(self, key) < 1:
                raise ConfigError(f"[data] {key} must be >= 1, got {getattr(self, key)}")
        for key in ("num_workers", "max_validation_documents", "decontaminate_ngram", "min_chars", "max_documents",
                    "seed"):
            if getattr(self, key) < 0:
                note = {"num_workers": " (0 = auto)", "max_validation_documents": " (0 = off)",
                        "max_documents": " (0 = all)", "decontaminate_ngram": " (0 = off)"}.get(key, "")
                raise ConfigError(f"[data] {key} must be >= 0{note}, "
                                  f"got {getattr(self, key)}")
        if self.langid_backend not in ("py3langid", "lingua"):
            raise ConfigError(f"[data] langid_backend={self.langid_backend!r}; accepted: py3langid, lingua")
        if self.langid and "azerbaijani" not in self.langid_languages:
            raise ConfigError(f"[data] langid_languages {list(self.langid_languages)} must include "
                              "'azerbaijani' (or set langid = false)")
