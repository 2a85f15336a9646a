"""`azllm export --gguf` proven against llama.cpp itself (llama-cpp-python, requirements-test.txt): every
arm of the tiny run (Llama 3 base: `baseline`, `extend` with new merges, `replace` with a new vocabulary)
converts; llama.cpp tokenizes real Azerbaijani text (the shared validation and other-domain files) to
exactly transformers' ids and greedy-generates what transformers does on the same weights, in bf16 and
q8_0; the Ollama Modelfile renders Llama 3's chat format; the export has ordinary permissions; a
tokenizer llama.cpp cannot be told about, and q4_k_m without the quantizer, are refused, nothing written.

    .venv/bin/python -m pytest -q tests/test_gguf.py

The rule for generation (both types): llama.cpp generates greedily; transformers (float32 compute on the
exported weights) scores the same sequence. Every logit is within `tol` of transformers', and llama.cpp's
token is transformers' argmax at every step where transformers' top-2 margin exceeds 2 * tol (only such a
near tie may flip under `tol`). tol = LOGIT_TOL[type] * max |logit| of the step: 2^-6 for bf16 (8 bits of
mantissa; llama.cpp also rounds activations to bf16 in its matmuls), 2^-5 for q8_0 (~7 bits per 32-weight
block). Measured on the tiny run's arms: at most 0.0018 (bf16) and 0.0094 (q8_0) of the largest |logit|.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from azllm.export.gguf import (
    GENERATION_TAGS,
    LLAMA3_PRE,
    MODELFILE_STOPS,
    OLLAMA_TEMPLATE,
    find_gguf_converter,
    llama_cpp_pre_tokenizer,
    write_gguf,
)
from azllm.runs.export import export_run
from azllm.tokenizer.llama3 import LLAMA3_CHAT_TEMPLATE
from conftest import REPO_ROOT

ARMS = ("baseline", "extend", "replace")
NEW_TOKENS = 24
"""Greedy tokens generated per prompt."""
LOGIT_TOL = {"bf16": 2 ** -6, "q8_0": 2 ** -5}
"""Logit tolerance as a fraction of the step's largest |logit| (see the module docstring)."""
PROMPTS = (
    [{"role": "user", "content": "Bakıda hava necədir?"}],
    [{"role": "system", "content": "Sən köməkçisən."},
     {"role": "user", "content": "Azərbaycan dilində bir cümlə yaz."}],
    [{"role": "user", "content": "Salam!"}, {"role": "assistant", "content": "Salam, necə kömək edə bilərəm?"},
     {"role": "user", "content": "Balansımı necə yoxlaya bilərəm?"}],
)


@pytest.fixture(scope="module")
def az_documents(shared_data) -> list[str]:
    """Real Azerbaijani text the tokenizers were not trained on: validation + other-domain (358 documents)."""
    docs = []
    for name in ("az_corpus/validation.jsonl", "az_eval_other_domain.jsonl"):
        with open(shared_data / name, encoding="utf-8") as f:
            docs += [json.loads(line)["text"] for line in f if line.strip()]
    assert len(docs) >= 200
    return docs


@pytest.fixture(scope="module")
def tiny_ggufs(tiny_run, tmp_path_factory) -> dict[str, Path]:
    """Every arm of the tiny run exported (bf16 weights) with `--gguf-type bf16`, then q8_0 added."""
    assert find_gguf_converter() is not None, \
        "llama-cpp-python's converter: python -m azllm.export.gguf install-converter"
    root = tmp_path_factory.mktemp("gguf")
    old = os.umask(0o022)
    try:
        out = {}
        for arm in ARMS:
            out[arm] = export_run(tiny_run[0].id, root / arm, arm=arm, dtype="bfloat16", gguf_type="bf16").out_dir
            write_gguf(out[arm], "q8_0", dtype="bfloat16", name=arm)
    finally:
        os.umask(old)
    return out


def llama(path: Path, **kw):
    from llama_cpp import Llama

    return Llama(model_path=str(path), verbose=False, **kw)


def test_every_arm_tokenizes_like_transformers(tiny_ggufs, az_documents):
    from transformers import AutoConfig, AutoTokenizer

    for arm, out in tiny_ggufs.items():
        assert llama_cpp_pre_tokenizer(out) == (LLAMA3_PRE, []), arm
        hf = AutoTokenizer.from_pretrained(str(out))
        vocab = llama(out / "model-bf16.gguf", vocab_only=True)
        assert vocab.n_vocab() == AutoConfig.from_pretrained(str(out)).vocab_size >= len(hf), arm  # rows, padded
        expected = hf(az_documents, add_special_tokens=False)["input_ids"]
        got = [vocab.tokenize(d.encode("utf-8"), add_bos=False, special=False) for d in az_documents]
        same = sum(a == b for a, b in zip(got, expected, strict=True))
        new_ids = sum(any(i >= 128_256 for i in ids) for ids in expected) if arm == "extend" else None
        print(f"{arm}: llama.cpp == transformers on {same}/{len(az_documents)} documents "
              f"({sum(map(len, expected))} tokens){f'; {new_ids} use new tokens' if new_ids is not None else ''}")
        assert same == len(az_documents), next((i, a[:20], b[:20]) for i, (a, b) in
                                               enumerate(zip(got, expected)) if a != b)
        if arm == "extend":
            assert new_ids > 0, "the extend arm's new tokens are not exercised"
        for messages in PROMPTS:  # the chat format: llama.cpp adds BOS, parses the specials
            ids = hf.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
            text = hf.decode(ids[1:])
            assert vocab.tokenize(text.encode("utf-8"), add_bos=True, special=True) == ids, (arm, messages)


