"""azllm.eval"""
