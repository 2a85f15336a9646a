"""How a CPT worker builds, shards and exports its model (docs/DESIGN.md §6), in torchtitan's
order: freeze, activation checkpointing, ``torch.compile``, ``fully_shard``, then weights.

The model is built on the meta device on every rank (no memory), wrapped and sharded, and
only then materialised: every rank allocates just its shards, rank 0 reads the checkpoint
files and broadcasts them into the shards (``set_model_state_dict`` with
``broadcast_from_rank0``). No other rank ever holds the full state dict.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from azllm.model.kernels import INPLACE_OUTPUTS

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
                   "generation_config.json")

SAC_SAVE_OPS = {
    # Selective AC keeps these outputs and recomputes the rest (norms, SiLU, RoPE: cheap,
    # memory-bound). torchtitan's op-level policy: attention always, every other matmul.
    torch.ops.aten.mm.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
}


def build_meta_model(model_dir: str | Path, *, attn_implementation: str = "sdpa") -> PreTrainedModel:
    """The model of ``model_dir`` with every tensor on the meta device (fp32): no memory yet."""
    config = AutoConfig.from_pretrained(model_dir)
    config.use_cache = False  # training forwards build no KV cache
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32,
                                                attn_implementation=attn_implementation)


def freeze_for_phase(model: torch.nn.Module, phase: str, *, num_outer_layers: int = 0) -> list[str]:
    """Set requires_grad for the phase; returns the names of trainable parameters.

    ``embeddings``: the input embeddings and the lm_head (one Parameter when tied), plus the
    first and last ``num_outer_layers`` decoder layers (``embeddings+outer:K``). Each decoder
    layer is one FSDP unit, so a unit is either all trainable or all frozen.
    """
    train_all = phase == "full"
    for p in model.parameters():
        p.requires_grad_(train_all)
    if not train_all:
        for p in embedding_parameters(model):
            p.requires_grad_(True)
        layers = decoder_layers(model)
        # checked with its fix before torchrun (azllm.train.launcher.check_outer_layers)
        assert 2 * num_outer_layers <= len(layers), (num_outer_layers, len(layers))
        outer = list(layers[:num_outer_layers]) + list(layers[len(layers) - num_outer_layers:])
        for layer in outer:
            layer.requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def embedding_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The input embedding matrix and the LM head's, once each (a tied head is the same Parameter)."""
    params = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not params[0]:
        params.append(head.weight)
    return params


def optimizer_groups(model: torch.nn.Module, *, lr: float, embedding_lr_multiplier: float,
                     weight_decay: float) -> list[dict]:
    """AdamW parameter groups over the trainable parameters, each named: ``embeddings`` (input
    embeddings and head, at ``lr x embedding_lr_multiplier``, decayed), ``body`` (other matrices,
    at ``lr``, decayed) and ``body_no_decay`` (norms and biases). Empty groups are left out.

    Call it after ``fully_shard``, whose DTensor Parameters are the ones the optimizer steps.
    """
    emb_ids = {id(p) for p in embedding_parameters(model)}
    emb_names = {n for n, p in model.named_parameters(remove_duplicate=False) if id(p) in emb_ids}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"name": "embeddings", "lr": lr * embedding_lr_multiplier, "weight_decay": weight_decay,
         "params": [p for n, p in named if n in emb_names]},
        {"name": "body", "lr": lr, "weight_decay": weight_decay,
         "params": [p for n, p in named if n not in emb_names and p.ndim >= 2]},
        {"name": "body_no_decay", "lr": lr, "weight_decay": 0.0,
         "params": [p for n, p in named if n not in emb_names and p.ndim < 2]},
    ]
    return [g for g in groups if g["params"]]


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks (each becomes one FSDP unit): ``model.model.layers`` for Llama-likes."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    assert layers is not None and len(layers) > 0, (
        f"{type(model).__name__} has no model.layers; add its block list to decoder_layers()")
    return layers


def _sac_context(no_save: list[int] | None = None):
    """Selective AC's policy, one counter per forward and recompute pass (torchtitan's).

    ``no_save``: a one-item counter, non-zero while a module whose output is later overwritten
    in place runs (see :func:`apply_activation_checkpointing`); its matmuls are recomputed.
    """
    counts: dict[str, int] = defaultdict(int)

    def policy(ctx, func, *args, **kwargs):
        mode = "recompute" if ctx.is_recompute else "forward"
        if func == torch.ops.aten.mm.default:
            counts[mode] += 1
            if no_save and no_save[0]:
                return CheckpointPolicy.PREFER_RECOMPUTE
            return CheckpointPolicy.MUST_SAVE if counts[mode] % 2 == 0 else CheckpointPolicy.PREFER_RECOMPUTE
        return CheckpointPolicy.MUST_SAVE if func in SAC_SAVE_OPS else CheckpointPolicy.PREFER_RECOMPUTE

    return create_selective_checkpoint_contexts(policy)


def _flag_while_running(module: torch.nn.Module, flag: list[int]) -> None:
    """``flag[0]`` is non-zero while ``module``'s forward runs (in forward and in recompute)."""
    def enter(_module, _args):
        flag[0] += 1

    def leave(_module, _args, _output):
        flag[0] -= 1

    module.register_forward_pre_hook(enter)
    module.register_forward_hook(leave)


