"""`azllm export`: a run's model as one directory any Llama runtime loads (transformers, vLLM,
TGI, llama.cpp's converter), with its tokenizer, chat template, generation config and model card.

    azllm export --run latest --out /tmp/az-model                  # chosen arm, last adapter merged, bf16
    azllm export --run latest --stage sft --out /tmp/az-sft        # the SFT adapter even after a preference stage
    azllm export --run production --out /tmp/az-prod --push s3://bucket/models/az
    azllm export --run 1732571234 --arm extend --stage cpt --dtype float32 --out /tmp/az-cpt
    azllm export --run latest --out /tmp/az-model --gguf          # also model-<dtype>.gguf (llama.cpp)
    azllm export --run latest --out /tmp/az-q8 --gguf-type q8_0   # model-q8_0.gguf + an Ollama Modelfile

The adapter (the preference stage's when the run has one, else SFT's; `--stage` picks) is merged
into the CPT model (:mod:`azllm.export.model_dir`). The flow's `end` step writes the same export as
the `export_model` reference (:mod:`azllm.steps.end`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from azllm.config.paths import check_output_dir
from azllm.export.gguf import GGUF_ENV, GGUF_SCRIPT, GGUF_TYPES
from azllm.export.model_dir import DTYPES, check_gguf, push_dir, write_export
from azllm.report.model_card import model_card
from azllm.runs.find import branch_of, find_run
from azllm.runs.parts import RunParts, fetch_parts, latest_stage, run_parts, with_stage

STAGES = ("preference", "sft", "cpt")


@dataclass
class ExportResult:
    out_dir: Path
    arm: str
    stage: str
    """`preference` or `sft` (CPT model with that stage's adapter merged) or `cpt` (the CPT model alone)."""
    dtype: str
    notes: list[str] = field(default_factory=list)
    """What the user should know, e.g. that a run without SFT was exported as its CPT model."""
    pushed: list[str] = field(default_factory=list)
    """s3:// URLs of the uploaded files."""


def choose_stage(parts: RunParts, stage: str | None) -> tuple[str, list[str]]:
    """The last stage the arm has (`preference`, else `sft`), else `cpt` with a note saying why."""
    if stage not in (None, *STAGES):
        raise ValueError(f"--stage {stage!r}: expected one of {STAGES}")
    if stage == "preference" and parts.preference_adapter_ref is None:
        raise ValueError(f"--stage preference: run {parts.pathspec} has no preference adapter for arm "
                         f"{parts.arm!r} (its [preference] method was \"none\", the arm is not the chosen one, or "
                         "the run stopped before the preference step finished); export --stage sft")
    if parts.adapter_ref is not None:
        return stage or latest_stage(parts), []
    run_id = parts.pathspec.split("/")[-1]
    if parts.arm != parts.chosen_arm:
        why = f"the SFT adapter was trained on the chosen arm {parts.chosen_arm!r}, not on {parts.arm!r}"
        fix = f"pass --arm {parts.chosen_arm}"
    else:
        why = f"run {parts.pathspec} has no SFT adapter: it stopped before sft_lora finished"
        fix = f"finish the run: python flows/azllm_flow.py resume --origin-run-id {run_id}"
    if stage == "sft":
        raise ValueError(f"--stage sft: {why}; export --stage cpt, or {fix}")
    return "cpt", [] if stage == "cpt" else [f"exporting the CPT model of arm {parts.arm!r} without SFT: {why}"]


def export_run(run_id: str, out: Path, *, arm: str | None = None, stage: str | None = None,
               dtype: str = "bfloat16", overwrite: bool = False, push: str | None = None,
               gguf: bool = False, gguf_type: str | None = None) -> ExportResult:
    """`azllm export` as a function: find the run, fetch its parts, merge, write the card, push."""
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r}: expected one of {DTYPES}")
    out = Path(out)
    check_output_dir(out, overwrite=overwrite)
    check_gguf(gguf, gguf_type, dtype)
    run = find_run(run_id)
    parts = run_parts(run, arm)
    stage, notes = choose_stage(parts, stage)
    for note in notes:
        print(f"[export] {note}", flush=True)
    dirs = fetch_parts(with_stage(parts, stage))
    card = model_card(parts.summary, pathspec=run.pathspec, arm=parts.arm, stage=stage, dtype=dtype,
                      branch=branch_of(run), notes=notes)
    write_export(dirs, out, dtype=dtype, card=card, overwrite=overwrite, gguf=gguf, gguf_type=gguf_type)
    result = ExportResult(out_dir=out.resolve(), arm=parts.arm, stage=stage, dtype=dtype, notes=notes)
    if push:
        result.pushed = push_dir(result.out_dir, push)
    return result


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    result = export_run(args.run, Path(args.out), arm=args.arm, stage=args.stage, dtype=args.dtype,
                        overwrite=args.overwrite, push=args.push, gguf=args.gguf,
                        gguf_type=args.gguf_type)
    what = {"preference": "CPT model + merged preference-stage adapter", "sft": "CPT model + merged SFT adapter",
            "cpt": "CPT model (no SFT)"}[result.stage]
    print(f"azllm export: {what} of arm {result.arm!r} ({result.dtype}) in {result.out_dir}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="a run's model as a directory transformers/vLLM/llama.cpp load")
    p.add_argument("--run", default="latest",
                   help="AzLLMFlow run id, 'latest' (default: latest successful) or 'production' "
                        "(latest successful run of the @project production branch)")
    p.add_argument("--arm", help="CPT arm (default: the run's chosen arm; only it has an SFT adapter)")
    p.add_argument("--stage", choices=STAGES,
                   help="preference: the preference stage's adapter merged (default when the run has one); "
                        "sft: the SFT adapter merged (default otherwise); cpt: CPT only")
    p.add_argument("--dtype", choices=DTYPES, default="bfloat16", help="weights dtype (default bfloat16)")
    p.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--push", metavar="S3_URL", help="also upload to s3://bucket/prefix")
    p.add_argument("--gguf", action="store_true",
                   help=f"also convert to GGUF with llama.cpp's {GGUF_SCRIPT} (${GGUF_ENV}, PATH or "
                        "llama-cpp-python's copy), with an Ollama Modelfile")
    p.add_argument("--gguf-type", choices=GGUF_TYPES,
                   help="GGUF weights type (implies --gguf; default: the --dtype's, bf16/f16/f32); q4_k_m "
                        "uses llama.cpp's quantizer from llama-cpp-python")
    p.set_defaults(func=_export)
