"""azllm.eval: bits per byte, fixed-prompt generations and repetition, chrF on held-out chats.

    bpb.evaluate_bpb / evaluate_bpb_files      docs/DESIGN.md §9 BPB
    generation.generate_samples / repetition_metrics / aggregate_repetition
    scores.chrf / answer_questions
    loss.assistant_token_loss / pad_batch      nats per assistant token; the padding BPB shares
    load.load_model_and_tokenizer              model (+ LoRA adapter) and tokenizer, on the step's hardware
                                               (azllm.model.device.select_placement: bf16 on CUDA, fp32 on CPU)
    report.evaluate_models(cfg.eval, models=..., files=..., sft_validation=..., out_dir=...)
    tasks.evaluate_tasks / evaluate_task_models  lm-evaluation-harness tasks ([eval] tasks) on a loaded model
    custom.custom_task_config                  a user's JSONL task as an inline lm-eval config
    lm_tasks/                                  azllm's lm-eval YAML: sib200_azj, flores_azj_eng, flores_eng_azj
    cli.register(subparsers)                   `azllm eval bpb ...`, `azllm eval tasks ...`
"""
