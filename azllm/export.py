"""`azllm export`: a run's model as one directory any Llama runtime loads (transformers, vLLM,
TGI, llama.cpp's converter), with its tokenizer, chat template, generation config and model card.

    azllm export --run latest --out /tmp/az-model                  # chosen arm, last adapter merged, bf16
    azllm export --run latest --stage sft --out /tmp/az-sft        # the SFT adapter even after a preference stage
    azllm export --run production --out /tmp/az-prod --push s3://bucket/models/az
    azllm export --run 1732571234 --arm extend --stage cpt --dtype float32 --out /tmp/az-cpt
    azllm export --run latest --out /tmp/az-model --gguf          # also model-<dtype>.gguf (llama.cpp)
    azllm export --run latest --out /tmp/az-q8 --gguf-type q8_0   # model-q8_0.gguf + an Ollama Modelfile

The adapter (the preference stage's when the run has one, else SFT's; `--stage` picks) is merged
with PEFT's `merge_and_unload` in float32, then cast to `--dtype`.
The directory is written to a temporary sibling and renamed, so it is either complete or absent, with
ordinary permissions (the umask's, not the temporary directory's 0700). GGUF: `azllm.gguf`.
The flow's `end` step writes the same export as the `export_model` reference (`export_flow_model`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azllm.config.paths import check_output_dir, staged_dir
from azllm.gguf import (
    GGUF_ENV,
    GGUF_OUTTYPE,
    GGUF_SCRIPT,
    GGUF_TYPES,
    quantizer_error,
    require_gguf_converter,
    write_gguf,
)
from azllm.model_card import run_tags
from azllm.runs import (
    PartDirs,
    RunParts,
    branch_of,
    fetch_parts,
    find_run,
    latest_stage,
    run_config,
    run_parts,
    with_stage,
)

DTYPES = ("bfloat16", "float16", "float32")
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


# ---------------------------------------------------------------------------
# Building the directory
# ---------------------------------------------------------------------------


def merged_model(model_dir: Path, adapter_dir: Path | None, dtype: str):
    """The CPT model with the LoRA adapter folded into its weights (float32 merge, then `dtype`)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    return model.to(getattr(torch, dtype)).eval()


def export_tokenizer(tokenizer_dir: Path):
    """The arm's tokenizer with Llama 3's chat template (the one SFT trained on)."""
    from azllm.tokenizer.llama3 import LLAMA3_CHAT_TEMPLATE
    from azllm.tokenizer.load import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    if not tokenizer.chat_template:
        tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    return tokenizer


def save_portable_tokenizer(tokenizer, out: Path) -> None:
    """Save in the layout every transformers >= 4.34 reads, as vLLM and TGI pin older releases than ours:
    the chat template inside tokenizer_config.json (not transformers 5's chat_template.jinja) and the class
    named PreTrainedTokenizerFast (transformers 5 calls it TokenizersBackend; both load it)."""
    tokenizer.save_pretrained(str(out), save_jinja_files=False)
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def generation_config(tokenizer, model_config):
    """Greedy by default; stop on EOS and on `<|eot_id|>` (the end of an assistant turn)."""
    from transformers import GenerationConfig

    from azllm.eval.generation import stop_token_ids

    stops = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else model_config.bos_token_id
    return GenerationConfig(bos_token_id=bos, eos_token_id=stops, pad_token_id=pad, do_sample=False)


def check_gguf(gguf: bool, gguf_type: str | None, dtype: str) -> str | None:
    """The GGUF type to write (None: no GGUF); refuses before any work when it cannot be made here."""
    if not gguf and gguf_type is None:
        return None
    gguf_type = gguf_type or GGUF_OUTTYPE[dtype]
    problem = quantizer_error(gguf_type)
    if problem:
        raise ValueError(problem)
    require_gguf_converter()
    return gguf_type


