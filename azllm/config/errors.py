"""The error every preset check raises, and the shared range check (docs/DESIGN.md §3)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A preset is wrong; the message names the key and what is accepted."""


def check_fraction(key: str, value: float, *, allow_zero: bool) -> None:
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        raise ConfigError(f"{key} must be in {'[' if allow_zero else '('}0, 1), got {value}")
