"""The prepared-data layout (azllm.data.layout): the names the writers use, the flow's two halves, the check."""

from __future__ import annotations

import pytest

from azllm.config import DataConfig
from azllm.data.layout import CORPUS_FILES, FILES, PreparedData
from azllm.data.sft import prepare_sft


def _touch(directory, *names):
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text('{"text": "Salam"}\n', encoding="utf-8")


def test_one_directory_and_the_eval_files(tmp_path):
    _touch(tmp_path, *FILES.values())
    data = PreparedData.at(tmp_path).require(*FILES)
    assert (data.train, data.sft_validation) == (tmp_path / "train.jsonl", tmp_path / "sft_validation.jsonl")
    assert data.eval_files == {"validation": tmp_path / "validation.jsonl",
                               "other_domain": tmp_path / "other_domain.jsonl"}
    (tmp_path / "other_domain.jsonl").unlink()  # no [data] other_domain: the file is not written
    assert data.other_domain is None and data.eval_files == {"validation": tmp_path / "validation.jsonl"}


def test_the_flow_halves_hold_only_their_files(tmp_path):
    """`corpus` holds train.jsonl alone, `data` the rest (steps.artifacts.save_prepared_data): a step that
    loaded one half is told which reference to load, instead of getting a path that is not there."""
    corpus, rest = tmp_path / "corpus", tmp_path / "data"
    _touch(corpus, *CORPUS_FILES)
    _touch(rest, *(n for n in FILES.values() if n not in CORPUS_FILES))
    both = PreparedData(data_dir=rest, corpus_dir=corpus).require(*FILES)
    assert both.train == corpus / "train.jsonl" and both.validation == rest / "validation.jsonl"
    with pytest.raises(ValueError, match=r"train\.jsonl is in the prepared data's `corpus` half.*load the flow's "
                                         r"`corpus` reference"):
        _ = PreparedData(data_dir=rest).train
    with pytest.raises(ValueError, match=r"sft_train\.jsonl is in the prepared data's `data` half"):
        _ = PreparedData(corpus_dir=corpus).sft_train
    with pytest.raises(ValueError, match="needs data_dir, corpus_dir or both"):
        PreparedData()


def test_require_names_the_missing_file_and_its_writer(tmp_path):
    _touch(tmp_path, "train.jsonl", "validation.jsonl")
    data = PreparedData.at(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        data.require("train", "sft_train", "sft_validation")
    message = str(err.value)
    assert str(tmp_path / "sft_train.jsonl") in message and str(tmp_path / "sft_validation.jsonl") in message
    assert f"{tmp_path / 'train.jsonl'} (" not in message  # train.jsonl is there
    assert "azllm.data.sft.prepare_sft" in message and f"--out {tmp_path}" in message
    with pytest.raises(ValueError, match="no prepared file 'test'"):
        data.path("test")


def test_the_writers_use_the_layout_names(shared_data, tmp_path):
    """prepare_sft writes what PreparedData reads (the corpus writer: tests/test_data_corpus.py)."""
    cfg = DataConfig(sft_train=str(shared_data / "az_sft" / "train.jsonl"),
                     sft_validation=str(shared_data / "az_sft" / "validation.jsonl"))
    prepared = prepare_sft(cfg, tmp_path)
    data = PreparedData(data_dir=tmp_path).require("sft_train", "sft_validation")
    assert (prepared.train_path, prepared.validation_path) == (data.sft_train, data.sft_validation)
