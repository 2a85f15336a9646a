"""azllm.eval: bits per byte, fixed-prompt generations and repetition, chrF on held-out chats.

    bpb.evaluate_bpb / evaluate_bpb_files      DESIGN section 6 BPB
    generation.generate_samples / repetition_metrics / aggregate_repetition
    scores.chrf / answer_questions
    report.evaluate_models(cfg.eval, models=..., files=..., sft_validation=..., out_dir=...)
    cli.register(subparsers)                   `azllm eval bpb ...`
"""
