"""Task evaluation (lm-evaluation-harness): preset checks, azllm's shipped SIB-200 / FLORES-200 tasks
on the real shared files, a user's JSONL tasks, lm-eval's Belebele and INCLUDE on tiny local files in
their hub schema, and the same number through `azllm eval tasks` as through `lm_eval --model hf`.

A tiny random Llama (2 layers, hidden 32) on the project's byte-level BPE; offline (HF_HUB_OFFLINE=1).

    .venv/bin/python -m pytest -q tests/test_tasks.py
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from metaflow.exception import MetaflowException
from test_sft import build_tiny_llama, build_tiny_tokenizer

from azllm.config import ConfigError, CustomTaskConfig, EvalConfig, parse_config, parse_config_text
from azllm.config.tasks import check_eval_tasks
from azllm.eval.custom import mc_text
from azllm.eval.tasks import evaluate_tasks, task_selection_score

INCLUDE_DOMAINS = ("Applied Science", "Arts & Humanities", "Business & Commerce", "Health oriented education",
                   "Social Science", "STEM")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("tiny_tasks")
    tokenizer = build_tiny_tokenizer(root / "model", num_lines=200)
    build_tiny_llama(root / "model", len(tokenizer), seed=3)
    model = AutoModelForCausalLM.from_pretrained(root / "model", dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(root / "model"), root / "model"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


MC_RECORDS = [
    {"question": "Azərbaycanın paytaxtı hansı şəhərdir?", "choices": ["Gəncə", "Bakı", "Şəki"], "answer": "B",
     "subject": "coğrafiya"},
    {"question": "Mobil internet paketini necə yoxlamaq olar?", "choices": ["*100# yığmaq", "modemi söndürmək"],
     "answer": 0},
    {"question": "Xəzər nədir?", "choices": ["dəniz", "dağ", "çay", "şəhər"], "answer": "a"},
    {"question": "Hansı ay qışdır?", "choices": ["iyul", "yanvar", "avqust", "may"], "answer": 1},
]


def preset(tmp_path: Path, eval_toml: str) -> str:
    return f'inherit = "{Path("configs/tiny.toml").resolve()}"\n{eval_toml}'


# ---------------------------------------------------------------------------
# Bad input: refused by the preset parser, before any model is loaded
# ---------------------------------------------------------------------------


def test_preset_checks_name_the_problem_and_the_fix(tmp_path, shared_data):
    def refused(eval_toml: str) -> str:
        with pytest.raises(ConfigError) as e:
            parse_config_text(preset(tmp_path, eval_toml), source="p.toml")
        return str(e.value)

    sib = shared_data / "eval" / "sib200_azj_Latn"
    msg = refused('[eval]\ntasks = ["sib200_az"]\n')
    assert "unknown task(s) 'sib200_az'" in msg and "sib200_azj" in msg and "azllm eval tasks --list" in msg
    assert "limit must be >= 1" in refused('[eval]\ntasks = ["sib200_azj"]\nlimit = 0\n')
    hub = preset(tmp_path, '[eval]\ntasks = ["sib200_azj", "belebele_azj_Latn"]\n'
                           f'[eval.task_data]\nsib200_azj = "{sib}"\n')
    assert parse_config_text(hub).eval.tasks == ("sib200_azj", "belebele_azj_Latn")  # reading a preset: fine
    with pytest.raises(MetaflowException) as e:  # a flow run (the Metaflow Config parser), offline: refused
        parse_config(hub)
    assert "['belebele_azj_Latn'] read the Hugging Face hub" in str(e.value) and "[eval.task_data]" in str(e.value)
    # a task_data path that does not exist at all (the demo preset without ../shared): the hub, said once;
    # offline, a flow run is refused naming the path
    absent = preset(tmp_path, f'[eval]\ntasks = ["sib200_azj"]\n[eval.task_data]\nsib200_azj = "{tmp_path / "no"}"\n')
    assert parse_config_text(absent).eval.tasks == ("sib200_azj",)
    with pytest.raises(MetaflowException) as e:
        parse_config(absent)
    assert "['sib200_azj'] read the Hugging Face hub" in str(e.value)
    assert "no such [eval.task_data] path" in str(e.value)
    msg = refused(f'[eval]\ntasks = ["sib200_azj"]\nnum_fewshot = 800\n[eval.task_data]\nsib200_azj = "{sib}"\n')
    assert "800 few-shot examples" in msg and "has 701" in msg

    bad = write_jsonl(tmp_path / "bad.jsonl", [MC_RECORDS[0], {"question": "Q?", "choices": ["a", "b"]}])
    custom = '[[eval.custom_tasks]]\nname = "faq"\nkind = "multiple_choice"\npath = "{path}"\n'
    msg = refused('[eval]\ntasks = ["faq"]\n' + custom.format(path=bad))
    assert f"{bad}:2: field 'answer' is missing" in msg and "index or letter" in msg
    outside = write_jsonl(tmp_path / "outside.jsonl", [MC_RECORDS[1], {**MC_RECORDS[0], "answer": "D"}])
    msg = refused('[eval]\ntasks = ["faq"]\n' + custom.format(path=outside))
    assert f"{outside}:2: field 'answer' = 'D'" in msg and "A..C" in msg
    ok = write_jsonl(tmp_path / "ok.jsonl", MC_RECORDS)
    msg = refused('[eval]\ntasks = ["faq"]\nnum_fewshot = 4\n' + custom.format(path=ok))
    assert "asks for 4 few-shot examples" in msg and "has 3" in msg
    msg = refused('[eval]\ntasks = []\n[cpt]\nselect_by = "tasks"\n')
    assert "select_by" in msg and "[eval] tasks is empty" in msg

    cfg = parse_config_text(preset(tmp_path, '[eval]\ntasks = ["faq"]\nnum_fewshot = 3\n' + custom.format(path=ok)))
    assert cfg.eval.custom_tasks[0].name == "faq" and cfg.eval.num_fewshot == 3


# ---------------------------------------------------------------------------
# Shipped tasks on the real shared files
# ---------------------------------------------------------------------------


def test_shipped_sib200_and_flores_read_the_shared_files(tiny, shared_data):
    model, tokenizer, _ = tiny
    eval_dir = shared_data / "eval"
    cfg = EvalConfig(tasks=("sib200_azj", "flores_azj_eng", "flores_eng_azj"), limit=2, num_fewshot=1,
                     max_new_tokens=4, task_data={"sib200_azj": str(eval_dir / "sib200_azj_Latn"),
                                                  "flores_azj_eng": str(eval_dir / "flores200"),
                                                  "flores_eng_azj": str(eval_dir / "flores200")})
    check_eval_tasks(cfg)
    scores = evaluate_tasks(model, tokenizer, cfg, model_name="tiny", keep_samples=True)
    primary = {r["task"]: r for r in scores.rows if r["primary"]}
    assert set(primary) == set(cfg.tasks)
    assert primary["sib200_azj"]["metric"] == "acc" and primary["sib200_azj"]["chance"] == pytest.approx(1 / 7)
    assert all(r["n"] == 2 and r["num_fewshot"] == 1 for r in primary.values())
    assert primary["flores_azj_eng"]["metric"] == "chrf"

    with open(eval_dir / "sib200_azj_Latn" / "test.tsv", encoding="utf-8", newline="") as f:
        test_rows = sorted(csv.DictReader(f, delimiter="\t"), key=lambda r: int(r["index_id"]))[:2]
    assert len({r["category"] for r in test_rows}) > 1  # FLORES order, not the file's (sorted by category)
    docs = [s["doc"] for s in sorted(scores.samples["sib200_azj"], key=lambda s: s["doc_id"])]
    assert [d["text"] for d in docs] == [r["text"] for r in test_rows]
    labels = (eval_dir / "sib200_azj_Latn" / "labels.txt").read_text(encoding="utf-8").split()
    for sample, row in zip(sorted(scores.samples["sib200_azj"], key=lambda s: s["doc_id"]), test_rows, strict=True):
        assert sample["target"] == labels.index(row["category"])
        assert len(sample["arguments"]) == 7
    az = (eval_dir / "flores200" / "azj_Latn.devtest").read_text(encoding="utf-8").splitlines()
    en = (eval_dir / "flores200" / "eng_Latn.devtest").read_text(encoding="utf-8").splitlines()
    for s in scores.samples["flores_eng_azj"]:
        assert (s["doc"]["source"], s["doc"]["target"]) == (en[s["doc_id"]], az[s["doc_id"]])
        prompt = s["arguments"][0][0]
        assert prompt.endswith(f"English: {en[s['doc_id']]}\nAzerbaijani:") and prompt.count("English:") == 2

    import sacrebleu

    flores = sorted(scores.samples["flores_azj_eng"], key=lambda s: s["doc_id"])
    expected = sacrebleu.corpus_chrf([s["filtered_resps"][0] for s in flores], [[s["target"] for s in flores]])
    assert primary["flores_azj_eng"]["value"] == pytest.approx(expected.score)


# ---------------------------------------------------------------------------
# A user's own JSONL tasks
# ---------------------------------------------------------------------------


@torch.inference_mode()
def letter_logprob(model, tokenizer, context: str, letter: str) -> float:
    """log p(" X" | context), tokenised the way lm-eval's HF class does (context + continuation whole)."""
    ctx = tokenizer(context)["input_ids"]
    whole = tokenizer(context + " " + letter)["input_ids"]
    logits = model(torch.tensor([whole])).logits[0].double().log_softmax(-1)
    return sum(logits[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))


