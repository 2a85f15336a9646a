"""Liger's Triton kernels on CPU, under Triton's interpreter: the shims, a launch counter, and the
gradient cases that tests/test_liger.py checks (docs/DESIGN.md §6, "Liger on CPU").

Import this module only in a process started with ``TRITON_INTERPRET=1`` in its environment:
``triton.jit`` reads that variable when a kernel is *defined*, so it must be set before
``triton`` (or ``liger_kernel``, or anything importing them) is imported. The tests therefore
run it as a subprocess (``python tests/liger_interpreter.py OUT.json``), and the CPT workers
load it through ``tests/liger_site/sitecustomize.py``. A subprocess also keeps Liger's RoPE patch
(it replaces ``modeling_llama.apply_rotary_pos_emb``, a module-level function) away from the
plain reference models: here every reference is computed before the first patch.

Interpreter gaps (triton 3.9.0), one shim each:

1. A Python ``float`` kernel argument reaches the kernel as a Python float (the interpreter wraps
   ints, bools and tensors, not floats), and Liger calls ``eps.to(tl.float32)`` on it:
   ``AttributeError: 'float' object has no attribute 'to'``. Floats are wrapped as fp32 scalars,
   which is what the compiled kernel receives.
2. ``triton.language.extra.libdevice.rsqrt`` (Liger's RMSNorm) has no interpreter implementation
   (the interpreter patches ``tl.math``, not libdevice): Liger's module gets ``tl.math.rsqrt``.

bf16 does not work under the interpreter (SwiGLU and RoPE return NaN), so everything here is fp32.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import sys

assert os.environ.get("TRITON_INTERPRET") == "1", (
    "tests/liger_interpreter.py needs TRITON_INTERPRET=1 in the environment before triton is imported")
assert "triton" not in sys.modules or getattr(sys.modules["triton"], "_azllm_interpreter_shims", False), (
    "triton was imported before the interpreter shims: import tests/liger_interpreter.py first")

import numpy as np  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.runtime import interpreter  # noqa: E402

LAUNCHES: collections.Counter[str] = collections.Counter()
"""Kernel name -> launches in this process (every interpreted ``kernel[grid](...)`` call)."""

if not getattr(triton, "_azllm_interpreter_shims", False):
    triton._azllm_interpreter_shims = True

    # Gap 1: Python float kernel arguments arrive as Python floats.
    _implicit_cvt = interpreter._implicit_cvt

    def _float_as_fp32(arg):
        if isinstance(arg, float):
            return tl.tensor(interpreter.TensorHandle(np.array([arg], dtype=np.float32), tl.float32), tl.float32)
        return _implicit_cvt(arg)

    interpreter._implicit_cvt = _float_as_fp32

    # Launch counter: a silent fall-back to plain PyTorch launches nothing.
    _run = interpreter.InterpretedFunction.run

    def _counted_run(self, *args, **kwargs):
        if not kwargs.get("warmup"):
            LAUNCHES[self.fn.__name__] += 1
        return _run(self, *args, **kwargs)

    interpreter.InterpretedFunction.run = _counted_run

    # Gap 2: libdevice.rsqrt is not implemented by the interpreter; tl.math.rsqrt is (looked up
    # at call time, when the interpreter has patched tl.math).
    import liger_kernel.ops.rms_norm as _liger_rms_norm

    _liger_rms_norm.rsqrt = lambda x: tl.math.rsqrt(x)

    _launch_file = os.environ.get("AZLLM_TRITON_LAUNCHES")
    if _launch_file:  # the CPT workers: each rank writes its counts at exit
        def _write_launches() -> None:
            rank = os.environ.get("RANK")  # torchrun's agent process has none: it launches no kernel
            if rank is not None:
                with open(f"{_launch_file}.rank{rank}", "w") as f:
                    json.dump(dict(LAUNCHES), f)

        atexit.register(_write_launches)


# ---------------------------------------------------------------------------
# Gradient cases: plain PyTorch vs Liger, per parameter, for tests/test_liger.py
# ---------------------------------------------------------------------------

MODES = ("none", "full", "selective")
VARIANTS = ("tied", "untied", "padded")
CASES = [(v, m) for v in ("tied", "untied") for m in MODES] + [("padded", "selective")]


def tiny_llama(variant: str):
    """A 2-layer GQA Llama (hidden 32, 4 heads, 2 KV heads), fp32, seed 0. ``padded``: tied, its
    vocabulary resized from 250 to 300 tokens and padded to a multiple of 64 (320 rows)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=250 if variant == "padded" else 256, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=64, tie_word_embeddings=variant != "untied")
    model = LlamaForCausalLM(cfg)
    if variant == "padded":
        model.resize_token_embeddings(300, pad_to_multiple_of=64, mean_resizing=False)
    return model


def batch(variant: str):
    import torch

    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 300 if variant == "padded" else 256, (1, 12), generator=g)


def gradients(model, x, **loss_kwargs) -> tuple[float, dict]:
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=x, labels=x, use_cache=False, **loss_kwargs).loss
    loss.backward()
    return loss.item(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def run_cases(cases: list[tuple[str, str]]) -> dict:
    """{"variant/mode": {"loss", "ref_loss", "rel_err": {param: |g - g_ref| / |g_ref|},
    "liger_applied", "launches"}}, Liger through azllm's own ``apply_liger`` and
    ``apply_activation_checkpointing``; the plain references first (Liger's RoPE patch is global)."""
    from azllm.model.kernels import apply_liger, liger_loss_kwargs
    from azllm.train.parallelize import apply_activation_checkpointing

    refs = {}
    for variant in sorted({v for v, _ in cases}):
        refs[variant] = gradients(tiny_llama(variant), batch(variant))
    out = {}
    for variant, mode in cases:
        model = tiny_llama(variant)
        applied = apply_liger(model, enabled=True)
        apply_activation_checkpointing(model, mode, liger=applied)
        before = LAUNCHES.copy()
        loss, grads = gradients(model, batch(variant), **liger_loss_kwargs(applied))  # as the CPT worker
        ref_loss, ref = refs[variant]
        names = {n.replace("._checkpoint_wrapped_module", ""): n for n in grads}
        out[f"{variant}/{mode}"] = {
            "loss": loss, "ref_loss": ref_loss, "liger_applied": applied,
            "launches": dict(LAUNCHES - before),
            "rel_err": {n: float((grads[names[n]] - g).norm() / g.norm().clamp_min(1e-30)) for n, g in ref.items()},
        }
    return out


if __name__ == "__main__":
    selected = [tuple(c.split("/")) for c in sys.argv[2:]] or CASES
    with open(sys.argv[1], "w") as f:
        json.dump(run_cases(selected), f, indent=1)