def apply_activation_checkpointing(model: torch.nn.Module, mode: str, *, liger: bool = False) -> None:
    """Wrap each decoder layer: ``full`` recomputes it whole in backward, ``selective`` keeps
    matmul and attention outputs. The wrapper's FQN prefix is invisible to DCP state dicts,
    so checkpoints are interchangeable between modes.

    ``liger``: Liger's kernels are applied. Its RoPE rotates q and k *in place*, in the very
    buffers ``q_proj``/``k_proj`` returned; a saved matmul output is an alias of that buffer, so
    recompute would rotate the saved, already rotated K a second time, and attention's backward
    would use it (q_proj's gradient off by ~60%, with an unchanged loss; Triton's writes do not
    bump ``_version``, so PyTorch's recompute check does not see it). Selective AC therefore
    never saves the outputs of ``kernels.INPLACE_OUTPUTS`` (q_proj, k_proj) under Liger: they are
    recomputed, and the rest of the pattern is unchanged. Cost, for Llama-3.2-1B (GQA, 8 KV
    heads): the k_proj output is no longer kept (B x T x 512 values a layer less memory) and
    recomputed (2048 x 512 of the layer's 60.8M matmul parameters, ~1.7% of its forward
    matmul FLOPs, ~0.6% of a step's). We keep Liger's fused RoPE rather than drop it under
    selective AC: the fix costs less than the unfused RoPE's extra memory traffic would.
    """
    if mode == "none":
        return
    layers = decoder_layers(model)
    for i, layer in enumerate(layers):
        kwargs = {}
        if mode == "selective":
            no_save = [0]
            if liger:
                for name in INPLACE_OUTPUTS:
                    _flag_while_running(layer.get_submodule(name), no_save)
            kwargs["context_fn"] = partial(_sac_context, no_save)
        layers[i] = checkpoint_wrapper(layer, preserve_rng_state=False, **kwargs)


def apply_compile(model: torch.nn.Module) -> None:
    """``torch.compile`` each decoder layer (same code, compiled once), before ``fully_shard``
    wraps it so that FSDP's hooks stay outside the graph (torchtitan's ``apply_compile``)."""
    layers = decoder_layers(model)
    for i, layer in enumerate(layers):
        layers[i] = torch.compile(layer)


def build_mesh(device_type: str, *, world_size: int, nnodes: int, sharding: str) -> DeviceMesh:
    """fsdp: one dimension over every rank. hsdp: (nodes, ranks per node), parameters replicated
    across nodes and sharded within one, so the all-gathers stay on the node's fast links.
    ``auto`` is hsdp with more than one node."""
    if sharding == "auto":
        sharding = "hsdp" if nnodes > 1 else "fsdp"
    if sharding == "fsdp" or nnodes == 1:
        return init_device_mesh(device_type, (world_size,), mesh_dim_names=("shard",))
    assert world_size % nnodes == 0, f"world size {world_size} is not a multiple of {nnodes} nodes"
    return init_device_mesh(device_type, (nnodes, world_size // nnodes), mesh_dim_names=("replicate", "shard"))


def shard_model(model: torch.nn.Module, mesh: DeviceMesh, *, bf16: bool) -> None:
    """FSDP2: each decoder layer is a unit, the root takes embeddings, norm and head. bf16
    compute with fp32 gradient reduction on GPU (torchtitan's default)."""
    mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16
          else MixedPrecisionPolicy())
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)


def read_full_state_dict(model_dir: str | Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rank 0: every weight of ``model_dir`` in fp32 on the CPU, keyed like ``model``'s state dict
    (a tied head, which safetensors stores once, is added under its own name)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    assert files, f"{model_dir}: no *.safetensors weights"
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update({k: v.float() for k, v in load_file(f).items()})
    head = model.get_output_embeddings()
    if head is not None and head.weight is model.get_input_embeddings().weight:
        names = [n for n, p in model.named_parameters(remove_duplicate=False) if p is head.weight]
        source = next(n for n in names if n in sd)
        for n in names:
            sd.setdefault(n, sd[source])
    return sd


def _init_rotary_buffers(model: torch.nn.Module, device: torch.device) -> None:
    """Recompute the non-persistent buffers (RoPE ``inv_freq``) that ``to_empty`` left unset:
    they are in no checkpoint. Any other non-persistent buffer is an error, not garbage."""
    for name, module in model.named_modules():
        own = getattr(module, "_non_persistent_buffers_set", set())
        if not own:
            continue
        assert type(module).__name__.endswith("RotaryEmbedding"), (
            f"{name} ({type(module).__name__}) has non-persistent buffers {sorted(own)} that the meta-device "
            "build cannot restore; teach _init_rotary_buffers how to compute them")
        with torch.device(device):
            fresh = type(module)(config=module.config)
        for buf in own:
            getattr(module, buf).copy_(getattr(fresh, buf))


def materialize_and_load(model: torch.nn.Module, model_dir: str | Path, device: torch.device) -> None:
    """Collective: allocate this rank's shards on ``device`` and fill them from ``model_dir``,
    read by rank 0 only and broadcast (every rank sends/receives one tensor at a time)."""
    model.to_empty(device=device)
    _init_rotary_buffers(model, device)
    full_sd = read_full_state_dict(model_dir, model) if dist.get_rank() == 0 else {}
    set_model_state_dict(model, full_sd, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    del full_sd


def export_model(model: PreTrainedModel, out_dir: Path, model_dir: Path, *, rank: int) -> None:
    """Collective: gather the full state dict; rank 0 writes an HF directory + tokenizer files,
    into a temporary directory renamed at the end (an export is whole or absent)."""
    import os
    import shutil

    full_sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank != 0:
        return
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(model.config, dtype=torch.float32)
    fresh.load_state_dict(full_sd, strict=False, assign=True)
    if getattr(fresh.config, "tie_word_embeddings", False):
        fresh.tie_weights()
    missing = [n for n, p in fresh.named_parameters() if p.is_meta]
    assert not missing, f"export: parameters missing from the gathered state dict: {missing[:5]}"
    fresh.config.use_cache = True  # the exported model is for generation
    tmp = out_dir.parent / f".tmp-{out_dir.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    fresh.save_pretrained(tmp, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, tmp / name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
