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
