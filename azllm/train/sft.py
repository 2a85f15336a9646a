"""LoRA supervised fine-tuning on chat records, loss on assistant tokens only.

TRL's `SFTTrainer` does the training; this module decides which records it sees.
A record longer than `max_length` is cut on the prompt side (earliest turns first,
then the user text from the left) so the final assistant answer and its
`<|eot_id|>` stay whole; a record whose answer alone does not fit is dropped.
Both are counted (the cutting is `azllm.tokenizer.chat_records.fit_record`, shared with
the evaluation's assistant-token loss). Every kept record is checked to have assistant
tokens before training starts, so a chat template without `{% generation %}` fails at once.

    >>> from azllm.config import LoraConfig, SftConfig
    >>> result = run_sft(SftConfig(max_steps=3, lora=LoraConfig(rank=4, alpha=8.0)),
    ...                  model_dir=cpt_dir, data=PreparedData(data_dir=Path("runs/data")),
    ...                  out_dir=Path("runs/sft"))
    >>> result.metrics["eval_assistant_loss_before"], result.metrics["eval_assistant_loss_after"]
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from azllm.config import SftConfig
from azllm.data.layout import PreparedData
from azllm.data.sft import Messages, read_chat_messages
from azllm.eval.loss import assistant_token_loss
from azllm.tokenizer.chat_records import fit_record, tokenize_chat

logger = logging.getLogger(__name__)


@dataclass
class SftResult:
    adapter_dir: Path
    """LoRA adapter (PEFT format) plus the tokenizer files."""
    merged_dir: Path | None
    """Adapter merged into the base model (only with `cfg.merge`)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """`train_loss_history` (per logged step), `eval_assistant_loss_before/after` (nats per assistant token)."""
    num_train_records: int = 0
    """Training records kept (after truncation and drops)."""
    num_truncated: int = 0
    num_dropped: int = 0
    num_loss_tokens: int = 0
    """Assistant tokens (the ones with loss) over the kept training records, per epoch."""


@dataclass
class PreparedRecords:
    """Chat records cut to fit `max_length`, with what was done to them."""

    records: list[Messages]
    num_truncated: int = 0
    num_dropped: int = 0
    num_loss_tokens: int = 0


# ---------------------------------------------------------------------------
# Records and masks
# ---------------------------------------------------------------------------


def prepare_records(tokenizer, records: Sequence[Messages], max_length: int) -> PreparedRecords:
    """Fit every record to `max_length` and check it keeps assistant tokens.

    Raises ValueError when no record has assistant tokens: the chat template lacks
    `{% generation %}...{% endgeneration %}` around the assistant turn.
    """
    out = PreparedRecords(records=[])
    num_empty_masks = 0
    for messages in records:
        fitted, truncated = fit_record(tokenizer, messages, max_length)
        if fitted is None:
            out.num_dropped += 1
            continue
        ids, mask = tokenize_chat(tokenizer, fitted)
        assert len(ids) <= max_length, f"record has {len(ids)} tokens after fitting, max_length={max_length}"
        num_assistant = sum(mask)
        if num_assistant == 0:
            num_empty_masks += 1
            out.num_dropped += 1
            continue
        out.records.append(fitted)
        out.num_truncated += int(truncated)
        out.num_loss_tokens += num_assistant
    if num_empty_masks and not out.records:
        raise ValueError(
            f"none of the {num_empty_masks} chat records has assistant tokens in its loss mask: the "
            "tokenizer's chat template lacks {% generation %}...{% endgeneration %} around the assistant "
            "turn. Use a tokenizer built by azllm.tokenizer (Llama 3 template with generation tags)."
        )
    if not out.records:
        raise ValueError(f"no chat record fits max_length={max_length} ({out.num_dropped} dropped); "
                         "raise sft.max_length")
    return out


# ---------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------


def _checkpoint_callback(on_checkpoint: Callable[[Path], None]):
    from transformers import TrainerCallback

    class CheckpointHook(TrainerCallback):
        """Hands each saved checkpoint directory to `on_checkpoint` (the flow registers it with Metaflow)."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                on_checkpoint(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    return CheckpointHook()


def pin_to_one_device(args) -> None:
    """Train on one device unless launched distributed (torchrun / accelerate set WORLD_SIZE).

    Without a launcher, transformers sets ``n_gpu`` to every visible GPU and would wrap the model
    in ``nn.DataParallel``, which TRL's SFTTrainer refuses ("does not support nn.DataParallel"):
    the `local` profile on any multi-GPU box. The model already sits on ``cuda:0`` (the Trainer's
    device); one GPU is what LoRA SFT of these models needs. Trainer does the same
    (``args._n_gpu = 1``) for a model split with ``device_map``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and args.n_gpu > 1:
        logger.info("sft: %d GPUs visible, no distributed launcher: training on one (cuda:0)", args.n_gpu)
        args._n_gpu = 1


