"""azllm: adapt a foundation LLM to Azerbaijani."""

__version__ = "0.1.0"
