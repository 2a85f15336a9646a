"""Config presets and their errors: `pytest -q tests/test_config.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

from azllm.config import ConfigError, load_pipeline_config, parse_config, parse_config_text

PRESETS = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "configs").glob("*.toml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads(preset):
    cfg = load_pipeline_config(preset)
    assert cfg.name == preset
    assert cfg.cpt.arms


def test_case_study_numbers_in_llama_preset():
    cfg = load_pipeline_config("llama-3.2-1b")
    assert (cfg.cpt.block_size, cfg.cpt.embeddings.lr, cfg.cpt.embeddings.max_steps) == (2048, 3.2e-3, 5000)
    assert (cfg.cpt.full.lr, cfg.cpt.full.max_steps, cfg.cpt.full.micro_batch_size) == (2.4e-3, 15000, 14)
    assert (cfg.sft.lora.rank, cfg.sft.lora.alpha, cfg.sft.lora.dropout) == (64, 28.0, 0.05)
    assert (cfg.sft.max_length, cfg.sft.lr) == (1024, 1e-4)
    assert set(cfg.sft.lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj",
                                                "gate_proj", "up_proj", "down_proj"}


def test_inherit_layers_over_parent():
    cfg = load_pipeline_config("llama-3.1-8b")
    assert cfg.model.name == "meta-llama/Llama-3.1-8B"
    assert cfg.cpt.block_size == 2048  # from llama-3.2-1b


def test_unknown_key_names_key_and_file():
    with pytest.raises(ConfigError, match=r"my\.toml.*\[cpt\] unknown key\(s\) \['blok_size'\]"):
        parse_config_text("[cpt]\nblok_size = 3\n", source="my.toml")


@pytest.mark.parametrize("key", ["liger", "mixed_precision", "seed", "activation_checkpointing", "compile",
                                 "sharding", "collective_timeout_s", "allow_config_change_on_resume"])
def test_a_runtime_key_left_in_cpt_names_its_new_place(key):
    """An older preset's ``[cpt] liger = true``: the error names the key and ``[cpt.runtime]``."""
    with pytest.raises(ConfigError, match=rf"old\.toml: \[cpt\] {key}: .*\[cpt\.runtime\].*`\[cpt\.runtime\] {key}`"):
        parse_config_text(f"[cpt]\n{key} = 1\n", source="old.toml")
    runtime = parse_config_text('[cpt.runtime]\nliger = false\nsharding = "fsdp"\n').cpt.runtime
    assert (runtime.liger, runtime.sharding) == (False, "fsdp")


def test_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['trainer'\]"):
        parse_config_text("[trainer]\nx = 1\n")


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"cpt\.embeddings\.max_steps must be int, got str"):
        parse_config_text('[cpt.embeddings]\nmax_steps = "ten"\n')
    with pytest.raises(ConfigError, match=r"data\.corpus must be an array"):
        parse_config_text('[data]\ncorpus = "a.jsonl"\n')


def test_cross_field_checks():
    with pytest.raises(ConfigError, match=r"arms .*'unknown'.*one of"):
        parse_config_text('[cpt]\narms = ["unknown"]\n')
    with pytest.raises(ConfigError, match="select_arm"):
        parse_config_text('[cpt]\narms = ["replace"]\nselect_arm = "extend"\n')
    with pytest.raises(ConfigError, match="vocab_size=100 is smaller"):
        parse_config_text("[tokenizer]\nvocab_size = 100\n")
    with pytest.raises(ConfigError, match="corpus_weights has 2 entries"):
        parse_config_text('[data]\ncorpus = ["a"]\ncorpus_weights = [1.0, 2.0]\n')
    with pytest.raises(ConfigError, match="tiny-random.*tokenizer"):
        parse_config_text('[model]\nname = "tiny-random"\n')
    with pytest.raises(ConfigError, match=r"\[compute\] data_workers must be >= 1.*got 0"):
        parse_config_text("[compute]\ndata_workers = 0\n")


def test_bad_toml_and_missing_file():
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config_text("[cpt\n", source="broken.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_pipeline_config("/nonexistent/preset.toml")


def test_metaflow_parser_returns_plain_dict_round_trip():
    raw = parse_config((Path(__file__).resolve().parent.parent / "configs" / "demo.toml").read_text())
    assert isinstance(raw["cpt"]["arms"], list)
    assert load_pipeline_config(raw) == load_pipeline_config("demo")
