"""One CPT phase of a causal LM under FSDP2: the torchrun worker (docs/DESIGN.md §6).

    python -m torch.distributed.run --standalone --nproc_per_node=2 -m azllm.train.cpt_worker --spec spec.json

The spec (:class:`azllm.train.phase.PhaseSpec`: the phase's section as ``hparams``,
``[cpt.runtime]`` as ``runtime``, paths) is written by ``run_cpt_phase``; the worker does not
import the launcher, nor know whether a flow step, ``azllm cpt`` or a benchmark launched it.
Injected failures (tests) come from its environment (azllm.train.faults). It reads
top to bottom: config, distributed init, model, sharding, optimizer, data, resume, loop, export.

Phases: ``embeddings`` trains the input embeddings and the lm_head (plus the outer decoder
layers with ``train="embeddings+outer:K"``); ``full`` trains everything. Embeddings and head
form their own optimizer group at ``lr x embedding_lr_multiplier``. On CPU the workers use
gloo and fp32; on CUDA nccl and, per ``mixed_precision``, bf16 parameters with fp32 gradient
reduction. Packing is GPT-style: documents share a block separated by EOS and attention
crosses that boundary (azllm.data.packing). Checkpoints resume bit-exactly on CPU (docs/DESIGN.md §7).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from azllm.model.kernels import apply_liger, liger_loss_kwargs
from azllm.train import checkpointing, resume
from azllm.train.blocks import BlockStream, DeviceStager, load_training_blocks
from azllm.train.faults import maybe_fail_after, maybe_fail_at, sigkill_mid_upload
from azllm.train.flops import flops_per_token, matmul_params, peak_flops
from azllm.train.lifetime import die_with_parent
from azllm.train.metrics import append_record, drop_steps_after
from azllm.train.parallelize import (
    apply_activation_checkpointing,
    apply_compile,
    build_mesh,
    build_meta_model,
    export_model,
    freeze_for_phase,
    materialize_and_load,
    optimizer_groups,
    shard_model,
)
from azllm.train.phase import PhaseSpec, free_port

LOGGED = ("loss", "lr", "grad_norm", "tokens_per_s", "peak_mem_gib", "mfu")


def peak_mem_gib(device: torch.device) -> float:
    """Peak CUDA memory allocated, or on CPU the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return host_peak_rss_gib()


def host_peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def gather_floats(value: float, device: torch.device) -> list[float]:
    """Collective: ``value`` from every rank, in rank order."""
    mine = torch.tensor([value], dtype=torch.float64, device=device)
    out = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(out, mine)
    return [float(t.item()) for t in out]


