"""azllm.train: continued pre-training with FSDP2 in torchrun workers.

- ``cpt``: the worker entrypoint (``python -m azllm.train.cpt --spec spec.json``) and
  ``run_cpt_phase``, which a flow step calls to launch it.
- ``launcher``: torchrun command builder, worker output streaming, ``@parallel`` arguments.
- ``checkpointing``: sharded DCP checkpoints, resume, the Metaflow lineage guard.

Submodules import torch lazily; import them directly (``from azllm.train.cpt import ...``).
"""
