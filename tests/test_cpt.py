"""CPT entrypoint end to end: real FSDP2 over 2 gloo processes launched by torchrun on CPU.

Covers phase `embeddings` (params sharded as DTensors, backbone frozen, embeddings and an
untied head trained), phase `full` (everything changes, loss falls), checkpoint/resume
continuity against an uninterrupted run, and clear errors for missing inputs.
Tiny random Llama (2 layers, hidden 32) on a throwaway byte-level BPE; ~1 minute.

Run: .venv/bin/python -m pytest -q tests/test_cpt.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from azllm.config import CptConfig, CptRuntime, PhaseConfig
from azllm.train.blocks import BlockStream, load_training_blocks
from azllm.train.checkpointing import list_checkpoints
from azllm.train.faults import AT_STEP_ENV_VAR, TRAIN_ENV_VAR
from azllm.train.launcher import WorkerError, run_cpt_phase
from azllm.train.metrics import read_metrics, read_metrics_records
from azllm.train.phase import PhaseSpec, TorchrunLayout

BLOCK_SIZE = 32
TWO = TorchrunLayout(nproc_per_node=2)
TEXTS = [
    "Azərbaycan Respublikasının paytaxtı Bakı şəhəridir.",
    "Yeni bir dil öyrənmək ünsiyyət imkanlarını genişləndirir.",
    "Mobil internet paketimi necə aktivləşdirə bilərəm?",
    "Xəzər dənizi dünyanın ən böyük gölüdür.",
] * 40


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> dict[str, Path]:
    """A tiny byte-level BPE, two tiny random Llamas (tied and untied head) and packed blocks."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(TEXTS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|begin_of_text|>",
                                  eos_token="<|end_of_text|>")
    vocab = ((len(tok) + 63) // 64) * 64

    dirs = {}
    for name, tied in (("tied", True), ("untied", False)):
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                          tie_word_embeddings=tied, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id)
        model = LlamaForCausalLM(cfg)
        dirs[name] = root / name
        model.save_pretrained(dirs[name])
        tok.save_pretrained(dirs[name])

    # Pack: documents joined with EOS, cut into full blocks (plain stand-in for pack_corpus)
    ids: list[int] = []
    for text in TEXTS:
        ids += tok(text)["input_ids"] + [tok.eos_token_id]
    n = len(ids) // BLOCK_SIZE
    dirs["blocks"] = root / "blocks.npy"
    np.save(dirs["blocks"], np.asarray(ids[: n * BLOCK_SIZE], dtype=np.int32).reshape(n, BLOCK_SIZE))
    return dirs


def _cpt(phase: str, runtime: dict | None = None, **train) -> CptConfig:
    defaults = {"lr": 3e-3, "max_steps": 6, "micro_batch_size": 2, "warmup_steps": 1, "log_every_steps": 1}
    pc = PhaseConfig(**{**defaults, **train})
    return CptConfig(block_size=BLOCK_SIZE, runtime=CptRuntime(liger=False, seed=7, **(runtime or {})), **{phase: pc})


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def _run(tiny_base, tmp_path, phase, model="tied", work="work", runtime=None, **train):
    return run_cpt_phase(_cpt(phase, runtime, **train), phase=phase, model_dir=tiny_base[model],
                         blocks_path=tiny_base["blocks"], out_dir=tmp_path / f"{work}-out",
                         work_dir=tmp_path / work, layout=TWO)


def _plain_first_loss(tiny_base, model: str) -> float:
    """Mean loss of the unsharded model on each of the 2 ranks' first batch (batch size 2)."""
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_base[model], dtype=torch.float32)
    blocks = load_training_blocks(tiny_base["blocks"])
    losses = []
    with torch.no_grad():
        for rank in range(2):
            x = BlockStream(blocks, batch_size=2, rank=rank, world_size=2, seed=7).next_batch()
            losses.append(plain(input_ids=x, labels=x).loss.item())
    return sum(losses) / 2