def faq_and_generation(tmp_path: Path, *, max_new_tokens: int, generation_shots: int) -> EvalConfig:
    """Two custom tasks a user would write: a multiple-choice FAQ (MC_RECORDS) and a generation set."""
    mc = write_jsonl(tmp_path / "faq.jsonl", MC_RECORDS)
    gen = write_jsonl(tmp_path / "gen.jsonl", [{"prompt": "Salam!", "reference": "Salam, necə kömək edə bilərəm?"},
                                               {"prompt": "Balansı necə yoxlayım?", "reference": "*100# yığın."}])
    return EvalConfig(tasks=("faq", "gen"), max_new_tokens=max_new_tokens, custom_tasks=(
        CustomTaskConfig(name="faq", kind="multiple_choice", path=str(mc), num_fewshot=0),
        CustomTaskConfig(name="gen", kind="generation", path=str(gen), num_fewshot=generation_shots)))


def test_custom_multiple_choice_and_generation(tiny, tmp_path):
    model, tokenizer, _ = tiny
    cfg = faq_and_generation(tmp_path, max_new_tokens=6, generation_shots=1)
    check_eval_tasks(cfg)
    scores = evaluate_tasks(model, tokenizer, cfg, model_name="tiny", keep_samples=True)
    primary = {r["task"]: r for r in scores.rows if r["primary"]}
    answers = [1, 0, 0, 1]
    right = []
    for record, answer in zip(MC_RECORDS, answers, strict=True):
        doc = {**record, "subject": record.get("subject", ""), "answer": answer}
        lp = [letter_logprob(model, tokenizer, mc_text(doc), "ABCD"[i]) for i in range(len(record["choices"]))]
        right.append(max(range(len(lp)), key=lp.__getitem__) == answer)
    assert primary["faq"]["value"] == pytest.approx(sum(right) / len(right))
    assert primary["faq"]["chance"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 4 + 1 / 4) / 4)
    assert primary["faq"]["num_fewshot"] == 0 and primary["gen"]["num_fewshot"] == 1
    assert [s["target"] for s in scores.samples["faq"]] == answers
    assert "Subject: coğrafiya" in scores.samples["faq"][0]["arguments"][0][0]
    import sacrebleu

    gens = sorted(scores.samples["gen"], key=lambda s: s["doc_id"])
    expected = sacrebleu.corpus_chrf([s["filtered_resps"][0] for s in gens], [[s["target"] for s in gens]]).score
    assert primary["gen"]["value"] == pytest.approx(expected)
    assert task_selection_score(scores.rows, "tiny", ("faq", "gen")) == pytest.approx(
        ((primary["faq"]["value"] - primary["faq"]["chance"]) / (1 - primary["faq"]["chance"])
         + primary["gen"]["value"] / 100) / 2)


