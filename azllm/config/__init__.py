"""azllm.config: the preset's dataclasses, and reading presets into them (docs/DESIGN.md §3).

- :mod:`azllm.config.sections` (and :mod:`azllm.config.data` for ``[data]``): one frozen
  dataclass per preset section, with its checks (:mod:`azllm.config.errors`: ``ConfigError``
  names the key and the fix);
- :mod:`azllm.config.loading`: TOML, ``inherit``, strict types, the Metaflow ``Config`` parser;
- :mod:`azllm.config.paths`: ``PROJECT_ROOT``, ``resolve_path``, ``cache_dir``,
  ``ordinary_permissions`` (umask modes for outputs built in a temporary directory).

Everything is re-exported here, so callers write ``from azllm.config import CptConfig,
load_pipeline_config``.
"""

from azllm.config.data import DataConfig, QualityConfig
from azllm.config.errors import ConfigError
from azllm.config.loading import (
    config_from_dict,
    load_pipeline_config,
    parse_config,
    parse_config_text,
    section_from_dict,
)
from azllm.config.paths import PROJECT_ROOT, cache_dir, ordinary_permissions, resolve_path
from azllm.config.sections import (
    ARMS,
    DEFAULT_PROMPTS,
    INIT_METHODS,
    ComputeConfig,
    CptConfig,
    CptRuntime,
    CustomTaskConfig,
    EvalConfig,
    LoraConfig,
    ModelConfig,
    PhaseConfig,
    PipelineConfig,
    PreferenceConfig,
    SftConfig,
    TinyModelConfig,
    TokenizerConfig,
)

__all__ = [
    "ARMS", "DEFAULT_PROMPTS", "INIT_METHODS", "PROJECT_ROOT", "ComputeConfig", "ConfigError", "CptConfig",
    "CptRuntime", "CustomTaskConfig", "DataConfig", "EvalConfig", "LoraConfig", "ModelConfig", "PhaseConfig",
    "PipelineConfig",
    "PreferenceConfig", "QualityConfig", "SftConfig",
    "TinyModelConfig", "TokenizerConfig", "cache_dir", "config_from_dict", "load_pipeline_config",
    "ordinary_permissions", "parse_config", "parse_config_text", "resolve_path", "section_from_dict",
]
