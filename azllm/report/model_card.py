"""The exported model's `README.md`: a Hugging Face model card written from a run's artifacts.

    >>> from azllm.report.model_card import model_card
    >>> text = model_card(summary, pathspec=run.pathspec, arm="extend", stage="sft", dtype="bfloat16")

`summary` is the run's :class:`azllm.report.summary.RunSummary`; what a failed run lacks
(None there) is left out of the card.
The front matter follows https://huggingface.co/docs/hub/model-cards (license, language,
base_model, tags), written by hand because it is a handful of plain keys.
"""

from __future__ import annotations

import json
from typing import Any

from azllm.report.summary import RunSummary
from azllm.report.tables import metrics_rows

BASE_MODELS = {"smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")}
"""azllm's builtin model names -> (hub id, license)."""
HUB_LICENSES = {"meta-llama/llama-3.2": "llama3.2", "meta-llama/llama-3.1": "llama3.1",
                "huggingfacetb/smollm2": "apache-2.0"}
"""Hub id prefixes (lower case) -> the license the derived model inherits."""
MAX_GENERATIONS = 6
USAGE = """## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

DIR = "."  # this directory
tok = AutoTokenizer.from_pretrained(DIR)
model = AutoModelForCausalLM.from_pretrained(DIR)
inputs = tok.apply_chat_template([{"role": "user", "content": "Salam!"}], add_generation_prompt=True,
                                 return_tensors="pt", return_dict=True)
out = model.generate(**inputs, max_new_tokens=64)
print(tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

`generation_config.json` stops at `<|eot_id|>`, the end of an assistant turn. vLLM (`vllm serve DIR`) and TGI
are expected to serve the directory (not yet tested on a GPU). For llama.cpp and Ollama, `azllm export --gguf-type
q8_0` writes a GGUF and a Modelfile (a plain `convert_hf_to_gguf.py DIR` does not know a new vocabulary's
pre-tokenizer; azllm tells it that it is Llama 3's).
"""
"""How to load the export; tests/test_export.py runs this snippet."""


def base_model_id(name: str) -> tuple[str | None, str]:
    """(hub id or None for a random test model, license) of the preset's `model.name`."""
    if name in BASE_MODELS:
        return BASE_MODELS[name]
    if "/" in name and not name.startswith((".", "/", "~")):
        license_ = next((lic for prefix, lic in HUB_LICENSES.items() if name.lower().startswith(prefix)), "other")
        return name, license_
    return None, "apache-2.0" if name == "tiny-random" else "other"


