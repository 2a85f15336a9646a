"""`evaluate`: base vs CPT vs SFT (vs preference) side by side on every measure (one call for the flow step)."""

from __future__ import annotations

from pathlib import Path

from azllm.config import PipelineConfig


def evaluate_run(cfg: PipelineConfig, *, cpt_dir: Path, tokenizer_dir: Path, adapter_dir: Path,
                 data_dir: Path, out_dir: Path, preference_adapter_dir: Path | None = None):
    """Evaluate the base model, the chosen CPT model and the SFT adapter on top of it (and the preference
    stage's adapter when there is one), on the step's accelerator when it has one (`[model] dtype`
    bfloat16/float16 is kept, float32 follows the hardware); with `[eval] tasks`, each also on those
    tasks (lm-evaluation-harness, `report.task_scores`)."""
    from azllm.data.pipeline import eval_files
    from azllm.eval.report import ModelSpec, evaluate_models
    from azllm.model.device import placement_for_model_dtype
    from azllm.model.load import materialize_base_model

    base_dir = materialize_base_model(cfg.model)
    models = {
        "base": ModelSpec(model_dir=base_dir, tokenizer_dir=base_dir),
        "cpt": ModelSpec(model_dir=cpt_dir, tokenizer_dir=tokenizer_dir),
        "sft": ModelSpec(model_dir=cpt_dir, tokenizer_dir=tokenizer_dir, adapter_dir=adapter_dir, chat=True),
    }
    if preference_adapter_dir is not None:
        models["preference"] = ModelSpec(model_dir=cpt_dir, tokenizer_dir=tokenizer_dir,
                                         adapter_dir=preference_adapter_dir, chat=True)
    placement = placement_for_model_dtype(cfg.model.dtype)
    report = evaluate_models(cfg.eval, models=models, files=eval_files(data_dir),
                             sft_validation=data_dir / "sft_validation.jsonl", out_dir=out_dir, placement=placement)
    if cfg.eval.tasks:  # lm-eval tasks; the SFT model without its chat template (`chat_template` column)
        from azllm.eval.tasks import evaluate_task_models

        report.task_scores = evaluate_task_models(cfg.eval, models, placement=placement, out_dir=out_dir).rows
    return report
