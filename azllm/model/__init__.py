"""azllm.model"""