def greedy_llama_cpp(model, prompt: list[int], n: int) -> tuple[list[int], np.ndarray]:
    """llama.cpp's greedy continuation of `prompt` and its logits at each step."""
    model.reset()
    model.eval(prompt)
    tokens, logits = [], []
    for _ in range(n):
        row = np.array(model.scores[model.n_tokens - 1], dtype=np.float64)
        tokens.append(int(row.argmax()))
        logits.append(row)
        model.eval([tokens[-1]])
    return tokens, np.stack(logits)


def compare_generation(out: Path, gguf_type: str, hf_model, hf_tokenizer) -> dict:
    figures = {"steps": 0, "equal": 0, "near_ties": 0, "max_rel_diff": 0.0, "same_free_greedy": 0}
    model = llama(out / f"model-{gguf_type}.gguf", n_ctx=192, n_batch=192, n_threads=2, seed=0,
                  logits_all=True)  # .scores: every position
    for messages in PROMPTS:
        prompt = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
        tokens, ours = greedy_llama_cpp(model, prompt, NEW_TOKENS)
        with torch.inference_mode():
            ref = hf_model(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1:-1].double().numpy()
            free = hf_model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                     do_sample=False)[0, len(prompt):].tolist()
        scale = np.abs(ref).max(axis=1)
        tol = LOGIT_TOL[gguf_type] * scale
        rel = (np.abs(ours - ref).max(axis=1) / scale)
        top2 = np.sort(ref, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        decisive = margin > 2 * tol
        figures["steps"] += len(tokens)
        figures["equal"] += int(sum(t == r for t, r in zip(tokens, ref.argmax(axis=1))))
        figures["near_ties"] += int((~decisive).sum())
        figures["max_rel_diff"] = max(figures["max_rel_diff"], float(rel.max()))
        first_tie = int(np.argmin(decisive)) if not decisive.all() else len(tokens)
        assert tokens[:first_tie] == free[:first_tie], (gguf_type, messages, tokens, free)
        figures["same_free_greedy"] += int(tokens == free)
        assert (rel <= LOGIT_TOL[gguf_type]).all(), (gguf_type, rel)
        assert all(t == r for t, r, d in zip(tokens, ref.argmax(axis=1), decisive) if d), (gguf_type, tokens)
    return figures


def test_every_arm_generates_like_transformers_in_bf16_and_q8_0(tiny_ggufs):
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for arm, out in tiny_ggufs.items():
        hf_tokenizer = AutoTokenizer.from_pretrained(str(out))
        hf_model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
        for gguf_type in ("bf16", "q8_0"):
            fields = GGUFReader(out / f"model-{gguf_type}.gguf").fields
            assert fields["tokenizer.ggml.pre"].contents() == LLAMA3_PRE
            assert fields["general.file_type"].contents() == {"bf16": 32, "q8_0": 7}[gguf_type]
            figures = compare_generation(out, gguf_type, hf_model, hf_tokenizer)
            print(f"{arm} {gguf_type}: {figures}")
            assert figures["equal"] >= figures["steps"] - figures["near_ties"]


def render_ollama(template: str, messages: list[dict]) -> str:
    """The Modelfile's Go template for `.Messages` (only the constructs it uses: `{{-`, range, fields)."""
    text = re.sub(r"\s*\{\{-\s*", "{{ ", template)
    head, rest = text.split("{{ range .Messages }}")
    body, tail = rest.split("{{ end }}", 1)
    return head + "".join(body.replace("{{ .Role }}", m["role"]).replace("{{ .Content }}", m["content"])
                          for m in messages) + tail


def test_modelfile_is_ollamas_format_with_llama3_chat(tiny_ggufs):
    from gguf import GGUFReader
    from jinja2 import Environment
    from transformers import AutoTokenizer

    out = tiny_ggufs["replace"]
    text = (out / "Modelfile").read_text(encoding="utf-8")
    template = re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M).group(1)
    assert template == OLLAMA_TEMPLATE
    instructions = [line.split(" ", 1) for line in re.sub(r'""".*?"""', '""', text, flags=re.S).splitlines()
                    if line.strip() and not line.startswith("#")]
    assert {i for i, _ in instructions} <= {"FROM", "PARAMETER", "TEMPLATE", "SYSTEM", "ADAPTER", "LICENSE", "MESSAGE"}
    assert instructions[0] == ["FROM", "./model-q8_0.gguf"] and (out / "model-q8_0.gguf").is_file()
    stops = [json.loads(v.split(" ", 1)[1]) for i, v in instructions if i == "PARAMETER" and v.startswith("stop ")]
    assert tuple(stops) == MODELFILE_STOPS
    hf = AutoTokenizer.from_pretrained(str(out))
    vocab = llama(out / "model-q8_0.gguf", vocab_only=True)
    for stop in stops:  # each stop is one special token llama.cpp knows
        assert len(vocab.tokenize(stop.encode(), add_bos=False, special=True)) == 1, stop
    gguf_template = GGUFReader(out / "model-q8_0.gguf").fields["tokenizer.chat_template"].contents()
    assert "{%- generation" in LLAMA3_CHAT_TEMPLATE and not re.search(GENERATION_TAGS, gguf_template)
    for messages in PROMPTS:
        ids = hf.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
        ollama = vocab.tokenize(render_ollama(template, messages).encode(), add_bos=True, special=True)
        assert ollama == ids, messages
        plain = Environment().from_string(gguf_template).render(messages=messages, add_generation_prompt=True)
        assert plain == hf.decode(ids)


