"""`azllm export` on real runs: the merged model loads in plain transformers and generates like
base + adapter through PEFT; @project branches; a run that failed before SFT; bad input; --push to
S3 (a moto server on localhost); the GGUF converter's absence.

    .venv/bin/python -m pytest -q tests/test_export.py

Reuses the suite's session runs (conftest.py): `tiny_run` (production branch), `failed_sft_run`
(branch `test.ci`, failed in sft_lora) and, for the issue's "tested on the demo preset's run",
`demo_run` (the slow one, shared with test_demo.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from azllm.export.gguf import GGUF_ENV, require_gguf_converter
from azllm.export.model_dir import push_dir
from azllm.report.model_card import export_markdown
from azllm.report.summary import RunSummary
from azllm.runs.export import export_run
from azllm.runs.find import branch_of, find_run, latest_production_run, run_config, runs_in_branch
from azllm.runs.parts import fetch_parts, latest_stage, run_parts, with_stage
from conftest import FAILED_RUN_BRANCH, REPO_ROOT

COMPARE = r"""
import json, sys
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

export_dir, cpt_dir, tokenizer_dir, adapter_dir = sys.argv[1:5]
tok = AutoTokenizer.from_pretrained(export_dir)
ids = tok.apply_chat_template([{"role": "user", "content": "Balansımı necə yoxlaya bilərəm?"}],
                              add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
merged = AutoModelForCausalLM.from_pretrained(export_dir, dtype=torch.float32).eval()
reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(cpt_dir, dtype=torch.float32),
                                      adapter_dir).eval()
gen = GenerationConfig.from_pretrained(export_dir)
with torch.inference_mode():
    diff = (merged(ids).logits - reference(ids).logits).abs().max().item()
    kw = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False, pad_token_id=gen.pad_token_id)
    a = merged.generate(ids, **kw)[0, ids.shape[1]:].tolist()
    b = reference.generate(input_ids=ids, **kw)[0, ids.shape[1]:].tolist()
print(json.dumps({"max_logit_diff": diff, "tokens_merged": a, "tokens_reference": b,
                  "eos": gen.eos_token_id, "eot": tok.convert_tokens_to_ids("<|eot_id|>"),
                  "dtype": str(merged.dtype), "azllm_imported": any(m.startswith("azllm") for m in sys.modules),
                  "prompt_ends_with_assistant_header": tok.decode(ids[0, -4:]).strip()}))