def train(spec: PhaseSpec) -> None:
    # -----------------------------------------------------------------------
    # Config
    tc, rt = spec.hparams, spec.runtime
    out_dir, ckpt_dir, metrics_path = Path(spec.out_dir), Path(spec.checkpoint_dir), Path(spec.metrics_path)
    blocks = load_training_blocks(spec.blocks_path)  # fail before the process group exists
    seq_len = int(blocks.shape[1])

    # -----------------------------------------------------------------------
    # Distributed init: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; alone, be rank 0 of 1
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    use_cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    timeout = timedelta(seconds=rt.collective_timeout_s)
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, timeout=timeout)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=timeout)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    nnodes = world_size // int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    master = rank == 0
    writer, registrar, finished = None, checkpointing.MetaflowRegistrar(), False
    uploader = None if not spec.checkpoint_store else checkpointing.StoreUploader(
        checkpointing.CheckpointStore(spec.checkpoint_store), rank=rank,
        kill_mid_upload_of=sigkill_mid_upload(spec.phase, rank))
    try:
        torch.manual_seed(rt.seed)
        np.random.seed(rt.seed)
        bf16 = (use_cuda and torch.cuda.is_bf16_supported(including_emulation=False)
                and rt.mixed_precision in ("auto", "bf16"))

        # -------------------------------------------------------------------
        # Model: on the meta device (no memory); Liger patches the modules, not the weights
        model = build_meta_model(spec.model_dir, attn_implementation=spec.attn_implementation)
        liger = apply_liger(model, enabled=rt.liger)  # no-op without CUDA (or Triton's interpreter)
        loss_kwargs = liger_loss_kwargs(liger)  # Liger's fused loss: fp32 LM-head gradient accumulation
        trainable = freeze_for_phase(model, spec.phase, num_outer_layers=tc.num_outer_layers)
        num_params = sum(p.numel() for p in model.parameters())
        num_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_mm, n_mm_trainable = matmul_params(model)
        cfg = model.config
        vocab_size = model.get_input_embeddings().weight.shape[0]
        tied = model.get_output_embeddings() is not None and (
            model.get_output_embeddings().weight is model.get_input_embeddings().weight)

        # -------------------------------------------------------------------
        # Sharding, in torchtitan's order: activation checkpointing, compile, fully_shard; then
        # each rank allocates its shards and rank 0 broadcasts the weights into them.
        apply_activation_checkpointing(model, rt.activation_checkpointing, liger=liger)
        if rt.compile:
            apply_compile(model)
        mesh = build_mesh(device.type, world_size=world_size, nnodes=nnodes, sharding=rt.sharding)
        shard_model(model, mesh, bf16=bf16)
        materialize_and_load(model, spec.model_dir, device)
        params_are_dtensors = all(isinstance(p, DTensor) for p in model.parameters())
        local_numel = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel()
                          for p in model.parameters())

        # -------------------------------------------------------------------
        # Optimizer and schedule: AdamW on trainable parameters; embeddings and head at
        # lr x embedding_lr_multiplier, the body at lr; no decay on 1-D (norms, biases)
        params = [p for p in model.parameters() if p.requires_grad]
        groups = optimizer_groups(model, lr=tc.lr, embedding_lr_multiplier=tc.embedding_lr_multiplier,
                                  weight_decay=tc.weight_decay)
        assert sum(len(g["params"]) for g in groups) == len(params), "a trainable parameter is in no group"
        optimizer = torch.optim.AdamW(groups, lr=tc.lr, betas=(0.9, 0.95), eps=1e-8, fused=use_cuda)
        scheduler = get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, num_warmup_steps=tc.warmup_steps, num_training_steps=tc.max_steps,
            min_lr_rate=tc.min_lr_ratio)
        this_run = ([g["initial_lr"] for g in optimizer.param_groups],
                    [g["weight_decay"] for g in optimizer.param_groups])  # a checkpoint's load replaces them

        # -------------------------------------------------------------------
        # Data
        stream = BlockStream(blocks, batch_size=tc.micro_batch_size, rank=rank, world_size=world_size,
                             seed=rt.seed)
        to_device = DeviceStager(device)
        tokens_per_step = tc.micro_batch_size * seq_len * tc.grad_accum_steps * world_size
        fpt = flops_per_token(n_mm, n_mm_trainable, num_layers=cfg.num_hidden_layers, seq_len=seq_len,
                              hidden=cfg.hidden_size)
        peak = peak_flops(device)

        # -------------------------------------------------------------------
        # Resume: the checkpoint each node's launcher chose and verified, if every node got the same,
        # with the settings it was saved with unless the preset allows a change (azllm.train.resume)
        start_step, tokens_seen, changes = 0, 0, {}
        settings = resume.training_settings(spec.phase, tc, block_size=seq_len, seed=rt.seed)
        resumed_from = checkpointing.agreed_checkpoint(spec.resume_checkpoint, device=device)
        if resumed_from is not None:
            changes = resume.settings_changes(resume.saved_settings(resumed_from), settings)
            # the launcher refused a change before torchrun unless the preset allows it (resume.check_resume)
            assert not changes or rt.allow_config_change_on_resume, changes
            if master:  # before loading, so a failing load names its checkpoint
                print(f"[cpt] resuming from {resumed_from} at step {checkpointing.checkpoint_step(resumed_from) + 1}",
                      flush=True)
            state = checkpointing.load_checkpoint(resumed_from, model=model, optimizer=optimizer)
            scheduler.load_state_dict(state["scheduler"])
            if changes:
                resume.apply_new_hyperparameters(optimizer, scheduler, *this_run)
            stream.load_state_dict(state["data"])
            start_step = int(state["step"])
            tokens_seen = int(state.get("tokens_seen", start_step * tokens_per_step))  # older checkpoints
        host_rss = gather_floats(host_peak_rss_gib(), device)

        if master:
            metrics_path.parent.mkdir(parents=True, exist_ok=True)
            info = {"event": "start", "phase": spec.phase, "world_size": world_size, "nnodes": nnodes,
                    "mesh": dict(zip(mesh.mesh_dim_names, mesh.shape, strict=True)),
                    "device": str(device), "backend": dist.get_backend(), "bf16": bf16, "liger": liger,
                    "fused_adamw": all(g.get("fused") for g in optimizer.param_groups),  # what step() reads
                    "activation_checkpointing": rt.activation_checkpointing, "compile": rt.compile,
                    "attn_implementation": cfg._attn_implementation,
                    "num_params": num_params, "num_trainable_params": num_trainable,
                    "trainable": trainable, "tied_embeddings": tied, "train": tc.train,
                    "optimizer_groups": {g["name"]: {"lr": g["initial_lr"],
                                                     "numel": sum(p.numel() for p in g["params"])}
                                         for g in optimizer.param_groups},
                    "params_are_dtensors": params_are_dtensors, "local_numel_rank0": local_numel,
                    "host_peak_rss_gib_by_rank": host_rss,
                    "num_blocks": stream.num_blocks, "block_size": seq_len,
                    "tokens_per_step": tokens_per_step, "flops_per_token": fpt,
                    "max_steps": tc.max_steps, "start_step": start_step + 1,
                    "resumed_from": str(resumed_from) if resumed_from else None}
            print(f"[cpt] {json.dumps({k: v for k, v in info.items() if k != 'trainable'})}", flush=True)
            print(f"[cpt] phase={spec.phase} trainable={num_trainable:,}/{num_params:,} params; "
                  f"{tokens_per_step:,} tokens/step = {tc.micro_batch_size} seqs x {seq_len} x "
                  f"{tc.grad_accum_steps} accum x {world_size} ranks; "
                  f"{tokens_per_step * tc.max_steps / (stream.num_blocks * seq_len):.2f} epochs",
                  flush=True)
            if resumed_from is not None:
                drop_steps_after(metrics_path, start_step)  # logged after that checkpoint: logged again now
                append_record(metrics_path, {"event": "resume", "from_checkpoint": str(resumed_from),
                                             "resume_step": start_step + 1, "tokens_seen": tokens_seen,
                                             **({"config_changes": changes} if changes else {})})
            append_record(metrics_path, info)
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(spec.tensorboard_dir)

        # -------------------------------------------------------------------
        # Loop
        model.train()
        if use_cuda:
            torch.cuda.reset_peak_memory_stats(device)
        last_log_time, last_log_step = time.perf_counter(), start_step
        pending: list[tuple] = []  # (step, lr, groups, epoch, tokens, loss_sum, grad_norm) since the last log
        t_start = last_log_time
        for step in range(start_step + 1, tc.max_steps + 1):
            maybe_fail_at(spec.phase, step)
            loss_sum = torch.zeros((), device=device)
            for _ in range(tc.grad_accum_steps):
                x = stream.next_batch()  # (B, T), on CPU: this check costs no device sync
                assert int(x.max()) < vocab_size, (
                    f"token id {int(x.max())} >= model vocab {vocab_size}: {spec.blocks_path} was packed "
                    f"with another tokenizer than {spec.model_dir}'s")
                x = to_device(x)
                loss = model(input_ids=x, labels=x, use_cache=False, **loss_kwargs).loss / tc.grad_accum_steps
                loss.backward()
                loss_sum += loss.detach()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.max_grad_norm)
            lr_groups = {g["name"]: lr for g, lr in zip(optimizer.param_groups, scheduler.get_last_lr(),
                                                        strict=True)}
            lr = lr_groups["embeddings"] / tc.embedding_lr_multiplier  # the body's lr, when there is a body
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            tokens_seen += tokens_per_step
            # Every step's loss and gradient norm stay on the device until the next log step, which
            # reduces and reads them all at once: one host sync per log_every_steps, every step recorded
            pending.append((step, lr, lr_groups, stream.epoch, tokens_seen, loss_sum, grad_norm))

            save_now = (tc.save_every_steps and step % tc.save_every_steps == 0) or step == tc.max_steps
            if step % tc.log_every_steps == 0 or step == tc.max_steps or step == start_step + 1 or save_now:
                losses = torch.stack([p[5] for p in pending])
                dist.all_reduce(losses)  # gloo has no AVG: sum, then divide
                norms = torch.stack([g.full_tensor() if isinstance(g, DTensor) else g for *_, g in pending])
                loss_values, norm_values = (losses / world_size).tolist(), norms.tolist()  # the host sync
                now = time.perf_counter()
                tokens_per_s = tokens_per_step * (step - last_log_step) / (now - last_log_time)
                last_log_time, last_log_step = now, step
                mfu = None if peak is None else tokens_per_s / world_size * fpt / peak
                mem = peak_mem_gib(device)
                for (s_step, s_lr, s_groups, s_epoch, s_tokens, *_), loss_value, s_norm in zip(
                        pending, loss_values, norm_values, strict=True):
                    # tokens_per_s, peak_mem_gib, mfu and elapsed_s: of the log window, at this log step
                    record = {"step": s_step, "loss": loss_value, "lr": s_lr, "lr_groups": s_groups,
                              "grad_norm": s_norm, "tokens": s_tokens, "tokens_per_s": tokens_per_s,
                              "peak_mem_gib": mem, "mfu": mfu, "epoch": s_epoch, "elapsed_s": now - t_start}
                    if master:
                        append_record(metrics_path, record)
                        for key in LOGGED:
                            if record[key] is not None:
                                writer.add_scalar(f"{spec.phase}/{key}", record[key], s_step)
                        for name, group_lr in s_groups.items():  # embeddings vs body, for the multiplier
                            writer.add_scalar(f"{spec.phase}/lr_{name}", group_lr, s_step)
                pending.clear()
                if master:
                    print(f"[cpt] step {step:5d}/{tc.max_steps} loss {loss_value:.4f} lr {lr:.2e} "
                          f"gnorm {record['grad_norm']:.3f} {tokens_per_s:,.0f} tok/s "
                          f"mem {record['peak_mem_gib']:.2f} GiB"
                          + (f" mfu {mfu:.1%}" if mfu is not None else ""), flush=True)

            if save_now and spec.save_outputs:
                t_save = time.perf_counter()
                path = checkpointing.save_checkpoint(
                    ckpt_dir, step, model=model, optimizer=optimizer,
                    trainer_state={"scheduler": scheduler.state_dict(), "data": stream.state_dict(),
                                   "tokens_seen": tokens_seen},
                    metadata={"phase": spec.phase, "max_steps": tc.max_steps, resume.SETTINGS_KEY: settings},
                    keep=registrar.in_flight(), uploader=uploader)
                save_s = time.perf_counter() - t_save
                if master:  # what the save held training up for (an upload runs beside training)
                    append_record(metrics_path, {"event": "checkpoint", "step": step, "save_s": save_s,
                                                 "store": spec.checkpoint_store})
                if master and uploader is not None:
                    print(f"[cpt] staged checkpoint {step}; uploading to {spec.checkpoint_store}", flush=True)
                if master and path is not None:
                    print(f"[cpt] saved checkpoint {path}", flush=True)
                    registrar.submit(path, {"phase": spec.phase, "step": step})  # uploads in a thread
                last_log_time += time.perf_counter() - t_save  # tokens/s measures training only
                maybe_fail_after(spec.phase, step, settle=lambda: (registrar.close(), uploader and uploader.close(),
                                                                   dist.barrier()))

        # -------------------------------------------------------------------
        # Export
        if spec.save_outputs:
            export_model(model, out_dir, Path(spec.model_dir), rank=rank)
            if master:
                append_record(metrics_path, {"event": "export", "out_dir": str(out_dir)})
                print(f"[cpt] exported {out_dir}", flush=True)
        dist.barrier()
        finished = True
    finally:
        registrar.close()  # the last upload ends here, with no rank inside a collective
        if uploader is not None:
            uploader.close()
        if writer is not None:
            writer.close()
        if finished:
            leave_together(rank)
        dist.destroy_process_group()


def leave_together(rank: int) -> None:
    """Every rank leaves once rank 0's last upload is done, and at the same moment.

    Rank 0 may still be registering the final checkpoint after the last barrier. The other ranks
    wait for it on the rendezvous store, which is no collective (no watchdog to outlast), then
    all meet in one barrier: a gloo rank that destroys its group while a peer is still connected
    can abort at exit ("terminate called without an active exception", seen once in CI).
    """
    store = dist.distributed_c10d._get_default_store()
    if rank == 0:
        store.set("azllm/uploads_done", "1")
    else:
        store.wait(["azllm/uploads_done"], timedelta(hours=24))  # rank 0 dying ends the job anyway
    dist.barrier()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One CPT phase (torchrun worker).")
    parser.add_argument("--spec", required=True, help="PhaseSpec JSON written by run_cpt_phase")
    args = parser.parse_args(argv)
    die_with_parent()  # torchrun starts workers in their own sessions: die with it, not after it
    train(PhaseSpec.from_json(args.spec))


if __name__ == "__main__":
    main(sys.argv[1:])