@pytest.mark.parametrize("model", ["tied", "untied"])
def test_embeddings_phase_trains_only_embeddings_under_fsdp(tiny_base, tmp_path, model):
    result = _run(tiny_base, tmp_path, "embeddings", model=model, max_steps=4)
    m = result.metrics
    assert m["world_size"] == 2 and m["params_are_dtensors"], "parameters were not sharded by FSDP2"
    assert m["local_numel_rank0"] <= m["num_params"] // 2 + 64, "rank 0 holds more than its shard"
    assert m["steps"] == 4 and len(m["history"]) == 4
    # built on meta, weights broadcast from rank 0 into the shards: step 1's loss is the plain
    # model's loss on the two ranks' first batches (tied head and RoPE buffers restored)
    assert m["history"][0]["loss"] == pytest.approx(_plain_first_loss(tiny_base, model), abs=1e-5)
    before, after = _weights(tiny_base[model]), _weights(result.model_dir)
    assert before.keys() == after.keys()
    trained = {"model.embed_tokens.weight"} | ({"lm_head.weight"} if model == "untied" else set())
    for name, t in before.items():
        if name in trained:
            assert not torch.equal(t, after[name]), f"{name} did not train"
        else:
            assert torch.equal(t, after[name]), f"frozen weight {name} changed"
    assert m["num_trainable_params"] == sum(before[n].numel() for n in trained)
    # the export is a complete HF dir: tokenizer files copied, reloads with the right head tying
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert AutoTokenizer.from_pretrained(result.model_dir).eos_token == "<|end_of_text|>"
    reloaded = AutoModelForCausalLM.from_pretrained(result.model_dir)
    tied = reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()
    assert tied == (model == "tied")
    assert (result.tensorboard_dir).is_dir() and any(result.tensorboard_dir.iterdir())