"""


def export_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "azllm.cli", "export", *args], capture_output=True, text=True,
                          timeout=900, cwd=REPO_ROOT)


def compare_with_peft(run, export_dir: Path, tmp_path: Path, stage: str | None = None) -> dict:
    """Load the export and base + adapter (of `stage`, default the run's last) in a fresh interpreter (no
    azllm import); their figures."""
    parts = run_parts(run)
    dirs = fetch_parts(with_stage(parts, stage or latest_stage(parts)))
    # the CPT model directory carries its tokenizer (join_cpt checks it is the arm's)
    proc = subprocess.run([sys.executable, "-c", COMPARE, str(export_dir), str(dirs.model), str(dirs.model),
                           str(dirs.adapter)], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_same_as_peft(figures: dict) -> None:
    print(f"export vs base+adapter: max |logit diff| {figures['max_logit_diff']:.2e}, "
          f"{len(figures['tokens_merged'])} tokens, equal: {figures['tokens_merged'] == figures['tokens_reference']}")
    assert not figures["azllm_imported"]
    assert figures["dtype"] == "torch.float32"
    assert figures["max_logit_diff"] < 1e-3, figures
    assert figures["tokens_merged"] == figures["tokens_reference"], figures
    assert figures["eot"] in figures["eos"], figures


def front_matter(readme: Path) -> dict:
    import yaml

    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n"), text[:200]
    return yaml.safe_load(text.split("---\n")[1])


@pytest.fixture(scope="module")
def tiny_export(tiny_run, tmp_path_factory) -> Path:
    """`azllm export --run production --dtype float32` of the tiny run (the production branch's only run)."""
    out = tmp_path_factory.mktemp("export") / "tiny-fp32"
    proc = export_cli("--run", "production", "--dtype", "float32", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"of arm '{tiny_run[0]['end'].task.data.chosen_arm}'" in proc.stdout
    return out


def test_export_loads_in_plain_transformers_like_base_plus_adapter(tiny_run, tiny_export, tmp_path):
    assert_same_as_peft(compare_with_peft(tiny_run[0], tiny_export, tmp_path))
    names = {p.name for p in tiny_export.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md"} <= names
    assert not any(n.startswith("adapter") for n in names), names
    tokenizer_config = json.loads((tiny_export / "tokenizer_config.json").read_text())
    assert "<|eot_id|>" in tokenizer_config["chat_template"]  # where transformers 4.x (vLLM, TGI) reads it


def test_model_card_holds_the_runs_figures(tiny_run, tiny_export):
    run = tiny_run[0]
    data = run["end"].task.data
    meta = front_matter(tiny_export / "README.md")
    assert meta["language"] == ["az"] and meta["license"] and "azllm" in meta["tags"]
    card = (tiny_export / "README.md").read_text(encoding="utf-8")
    assert run.pathspec in card and "branch `prod`" in card
    assert "Stage shipped: **preference**" in card and "Preference stage (GRPO" in card  # the tiny preset's
    bpb = data.arm_bpb[data.chosen_arm]["validation"]
    assert f"| {data.chosen_arm} | {bpb:.4g} |" in card, "BPB table lacks the chosen arm"
    for heading in ("## Tokenizer", "## Data", "## Training", "## Bits per byte", "## Evaluation",
                    "## Sample generations", "## Provenance"):
        assert heading in card, heading
    assert str(data.data_stats["corpus"]["train"]["documents"]) in card
    snippet = card.split("```python\n")[1].split("```")[0]  # the card's own usage example runs as written
    proc = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=300,
                          cwd=tiny_export)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_end_step_stores_the_export_and_tags_the_run(tiny_run, tmp_path):
    from metaflow import load_model

    run = tiny_run[0]
    data = run["end"].task.data
    assert f"azllm.model:{data.chosen_arm}" in run.tags
    assert f"azllm.bpb:{data.arm_bpb[data.chosen_arm]['validation']:.4f}" in run.tags
    load_model(data.export_model, str(tmp_path / "m"))
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"model.safetensors", "generation_config.json", "README.md", "tokenizer.json"} <= files
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == "bfloat16"
    text = export_markdown(run.id, RunSummary.from_artifacts(data, config=run_config(run)))  # the summary card
    assert f"azllm export --run {run.id}" in text and f"`azllm.model:{data.chosen_arm}`" in text


def test_branches_are_separate_namespaces(tiny_run, failed_sft_run):
    from metaflow import Flow, namespace
    from metaflow.exception import MetaflowNamespaceMismatch

    prod, failed_id = tiny_run[0], failed_sft_run[0]
    test_branch = f"test.{FAILED_RUN_BRANCH}"
    assert branch_of(prod) == "prod" and "project:azllm" in prod.tags
    assert latest_production_run().id == prod.id
    from azllm.runs.explore import find_run as notebook_find_run  # the notebook's way in is the same function

    assert notebook_find_run is find_run and find_run("production").id == prod.id
    assert [r.id for r in runs_in_branch(test_branch)][:1] == [failed_id]
    assert prod.id not in {r.id for r in runs_in_branch(test_branch)}
    assert failed_id not in {r.id for r in runs_in_branch("prod")}
    namespace(f"project_branch:{test_branch}")  # the client, switched to the test branch, does not see prod
    try:
        assert failed_id in {r.id for r in Flow("AzLLMFlow").runs()}
        with pytest.raises(MetaflowNamespaceMismatch):
            Flow("AzLLMFlow")[prod.id]
    finally:
        namespace(None)


def test_run_failed_before_sft_exports_its_cpt_model(failed_sft_run, tmp_path, capsys):
    run_id = failed_sft_run[0]
    with pytest.raises(ValueError, match=rf"--stage sft: .*no SFT adapter.*resume --origin-run-id {run_id}"):
        export_run(run_id, tmp_path / "refused", stage="sft", dtype="float32")
    with pytest.raises(ValueError, match=r"--stage preference: .*no preference adapter.*export --stage sft"):
        export_run(run_id, tmp_path / "refused", stage="preference", dtype="float32")
    result = export_run(run_id, tmp_path / "cpt", dtype="float32")
    assert result.stage == "cpt" and "without SFT" in result.notes[0]
    assert "without SFT" in capsys.readouterr().out
    card = (tmp_path / "cpt" / "README.md").read_text(encoding="utf-8")
    assert "CPT only" in card and "without SFT" in card and "lora" not in front_matter(tmp_path / "cpt" /
                                                                                      "README.md")["tags"]
    from safetensors.torch import load_file

    exported = load_file(tmp_path / "cpt" / "model.safetensors")
    trained = load_file(fetch_parts(run_parts(find_run(run_id))).model / "model.safetensors")
    shared = sorted(set(exported) & set(trained))
    assert shared and all(torch.equal(exported[k], trained[k].to(exported[k].dtype)) for k in shared)


def test_bad_input_is_refused_with_the_fix(tiny_run, tiny_export, tmp_path):
    proc = export_cli("--run", "424242", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "no AzLLMFlow run '424242'" in proc.stderr and "'production'" in proc.stderr
    assert "Traceback" not in proc.stderr
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"exists and is not empty; pass --overwrite"):
        export_run(tiny_run[0].id, busy)
    assert (busy / "keep.txt").read_text() == "mine"
    export_run(tiny_run[0].id, busy, stage="cpt", overwrite=True)
    assert not (busy / "keep.txt").exists() and (busy / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".busy.*")), "temporary directories left behind"
    with pytest.raises(ValueError, match=r"no arm 'nope'"):
        export_run(tiny_run[0].id, tmp_path / "y", arm="nope")
    chosen = tiny_run[0]["end"].task.data.chosen_arm
    other = next(a for a in ("baseline", "extend", "replace") if a != chosen)
    with pytest.raises(ValueError, match=rf"trained on the chosen arm '{chosen}'.*pass --arm {chosen}"):
        export_run(tiny_run[0].id, tmp_path / "y", arm=other, stage="sft")
    result = export_run(tiny_run[0].id, tmp_path / "y", arm=other)
    assert result.stage == "cpt" and result.arm == other and "without SFT" in result.notes[0]
    # --stage sft still ships the SFT adapter after a preference stage, and the card says which stage shipped
    sft = export_run(tiny_run[0].id, tmp_path / "sft", stage="sft", dtype="float32")
    assert sft.stage == "sft" and "Stage shipped: **sft**" in (tmp_path / "sft" / "README.md").read_text()
    parts = run_parts(tiny_run[0])
    assert_same_as_peft(compare_with_peft(tiny_run[0], tmp_path / "sft", tmp_path, stage="sft"))
    assert parts.adapter_ref is not None and parts.preference_adapter_ref is not None