# ---------------------------------------------------------------------------
# lm-eval's Belebele and INCLUDE, on tiny local files in their hub schema
# ---------------------------------------------------------------------------


def test_hub_format_builtins_on_local_files(tiny, tmp_path):
    model, tokenizer, _ = tiny
    belebele = write_jsonl(tmp_path / "belebele.jsonl", [
        {"flores_passage": "Bakı Xəzər dənizinin sahilindədir.", "question": "Bakı harada yerləşir?",
         "mc_answer1": "dağda", "mc_answer2": "dəniz sahilində", "mc_answer3": "səhrada", "mc_answer4": "adada",
         "correct_answer_num": str(k), "link": "x", "question_number": 1, "dialect": "azj_Latn",
         "ds": "2023-01-01"} for k in (2, 1, 4)])
    include = write_jsonl(tmp_path / "include.jsonl", [
        {"language": "Azerbaijani", "country": "Azerbaijan", "domain": domain, "subject": "x", "regional_feature":
         "region explicit", "level": "x", "question": f"Sual {i}?", "option_a": "bir", "option_b": "iki",
         "option_c": "üç", "option_d": "dörd", "answer": i % 4} for i, domain in enumerate(INCLUDE_DOMAINS)])
    cfg = EvalConfig(tasks=("belebele_azj_Latn", "include_base_44_azerbaijani"),
                     task_data={"belebele_azj_Latn": str(belebele), "include_base_44_azerbaijani": str(include)})
    check_eval_tasks(cfg)
    scores = evaluate_tasks(model, tokenizer, cfg, model_name="tiny", keep_samples=True)
    primary = {r["task"]: r for r in scores.rows if r["primary"]}
    assert primary["belebele_azj_Latn"]["n"] == 3 and primary["belebele_azj_Latn"]["chance"] == pytest.approx(0.25)
    assert [s["target"] for s in sorted(scores.samples["belebele_azj_Latn"], key=lambda s: s["doc_id"])] == [1, 0, 3]
    assert primary["include_base_44_azerbaijani"]["n"] == len(INCLUDE_DOMAINS)
    assert primary["include_base_44_azerbaijani"]["chance"] == pytest.approx(0.25)
    subtasks = [t for t in scores.samples if t.startswith("include_base_44_azerbaijani_")]
    assert len(subtasks) == len(INCLUDE_DOMAINS) and all(len(scores.samples[t]) == 1 for t in subtasks)
    accs = [r["value"] for r in scores.rows if r["task"] in subtasks and r["metric"] == "acc"]
    assert primary["include_base_44_azerbaijani"]["value"] == pytest.approx(sum(accs) / len(accs))


