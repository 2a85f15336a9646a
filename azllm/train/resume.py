"""The resume guard: a checkpoint resumes only with the training settings it was saved with.

Each checkpoint's ``meta.json`` records the phase's resolved settings (:func:`training_settings`:
the ``[cpt.<phase>]`` section, ``block_size`` and ``seed``). Before torchrun starts,
:func:`check_resume` compares them with this run's: a change stops the run and names the
fields, unless ``[cpt.runtime] allow_config_change_on_resume = true``. Then the worker resumes and
applies the new settings from the resumed step on (:func:`apply_new_hyperparameters`: the
optimizer groups' learning rates and weight decay, the schedule's base rates; the schedule's
shape already comes from the new preset) and records the changes in metrics.jsonl's
``resume`` event. Without this, a changed ``lr`` was silently overridden by the saved scheduler
state while a changed ``block_size`` applied (issue 26).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from azllm.config import ConfigError, PhaseConfig
from azllm.train.checkpointing import COMPLETE_MARKER

SETTINGS_KEY = "training_settings"
"""The key of the settings in a checkpoint's meta.json."""


def training_settings(phase: str, train: PhaseConfig, *, block_size: int, seed: int) -> dict[str, Any]:
    """The settings a resume must agree on, keyed as in the preset (``cpt.full.lr``, ``cpt.block_size``);
    the seed keeps the key ``cpt.seed`` it had before ``[cpt.runtime]`` existed, so saved checkpoints resume."""
    settings = {f"cpt.{phase}.{key}": value for key, value in asdict(train).items()}
    settings.update({"cpt.block_size": block_size, "cpt.seed": seed})
    return settings


def saved_settings(checkpoint: Path) -> dict[str, Any] | None:
    """The settings recorded in ``checkpoint``'s meta.json; None for a checkpoint saved before they were."""
    meta_file = Path(checkpoint) / COMPLETE_MARKER
    if not meta_file.is_file():
        return None
    return json.loads(meta_file.read_text(encoding="utf-8")).get(SETTINGS_KEY)


def settings_changes(saved: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, list]:
    """``{key: [saved, current]}`` for every setting that differs (nothing when none was saved)."""
    if saved is None:
        return {}
    keys = sorted(set(saved) | set(current))
    return {k: [saved.get(k), current.get(k)] for k in keys if saved.get(k) != current.get(k)}


def describe_changes(changes: dict[str, list]) -> str:
    return ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())


def check_resume(checkpoint: Path | None, current: dict[str, Any], *, allow: bool) -> dict[str, list]:
    """Before torchrun: the changes between ``checkpoint`` (the one the launcher chose to resume,
    complete and intact) and ``current``.

    Raises ConfigError naming them unless ``allow``; returns them (empty: nothing to resume,
    or the same settings).
    """
    if checkpoint is None:
        return {}
    checkpoint_dir = Path(checkpoint).parent
    changes = settings_changes(saved_settings(checkpoint), current)
    if changes and not allow:
        raise ConfigError(
            f"{checkpoint} was saved with other training settings than this run's: {describe_changes(changes)}. "
            "Rerun with the preset it was saved with to resume it; or use another --out (or delete "
            f"{Path(checkpoint_dir)}) to start afresh; or set [cpt.runtime] allow_config_change_on_resume = true "
            "to resume it with the new settings")
    if changes:
        print(f"[cpt] resuming {checkpoint} with changed settings ([cpt.runtime] allow_config_change_on_resume): "
              f"{describe_changes(changes)}", flush=True)
    return changes


def apply_new_hyperparameters(optimizer: Any, scheduler: Any, initial_lrs: list[float],
                              weight_decays: list[float]) -> None:
    """After loading a checkpoint saved with other settings: this run's learning rates and weight
    decay, from the resumed step on.

    Loading restores the saved groups' ``initial_lr``/``weight_decay`` and the scheduler's
    ``base_lrs``, so they are set again from this run's values (taken before loading), and each
    group's current ``lr`` is recomputed as the scheduler would: base x schedule(step).
    """
    scheduler.base_lrs = list(initial_lrs)
    lrs = []
    for group, base, decay, schedule in zip(optimizer.param_groups, initial_lrs, weight_decays,
                                            scheduler.lr_lambdas, strict=True):
        group["initial_lr"] = base
        group["weight_decay"] = decay
        group["lr"] = base * schedule(scheduler.last_epoch)
        lrs.append(group["lr"])
    scheduler._last_lr = lrs
