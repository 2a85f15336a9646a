"""azllm.train: continued pre-training with FSDP2 in torchrun workers (docs/DESIGN.md §6, §7).

- ``phase``: what launcher and worker share: ``PhaseSpec`` (the phase's section and
  ``[cpt.runtime]`` whole, paths), ``TorchrunLayout``, ``PhaseResult``.
- ``launcher``: ``run_cpt_phase`` (a flow step or ``azllm cpt`` calls it), the checks before
  torchrun, the torchrun command builder and worker output streaming.
- ``cpt_worker``: the torchrun worker (``python -m azllm.train.cpt_worker --spec spec.json``).
- ``parallelize``, ``blocks``, ``flops``: the worker's model building/sharding, data, MFU.
- ``checkpointing``: sharded DCP checkpoints, resume, registration with Metaflow.
- ``metrics``: the ``metrics.jsonl`` the workers write and cards and inspection read.
- ``arms``: the CPT stage of one vocabulary arm, as the flow runs it.
- ``budget``: each arm's steps under ``[cpt] budget`` (steps | tokens | bytes), tokens and bytes seen.
"""