# ---------------------------------------------------------------------------
# The same number through azllm as through lm-eval's own command line
# ---------------------------------------------------------------------------


def test_azllm_cli_equals_lm_eval_cli(tiny, tmp_path, shared_data, capsys):
    from azllm.cli import main

    _, _, model_dir = tiny
    sib = shared_data / "eval" / "sib200_azj_Latn"
    flores = shared_data / "eval" / "flores200"
    conf = tmp_path / "p.toml"
    conf.write_text(preset(tmp_path, f'[eval]\nnum_fewshot = 2\nmax_new_tokens = 8\n'
                                     f'[eval.task_data]\nsib200_azj = "{sib}"\nflores_azj_eng = "{flores}"\n'),
                    encoding="utf-8")
    assert main(["eval", "tasks", "--model", str(model_dir), "--tasks", "sib200_azj", "--config", str(conf),
                 "--limit", "6", "--json", "--output", str(tmp_path / "azllm.json")]) == 0
    ours = {(r["task"], r["metric"]): r["value"] for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])}
    assert json.loads((tmp_path / "azllm.json").read_text())[0]["results"]["sib200_azj"]["acc,none"] == \
        ours[("sib200_azj", "acc")]

    out = tmp_path / "lm_eval_out"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "lm_eval"), "--model", "hf",
         "--model_args", f"pretrained={model_dir},dtype=float32", "--device", "cpu", "--batch_size", "8",
         "--tasks", "sib200_azj", "--include_path", str(Path("azllm/eval/lm_tasks").resolve()),
         "--num_fewshot", "2", "--limit", "6", "--metadata", json.dumps({"data_dir": str(sib)}),
         "--output_path", str(out)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    theirs = json.loads(next(out.rglob("results_*.json")).read_text())["results"]["sib200_azj"]
    assert theirs["acc,none"] == ours[("sib200_azj", "acc")]
    assert theirs["acc_norm,none"] == ours[("sib200_azj", "acc_norm")]


