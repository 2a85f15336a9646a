"""azllm.train"""
