"""A model (optionally with its LoRA adapter) and its tokenizer, ready for scoring or generation.

Shared by BPB, the evaluation report, `azllm eval bpb` and `azllm chat`.

    >>> model, tokenizer = load_model_and_tokenizer(cpt_dir, tok_dir, adapter_dir=sft_dir / "adapter")
"""

from __future__ import annotations

from pathlib import Path


def load_model_and_tokenizer(model_dir: Path | str, tokenizer_dir: Path | str, adapter_dir: Path | str | None = None):
    """Model (with the LoRA adapter applied when given) and tokenizer, through the shared loaders."""
    from azllm.model.load import load_model
    from azllm.tokenizer.load import load_tokenizer

    model = load_model(model_dir)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    return model, load_tokenizer(tokenizer_dir)
