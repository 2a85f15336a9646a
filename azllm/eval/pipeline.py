"""`evaluate`: base vs CPT vs SFT (vs preference) side by side on every measure (one call for the flow step)."""

from __future__ import annotations

from pathlib import Path

from azllm.config import PipelineConfig
from azllm.data.layout import PreparedData


def evaluate_run(cfg: PipelineConfig, *, cpt_dir: Path, adapter_dir: Path, data: PreparedData, out_dir: Path,
                 preference_adapter_dir: Path | None = None):
    """Evaluate the base model, the chosen CPT model (its directory holds its tokenizer) and the SFT
    adapter on top of it (and the preference stage's adapter when there is one), on the step's
    accelerator when it has one (`[model] dtype` bfloat16/float16 is kept, float32 follows the
    hardware); with `[eval] tasks`, each also on those tasks (lm-evaluation-harness, `report.task_scores`)."""
    from azllm.eval.report import ModelSpec, evaluate_models
    from azllm.model.device import placement_for_model_dtype
    from azllm.model.load import materialize_base_model

    data.require("validation", "sft_validation")
    base_dir = materialize_base_model(cfg.model)
    models = {
        "base": ModelSpec(model_dir=base_dir, tokenizer_dir=base_dir),
        "cpt": ModelSpec(model_dir=cpt_dir, tokenizer_dir=cpt_dir),
        "sft": ModelSpec(model_dir=cpt_dir, tokenizer_dir=cpt_dir, adapter_dir=adapter_dir, chat=True),
    }
    if preference_adapter_dir is not None:
        models["preference"] = ModelSpec(model_dir=cpt_dir, tokenizer_dir=cpt_dir,
                                         adapter_dir=preference_adapter_dir, chat=True)
    placement = placement_for_model_dtype(cfg.model.dtype)
    report = evaluate_models(cfg.eval, models=models, files=data.eval_files, sft_validation=data.sft_validation,
                             out_dir=out_dir, placement=placement)
    if cfg.eval.tasks:  # lm-eval tasks; the SFT model without its chat template (`chat_template` column)
        from azllm.eval.tasks import evaluate_task_models

        report.task_scores = evaluate_task_models(cfg.eval, models, placement=placement, out_dir=out_dir).rows
    return report
