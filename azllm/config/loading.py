"""Reading presets: TOML text or file, `inherit`, strict type checks, the Metaflow `Config` parser.

The flow takes a preset through Metaflow's ``Config`` with :func:`parse_config` as
parser, so a bad preset fails before any step runs. Every library function takes
only the section it needs (``cfg.cpt``, ``cfg.data`` ...), never the whole dict.

    >>> cfg = load_pipeline_config("configs/demo.toml")
    >>> cfg.cpt.full.lr

Why our own coercion and not dacite (strict mode, tried at 1.9.2): dacite names an
unknown key without its section or the allowed keys (``can not match "blocksize" to any
data class field``), keeps a TOML integer as ``int`` in a float field, takes ``true`` for
an int, turns a string given for an array into a tuple of its characters (with
``cast=[tuple]``), and lets a ``__post_init__`` error out without the section it came
from. Wrapping it to keep today's messages (``[cpt] unknown key(s) ['blocksize'];
allowed: [...]``, ``cpt.block_size must be int, got str 'big'``) would take more code
than :func:`section_from_dict` and :func:`_coerce` below (about 60 lines).
"""

from __future__ import annotations

import os
import sys
import tomllib
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

from azllm.config.errors import ConfigError
from azllm.config.paths import PROJECT_ROOT
from azllm.config.sections import PipelineConfig
from azllm.config.tasks import check_eval_tasks, check_hub_tasks


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; TOML arrays become tuples."""
    origin = typing.get_origin(tp)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"[{key}] must be a table, got {type(value).__name__}")
        return section_from_dict(tp, value, key)
    if origin in (tuple,):
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be an array, got {type(value).__name__} {value!r}")
        return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}={value!r} has the wrong type; expected {tp}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if type(value) is not tp:
            raise ConfigError(f"{key} must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
        return value
    return value


def section_from_dict(cls: type, raw: dict[str, Any], where: str) -> Any:
    """Build a config dataclass from a dict, naming unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        for key in unknown:  # a key of a sub-table given one level up, e.g. an old preset's [cpt] liger
            homes = _sub_tables_with(cls, key, where)
            if homes:
                raise ConfigError(f"[{where}] {key}: {key} is not a key of [{where}] but of "
                                  f"{' or '.join(f'[{h}]' for h in homes)}; move `{key} = ...` there "
                                  f"(e.g. `[{homes[0]}] {key}`)")
        raise ConfigError(f"[{where}] unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    kwargs = {}
    for f in fields(cls):
        if f.name in raw:
            key = f"{where}.{f.name}" if where else f.name
            kwargs[f.name] = _coerce(raw[f.name], hints[f.name], key)
        elif f.default is MISSING and f.default_factory is MISSING:  # pragma: no cover - all have defaults
            raise ConfigError(f"[{where}] missing key {f.name!r}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{e} (in [{where or 'top level'}])") from None


def _sub_tables_with(cls: type, key: str, where: str) -> list[str]:
    """The sub-tables of ``cls`` (fields that are sections themselves) that have a field ``key``."""
    hints = typing.get_type_hints(cls)
    return [f"{where}.{f.name}" if where else f.name for f in fields(cls)
            if is_dataclass(hints[f.name]) and key in {g.name for g in fields(hints[f.name])}]


def config_from_dict(raw: dict[str, Any]) -> PipelineConfig:
    return section_from_dict(PipelineConfig, dict(raw), "")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; presets are in {PROJECT_ROOT / 'configs'}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _resolve_inherits(raw: dict[str, Any], path: Path | None, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """`inherit = "demo.toml"` at the top of a preset layers it over another preset."""
    parent = raw.pop("inherit", None)
    if parent is None:
        return raw
    base_dir = path.parent if path else PROJECT_ROOT / "configs"
    parent_path = (base_dir / parent).resolve()
    if parent_path in seen:
        raise ConfigError(f"{path}: inherit loop through {parent_path}")
    parent_raw = _resolve_inherits(_read_toml(parent_path), parent_path, seen + (parent_path,))
    return _merge(parent_raw, raw)


def parse_config_text(text: str, source: str = "<config>", path: Path | None = None) -> PipelineConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    try:
        cfg = config_from_dict(_resolve_inherits(raw, path))
        check_eval_tasks(cfg.eval, check_hub=False)
        return cfg
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def load_pipeline_config(source: str | Path | dict[str, Any] | PipelineConfig) -> PipelineConfig:
    """A preset path, a preset name (`demo`), a dict (a Metaflow ConfigValue) or a config."""
    if isinstance(source, PipelineConfig):
        return source
    if isinstance(source, dict) or hasattr(source, "to_dict"):
        raw = source.to_dict() if hasattr(source, "to_dict") else source
        return config_from_dict(raw)
    path = Path(source)
    if path.suffix != ".toml" and not path.exists():
        path = PROJECT_ROOT / "configs" / f"{source}.toml"
    text = path.read_text(encoding="utf-8") if path.exists() else None
    if text is None:
        raise ConfigError(f"config file {path} does not exist; presets: "
                          f"{sorted(p.stem for p in (PROJECT_ROOT / 'configs').glob('*.toml'))}")
    return parse_config_text(text, source=str(path), path=path.resolve())


def parse_config(text: str) -> dict[str, Any]:
    """Metaflow `Config(parser=...)` hook: validate the whole preset, return a plain dict.

    Metaflow passes only the text, so the file is recovered from the command line
    to name it in errors. Errors become a MetaflowException: a clean one-line message
    instead of a traceback, and the run stops before any step starts.
    """
    source = _config_source_from_argv(sys.argv)
    try:
        cfg = parse_config_text(text, source=source, path=_guess_path(source))
        check_hub_tasks(cfg.eval)  # a run, not a preset read: tasks that need the hub must reach it
        return cfg.to_dict()
    except ConfigError as e:
        from metaflow.exception import MetaflowException

        raise MetaflowException(f"invalid preset: {e}") from None


def _config_source_from_argv(argv: list[str]) -> str:
    for i, arg in enumerate(argv[:-2]):
        if arg == "--config" and argv[i + 1] == "config":
            return argv[i + 2]
        if arg == "--config-value" and argv[i + 1] == "config":
            return "--config-value config"
    return os.environ.get("AZLLM_CONFIG_SOURCE", "configs/demo.toml")


def _guess_path(source: str) -> Path | None:
    p = Path(source)
    return p.resolve() if p.exists() else None
