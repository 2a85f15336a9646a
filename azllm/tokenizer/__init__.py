"""azllm.tokenizer"""