def test_gguf_without_llama_cpp_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv(GGUF_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nor llama-cpp-python's copy (azllm.export.gguf)
    with pytest.raises(ValueError, match=r"git clone .*llama\.cpp(.|\n)*" + GGUF_ENV):
        require_gguf_converter()
    monkeypatch.setenv(GGUF_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=rf"{GGUF_ENV}=.*nowhere: no convert_hf_to_gguf.py there"):
        require_gguf_converter()


@pytest.fixture
def moto_s3(monkeypatch):
    """A moto S3 server on localhost with a bucket; Metaflow's S3 client reaches it through the env."""
    import boto3
    from moto.server import ThreadedMotoServer

    from azllm.train.phase import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ENDPOINT_URL": endpoint, "METAFLOW_S3_ENDPOINT_URL": endpoint,
                       "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="azllm-models")
    yield client
    server.stop()


def test_push_uploads_every_file(tiny_export, moto_s3):
    urls = push_dir(tiny_export, "s3://azllm-models/az/tiny")
    listed = {o["Key"]: o["Size"] for o in moto_s3.list_objects_v2(Bucket="azllm-models")["Contents"]}
    local = {f"az/tiny/{p.name}": p.stat().st_size for p in tiny_export.iterdir() if p.is_file()}
    assert listed == local and len(urls) == len(local)
    with pytest.raises(ValueError, match=r"expected s3://bucket/prefix"):
        push_dir(tiny_export, "gs://elsewhere")


def test_demo_run_export_matches_base_plus_adapter(demo_run, tmp_path):
    """The issue's check on the demo preset's run (SmolLM2-135M): float32 export vs PEFT."""
    run = demo_run[0]
    out = tmp_path / "demo-fp32"
    result = export_run(run.id, out, dtype="float32")
    assert result.stage == "preference"  # the demo preset runs a few DPO steps after SFT
    assert_same_as_peft(compare_with_peft(run, out, tmp_path))
    meta = front_matter(out / "README.md")
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["license"] == "apache-2.0"
