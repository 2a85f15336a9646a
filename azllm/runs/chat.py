"""`azllm chat`: talk to the assistant a run produced, in a terminal, with streaming output.

    azllm chat                         # the latest successful AzLLMFlow run
    azllm chat --run 1732571234        # a given run
    azllm chat --stage sft             # the SFT adapter, even when the run has a preference stage
    azllm chat --model DIR [--adapter DIR]
    azllm chat --prompt "Balansımı necə yoxlaya bilərəm?"    # answer once and exit

The run's chosen CPT model (its tokenizer inside) and the LoRA adapter (the preference stage's when
the run has one, else SFT's; `--stage` picks) are fetched through
the Metaflow client (`metaflow.load_model`) into a cache directory. A demo-scale model
(a few optimizer steps, `azllm.eval.quality`) is announced as such before it answers.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ChatModel:
    model_dir: Path
    tokenizer_dir: Path
    adapter_dir: Path | None
    quality: Any = None
    """`azllm.eval.quality.QualityVerdict` from the run's training metrics; None when unknown."""


def fetch_run_model(run_id: str = "latest", cache_root: Path | None = None, stage: str | None = None) -> ChatModel:
    """Download the chosen CPT model (tokenizer included) and adapter of a run (`latest`, `production` or an id): the
    `stage`'s (`preference`, `sft`; `cpt` = none), by default the last the run has (the preference stage's
    when it ran, else SFT's)."""
    from azllm.eval.quality import run_quality_verdict
    from azllm.runs.find import find_run
    from azllm.runs.parts import fetch_parts, latest_stage, run_parts, with_stage

    parts = run_parts(find_run(run_id))
    stage = stage or latest_stage(parts)
    if stage == "preference" and parts.preference_adapter_ref is None:
        raise ValueError(f"--stage preference: run {parts.pathspec} has no preference adapter (its [preference] "
                         "method was \"none\", or the preference step did not finish); use --stage sft")
    dirs = fetch_parts(with_stage(parts, stage), cache_root)
    quality = run_quality_verdict((parts.summary.cpt_metrics or {}).get(parts.arm), parts.summary.sft_metrics)
    return ChatModel(model_dir=dirs.model, tokenizer_dir=dirs.model, adapter_dir=dirs.adapter,
                     quality=quality)


def load_chat_model(spec: ChatModel):
    """(model, tokenizer) ready for generation; the adapter is applied when given. On the GPU in
    bf16 (fp16 without bf16) when there is one, else on the CPU in fp32 (`select_placement`)."""
    from azllm.eval.load import load_model_and_tokenizer

    return load_model_and_tokenizer(spec.model_dir, spec.tokenizer_dir, spec.adapter_dir)


def quality_note(spec: ChatModel, model) -> str:
    """The demo-scale warning to print before answering, or "" (model size alone when no run metrics)."""
    from azllm.eval.quality import demo_scale_verdict

    verdict = spec.quality or demo_scale_verdict(cpt_steps=None, cpt_tokens=None, sft_steps=None,
                                                 num_params=model.num_parameters())
    return verdict.message if verdict.demo_scale else ""


def answer(model, tokenizer, messages: list[dict[str, str]], *, max_new_tokens: int = 200,
           stream: bool = True) -> str:
    """Greedy answer to the conversation so far; streamed to stdout when `stream`."""
    import torch
    from transformers import TextStreamer

    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    from azllm.eval.generation import stop_token_ids

    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer,
                             eos_token_id=stop_token_ids(tokenizer),
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def _chat(args: argparse.Namespace) -> int:
    if args.model:
        spec = ChatModel(model_dir=Path(args.model), tokenizer_dir=Path(args.tokenizer or args.model),
                         adapter_dir=Path(args.adapter) if args.adapter else None)
    else:
        spec = fetch_run_model(args.run, stage=args.stage)
    model, tokenizer = load_chat_model(spec)
    note = quality_note(spec, model)
    if note:
        print(f"azllm chat: {note}", file=sys.stderr)
    messages: list[dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    if args.prompt is not None:
        text = answer(model, tokenizer, [*messages, {"role": "user", "content": args.prompt}],
                      max_new_tokens=args.max_new_tokens, stream=False)
        print(text)
        return 0
    print("azllm chat: type a message, empty line or Ctrl-D to quit.", file=sys.stderr)
    while True:
        try:
            user = input("siz> ").strip()
        except EOFError:
            break
        if not user:
            break
        messages.append({"role": "user", "content": user})
        print("azllm> ", end="", flush=True)
        reply = answer(model, tokenizer, messages, max_new_tokens=args.max_new_tokens)
        messages.append({"role": "assistant", "content": reply})
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("chat", help="talk to the assistant of a finished run")
    p.add_argument("--run", default="latest", help="AzLLMFlow run id, or 'latest' (default)")
    p.add_argument("--stage", choices=("preference", "sft", "cpt"),
                   help="which of the run's models: the preference stage's adapter (default when the run has one), "
                        "the SFT adapter (default otherwise) or the CPT model alone")
    p.add_argument("--model", help="a model directory instead of a run (with --adapter, --tokenizer)")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the model directory)")
    p.add_argument("--adapter", help="LoRA adapter directory")
    p.add_argument("--system", default="", help="system message")
    p.add_argument("--prompt", help="answer this once and exit (for scripts)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="tokens per answer")
    p.set_defaults(func=_chat)