@pytest.fixture(scope="module")
def full_runs(tiny_base, tmp_path_factory):
    """An uninterrupted 18-step full run, and the same spec killed after step 6 (checkpoints 3
    and 6 written), then rerun twice with step 6 damaged (issue 26.1): first its
    ``__0_0.distcp`` cut in half (that rerun is stopped at step 5, before it saves again), then,
    the shard put back, its ``trainer.pt`` cut to 100 bytes. Both reruns resume from step 3."""
    tmp = tmp_path_factory.mktemp("full")
    train = {"lr": 1e-2, "max_steps": 18, "save_every_steps": 3, "log_every_steps": 1}
    straight = _run(tiny_base, tmp, "full", work="straight", **train)
    with pytest.raises(WorkerError, match="injected failure") as failed:
        run_cpt_phase(_cpt("full", **train), phase="full", model_dir=tiny_base["tied"],
                      blocks_path=tiny_base["blocks"], out_dir=tmp / "resumed-out",
                      work_dir=tmp / "resumed", layout=TWO, env={TRAIN_ENV_VAR: "cpt_full:6"})
    assert not (tmp / "resumed-out").exists()
    ckpts = tmp / "resumed" / "checkpoints"
    assert [p.name for p in list_checkpoints(ckpts)] == ["step-000003", "step-000006"]
    shard, trainer = ckpts / "step-000006" / "__0_0.distcp", ckpts / "step-000006" / "trainer.pt"
    intact = shard.read_bytes()
    shard.write_bytes(intact[: len(intact) // 2])
    log = tmp / "resumed" / "worker.log"
    logs, seen = [], len(log.read_text())
    with pytest.MonkeyPatch.context() as mp:  # rerun 1: resumes from 3, dies at step 5
        mp.setenv(AT_STEP_ENV_VAR, "cpt_full:5")
        with pytest.raises(WorkerError, match="injected failure as step 5 begins"):
            _run(tiny_base, tmp, "full", work="resumed", **train)
    logs.append(log.read_text()[seen:])
    seen += len(logs[-1])
    assert shard.stat().st_size == len(intact) // 2, "the damaged checkpoint was overwritten"
    shard.write_bytes(intact)
    trainer.write_bytes(trainer.read_bytes()[:100])
    resumed = _run(tiny_base, tmp, "full", work="resumed", **train)  # rerun 2: resumes from 3 again
    logs.append(log.read_text()[seen:])
    return {"straight": straight, "resumed": resumed, "error": str(failed.value), "dir": tmp, "logs": logs}


def test_full_phase_trains_everything_and_loss_falls(full_runs, tiny_base):
    result = full_runs["straight"]
    m = result.metrics
    assert m["params_are_dtensors"] and m["steps"] == 18
    assert m["final_loss"] < m["first_loss"] - 1.5, (m["first_loss"], m["final_loss"])
    before, after = _weights(tiny_base["tied"]), _weights(result.model_dir)
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert not unchanged, f"not trained: {unchanged}"
    step = m["history"][-1]
    assert step["tokens"] == 18 * 2 * 2 * BLOCK_SIZE and step["tokens_per_s"] > 0
    assert step["mfu"] is None and step["peak_mem_gib"] > 0  # CPU: no peak FLOPs, RSS reported
    # only the last two checkpoints are kept, no half-written ones
    names = sorted(p.name for p in result.checkpoint_dir.iterdir())
    assert names == ["step-000015", "step-000018"]


def test_resume_continues_at_next_step_and_matches_uninterrupted(full_runs):
    """Issue 26.1: a truncated file in the newest checkpoint is skipped with one line naming it and
    why, on every rerun; the previous checkpoint is resumed, its path printed before loading."""
    resumed, straight = full_runs["resumed"], full_runs["straight"]
    assert resumed.metrics["resumed_at_steps"] == [4, 4]
    for log, damaged in zip(full_runs["logs"], ["__0_0.distcp has", "trainer.pt has 100 bytes"], strict=True):
        skips = [line for line in log.splitlines() if "[checkpoint] skipping" in line]
        assert len(skips) == 1 and "step-000006" in skips[0] and damaged in skips[0], skips
        resuming = log.index(f"[cpt] resuming from {full_runs['dir'] / 'resumed' / 'checkpoints' / 'step-000003'} "
                             "at step 4")  # the worker says so before it loads
        assert log.index("[checkpoint] skipping") < resuming
        assert "Traceback" not in log[:resuming] and "PytorchStreamReader" not in log
    assert [h["step"] for h in resumed.metrics["history"]] == list(range(1, 19))
    for a, b in zip(straight.metrics["history"], resumed.metrics["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), a["step"]
    w_straight, w_resumed = _weights(straight.model_dir), _weights(resumed.model_dir)
    for name, t in w_straight.items():
        torch.testing.assert_close(w_resumed[name], t, rtol=1e-5, atol=1e-6, msg=name)


def test_embeddings_checkpoints_hold_no_frozen_weights_and_resume_exactly(tiny_base, tmp_path):
    """Phase 1 saves only what trains (DCP ignore_frozen_params); a resume rebuilds the frozen body
    from the initial model and ends on the same weights as an uninterrupted run."""
    from torch.distributed.checkpoint import FileSystemReader

    train = {"max_steps": 6, "save_every_steps": 3}
    straight = _run(tiny_base, tmp_path, "embeddings", model="untied", work="straight", **train)
    with pytest.raises(WorkerError, match="injected failure"):
        run_cpt_phase(_cpt("embeddings", **train), phase="embeddings", model_dir=tiny_base["untied"],
                      blocks_path=tiny_base["blocks"], out_dir=tmp_path / "resumed-out",
                      work_dir=tmp_path / "resumed", layout=TWO,
                      env={TRAIN_ENV_VAR: "cpt_embeddings:3"})
    saved = FileSystemReader(str(tmp_path / "resumed" / "checkpoints" / "step-000003")).read_metadata()
    model_keys = {k.removeprefix("model.") for k in saved.state_dict_metadata if k.startswith("model.")}
    assert model_keys == {"model.embed_tokens.weight", "lm_head.weight"}, model_keys
    resumed = _run(tiny_base, tmp_path, "embeddings", model="untied", work="resumed", **train)
    assert resumed.metrics["resumed_at_steps"] == [4]
    w_straight, w_resumed = _weights(straight.model_dir), _weights(resumed.model_dir)
    for name, t in w_straight.items():
        torch.testing.assert_close(w_resumed[name], t, rtol=1e-5, atol=1e-6, msg=name)


def test_missing_inputs_fail_clearly(tiny_base, tmp_path):
    with pytest.raises(FileNotFoundError, match="pack_corpus"):
        run_cpt_phase(_cpt("full"), phase="full", model_dir=tiny_base["tied"],
                      blocks_path=tmp_path / "nope.npy", out_dir=tmp_path / "o", work_dir=tmp_path / "w",
                      layout=TWO)
    with pytest.raises(FileNotFoundError, match="pack_corpus"):
        load_training_blocks(tmp_path / "nope.npy")
    with pytest.raises(FileNotFoundError, match="config.json"):
        run_cpt_phase(_cpt("full"), phase="full", model_dir=tmp_path, blocks_path=tiny_base["blocks"],
                      out_dir=tmp_path / "o", work_dir=tmp_path / "w", layout=TWO)
    with pytest.raises(ValueError, match="phase"):
        run_cpt_phase(_cpt("full"), phase="lora", model_dir=tiny_base["tied"],
                      blocks_path=tiny_base["blocks"], out_dir=tmp_path / "o", work_dir=tmp_path / "w",
                      layout=TWO)


def test_spec_round_trips_and_validates(tmp_path):
    spec = PhaseSpec(phase="full", hparams=PhaseConfig(max_steps=3), runtime=CptRuntime(seed=3), model_dir="m",
                     blocks_path="b.npy", out_dir="o", checkpoint_dir="c", tensorboard_dir="t",
                     metrics_path="x.jsonl")
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json())
    assert PhaseSpec.from_json(path) == spec
    raw = json.loads(spec.to_json())
    raw["hparams"]["max_steps"] = 0
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="max_steps"):
        PhaseSpec.from_json(path)
    raw["hparams"]["max_steps"], raw["runtime"]["sharding"] = 3, "ddp"  # the runtime section is checked too
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"\[cpt.runtime\] sharding='ddp'"):
        PhaseSpec.from_json(path)
    with pytest.raises(ValueError, match="phase='lora'"):
        PhaseSpec(**{**vars(spec), "phase": "lora"})


def test_block_stream_is_deterministic_disjoint_and_resumable():
    blocks = np.arange(10 * 4).reshape(10, 4)
    streams = [BlockStream(blocks, batch_size=2, rank=r, world_size=2, seed=3) for r in range(2)]
    first_epoch = [s.next_batch()[:, 0] // 4 for _ in range(2) for s in streams]  # 8 of 10 rows
    rows = torch.cat(first_epoch).tolist()
    assert len(set(rows)) == 8, "ranks read overlapping rows within an epoch"
    # a fresh stream restored at the saved position continues identically (across the epoch edge)
    saved = streams[0].state_dict()
    expected = [streams[0].next_batch() for _ in range(3)]
    again = BlockStream(blocks, batch_size=2, rank=0, world_size=2, seed=3)
    again.load_state_dict(saved)
    for e in expected:
        assert torch.equal(again.next_batch(), e)


OPTION_TRAIN = {"lr": 1e-2, "max_steps": 4, "log_every_steps": 1}


@pytest.fixture(scope="module")
def plain_run(tiny_base, tmp_path_factory):
    return _run(tiny_base, tmp_path_factory.mktemp("plain"), "full", **OPTION_TRAIN)


def test_activation_checkpointing_gives_the_same_losses(tiny_base, plain_run, tmp_path):
    """Recomputing the layers in backward changes memory, not the numbers: per-step losses and
    final weights of the same seed agree with the plain run within 1e-5."""
    result = _run(tiny_base, tmp_path, "full", runtime={"activation_checkpointing": "full"}, **OPTION_TRAIN)
    start = [r for r in read_metrics_records(tmp_path / "work" / "metrics.jsonl") if r.get("event") == "start"]
    assert start[-1]["activation_checkpointing"] == "full"
    _assert_same_run(result, plain_run, tol=1e-5)


def test_compile_and_selective_checkpointing_give_the_same_losses(tiny_base, plain_run, tmp_path):
    """torch.compile of each decoder layer (inductor, C++ on CPU; ~1 min cold on 2 cores) around
    selective checkpointing (one run for both, to keep CI short): the same losses within 1e-5."""
    runtime = {"compile": True, "activation_checkpointing": "selective"}
    result = _run(tiny_base, tmp_path, "full", runtime=runtime, **OPTION_TRAIN)
    start = [r for r in read_metrics_records(tmp_path / "work" / "metrics.jsonl") if r.get("event") == "start"]
    assert (start[-1]["compile"], start[-1]["activation_checkpointing"]) == (True, "selective")
    _assert_same_run(result, plain_run, tol=1e-5)


def _assert_same_run(result, reference, *, tol: float) -> None:
    got, want = result.metrics["history"], reference.metrics["history"]
    assert [h["step"] for h in got] == [h["step"] for h in want] == [1, 2, 3, 4]
    diffs = [abs(a["loss"] - b["loss"]) for a, b in zip(got, want, strict=True)]
    print(f"max |loss diff| vs the plain run over {len(diffs)} steps: {max(diffs):.2e}")
    assert max(diffs) <= tol, list(zip(got, want, strict=True))
    assert want[-1]["loss"] < want[0]["loss"], "the reference did not train"
    ours, theirs = _weights(result.model_dir), _weights(reference.model_dir)
    for name, t in theirs.items():
        torch.testing.assert_close(ours[name], t, rtol=1e-4, atol=1e-5, msg=name)


def test_azllm_cpt_command_trains_resumes_and_rejects_bad_input(tmp_path, repo_root, capsys):
    """`azllm cpt` on what `azllm data prepare` wrote: per-step log, model, metrics and checkpoints
    in --out; run again, it resumes from the last checkpoint instead of training again."""
    from transformers import AutoTokenizer

    from azllm.cli import main
    from azllm.config import load_pipeline_config
    from azllm.model.load import materialize_base_model

    preset, data, out = str(repo_root / "configs" / "tiny.toml"), tmp_path / "data", tmp_path / "out"
    assert main(["data", "prepare", "--config", preset, "--out", str(data)]) == 0
    args = ["cpt", "--config", preset, "--phase", "embeddings", "--arm", "extend", "--data", str(data),
            "--out", str(out), "--nproc", "2"]
    capsys.readouterr()
    assert main(args) == 2
    assert "no tokenizer for arm 'extend'" in capsys.readouterr().err
    base = materialize_base_model(load_pipeline_config(preset).model)
    AutoTokenizer.from_pretrained(base).save_pretrained(data / "tokenizers" / "extend")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[cpt] step     4/4 loss" in printed
    work = out / "embeddings" / "work"
    assert (out / "embeddings" / "model" / "config.json").is_file() and (work / "metrics.jsonl").is_file()
    assert [p.name for p in list_checkpoints(work / "checkpoints")] == ["step-000002", "step-000004"]
    assert main(args) == 0
    assert "resuming from" in capsys.readouterr().out
    assert read_metrics(work / "metrics.jsonl")["resumed_at_steps"] == [5]

    bad = {"--data": str(tmp_path), "--config": str(repo_root / "configs" / "llama-3.2-1b.toml")}
    messages = {"--data": "not written by `azllm data prepare`", "--config": 'mixed_precision = "bf16"'}
    for flag, value in bad.items():
        argv = list(args)
        argv[argv.index(flag) + 1] = value
        assert main(argv) == 2
        assert messages[flag] in capsys.readouterr().err, flag
    if not torch.cuda.is_available():
        assert main(args[:-1] + ["0"]) == 2
        assert "nproc_per_node must be >= 1" in capsys.readouterr().err