def build_sft_trainer(cfg: SftConfig, model, tokenizer, records: Sequence[Messages], *, out_dir: Path,
                      on_checkpoint: Callable[[Path], None] | None = None):
    """An `SFTTrainer` with a fresh LoRA adapter on `model`, assistant-only loss, records as given.

    Checkpoints go to `out_dir/checkpoint-N`, TensorBoard logs to `out_dir/runs/`.

    `records` should already be fitted (see `prepare_records`): TRL would cut the end
    of a long record, i.e. the answer.
    """
    from datasets import Dataset
    from peft import LoraConfig as PeftLoraConfig
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    if cfg.liger and cuda:
        logger.warning("sft.liger=true: TRL's fused Liger loss may ignore the assistant-only mask; "
                       "compare the loss with liger=false before relying on it")
    report_to = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
    args = SFTConfig(
        output_dir=str(out_dir),
        assistant_only_loss=True,
        max_length=cfg.max_length,
        learning_rate=cfg.lr,
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.num_epochs,
        per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of the total steps
        save_strategy="steps",
        save_steps=cfg.save_steps or 10**9,  # 0: the end-of-training save only
        logging_steps=1,
        logging_first_step=True,
        report_to=report_to,
        bf16=cuda and torch.cuda.is_bf16_supported(including_emulation=False),
        use_liger_kernel=cfg.liger and cuda,
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataset_num_proc=None,
        disable_tqdm=True,
        dataloader_pin_memory=cuda,
    )
    peft_config = PeftLoraConfig(
        r=cfg.lora.rank,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        task_type="CAUSAL_LM",
    )
    pin_to_one_device(args)
    dataset = Dataset.from_list([{"messages": m} for m in records])
    callbacks = [_checkpoint_callback(on_checkpoint)] if on_checkpoint else None
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=peft_config, callbacks=callbacks)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def run_sft(cfg: SftConfig, *, model_dir: Path, data: PreparedData, out_dir: Path,
            resume_from_checkpoint: str | bool | None = None,
            on_checkpoint: Callable[[Path], None] | None = None) -> SftResult:
    """LoRA SFT of the model in `model_dir` (with its tokenizer: a self-contained HF directory) on
    `data`'s sft_train / sft_validation; adapter (and merged model if `cfg.merge`) under `out_dir`.

    `on_checkpoint(path)` is called after each trainer checkpoint is written (every
    `cfg.save_steps`, and at the end). `resume_from_checkpoint` goes to `trainer.train`.
    """
    from azllm.model.device import autocast_for, select_placement
    from azllm.model.load import load_model
    from azllm.tokenizer.load import load_tokenizer

    data.require("sft_train", "sft_validation")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # -- tokenizer and records ------------------------------------------------
    tokenizer = load_tokenizer(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train = prepare_records(tokenizer, read_chat_messages(data.sft_train), cfg.max_length)
    validation = read_chat_messages(data.sft_validation)
    logger.info("sft: %d training records (%d truncated, %d dropped), %d assistant tokens; %d validation records",
                len(train.records), train.num_truncated, train.num_dropped, train.num_loss_tokens,
                len(validation))
    batch = cfg.micro_batch_size * cfg.grad_accum_steps
    logger.info("sft: %d records per optimizer step, %s", batch,
                f"{cfg.max_steps} steps" if cfg.max_steps > 0 else
                f"{cfg.num_epochs} epochs = {math.ceil(len(train.records) * cfg.num_epochs / batch)} steps")

    # -- model and trainer ----------------------------------------------------
    # fp32 weights (what the trainer trains) moved to the step's device (no device_map: the Trainer
    # would take it for model parallelism); scored in the device's bf16/fp16 through autocast
    placement = select_placement()
    model = load_model(model_dir).to(placement.device)
    with autocast_for(placement):
        loss_before = assistant_token_loss(model, tokenizer, validation, max_length=cfg.max_length)
    trainer = build_sft_trainer(cfg, model, tokenizer, train.records, out_dir=out_dir,
                                on_checkpoint=on_checkpoint)

    # -- train ----------------------------------------------------------------
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    peft_model = trainer.model
    with autocast_for(placement):
        loss_after = assistant_token_loss(peft_model, tokenizer, validation, max_length=cfg.max_length)

    # -- save -----------------------------------------------------------------
    adapter_dir = out_dir / "adapter"
    peft_model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    merged_dir = None
    if cfg.merge:
        merged_dir = out_dir / "merged"
        merged = peft_model.merge_and_unload()
        merged.save_pretrained(merged_dir)
        tokenizer.save_pretrained(merged_dir)

    history = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
    metrics = {
        "train_loss_history": history,
        "eval_assistant_loss_before": loss_before,
        "eval_assistant_loss_after": loss_after,
        "num_validation_records": len(validation),
        "global_step": trainer.state.global_step,
    }
    return SftResult(adapter_dir=adapter_dir, merged_dir=merged_dir, metrics=metrics,
                     num_train_records=len(train.records), num_truncated=train.num_truncated,
                     num_dropped=train.num_dropped, num_loss_tokens=train.num_loss_tokens)
