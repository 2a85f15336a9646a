"""Bad input and faults, round two (issue 26): each case through the real CLI (`azllm.cli.main`
in-process, a subprocess only where a process limit or a kill is the point), on the tiny preset,
the bundled sample data and tiny random Llamas.

    .venv/bin/python -m pytest -q tests/test_bad_input.py
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest
from test_cpt import _cpt, tiny_base  # noqa: F401 - test_cpt's tiny models and packed blocks, reused

from azllm.cli import main
from azllm.config import ConfigError, parse_config_text

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "configs" / "tiny.toml"
SAMPLE = REPO / "data" / "sample" / "corpus.jsonl"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("azllm: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _preset(tmp_path: Path, extra: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'inherit = "{TINY}"\n{extra}\n', encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# Item 6: ranges in the config, naming the key
# ---------------------------------------------------------------------------

RANGE_CASES = [
    ("[cpt.full]\nsave_every_steps = -1", "save_every_steps must be >= 0"),
    ("[cpt.embeddings]\nmin_lr_ratio = 5.0", "min_lr_ratio must be in [0, 1]"),
    ("[compute]\nnproc_per_node = 0", "[compute] nproc_per_node must be >= 1"),
    ("[cpt.full]\nlog_every_steps = 0", "log_every_steps must be >= 1"),
    ("[cpt.full]\nmax_grad_norm = 0.0", "max_grad_norm must be > 0"),
    ("[sft]\nwarmup_ratio = 1.5", "[sft] warmup_ratio must be in [0, 1)"),
    ("[eval]\nmax_bpb_documents = -1", "[eval] max_bpb_documents must be >= 0"),
    ("[model.tiny]\nnum_attention_heads = 3", "[model.tiny] need hidden_size"),
]


@pytest.mark.parametrize("extra, message", RANGE_CASES, ids=[c[1][:30] for c in RANGE_CASES])
def test_config_show_refuses_out_of_range_values_naming_the_key(tmp_path, capsys, extra, message):
    rc, out, err = _run(capsys, "config", "show", _preset(tmp_path, extra))
    assert rc == 2 and out == ""
    assert message in _one_line_error(err)


def _numeric_fields(cls):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from ((f"{f.name}.{k}", v) for k, v in _numeric_fields(hints[f.name]))
        elif hints[f.name] in (int, float):
            yield f.name, hints[f.name]


NEGATIVE_ALLOWED = {"sft.max_steps"}  # -1 = use num_epochs


def test_every_numeric_field_refuses_a_negative_value_naming_it():
    """Every int/float field of every section refuses -5 (or -1 where -1 means something), by name."""
    from azllm.config import PipelineConfig

    checked = 0
    for key, tp in _numeric_fields(PipelineConfig):
        section, _, field = key.rpartition(".")
        value = -5 if key in NEGATIVE_ALLOWED else tp(-1)
        header = f"[{section}]\n" if section else ""
        with pytest.raises(ConfigError) as e:
            parse_config_text(f'inherit = "{TINY}"\n{header}{field} = {value!r}\n', path=TINY)
        assert field in str(e.value), (key, str(e.value))
        checked += 1
    assert checked > 60, checked


# ---------------------------------------------------------------------------
# Items 3 + 5: one output rule, one error boundary
# ---------------------------------------------------------------------------


def test_data_prepare_refuses_a_busy_or_file_out_before_any_work(tmp_path, capsys):
    work = tmp_path / "work"
    preset = _preset(tmp_path, f'[data]\nwork_dir = "{work}"')
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "old.txt").write_text("x")
    rc, _, err = _run(capsys, "data", "prepare", "--config", preset, "--out", busy)
    assert rc == 2 and "exists and is not empty; pass --overwrite" in _one_line_error(err)
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc, _, err = _run(capsys, "data", "prepare", "--config", preset, "--out", afile)
    assert rc == 2 and "is a file" in _one_line_error(err)
    assert not work.exists(), "work started before the output was checked"
    with pytest.raises(ValueError, match="is a file"):  # --debug: the traceback, anywhere on the line
        main(["data", "prepare", "--config", str(preset), "--out", str(afile), "--debug"])


def test_data_prepare_overwrite_replaces_the_whole_directory_with_ordinary_permissions(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / "stale.jsonl").write_text("{}\n")
    rc, _, err = _run(capsys, "data", "prepare", "--config", TINY, "--out", out, "--overwrite")
    assert rc == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert "stale.jsonl" not in names and {"train.jsonl", "sft_train.jsonl"} <= set(names), names
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((out / "train.jsonl").stat().st_mode) == 0o666 & ~mask


def test_a_broken_sft_file_stops_data_prepare_before_the_corpus_work(tmp_path, capsys):
    broken = tmp_path / "sft.jsonl"
    broken.write_text('{"messages": [{"role": "user", "content": "Salam"}]}\n', encoding="utf-8")
    work = tmp_path / "work"
    preset = _preset(tmp_path, f'[data]\nsft_train = "{broken}"\nwork_dir = "{work}"')
    rc, _, err = _run(capsys, "data", "prepare", "--config", preset, "--out", tmp_path / "out")
    line = _one_line_error(err)
    assert rc == 2 and str(broken) in line and "last message must be from the assistant" in line
    assert not (tmp_path / "out").exists() and not work.exists()
    missing = _preset(tmp_path, f'[data]\nsft_train = "{tmp_path / "nope.jsonl"}"\nwork_dir = "{work}"', "m.toml")
    rc, _, err = _run(capsys, "data", "prepare", "--config", missing, "--out", tmp_path / "out")
    assert rc == 2 and "nope.jsonl" in _one_line_error(err) and not work.exists()


def test_tokenizer_train_out_rule_real_size_note_and_permissions(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    rc, _, err = _run(capsys, "tokenizer", "train", "--corpus", SAMPLE, "--vocab-size", "600", "--out", busy)
    assert rc == 2 and "not empty" in _one_line_error(err)
    out = tmp_path / "tok"
    rc, printed, err = _run(capsys, "tokenizer", "train", "--corpus", SAMPLE, "--vocab-size", "100000",
                            "--out", out)
    assert rc == 0, err
    result = json.loads(printed.strip().splitlines()[-1])
    assert result["vocab_size"] < 100000 and result["path"] == str(out / "bbpe-100000")
    assert f"holds {result['vocab_size']:,} tokens, not the 100,000 requested" in err
    mask = os.umask(0o022)
    os.umask(mask)
    for path in (out, out / "bbpe-100000", out / "bbpe-100000" / "tokenizer.json"):
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == want, (path, oct(path.stat().st_mode))
    # the README's next command reads what train wrote
    rc, _, err = _run(capsys, "tokenizer", "eval", "--tokenizer", out / "bbpe-100000", "--data", SAMPLE, "--json")
    assert rc == 0, err


def test_tokenizer_extend_refuses_unknown_names_before_any_hub_call(tmp_path, capsys):
    t0 = time.perf_counter()
    rc, _, err = _run(capsys, "tokenizer", "extend", "--base", "llama-9000", "--corpus", SAMPLE,
                      "--num-tokens", "10", "--out", tmp_path / "ext")
    assert rc == 2 and "hub ids have the form OWNER/NAME" in _one_line_error(err)
    assert "Retry" not in err and time.perf_counter() - t0 < 5
    assert not (tmp_path / "ext").exists()


def test_write_failures_are_one_line_naming_the_path_and_fix():
    import errno

    from azllm.config.errors import describe_failure

    cases = {errno.EACCES: "permission denied", errno.ENOSPC: "no space left",
             errno.EFBIG: "file too large", errno.EROFS: "read-only filesystem"}
    for code, cause in cases.items():
        line = describe_failure(OSError(code, os.strerror(code), "/out/train.jsonl"))
        assert line.startswith("/out/train.jsonl: " + cause) and ";" in line, line
    assert "disk is probably full" in describe_failure(
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"))
    assert describe_failure(KeyError("bug")) is None  # a bug keeps its traceback


def test_file_too_large_is_one_line_not_a_traceback_and_nothing_is_left(tmp_path):
    """A child under a 4 KB file-size limit (tokenizers' Rust writer fails with EFBIG): one line, exit 2."""
    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    argv = ["tokenizer", "train", "--corpus", SAMPLE, "--vocab-size", "600", "--out", tmp_path / "tok"]
    proc = subprocess.run([sys.executable, "-m", "azllm.cli", *map(str, argv)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=limit, timeout=300, cwd=REPO)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "file too large" in _one_line_error(proc.stderr) and "ulimit -f" in proc.stderr
    assert not (tmp_path / "tok").exists(), "half-written output left behind"


def test_an_unwritable_out_is_refused_before_any_work(tmp_path, capsys):
    if os.geteuid() == 0:  # root writes everywhere that is not mounted read-only
        parent = Path("/proc/sys")
        if os.access(parent, os.W_OK):
            pytest.skip("running as root with no read-only directory to write into")
    else:
        parent = tmp_path / "locked"
        parent.mkdir(mode=0o555)
    work = tmp_path / "work"
    preset = _preset(tmp_path, f'[data]\nwork_dir = "{work}"')
    rc, _, err = _run(capsys, "data", "prepare", "--config", preset, "--out", parent / "azllm-data")
    assert rc == 2 and f"{parent} is not writable" in _one_line_error(err)
    assert not work.exists()


# ---------------------------------------------------------------------------
# Item 7 and 10: eval bpb
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bpb_dirs(tmp_path_factory):
    """A 600-token project tokenizer and a model of its size with its special ids; a 1,200-token
    tokenizer (larger than the model); a model of 1,024 rows with Llama's default special ids."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from azllm.data.readers import iter_documents
    from azllm.tokenizer.load import load_tokenizer
    from azllm.tokenizer.train import train_tokenizer

    root = tmp_path_factory.mktemp("bpb")
    texts = list(iter_documents(str(SAMPLE)))[:150]
    train_tokenizer(texts, vocab_size=600, out_dir=root / "tok600", show_progress=False)
    train_tokenizer(texts, vocab_size=1200, out_dir=root / "tok1200", show_progress=False)
    tok = load_tokenizer(root / "tok600")
    for name, rows, special in (("model", len(tok), (tok.bos_token_id, tok.eos_token_id)),
                                ("other", 1024, (1, 2))):
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=rows, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                             bos_token_id=special[0], eos_token_id=special[1])
        LlamaForCausalLM(config).save_pretrained(root / name)
    docs = root / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:3]), encoding="utf-8")
    return root


def _bpb(capsys, root, *extra, model="model", tokenizer="tok600", data=None):
    return _run(capsys, "eval", "bpb", "--model", root / model, "--tokenizer", root / tokenizer,
                "--data", data or root / "docs.jsonl", "--json", *extra)


def test_eval_bpb_scores_the_models_own_tokenizer_without_warnings(bpb_dirs, capsys):
    rc, out, err = _bpb(capsys, bpb_dirs)
    assert rc == 0 and "warning" not in err, err
    assert json.loads(out.strip().splitlines()[-1])["documents"] == 3


@pytest.mark.parametrize("case", ["empty_file", "empty_texts", "missing_file", "negative_max", "tokenizer_too_large",
                                  "not_a_model"])
def test_eval_bpb_refuses_bad_input_with_one_line_on_stderr(bpb_dirs, capsys, tmp_path, case):
    data = tmp_path / "d.jsonl"
    data.write_text({"empty_file": "", "empty_texts": '{"text": ""}\n{"text": ""}\n'}.get(case, '{"text": "Salam"}\n'))
    kwargs = {"data": data if case != "missing_file" else tmp_path / "nope.jsonl"}
    if case == "tokenizer_too_large":
        kwargs["tokenizer"] = "tok1200"
    if case == "not_a_model":
        kwargs["model"] = "tok600"
    if case == "negative_max":
        with pytest.raises(SystemExit) as e:
            _bpb(capsys, bpb_dirs, "--max-documents", "-1", **kwargs)
        assert e.value.code == 2 and "must be >= 0" in capsys.readouterr().err
        return
    rc, out, err = _bpb(capsys, bpb_dirs, **kwargs)
    line = _one_line_error(err)
    assert rc == 2 and "NaN" not in out and "error" not in out
    expected = {"empty_file": "holds no document", "empty_texts": "no document to score",
                "missing_file": "is not a file", "tokenizer_too_large": "1,200 tokens but model",
                "not_a_model": "has no config.json, so it is not a model directory"}[case]
    assert expected in line, line
    assert "resolve_model_dir" not in line and "materialize_base_model" not in line


def test_eval_bpb_warns_about_an_unrelated_tokenizer_before_scoring(bpb_dirs, capsys):
    rc, out, err = _bpb(capsys, bpb_dirs, model="other")
    assert rc == 0
    warnings = json.loads(out.strip().splitlines()[-1])["warnings"]
    assert any("1,024 embedding rows" in w for w in warnings) and any("bos_token_id=1" in w for w in warnings)
    assert err.count("azllm eval bpb: warning:") == len(warnings)


# ---------------------------------------------------------------------------
# Items 8, 10: azllm cpt inputs
# ---------------------------------------------------------------------------


def test_cpt_on_an_empty_train_file_and_phase_two_first_say_what_to_run(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("\n")
    (data / "validation.jsonl").write_text('{"text": "Salam"}\n')
    base = ["cpt", "--config", TINY, "--arm", "baseline", "--data", data, "--out", tmp_path / "out", "--nproc", "1"]
    rc, _, err = _run(capsys, *base, "--phase", "embeddings")
    assert rc == 2 and "train.jsonl is empty" in _one_line_error(err)
    (data / "train.jsonl").write_text('{"text": "Salam"}\n')
    (tmp_path / "afile").write_text("x")
    rc, _, err = _run(capsys, *base[:-4], "--out", tmp_path / "afile", "--nproc", "1", "--phase", "full")
    assert rc == 2 and "--out" in _one_line_error(err) and "is a file" in err
    rc, _, err = _run(capsys, *base, "--phase", "full")
    line = _one_line_error(err)
    assert rc == 2 and f"--config {TINY} --phase embeddings --arm baseline --data {data}" in line


def test_cpt_help_example_names_a_tokenizer_for_the_extend_arm(capsys):
    with pytest.raises(SystemExit):
        main(["cpt", "--help"])
    text = capsys.readouterr().out
    extend = [line for line in text.splitlines() if "--arm extend" in line]
    assert extend and "tokenizer extend" in text.split(extend[0])[0], text


def test_empty_corpus_is_refused_by_packing(tmp_path):
    from azllm.data.packing import pack_corpus

    empty = tmp_path / "train.jsonl"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match="is empty: there is nothing to train on"):
        pack_corpus(empty, tmp_path, block_size=16, cache_root=tmp_path / "cache")


def test_block_size_longer_than_the_model_context_is_refused_before_torchrun(tmp_path):
    import numpy as np
    from transformers import LlamaConfig

    from azllm.config import CptConfig
    from azllm.train.launcher import run_cpt_phase
    from azllm.train.phase import TorchrunLayout

    LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64).save_pretrained(tmp_path / "model")
    np.save(tmp_path / "blocks.npy", np.zeros((4, 128), dtype=np.int32))
    with pytest.raises(ConfigError, match=r"block_size = 128 is longer than the model's context.*<= 64"):
        run_cpt_phase(CptConfig(block_size=128), phase="full", model_dir=tmp_path / "model",
                      blocks_path=tmp_path / "blocks.npy", out_dir=tmp_path / "out", work_dir=tmp_path / "work",
                      layout=TorchrunLayout(nproc_per_node=1))
    assert not (tmp_path / "work").exists()


# ---------------------------------------------------------------------------
# Item 4: workers die with their launcher
# ---------------------------------------------------------------------------

SLEEPER = "import time; print('ready', flush=True); time.sleep(60)"


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie (re-parented to us? no: to init) counts as gone once its state is Z
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("link", ["launcher_to_torchrun", "torchrun_to_worker"])
def test_a_killed_launcher_takes_its_children_down(link):
    """launcher_to_torchrun: the launcher starts its child with parent_death_signal (run_torchrun does);
    torchrun_to_worker: the child runs in its own session, as torchrun starts workers, and calls
    die_with_parent (cpt_worker does). SIGKILL the parent: the child is gone within seconds."""
    if link == "launcher_to_torchrun":
        child = f"import subprocess, sys; from azllm.train.lifetime import parent_death_signal\n" \
                f"p = subprocess.Popen([sys.executable, '-c', {SLEEPER!r}], preexec_fn=parent_death_signal())\n"
    else:
        child = f"import subprocess, sys\n" \
                f"code = 'from azllm.train.lifetime import die_with_parent; die_with_parent(); ' + {SLEEPER!r}\n" \
                f"p = subprocess.Popen([sys.executable, '-c', code], start_new_session=True)\n"
    parent = subprocess.Popen([sys.executable, "-c", child + "print(p.pid, flush=True); p.wait()"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = sorted(parent.stdout.readline().strip() for _ in range(2))  # the pid, and "ready" from the child
    assert lines[1] == "ready", lines
    pid = int(lines[0])
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _gone(pid), f"child {pid} outlived its killed parent"
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------------
# Item 2 (+ item 4's duplicate steps): the resume guard, true token counts, each step once
# ---------------------------------------------------------------------------


def test_resume_with_changed_settings_stops_unless_allowed_then_applies_them(tiny_base, tmp_path):  # noqa: F811
    """Killed after step 4 (checkpoints 2 and 4; step 4's removed, so steps 3-4 are logged past the
    resumed checkpoint). A rerun with another lr and block size stops before torchrun, naming both;
    allowed, it resumes at step 3 with the new lr on the new schedule, counts the tokens each block
    size really trained, and metrics.jsonl holds every step once."""
    import shutil

    import numpy as np
    import torch
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    from azllm.train.faults import TRAIN_ENV_VAR
    from azllm.train.launcher import WorkerError, run_cpt_phase
    from azllm.train.metrics import read_metrics, read_metrics_records
    from azllm.train.phase import TorchrunLayout

    base = tiny_base
    blocks16 = tmp_path / "blocks16.npy"
    np.save(blocks16, np.load(base["blocks"]).reshape(-1, 16))
    work, out = tmp_path / "work", tmp_path / "out"
    train = {"lr": 1e-2, "max_steps": 6, "save_every_steps": 2, "warmup_steps": 1}

    def launch(cfg, blocks, **kw):
        return run_cpt_phase(cfg, phase="full", model_dir=base["tied"], blocks_path=blocks, out_dir=out,
                             work_dir=work, layout=TorchrunLayout(nproc_per_node=1), **kw)

    with pytest.raises(WorkerError, match="injected failure"):
        launch(_cpt("full", **train), base["blocks"], env={TRAIN_ENV_VAR: "cpt_full:4"})
    shutil.rmtree(work / "checkpoints" / "step-000004")
    launches = (work / "worker.log").read_text().count("$ ")

    changed = {**train, "lr": 5e-2}
    with pytest.raises(ConfigError) as refused:
        launch(_cpt("full", **changed), blocks16)
    assert "cpt.block_size 32 -> 16" in str(refused.value) and "cpt.full.lr 0.01 -> 0.05" in str(refused.value)
    assert "allow_config_change_on_resume" in str(refused.value)
    assert (work / "worker.log").read_text().count("$ ") == launches, "torchrun started despite the guard"

    result = launch(_cpt("full", {"allow_config_change_on_resume": True}, **changed), blocks16)
    records = read_metrics_records(work / "metrics.jsonl")
    steps = [r["step"] for r in records if "loss" in r and "event" not in r]
    assert steps == [1, 2, 3, 4, 5, 6], steps
    resume = [r for r in records if r.get("event") == "resume"]
    assert resume[-1]["config_changes"] == {"cpt.block_size": [32, 16], "cpt.full.lr": [0.01, 0.05]}
    history = {h["step"]: h for h in read_metrics(work / "metrics.jsonl")["history"]}
    reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=5e-2)
    schedule = get_cosine_with_min_lr_schedule_with_warmup(reference, num_warmup_steps=1, num_training_steps=6,
                                                           min_lr_rate=0.1)
    for step in range(1, 7):
        if step >= 3:
            assert history[step]["lr"] == pytest.approx(schedule.get_last_lr()[0], rel=1e-12), step
        reference.step()
        schedule.step()
    micro = 2  # _cpt's micro_batch_size, one rank
    assert history[6]["tokens"] == 2 * micro * 32 + 4 * micro * 16 == result.metrics["tokens"]


# ---------------------------------------------------------------------------
# The flow's error boundary (azllm.compute.step_errors, put on every step by compute_from_profile)
# ---------------------------------------------------------------------------

BOUNDARY_FLOW = '''
from metaflow import FlowSpec, step

from azllm.compute.mutator import compute_from_profile


@compute_from_profile
class BoundaryFlow(FlowSpec):
    @step
    def start(self):
        from azllm.data.stage import plan_all
        from azllm.config import DataConfig

        plan_all(DataConfig(sft_train="/no/such/sft.jsonl"), "/tmp/unused-plan", 1)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BoundaryFlow()
'''


def test_an_expected_failure_in_a_flow_step_is_one_line_not_a_traceback(tmp_path):
    flow = tmp_path / "boundary_flow.py"
    flow.write_text(BOUNDARY_FLOW, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(flow), "--no-pylint", "run"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "step start: " in output and "/no/such/sft.jsonl" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
