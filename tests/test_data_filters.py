"""Corpus filters: text repair, PII, language ID, Gopher/FineWeb quality, counts by reason and source.

    .venv/bin/python -m pytest -q tests/test_data_filters.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azllm.config import ConfigError, DataConfig, QualityConfig, parse_config_text
from azllm.data.corpus import prepare_corpus
from azllm.data.quality import quality_reason
from azllm.data.shard_worker import drop_reason
from azllm.data.stats import filter_rows
from azllm.data.textfix import repair_text

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "az_eval_other_domain.jsonl").exists(),
                                  reason="../shared/data is not present")

AZ = ("Bakıda keçirilən beynəlxalq sərgidə yerli şirkətlər yeni məhsullarını təqdim etdilər. Sərgiyə "
      "gələn qonaqlar kənd təsərrüfatı, turizm və informasiya texnologiyaları sahəsində hazırlanmış "
      "layihələrlə tanış oldular. Təşkilatçıların sözlərinə görə, bu il iştirakçıların sayı ötən ilə "
      "nisbətən xeyli artıb və növbəti sərginin daha geniş miqyasda keçirilməsi planlaşdırılır.")
TURKISH = ("Geçen hafta sonu ailemle birlikte köydeki dedemin evine gittik. Yol boyunca yeşil tarlalar "
           "ve küçük dereler gördük. Dedem bizi bahçedeki elma ağaçlarının altında bekliyordu; hep "
           "birlikte çay içip eski günlerden konuştuk. Akşam olunca şehre dönmek hiç içimizden gelmedi.")
ENGLISH = ("The weather was mild on Saturday, so we walked along the river and stopped at a small cafe "
           "near the bridge. The owner told us that the building had once been a post office and that "
           "the old letter boxes were still kept in the cellar. We promised to come back in the spring.")


def write_jsonl(path: Path, texts: list[str]) -> str:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return str(path)


def test_repair_maps_lookalikes_fixes_mojibake_and_replaces_pii():
    text, counts = repair_text("Azәrbaycan İNSAN".lower() + " Москва. Yazın: info@misal.az, +994 50 123 45 67 "
                               "və ya (012) 555-55-55. ISBN 0333772040")
    assert text == ("azərbaycan insan Москва. Yazın: <email>, <phone> və ya <phone>. ISBN 0333772040")
    assert counts == {"lookalikes": 2, "emails": 1, "phones": 2}  # ә in a Latin word, i + U+0307
    fixed, counts = repair_text("AzÉ™rbaycan RespublikasÄ±nÄ±n paytaxtÄ± BakÄ± ÅŸÉ™hÉ™ridir.")
    assert fixed == "Azərbaycan Respublikasının paytaxtı Bakı şəhəridir."
    assert counts == {"fixed_encoding": 1}
    assert repair_text("Salam  dünya\r\n", fix_encoding=False, lookalikes=False, pii=False) == ("Salam dünya", {})


def test_language_id_keeps_azerbaijani_and_names_the_language():
    cfg = DataConfig()
    assert drop_reason(AZ, cfg, full=True) is None
    assert drop_reason(TURKISH, cfg, full=True) == "language:turkish"
    assert drop_reason(ENGLISH, cfg, full=True) == "language:english"
    assert drop_reason(TURKISH, DataConfig(langid_backend="lingua"), full=True) == "language:turkish"
    assert drop_reason(TURKISH, DataConfig(langid=False), full=True) == (  # switchable; the stop words
        "quality:gopher_qual:gopher_enough_stop_words")                    # still catch it
    assert drop_reason(TURKISH, cfg, full=False) is None  # evaluation text: basic filters only


def test_quality_filters_name_the_check():
    cfg = QualityConfig()
    assert quality_reason(AZ, cfg) is None
    assert quality_reason("\n".join([AZ.split(". ")[0] + "."] * 10), cfg) == "gopher_rep:dup_line_frac"
    assert quality_reason("Çox qısa mətn.", cfg) == "gopher_qual:gopher_short_doc"
    no_stop = " ".join(f"Sözlər{i} yazılıb." for i in range(40))
    assert quality_reason(no_stop, cfg) == "gopher_qual:gopher_enough_stop_words"
    assert quality_reason(no_stop, QualityConfig(min_stop_words=0)) is None
    assert quality_reason("Çox qısa mətn.", QualityConfig(enabled=False)) is None


def test_quality_config_checks_and_toml():
    with pytest.raises(ConfigError, match=r"\[data.quality\] dup_line_frac must be in \[0, 1\]"):
        QualityConfig(dup_line_frac=1.5)
    with pytest.raises(ConfigError, match="langid_backend='fasttext'"):
        DataConfig(langid_backend="fasttext")
    with pytest.raises(ConfigError, match="must include 'azerbaijani'"):
        DataConfig(langid_languages=("turkish", "english"))
    cfg = parse_config_text("[data]\nnum_workers = 3\n[data.quality]\ntop_n_gram_fracs = [0.5, 0.4]\n")
    assert cfg.data.num_workers == 3 and cfg.data.quality.top_n_gram_fracs == (0.5, 0.4)


def test_prepare_counts_drops_by_reason_and_source_with_examples(tmp_path):
    az_docs = [AZ.replace("Bakıda", f"Bakıda {i}-ci dəfə").replace("bu il", f"{2000 + i}-ci ildə")
               for i in range(12)]
    az = write_jsonl(tmp_path / "az.jsonl", az_docs)
    foreign = write_jsonl(tmp_path / "foreign.jsonl", [TURKISH, ENGLISH, "Çox qısa mətn, amma uzun."])
    # the 12 documents are variants of one text: without near-dedup only the n-gram check would see it
    cfg = DataConfig(corpus=(az, foreign), num_workers=1, near_dedup=False, validation_fraction=0.2,
                     decontaminate_ngram=0)
    stats = prepare_corpus(cfg, tmp_path / "out", work_dir=tmp_path / "work").stats
    assert stats["dropped_by_source"][foreign] == {"language:turkish": 1, "language:english": 1,
                                                   "quality:gopher_qual:gopher_short_doc": 1}
    assert stats["dropped_by_source"][az] == {}
    assert stats["dropped_examples"]["language:turkish"] == [TURKISH[:300]]
    assert stats["sources"][1] == {"source": foreign, "weight": 1.0, "read": 3, "kept": 0}
    rows = filter_rows(stats)
    assert {"source": foreign, "reason": "language:english", "documents": 1, "example": ENGLISH[:120]} in rows


@needs_shared
def test_shared_other_domain_news_is_kept():
    """az_eval_other_domain.jsonl (225 news items) through every training filter: >= 99 % kept."""
    cfg = DataConfig()
    reasons = [drop_reason(repair_text(json.loads(line)["text"])[0], cfg, full=True)
               for line in (SHARED / "az_eval_other_domain.jsonl").read_text(encoding="utf-8").splitlines()]
    dropped = [r for r in reasons if r]
    assert len(dropped) <= len(reasons) // 100, dropped


@needs_shared
def test_fast_repetition_filter_agrees_with_datatrove():
    """Our integer-hash GopherRepetitionFilter gives datatrove's verdict on real documents."""
    from datatrove.data import Document

    from azllm.data.quality import AzWordTokenizer, _filters, repetition_reason

    cfg = QualityConfig()
    reference = _filters(cfg)[0][1]
    lines = (SHARED / "az_corpus" / "train-00000.jsonl").read_text(encoding="utf-8").splitlines()[:600]
    docs = [json.loads(line)["text"] for line in lines] + ["salam " * 100, "a\nb\na\nb\na\na", AZ]
    ours = [repetition_reason(d, AzWordTokenizer("az").word_tokenize(d), cfg) for d in docs]
    theirs = [reference.filter(Document(text=d, id="")) for d in docs]
    assert ours == [None if v is True else v[1] for v in theirs]
    assert sum(r is not None for r in ours) > 20  # the legal codes repeat: the checks do fire
