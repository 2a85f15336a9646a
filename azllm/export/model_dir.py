"""A model directory any Llama runtime loads (transformers, vLLM, TGI, llama.cpp's converter): the CPT
model with its adapter merged, the tokenizer with its chat template, a generation config and a model card.

The adapter is merged with PEFT's `merge_and_unload` in float32, then cast to the export dtype.
The directory is written to a temporary sibling and renamed, so it is either complete or absent, with
ordinary permissions (the umask's, not the temporary directory's 0700). GGUF: :mod:`azllm.export.gguf`.
Used by `azllm export` (:mod:`azllm.runs.export`) and the flow's `end` step (:mod:`azllm.steps.end`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from azllm.config.paths import check_output_dir, staged_dir
from azllm.export.gguf import (
    GGUF_OUTTYPE,
    quantizer_error,
    require_gguf_converter,
    write_gguf,
)

DTYPES = ("bfloat16", "float16", "float32")


@dataclass(frozen=True)
class PartDirs:
    """The local directories an export merges: the CPT model (a self-contained HF directory: its tokenizer is
    the arm's, checked in `join_cpt`) and the LoRA adapter (None: the CPT model alone)."""

    model: Path
    adapter: Path | None


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


def export_tokenizer(model_dir: Path):
    """The tokenizer saved with the CPT model (the arm's) with Llama 3's chat template (the one SFT trained on)."""
    from azllm.tokenizer.llama3 import LLAMA3_CHAT_TEMPLATE
    from azllm.tokenizer.load import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
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
    with `gguf` (or a `gguf_type`), also `model-<type>.gguf` and an Ollama `Modelfile` (`azllm.export.gguf`)."""
    out = Path(out).resolve()
    check_output_dir(out, overwrite=overwrite)
    gguf_type = check_gguf(gguf, gguf_type, dtype)
    with staged_dir(out) as tmp:  # complete or absent, with ordinary permissions
        model = merged_model(dirs.model, dirs.adapter, dtype)
        tokenizer = export_tokenizer(dirs.model)
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