def write_export(dirs: PartDirs, out: Path, *, dtype: str, card: str, overwrite: bool = False,
                 gguf: bool = False, gguf_type: str | None = None) -> Path:
    """Merge, save safetensors + tokenizer + generation config + README.md into `out`, atomically;
    with `gguf` (or a `gguf_type`), also `model-<type>.gguf` and an Ollama `Modelfile` (`azllm.gguf`)."""
    out = Path(out).resolve()
    check_output_dir(out, overwrite=overwrite)
    gguf_type = check_gguf(gguf, gguf_type, dtype)
    with staged_dir(out) as tmp:  # complete or absent, with ordinary permissions
        model = merged_model(dirs.model, dirs.adapter, dtype)
        tokenizer = export_tokenizer(dirs.tokenizer)
        model.generation_config = generation_config(tokenizer, model.config)
        model.save_pretrained(str(tmp), safe_serialization=True)
        save_portable_tokenizer(tokenizer, tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        if gguf_type is not None:
            write_gguf(tmp, gguf_type, dtype=dtype, name=out.name)
    print(f"[export] wrote {out} ({', '.join(sorted(p.name for p in out.iterdir()))})", flush=True)
    return out


# ---------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------


def push_dir(local: Path, url: str) -> list[str]:
    """Upload every file under `local` to `url` (s3://bucket/prefix) with Metaflow's S3 client, the one
    its S3 datastore uses (credentials and endpoint as for the flow: AWS_*, METAFLOW_S3_ENDPOINT_URL)."""
    from metaflow import S3

    if not url.startswith("s3://") or len(url) <= len("s3://"):
        raise ValueError(f"--push {url!r}: expected s3://bucket/prefix")
    files = [(str(p.relative_to(local)), str(p)) for p in sorted(local.rglob("*")) if p.is_file()]
    with S3(s3root=url.rstrip("/") + "/") as s3:
        urls = [url for _, url in s3.put_files(files)]
    print(f"[export] pushed {len(urls)} files to {url}", flush=True)
    return urls


# ---------------------------------------------------------------------------
# From a run
# ---------------------------------------------------------------------------


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
    from azllm.model_card import model_card

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
    card = model_card(parts.data, config=run_config(run), pathspec=run.pathspec, arm=parts.arm, stage=stage,
                      dtype=dtype, branch=branch_of(run), notes=notes)
    write_export(dirs, out, dtype=dtype, card=card, overwrite=overwrite, gguf=gguf, gguf_type=gguf_type)
    result = ExportResult(out_dir=out.resolve(), arm=parts.arm, stage=stage, dtype=dtype, notes=notes)
    if push:
        result.pushed = push_dir(result.out_dir, push)
    return result


def export_flow_model(flow: Any, dtype: str = "bfloat16") -> dict:
    """The `end` step's export: the chosen arm with its last adapter merged (the preference stage's when it
    ran, else SFT's), stored as a `@model` reference (`export_model`); the run is tagged `azllm.model:<arm>`
    and `azllm.bpb:<validation BPB>`."""
    from metaflow import current

    from azllm.config import load_pipeline_config
    from azllm.flowutil import save_dir
    from azllm.model_card import model_card
    from azllm.runs import tag_run

    arm = flow.chosen_arm
    preference = getattr(flow, "preference_adapter", None)
    stage = "preference" if preference is not None else "sft"
    dirs = PartDirs(model=Path(current.model.load(flow.cpt_models[arm])),
                    tokenizer=Path(current.model.load(flow.tokenizers[arm])),
                    adapter=Path(current.model.load(preference if preference is not None else flow.sft_adapter)))
    card = model_card(flow, config=load_pipeline_config(flow.config).to_dict(),
                      pathspec=f"{current.flow_name}/{current.run_id}", arm=arm, stage=stage, dtype=dtype,
                      branch=current.branch_name)
    with save_dir("export") as tmp:
        out = write_export(dirs, tmp / "model", dtype=dtype, card=card)
        ref = current.model.save(str(out), label="export", storage_format="files")
    tag_run(f"{current.flow_name}/{current.run_id}", run_tags(flow))
    return ref


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
