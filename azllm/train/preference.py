"""The preference stage after SFT: DPO or GRPO on the SFT adapter, with TRL's own trainers.

`[preference] method` picks it (docs/DESIGN.md §8.1):

- **dpo**: TRL `DPOTrainer` on (prompt, chosen, rejected) pairs. The user's own pairs
  (`pairs_path`, `azllm.data.preference`) or, without them, pairs built from the run: for each
  SFT training prompt the reference answer is `chosen` and the SFT model's own sampled answer
  is `rejected` when it is worse by the margin (`azllm.eval.rewards.answer_verdict`: not
  Azerbaijani, a repeated word 4-gram, or chrF below 100 - margin); other prompts are skipped
  and counted. Pairs whose prompt or answer exceeds the length limits are skipped and counted
  here, before the trainer sees them.
- **grpo**: TRL `GRPOTrainer`, on-policy: `num_generations` sampled answers per SFT training
  prompt, scored by the verifiable rewards of `azllm.eval.rewards` (Azerbaijani, no repeated
  4-gram, chrF against the reference, `<|eot_id|>` within the limit) with the preset's weights;
  TRL logs each reward (`rewards/<name>/mean`) to TensorBoard.

Both continue training the SFT LoRA adapter (loaded trainable, PEFT's "default" adapter); DPO's
reference model is TRL's frozen copy of it (adapter "ref"), so the policy is pulled towards the
SFT model, not the CPT one. Only "default" is saved: the result is an adapter of the same shape
as SFT's, which evaluation, `azllm export` and `azllm chat` load the same way.

    >>> from azllm.config import PreferenceConfig
    >>> result = run_preference(PreferenceConfig(method="dpo", max_steps=4), model_dir=cpt_dir,
    ...                         adapter_dir=sft_adapter, data=PreparedData(data_dir=Path("runs/data")),
    ...                         out_dir=Path("runs/preference"))
    >>> result.metrics["train_history"][-1], result.pairs.skipped
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from azllm.config import PreferenceConfig, resolve_path
from azllm.data.layout import PreparedData
from azllm.data.preference import PreferencePairs, read_preference_pairs
from azllm.data.sft import Messages, read_chat_messages
from azllm.eval.generation import stop_token_ids
from azllm.eval.rewards import (
    answer_verdict,
    azerbaijani_reward,
    chrf_reward,
    eot_reward,
    no_repetition_reward,
)
from azllm.train.sft import _checkpoint_callback

logger = logging.getLogger(__name__)

EOT_TOKEN = "<|eot_id|>"
PAIRS_FILE = "pairs.jsonl"
LOGGED_KEYS = ("loss", "reward", "reward_std", "rewards/chosen", "rewards/rejected", "rewards/margins",
               "rewards/accuracies", "completions/mean_length", "completions/clipped_ratio")
"""What the trainers log per step that the result keeps (plus every `rewards/<name>/mean` of GRPO)."""


@dataclass
class PreferenceResult:
    method: str
    adapter_dir: Path
    """The trained adapter (PEFT format, the SFT adapter's shape) plus the tokenizer files."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """`train_history` (per logged step: loss, rewards ...), `global_step`, `seconds`, and for DPO
    `num_pairs`, `pairs_source`, `pair_margin`, `skipped` (by reason), `skipped_examples`."""
    pairs: PreferencePairs | None = None
    pairs_path: Path | None = None
    """DPO: the pairs trained on, as JSONL, alone in its directory (`out_dir/pairs/`; the flow stores it)."""


# ---------------------------------------------------------------------------
# Prompts, sampling, pairs
# ---------------------------------------------------------------------------


def prompt_and_reference(messages: Messages) -> tuple[Messages, str]:
    """A chat record split into the conversation before its final answer, and that answer."""
    return messages[:-1], messages[-1]["content"]


def _prompt_ids(tokenizer, prompt: Messages) -> list[int]:
    return list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"])


def _answer_length(tokenizer, prompt: Messages, answer: str, num_prompt_ids: int) -> int:
    full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], tokenize=True,
                                         return_dict=True)["input_ids"]
    return len(full) - num_prompt_ids


@torch.inference_mode()
def sample_answers(model, tokenizer, prompts: Sequence[Messages], *, max_new_tokens: int, temperature: float,
                   seed: int, batch_size: int = 8) -> list[str]:
    """One sampled answer per prompt (left-padded batches, stopped at end of turn), decoded without specials."""
    device = next(model.parameters()).device
    stops = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    answers = []
    for start in range(0, len(prompts), batch_size):
        ids = [_prompt_ids(tokenizer, p) for p in prompts[start:start + batch_size]]
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
        out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             do_sample=True, temperature=temperature, top_k=0, eos_token_id=stops, pad_token_id=pad)
        answers += [t.strip() for t in tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]
    if was_training:
        model.train()
    return answers


def fit_pairs(tokenizer, pairs: PreferencePairs, cfg: PreferenceConfig) -> PreferencePairs:
    """Skip (and count) pairs whose prompt or answers exceed `max_prompt_length` / `max_completion_length`,
    so the trainer never cuts an answer or sees a prompt that fills the sequence."""
    out = PreferencePairs(pairs=[], skipped=pairs.skipped.copy(), examples=list(pairs.examples))
    for pair in pairs.pairs:
        n_prompt = len(_prompt_ids(tokenizer, pair["prompt"]))
        if n_prompt > cfg.max_prompt_length:
            out.skip(pair["where"], f"prompt longer than max_prompt_length={cfg.max_prompt_length} tokens")
            continue
        longest = max(_answer_length(tokenizer, pair["prompt"], pair[k], n_prompt) for k in ("chosen", "rejected"))
        if longest > cfg.max_completion_length:
            out.skip(pair["where"], f"answer longer than max_completion_length={cfg.max_completion_length} tokens")
            continue
        out.pairs.append(pair)
    return out


def build_pairs_from_run(model, tokenizer, records: Sequence[Messages], cfg: PreferenceConfig) -> PreferencePairs:
    """chosen = the reference answer, rejected = the model's sampled answer when `answer_verdict` finds it
    worse by `cfg.pair_margin`; prompts whose sample is as good are skipped and counted."""
    out = PreferencePairs(pairs=[])
    candidates = []
    for i, messages in enumerate(records[:cfg.pair_prompts or None]):
        prompt, reference = prompt_and_reference(messages)
        if len(_prompt_ids(tokenizer, prompt)) > cfg.max_prompt_length:
            out.skip(f"sft_train:{i + 1}", f"prompt longer than max_prompt_length={cfg.max_prompt_length} tokens")
            continue
        candidates.append((f"sft_train:{i + 1}", prompt, reference))
    answers = sample_answers(model, tokenizer, [p for _, p, _ in candidates],
                             max_new_tokens=cfg.max_completion_length, temperature=cfg.temperature, seed=cfg.seed)
    for (where, prompt, reference), answer in zip(candidates, answers, strict=True):
        why = answer_verdict(answer, reference, cfg.pair_margin)
        if why is None:
            out.skip(where, f"sampled answer within {cfg.pair_margin:g} chrF of the reference")
        elif not answer:
            out.skip(where, "empty sampled answer")
        else:
            out.pairs.append({"prompt": prompt, "chosen": reference, "rejected": answer, "where": where,
                              "why_rejected": why})
    return out


def write_pairs(pairs: PreferencePairs, path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs.pairs)
    return path


# ---------------------------------------------------------------------------
# Rewards (TRL's reward-function signature)
# ---------------------------------------------------------------------------


def _text(completion: Any) -> str:
    """A completion as text: TRL passes strings, or [{"role": "assistant", "content": ...}] for chat prompts."""
    return completion if isinstance(completion, str) else completion[-1]["content"]


def reward_functions(tokenizer, cfg: PreferenceConfig) -> list[Callable[..., list[float]]]:
    """The GRPO rewards with nonzero weight, in `cfg.reward_weights` order; each is named after its reward
    (TRL logs `rewards/<name>/mean`). The dataset's `reference` column reaches `chrf`."""
    eot_id = tokenizer.convert_tokens_to_ids(EOT_TOKEN)

    def azerbaijani(completions, **kwargs):
        return [azerbaijani_reward(_text(c)) for c in completions]

    def no_repetition(completions, **kwargs):
        return [no_repetition_reward(_text(c)) for c in completions]

    def chrf(completions, reference, **kwargs):
        return [chrf_reward(_text(c), r) for c, r in zip(completions, reference, strict=True)]

    def eot(completions, completion_ids, **kwargs):
        return [eot_reward(ids, eot_id, cfg.max_completion_length) for ids in completion_ids]

    funcs = {"azerbaijani": azerbaijani, "no_repetition": no_repetition, "chrf": chrf, "eot": eot}
    return [funcs[name] for name, w in cfg.reward_weights.items() if w > 0]


# ---------------------------------------------------------------------------
# Trainers
# ---------------------------------------------------------------------------


def _common_args(cfg: PreferenceConfig, out_dir: Path) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return dict(
        output_dir=str(out_dir), learning_rate=cfg.lr, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.micro_batch_size, gradient_accumulation_steps=cfg.grad_accum_steps,
        save_strategy="steps", save_steps=cfg.save_steps or 10**9, logging_steps=1, logging_first_step=True,
        report_to="tensorboard" if importlib.util.find_spec("tensorboard") else "none",
        bf16=cuda and torch.cuda.is_bf16_supported(), seed=cfg.seed, data_seed=cfg.seed, disable_tqdm=True,
        dataloader_pin_memory=cuda, lr_scheduler_type="constant")


def build_dpo_trainer(cfg: PreferenceConfig, model, tokenizer, pairs: Sequence[dict[str, Any]], *, out_dir: Path,
                      on_checkpoint: Callable[[Path], None] | None = None):
    """A `DPOTrainer` on `model` (a PeftModel whose trainable "default" adapter is the SFT one; TRL copies it
    to a frozen "ref" adapter for the reference log-probs), conversational pairs as given (already fitted)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(**_common_args(cfg, out_dir), beta=cfg.beta,
                     max_length=cfg.max_prompt_length + cfg.max_completion_length, dataset_num_proc=None)
    dataset = Dataset.from_list([{"prompt": p["prompt"], "chosen": [{"role": "assistant", "content": p["chosen"]}],
                                  "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs])
    callbacks = [_checkpoint_callback(on_checkpoint)] if on_checkpoint else None
    return DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)


def build_grpo_trainer(cfg: PreferenceConfig, model, tokenizer, records: Sequence[Messages], *, out_dir: Path,
                       on_checkpoint: Callable[[Path], None] | None = None):
    """A `GRPOTrainer` on `model` (the trainable SFT adapter; KL beta 0, TRL's default, so no reference model),
    prompts = the records' conversations before their final answer, `reference` = that answer."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    stops = stop_token_ids(tokenizer)
    model.generation_config.eos_token_id = stops  # TRL stops and masks at these: <|eot_id|> ends a turn
    funcs = reward_functions(tokenizer, cfg)
    weights = [w for w in cfg.reward_weights.values() if w > 0]
    args = GRPOConfig(**_common_args(cfg, out_dir), num_generations=cfg.num_generations,
                      max_completion_length=cfg.max_completion_length, temperature=cfg.temperature,
                      reward_weights=weights, beta=0.0, shuffle_dataset=True)
    rows = []
    for messages in records[:cfg.grpo_prompts or None]:
        prompt, reference = prompt_and_reference(messages)
        if len(_prompt_ids(tokenizer, prompt)) <= cfg.max_prompt_length:
            rows.append({"prompt": prompt, "reference": reference})
    if not rows:
        raise ValueError(f"no SFT training prompt fits [preference] max_prompt_length={cfg.max_prompt_length} "
                         "tokens; raise it")
    callbacks = [_checkpoint_callback(on_checkpoint)] if on_checkpoint else None
    return GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=Dataset.from_list(rows),
                       processing_class=tokenizer, callbacks=callbacks)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def load_policy(model_dir: Path, adapter_dir: Path):
    """The CPT model with the SFT adapter loaded trainable, fp32 on the step's device."""
    from peft import PeftModel

    from azllm.model.device import select_placement
    from azllm.model.load import load_model

    model = load_model(model_dir).to(select_placement().device)
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)


