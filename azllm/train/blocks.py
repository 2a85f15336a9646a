"""The training data of a CPT worker: packed blocks, read by each rank in a resumable order,
and moved to the GPU through a pinned staging buffer (docs/DESIGN.md §6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from azllm.data.packing import load_blocks


class BlockStream:
    """Deterministic, resumable stream of packed blocks, each rank reading its own rows.

    The global stream is the concatenation of per-epoch permutations of all blocks
    (``randperm`` seeded with ``seed + epoch``), so epochs cycle when ``max_steps`` needs
    more data. Each call takes the next ``world_size x batch_size`` global positions;
    rank r reads the r-th ``batch_size`` of them. ``position`` (global sequences consumed)
    is the whole state, independent of the world size.
    """

    def __init__(self, blocks, *, batch_size: int, rank: int, world_size: int, seed: int, position: int = 0):
        self.blocks = blocks  # (N, T), numpy memmap or tensor
        self.num_blocks = int(blocks.shape[0])
        assert self.num_blocks > 0, "no blocks to train on"
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        self.position = position
        self._perm_epoch, self._perm = -1, None

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._perm, self._perm_epoch = torch.randperm(self.num_blocks, generator=g), epoch
        return self._perm

    def next_batch(self) -> torch.Tensor:
        start = self.position + self.rank * self.batch_size
        rows = []
        for i in range(start, start + self.batch_size):
            epoch, j = divmod(i, self.num_blocks)
            rows.append(int(self._order(epoch)[j]))
        self.position += self.world_size * self.batch_size
        batch = np.stack([np.asarray(self.blocks[r]) for r in rows])
        return torch.from_numpy(batch.astype(np.int64))  # (B, T)

    @property
    def epoch(self) -> float:
        return self.position / self.num_blocks

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])


def load_training_blocks(blocks_path: str | Path) -> np.ndarray:
    """(num_blocks, block_size) int32 memory map written by azllm.data.packing.pack_corpus."""
    path = Path(blocks_path)
    if not path.exists():
        raise FileNotFoundError(f"packed blocks {path} do not exist; they are made by "
                                "azllm.data.packing.pack_corpus (flow step cpt_embeddings/cpt_full)")
    blocks = load_blocks(path)
    assert blocks.ndim == 2 and blocks.shape[0] > 0, f"{path}: expected (num_blocks, block_size), got {blocks.shape}"
    return blocks


class DeviceStager:
    """Copies CPU batches to the device through one pinned host buffer, without blocking.

    A pageable tensor's ``.to("cuda", non_blocking=True)`` is synchronous (the driver stages it
    through its own pinned memory first); copying into a page-locked buffer we own lets the
    host-to-device copy overlap the previous step's kernels. The buffer is reused: before
    refilling it, the previous copy must be finished, which the event recorded after it tells.
    On CPU batches are returned as they are.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._buffer: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.device.type != "cuda":
            return batch
        if self._buffer is None or self._buffer.shape != batch.shape:
            self._buffer = torch.empty(batch.shape, dtype=batch.dtype, pin_memory=True)
        if self._copied is not None:
            self._copied.synchronize()  # the last copy out of the buffer is done
        self._buffer.copy_(batch)
        out = self._buffer.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return out
