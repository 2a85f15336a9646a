"""azllm.eval: bits per byte, fixed-prompt generations and repetition, chrF on held-out chats.

    bpb.evaluate_bpb / evaluate_bpb_files      docs/DESIGN.md §9 BPB
    generation.generate_samples / repetition_metrics / aggregate_repetition
    scores.chrf / answer_questions
    loss.assistant_token_loss / pad_batch      nats per assistant token; the padding BPB shares
    load.load_model_and_tokenizer              model (+ LoRA adapter) and tokenizer, on the step's hardware
                                               (azllm.model.device.select_placement: bf16 on CUDA, fp32 on CPU)
    report.evaluate_models(cfg.eval, models=..., files=..., sft_validation=..., out_dir=...)
    cli.register(subparsers)                   `azllm eval bpb ...`
"""