def _history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for entry in log_history:
        row = {k: v for k, v in entry.items() if k in LOGGED_KEYS or (k.startswith("rewards/") and k.endswith("/mean"))}
        if row and "step" in entry:
            rows.append({"step": entry["step"], **row})
    return rows


def run_preference(cfg: PreferenceConfig, *, model_dir: Path, adapter_dir: Path, data: PreparedData,
                   out_dir: Path, resume_from_checkpoint: str | bool | None = None,
                   on_checkpoint: Callable[[Path], None] | None = None) -> PreferenceResult:
    """Train the SFT adapter in `adapter_dir` (on `model_dir`, whose tokenizer it uses) further with
    `cfg.method` on `data`'s sft_train prompts; the new adapter under `out_dir`.

    `on_checkpoint(path)` gets every trainer checkpoint (every `cfg.save_steps`, and the end);
    `resume_from_checkpoint` goes to `trainer.train`."""
    from azllm.tokenizer.load import load_tokenizer

    if cfg.method == "none":
        raise ValueError("[preference] method='none': there is nothing to train; the flow's preference "
                         "step passes through without calling run_preference")
    data.require("sft_train")
    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # -- tokenizer, model, data -----------------------------------------------
    tokenizer = load_tokenizer(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_policy(model_dir, adapter_dir)
    records = read_chat_messages(data.sft_train)
    metrics: dict[str, Any] = {"method": cfg.method}
    pairs = pairs_path = None
    if cfg.method == "dpo":
        if cfg.pairs_path:
            source = resolve_path(cfg.pairs_path)
            pairs = fit_pairs(tokenizer, read_preference_pairs(source), cfg)
        else:
            source = "run"
            pairs = build_pairs_from_run(model, tokenizer, records, cfg)
        if not pairs.pairs:
            raise ValueError(f"[preference] no DPO pair left ({dict(pairs.skipped)}; e.g. {pairs.examples[:3]}): "
                             + ("lower pair_margin, raise pair_prompts, or give pairs_path"
                                if source == "run" else "raise max_prompt_length/max_completion_length"))
        (out_dir / "pairs").mkdir(exist_ok=True)
        pairs_path = write_pairs(pairs, out_dir / "pairs" / PAIRS_FILE)
        metrics.update(num_pairs=len(pairs.pairs), pairs_source=source, pair_margin=cfg.pair_margin,
                       skipped=dict(pairs.skipped), skipped_examples=list(pairs.examples))
        logger.info("preference: %d DPO pairs from %s, %d skipped %s", len(pairs.pairs), source,
                    sum(pairs.skipped.values()), dict(pairs.skipped))
        trainer = build_dpo_trainer(cfg, model, tokenizer, pairs.pairs, out_dir=out_dir, on_checkpoint=on_checkpoint)
    else:
        trainer = build_grpo_trainer(cfg, model, tokenizer, records, out_dir=out_dir, on_checkpoint=on_checkpoint)
        metrics.update(reward_weights=cfg.reward_weights, num_prompts=len(trainer.train_dataset))

    # -- train and save -------------------------------------------------------
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    adapter_out = out_dir / "adapter"
    trainer.model.save_pretrained(adapter_out, selected_adapters=["default"])
    tokenizer.save_pretrained(adapter_out)
    metrics.update(train_history=_history(trainer.state.log_history), global_step=trainer.state.global_step,
                   seconds=time.monotonic() - started)
    return PreferenceResult(method=cfg.method, adapter_dir=adapter_out, metrics=metrics, pairs=pairs,
                            pairs_path=pairs_path)
