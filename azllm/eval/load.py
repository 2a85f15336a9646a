"""A model (optionally with its LoRA adapter) and its tokenizer, ready for scoring or generation.

Shared by BPB, the evaluation report, `azllm eval bpb` and `azllm chat`. The model goes
where the step's hardware says (`azllm.model.device.select_placement`: bf16 on CUDA,
fp32 on CPU) unless a placement is given.

    >>> model, tokenizer = load_model_and_tokenizer(cpt_dir, tok_dir, adapter_dir=sft_dir / "adapter")
"""

from __future__ import annotations

from pathlib import Path

from azllm.model.device import Placement


def load_model_and_tokenizer(model_dir: Path | str, tokenizer_dir: Path | str, adapter_dir: Path | str | None = None,
                             *, placement: Placement | None = None):
    """Model (with the LoRA adapter applied when given) and tokenizer, through the shared loaders."""
    from azllm.model.device import select_placement
    from azllm.model.load import load_model
    from azllm.tokenizer.load import load_tokenizer

    placement = placement or select_placement()
    model = load_model(model_dir, placement=placement)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir, torch_device=placement.device)
    model.eval()
    return model, load_tokenizer(tokenizer_dir)


PAD_SLACK = 128
"""Rows a model's embedding may have beyond its tokenizer's size (vocabularies padded to a multiple of 64/128)."""


def tokenizer_mismatch(model, tokenizer, *, model_name: str = "the model", tokenizer_name: str = "the tokenizer"
                       ) -> list[str]:
    """Check that ``tokenizer`` is the model's own before scoring with it.

    Raises ValueError when the tokenizer has ids past the model's embedding (every such token
    would index out of range); returns warnings when the two look unrelated: the tokenizer
    covers far fewer rows than the model has, or the model's BOS/EOS ids are not the tokenizer's.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    size = len(tokenizer)
    if size > rows:
        raise ValueError(f"{tokenizer_name} has {size:,} tokens but {model_name} has only {rows:,} embedding rows: "
                         "token ids past the embedding cannot be scored; pass the tokenizer the model was trained "
                         "with (an exported or CPT model directory holds its own)")
    notes = []
    if rows - size > PAD_SLACK:
        notes.append(f"{tokenizer_name} has {size:,} tokens but {model_name} has {rows:,} embedding rows: "
                     "it is probably not the model's tokenizer, and the score means little")
    for name in ("bos", "eos"):
        model_id = getattr(model.config, f"{name}_token_id", None)
        tok_id = getattr(tokenizer, f"{name}_token_id", None)
        if isinstance(model_id, int) and tok_id is not None and model_id != tok_id:
            notes.append(f"{model_name} has {name}_token_id={model_id} but {tokenizer_name} has {tok_id}: "
                         "the special tokens disagree, so it is probably not the model's tokenizer")
    return notes
