"""Compute profiles -> Metaflow decorators, hardware description, torchrun sizing."""