def test_models_with_adapter_card_and_arm_choice(tiny, tmp_path, shared_data):
    """What join_cpt and evaluate call, without the flow: models one at a time (an SFT adapter merged),
    the files written, the card's table and chart, and the arm picked by `select_by = "tasks"`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from azllm.eval.compare import choose_arm
    from azllm.eval.report import ModelSpec
    from azllm.eval.tasks import evaluate_task_models
    from azllm.steps.cards import task_components

    _, _, model_dir = tiny
    torch.manual_seed(0)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    cfg = EvalConfig(tasks=("sib200_azj",), limit=2,
                     task_data={"sib200_azj": str(shared_data / "eval" / "sib200_azj_Latn")})
    specs = {"base": ModelSpec(model_dir=model_dir, tokenizer_dir=model_dir),
             "sft": ModelSpec(model_dir=model_dir, tokenizer_dir=model_dir, adapter_dir=tmp_path / "adapter")}
    rows = evaluate_task_models(cfg, specs, out_dir=tmp_path / "out").rows
    assert {(r["model"], r["metric"]) for r in rows} == {(m, k) for m in specs for k in ("acc", "acc_norm")}
    assert (tmp_path / "out" / "task_scores.csv").read_text().count("\n") == len(rows) + 1
    assert set(json.loads((tmp_path / "out" / "task_results.json").read_text())) == set(specs)
    kinds = [type(c).__name__ for c in task_components(rows, "Tasks")]
    assert kinds == ["Markdown", "Table", "Image"]

    fake = [{"model": m, "task": "t", "metric": "acc", "value": v, "chance": 0.25, "primary": True}
            for m, v in (("baseline", 0.4), ("extend", 0.55), ("replace", 0.3))]
    bpb = {"baseline": {"validation": 1.0}, "extend": {"validation": 1.2}, "replace": {"validation": 0.9}}
    assert choose_arm(bpb, ["baseline", "extend", "replace"])[0] == "replace"
    arm, reason = choose_arm(bpb, ["baseline", "extend", "replace"], task_scores=fake, tasks=("t",))
    assert arm == "extend" and "0.4000" in reason  # (0.55 - 0.25) / 0.75


def test_chat_models_are_scored_with_and_without_their_chat_template_on_generation_tasks(tiny, tmp_path):
    """A chat model (the SFT and preference models in `evaluate`): every task without the chat template,
    the generation tasks once more with it; the prompt lm-eval sent then carries the template's headers."""
    from azllm.eval.report import ModelSpec
    from azllm.eval.tasks import evaluate_task_models

    model, tokenizer, model_dir = tiny
    cfg = faq_and_generation(tmp_path, max_new_tokens=4, generation_shots=0)
    specs = {"cpt": ModelSpec(model_dir=model_dir, tokenizer_dir=model_dir),
             "sft": ModelSpec(model_dir=model_dir, tokenizer_dir=model_dir, chat=True)}
    rows = [r for r in evaluate_task_models(cfg, specs).rows if r["primary"]]
    assert {(r["model"], r["task"], r["chat_template"]) for r in rows} == {
        ("cpt", "faq", False), ("cpt", "gen", False), ("sft", "faq", False), ("sft", "gen", False),
        ("sft (chat template)", "gen", True)}
    plain = evaluate_tasks(model, tokenizer, cfg, model_name="sft", names=("gen",), keep_samples=True)
    chat = evaluate_tasks(model, tokenizer, cfg, model_name="sft", names=("gen",), keep_samples=True,
                          chat_template=True)
    header = "<|start_header_id|>"
    assert all(header not in s["arguments"][0][0] for s in plain.samples["gen"])
    assert all(header in s["arguments"][0][0] for s in chat.samples["gen"])