def test_export_has_ordinary_permissions(tiny_ggufs):
    out = tiny_ggufs["baseline"]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.iterdir()]}
    assert modes.pop(out.name) == 0o755
    assert {"model.safetensors", "model-bf16.gguf", "Modelfile"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes


def test_tokenizer_train_output_has_ordinary_permissions(tmp_path):
    from azllm.tokenizer.train import train_tokenizer

    old = os.umask(0o027)
    try:
        out = train_tokenizer(["Salam dünya, necəsən?"] * 20, vocab_size=600, out_dir=tmp_path / "tok",
                              show_progress=False).path
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o640}


def test_unknown_pre_tokenizer_is_refused_nothing_written(tiny_ggufs, tmp_path):
    """A tokenizer whose pre-tokenizer is not Llama 3's and that llama.cpp's table does not know (GPT-2's
    byte-level split over the replace arm's vocabulary): a sentence naming it; no GGUF, no temp files."""
    import shutil

    from azllm.export.model_dir import PartDirs, write_export

    tok_dir = tmp_path / "model"  # the model directory carries its tokenizer
    shutil.copytree(tiny_ggufs["replace"], tok_dir, ignore=shutil.ignore_patterns("*.gguf"))
    data = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    data["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    (tok_dir / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    pre, diffs = llama_cpp_pre_tokenizer(tok_dir)
    assert pre is None and "pre_tokenizer is" in diffs[0] and "ByteLevel" in diffs[0]
    out = tmp_path / "refused"
    with pytest.raises(ValueError, match=r"does not know this tokenizer's pre-tokenizer.*ByteLevel.*without --gguf"):
        write_export(PartDirs(model=tok_dir, adapter=None), out, dtype="bfloat16", card="x\n",
                     gguf_type="bf16")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_q4_k_m_uses_llamas_quantizer_or_says_how_to_get_it(tiny_ggufs, tmp_path):
    from gguf import GGUFReader

    out = tiny_ggufs["extend"]
    path = write_gguf(out, "q4_k_m", dtype="bfloat16", name="extend")  # from the directory's model-bf16.gguf
    assert GGUFReader(path).fields["general.file_type"].contents() == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    model = llama(path, n_ctx=64, n_threads=2)
    assert len(model.tokenize("Salam dünya".encode(), add_bos=True)) > 1
    assert (out / "Modelfile").read_text().splitlines()[1] == f"FROM ./{path.name}"
    # without llama-cpp-python: the CLI refuses before any work, with the way to get it
    target = tmp_path / "q4"
    code = ("import sys; sys.modules['llama_cpp'] = None\nfrom azllm.cli import main\n"
            f"sys.exit(main(['export', '--run', 'production', '--gguf-type', 'q4_k_m', '--out', {str(target)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "pip install llama-cpp-python==" in proc.stderr and "Nothing was written" in proc.stderr
    assert "Traceback" not in proc.stderr and not target.exists()


def test_demo_run_in_llama_cpp(demo_run, az_documents, tmp_path):
    """The demo preset's run (SmolLM2-135M base, 30 layers): its `replace` arm (a new vocabulary with Llama 3's
    pre-tokenizer) exported as bf16 GGUF tokenizes and generates in llama.cpp as in transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export_run(demo_run[0].id, tmp_path / "demo", arm="replace", dtype="bfloat16", gguf_type="bf16").out_dir
    hf_tokenizer = AutoTokenizer.from_pretrained(str(out))
    vocab = llama(out / "model-bf16.gguf", vocab_only=True)
    expected = hf_tokenizer(az_documents, add_special_tokens=False)["input_ids"]
    same = sum(vocab.tokenize(d.encode("utf-8"), add_bos=False, special=False) == ids
               for d, ids in zip(az_documents, expected, strict=True))
    hf_model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    figures = compare_generation(out, "bf16", hf_model, hf_tokenizer)
    print(f"demo replace: llama.cpp == transformers on {same}/{len(az_documents)} documents; bf16 {figures}")
    assert same == len(az_documents)
    assert figures["equal"] >= figures["steps"] - figures["near_ties"]