def front_matter(config: dict[str, Any], stage: str) -> str:
    hub_id, license_ = base_model_id(config["model"]["name"])
    tags = ["azllm", "azerbaijani", "continued-pretraining", "llama", "metaflow"]
    tags += ["lora", "sft", "conversational"] if stage in ("sft", "preference") else []
    tags += [str(config.get("preference", {}).get("method", "preference"))] if stage == "preference" else []
    lines = ["---", f"license: {license_}", "language:", "- az", "library_name: transformers",
             "pipeline_tag: text-generation"]
    if hub_id:
        lines.append(f"base_model: {hub_id}")
    lines += ["tags:", *(f"- {t}" for t in tags), "---"]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table; columns in first-seen order (pandas' `to_markdown` needs tabulate)."""
    if not rows:
        return "_none_"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _data_section(stats: dict[str, Any] | None) -> str:
    if not stats:
        return ""
    corpus = [{"split": split, **{k: s[k] for k in ("documents", "bytes", "words") if k in s}}
              for split, s in (stats.get("corpus") or {}).items() if isinstance(s, dict) and "documents" in s]
    sft = [{"split": split, **{k: v for k, v in s.items() if not isinstance(v, dict | list)}}
           for split, s in (stats.get("sft") or {}).items() if isinstance(s, dict)]
    return f"## Data\n\nCPT corpus:\n\n{md_table(corpus)}\n\nSFT chat records:\n\n{md_table(sft)}\n"


def _tokenizer_section(config: dict[str, Any], arm: str, fertility: list[dict] | None) -> str:
    tok = config["tokenizer"]
    text = (f"## Tokenizer\n\nArm **{arm}** (baseline: the base model's tokenizer; extend: base + "
            f"{tok.get('extend_num_tokens')} Azerbaijani tokens; replace: a new byte-level BPE of "
            f"{tok.get('vocab_size')} tokens), Llama 3 special tokens and chat template.\n")
    if fertility:
        keep = ("tokenizer", "data", "vocab_size", "fertility", "bytes_per_token", "share_words_3plus_tokens")
        rows = [{k: row[k] for k in keep if k in row} or row for row in fertility]
        text += f"\nFertility (tokens per word; lower is better) on the held-out text:\n\n{md_table(rows)}\n"
    return text


def _training_section(config: dict[str, Any], cpt_metrics: dict | None, sft_metrics: dict | None,
                      stage: str, preference_metrics: dict | None = None) -> str:
    cpt = config["cpt"]
    rows = [{"phase": name, **{k: cpt[name].get(k) for k in ("lr", "max_steps", "warmup_steps",
                                                               "micro_batch_size")}}
            for name in ("embeddings", "full")]
    text = (f"## Training\n\nContinued pre-training, block size {cpt.get('block_size')} tokens, new rows "
            f"initialised by {cpt.get('init')}; phase 1 trains the embeddings only, phase 2 all parameters:\n\n"
            f"{md_table(rows)}\n")
    if cpt_metrics:
        finals = [{"arm": arm, **{f"{phase} final loss": (m or {}).get("final_loss") for phase, m in by.items()}}
                  for arm, by in cpt_metrics.items()]
        text += f"\nFinal training loss per arm:\n\n{md_table(finals)}\n"
    if stage in ("sft", "preference"):
        sft, lora = config["sft"], config["sft"]["lora"]
        text += (f"\nLoRA SFT (TRL, loss on assistant tokens only), merged into the weights: r={lora['rank']}, "
                 f"alpha={lora['alpha']}, modules {', '.join(lora['target_modules'])}; lr {sft['lr']}, "
                 f"{sft['max_steps']} steps, max length {sft['max_length']} tokens.\n")
        if sft_metrics:
            keep = {k: v for k, v in sft_metrics.items() if k.startswith("eval_assistant_loss") or k == "steps"}
            text += f"\n{md_table([keep])}\n" if keep else ""
    if stage == "preference":
        pref = config.get("preference", {})
        text += (f"\nPreference stage ({str(pref.get('method')).upper()}, TRL) on the SFT adapter, merged into the "
                 f"weights: lr {pref.get('lr')}, {pref.get('max_steps')} steps"
                 + (f", beta {pref.get('beta')}" if pref.get("method") == "dpo" else
                    f", {pref.get('num_generations')} generations per prompt") + ".\n")
        keep = {k: v for k, v in (preference_metrics or {}).items()
                if k in ("num_pairs", "pairs_source", "pair_margin", "global_step", "num_prompts")}
        text += f"\n{md_table([keep])}\n" if keep else ""
    return text


def _results_section(arm_bpb: dict | None, metrics: dict | None, generations: list | None) -> str:
    text = ""
    if arm_bpb:
        text += ("## Bits per byte: base vs arms\n\nSame bytes for every model (tokenizer-independent; lower is "
                 f"better):\n\n{md_table([{'model': k, **v} for k, v in arm_bpb.items()])}\n")
    if metrics:
        rows = metrics_rows(metrics)
        text += f"\n## Evaluation: base vs CPT vs SFT\n\n{md_table(rows)}\n"
    samples = [g for g in generations or [] if g.get("model") == "sft"][:MAX_GENERATIONS]
    if samples:
        text += "\n## Sample generations (greedy, the SFT model)\n\n"
        text += "".join(f"**{g['prompt']}**\n\n> " + (g["text"].strip() or "(empty)").replace("\n", "\n> ") + "\n\n"
                        for g in samples)
    return text


def _tasks_section(arm_rows: list | None, rows: list | None) -> str:
    """`[eval] tasks` (lm-evaluation-harness): each task's primary metric, ± stderr, against chance."""
    def table(picked: list) -> str:
        return md_table([{"task": r["task"], "metric": r["metric"], "model": r["model"],
                          "value": r["value"], "stderr": r["stderr"], "n": r["n"], "chance": r["chance"],
                          "shots": r.get("num_fewshot")} for r in picked if r.get("primary")])

    text = ""
    if rows:
        text += ("## Tasks: base vs CPT vs SFT (vs preference)\n\nlm-evaluation-harness, chat models without "
                 f"their chat template; `chance` is the score of a uniform guess:\n\n{table(rows)}\n")
    if arm_rows:
        text += f"\n## Tasks: base vs arms\n\n{table(arm_rows)}\n"
    return text


def model_card(summary: RunSummary, *, pathspec: str, arm: str, stage: str, dtype: str,
               branch: str | None = None, notes: list[str] | tuple[str, ...] = ()) -> str:
    """The README.md text of an export of `arm` (stage `preference` = the preference stage's adapter merged,
    `sft` = the SFT adapter merged, `cpt` = CPT only)."""
    config = summary.config
    name = config["model"]["name"]
    hub_id, _ = base_model_id(name)
    what = {"sft": "CPT + LoRA SFT (merged)", "cpt": "CPT only (no SFT adapter)",
            "preference": "CPT + LoRA SFT + preference stage (merged)"}[stage]
    parts = [front_matter(config, stage),
             f"# azllm {config.get('name', '')}: {arm} arm, {what}\n",
             f"An Azerbaijani adaptation of **{hub_id or name}** made by the azllm pipeline "
             f"(Metaflow run `{pathspec}`, preset `{config.get('name')}`), saved in {dtype}.\n",
             *(f"> **Note:** {note}\n" for note in notes),
             USAGE,
             f"## Base model\n\n`{name}`" + (f" ([{hub_id}](https://huggingface.co/{hub_id}))" if hub_id else
                                              " (a seeded random Llama: a test model, not for use)") + "\n",
             _tokenizer_section(config, arm, summary.fertility),
             _data_section(summary.data_stats),
             _training_section(config, summary.cpt_metrics, summary.sft_metrics, stage, summary.preference_metrics),
             f"Stage shipped: **{stage}** ({what}).\n",
             _results_section(summary.arm_bpb, summary.metrics, summary.generations),
             _tasks_section(summary.arm_task_scores, summary.task_scores),
             f"## Provenance\n\nMetaflow pathspec `{pathspec}`; read it with "
             f"`metaflow.Run(\"{pathspec}\")`" + (f", project `azllm`, branch `{branch}`" if branch else "")
             + f". Chosen arm of the run: `{summary.chosen_arm}`.\n"]
    return "\n".join(p for p in parts if p)


def export_markdown(run_id: str, summary: RunSummary) -> str:
    """A few Markdown lines for the summary card or a notebook: what was exported and how to get it."""
    tags = ", ".join(f"`{t}`" for t in summary.tags())
    stage = "preference-stage" if summary.preference_adapter is not None else "SFT"
    return (f"## Exported model\nThe chosen arm **{summary.chosen_arm}** with the {stage} adapter merged (bf16, "
            f"model card included) is the `export_model` reference; run tags {tags}.\n"
            f"`azllm export --run {run_id} --out DIR` writes it again (`--dtype`, `--arm`, `--stage`, `--push "
            "s3://...`, `--gguf`); `azllm export --run production` takes the latest production-branch run.")
