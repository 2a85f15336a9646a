"""Pack a text corpus into fixed-length token blocks for continued pre-training.

Every document is tokenized without special tokens and followed by EOS; the
documents are concatenated in file order and cut into ``block_size`` blocks, the
tail remainder dropped. No BOS inside blocks: EOS marks each document boundary.
The blocks are one ``.npy`` file of shape (num_blocks, block_size), int32, that
trainers memory-map (:func:`load_blocks`), cached by a hash of the tokenizer
files, the data file's bytes and ``block_size``, so a rerun skips tokenization.

Documents share blocks. What is provided against cross-document leakage:

- :func:`document_position_ids`: positions restart at 0 after each EOS, so RoPE
  never sees one document as the continuation of another. Pass them as
  ``position_ids``; with ``attn_implementation="flash_attention_2"`` transformers
  also turns restarting position ids into varlen (per-document) attention.
- :func:`document_causal_mask`: the block-diagonal causal mask (B, T, T) for
  eager/SDPA attention that must not attend across documents. Without it (plain
  SDPA + position ids) a token still attends to earlier documents in its block:
  that is the usual GPT-style packing, not a bug, but it is not isolation.

    >>> packed = pack_corpus(Path("train.jsonl"), tokenizer_dir, block_size=256)
    >>> blocks = load_blocks(packed)          # np.memmap (num_blocks, 256) int32
    >>> pos = document_position_ids(torch.from_numpy(blocks[:4].copy()), packed.eos_token_id)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from azllm.config import cache_dir
from azllm.data.shards import available_cpus

PACK_FORMAT_VERSION = 1
"""Bump when the packed layout changes: old caches are then ignored."""

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                    "tokenizer.model", "vocab.json", "merges.txt")


@dataclass(frozen=True)
class PackedData:
    """A packed corpus on disk. Counts are tokens, EOS included."""

    path: Path
    """The ``blocks.npy`` file, shape (num_blocks, block_size), int32."""
    num_blocks: int
    block_size: int
    num_tokens: int
    """Tokens produced by tokenization (documents + one EOS each), before cutting."""
    num_documents: int
    """Non-empty documents packed."""
    num_bytes: int
    """UTF-8 bytes of those documents (the EOS added after each has none): what bytes-per-token
    and the `bytes` CPT budget divide by."""
    tokens_dropped: int
    """The tail remainder that did not fill a block: num_tokens - num_blocks * block_size."""
    eos_token_id: int
    from_cache: bool = False
    """True when this call found the blocks cached and tokenized nothing."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


# ---------------------------------------------------------------------------
# Cache key
# ---------------------------------------------------------------------------


def _sha256_file(path: Path, h: hashlib._Hash | None = None) -> hashlib._Hash:
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def _cache_key(texts_path: Path, tokenizer_dir: Path, block_size: int, text_field: str) -> str:
    h = hashlib.sha256(f"v{PACK_FORMAT_VERSION}|bs={block_size}|field={text_field}|".encode())
    found = [tokenizer_dir / n for n in _TOKENIZER_FILES if (tokenizer_dir / n).is_file()]
    if not found:
        raise FileNotFoundError(f"{tokenizer_dir} has no tokenizer files ({', '.join(_TOKENIZER_FILES[:2])}); "
                                "save the tokenizer there first (train_tokenizer step)")
    for f in found:
        h.update(f.name.encode())
        _sha256_file(f, h)
    h.update(b"|data|")
    _sha256_file(texts_path, h)  # content, not mtime: a touched but unchanged file stays cached
    return h.hexdigest()[:20]


# ---------------------------------------------------------------------------
# Tokenization (runs in `datasets.map` workers; loads the tokenizer once per process)
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _tokenizer(tokenizer_dir: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def _tokenize_batch(batch: dict, *, tokenizer_dir: str, text_field: str, eos_id: int) -> dict:
    texts = [t for t in batch[text_field] if isinstance(t, str) and t.strip()]
    ids = _tokenizer(tokenizer_dir)(texts, add_special_tokens=False)["input_ids"] if texts else []
    ids = [doc + [eos_id] for doc in ids]
    return {"input_ids": ids, "num_tokens": [len(doc) for doc in ids],
            "num_bytes": [len(t.encode("utf-8")) for t in texts]}


def _loader_for(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json")):
        return "json"
    if name.endswith(".txt"):
        return "text"
    if name.endswith(".parquet"):
        return "parquet"
    raise ValueError(f"{path}: unknown corpus format; accepted: .jsonl/.json, .txt (one document a line), "
                     ".parquet, optionally .gz")


def has_content(path: Path) -> bool:
    """True once a line with something other than whitespace is seen (a corpus file is read that far)."""
    with open(path, "rb") as f:
        return any(line.strip() for line in f)


def pack_corpus(texts_path: Path, tokenizer_dir: Path, *, block_size: int, num_proc: int = 1,
                cache_root: Path | None = None, text_field: str = "text") -> PackedData:
    """Tokenize ``texts_path`` (one document per JSON line, field ``text_field``) and pack it.

    ``num_proc`` processes tokenize (``datasets.map``); 0 = the CPUs this process may use.
    The blocks and their ``meta.json`` are one directory (``packed.path.parent``): the flow's
    ``pack_arm`` step saves it as a reference and the CPT steps read it with :func:`read_packed`.
    Returns the cached result if this tokenizer, data file and block size were packed before.
    Raises ValueError when the corpus has fewer tokens than one block, or the tokenizer has no EOS.
    """
    texts_path, tokenizer_dir = Path(texts_path), Path(tokenizer_dir)
    if block_size < 2:
        raise ValueError(f"block_size must be >= 2, got {block_size}")
    if not texts_path.is_file():
        raise FileNotFoundError(f"corpus file {texts_path} does not exist (written by the data preparation step)")
    if not has_content(texts_path):
        raise ValueError(f"corpus file {texts_path} is empty: there is nothing to train on; write it again with "
                         "`azllm data prepare --config PRESET --out DIR` (every document may have been filtered out)")
    loader = _loader_for(texts_path)
    if loader == "text":
        text_field = "text"

    key = _cache_key(texts_path, tokenizer_dir, block_size, text_field)
    root = Path(cache_root) if cache_root is not None else cache_dir() / "packed"
    target = root / f"{texts_path.name.split('.')[0]}-bs{block_size}-{key}"
    meta_file = target / "meta.json"
    if meta_file.is_file() and (target / "blocks.npy").is_file():
        try:
            return dataclasses.replace(read_packed(target), from_cache=True)
        except ValueError:  # a cache written before a field was added is packed again
            shutil.rmtree(target, ignore_errors=True)

    tokenizer = _tokenizer(str(tokenizer_dir))
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError(f"tokenizer {tokenizer_dir} has no eos_token: packing marks document boundaries with EOS. "
                         "Save the tokenizer with eos_token set (azllm tokenizers use <|end_of_text|>)")

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
    try:
        meta = _pack_into(tmp, texts_path, loader, str(tokenizer_dir), text_field=text_field, eos_id=eos_id,
                          block_size=block_size, num_proc=num_proc or available_cpus())
        try:
            os.rename(tmp, target)
        except OSError:  # another process packed the same thing first
            if not meta_file.is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return PackedData(**{**meta, "path": target / "blocks.npy", "from_cache": False})


def _pack_into(out_dir: Path, texts_path: Path, loader: str, tokenizer_dir: str, *, text_field: str,
               eos_id: int, block_size: int, num_proc: int) -> dict:
    from datasets import load_dataset

    t0 = time.perf_counter()
    hf_cache = out_dir / "hf_cache"  # datasets' arrow files live and die with this temp dir
    ds = load_dataset(loader, data_files=str(texts_path), split="train", cache_dir=str(hf_cache))
    if text_field not in ds.column_names:
        raise ValueError(f"{texts_path}: no {text_field!r} field; fields: {ds.column_names}")
    ds = ds.map(_tokenize_batch, batched=True, batch_size=1000, num_proc=num_proc if num_proc > 1 else None,
                remove_columns=ds.column_names, desc="tokenize",
                fn_kwargs={"tokenizer_dir": tokenizer_dir, "text_field": text_field, "eos_id": eos_id})
    num_documents = len(ds)
    num_tokens = int(np.sum(ds["num_tokens"], dtype=np.int64)) if num_documents else 0
    num_bytes = int(np.sum(ds["num_bytes"], dtype=np.int64)) if num_documents else 0
    num_blocks = num_tokens // block_size
    if num_blocks == 0:
        raise ValueError(f"{texts_path}: {num_tokens} tokens ({num_documents} documents, EOS included) is "
                         f"shorter than one block of block_size={block_size}; lower cpt.block_size or add text")

    # Stream documents into the memory-mapped output; stop once the last full block is filled.
    blocks = np.lib.format.open_memmap(out_dir / "blocks.npy", mode="w+", dtype=np.int32,
                                       shape=(num_blocks, block_size))
    flat = blocks.reshape(-1)  # (num_blocks * block_size,)
    pos = 0
    for batch in ds.select_columns(["input_ids"]).iter(batch_size=1000):
        for doc in batch["input_ids"]:
            take = min(len(doc), flat.shape[0] - pos)
            flat[pos: pos + take] = doc[:take]
            pos += take
        if pos == flat.shape[0]:
            break
    assert pos == num_blocks * block_size, f"filled {pos} tokens, expected {num_blocks} x {block_size}"
    blocks.flush()
    del flat, blocks
    shutil.rmtree(hf_cache, ignore_errors=True)

    meta = {"num_blocks": num_blocks, "block_size": block_size, "num_tokens": num_tokens,
            "num_documents": num_documents, "num_bytes": num_bytes,
            "tokens_dropped": num_tokens - num_blocks * block_size,
            "eos_token_id": eos_id}
    (out_dir / "meta.json").write_text(json.dumps(
        {**meta, "source": str(texts_path), "tokenizer_dir": tokenizer_dir,
         "pack_seconds": round(time.perf_counter() - t0, 2)}, indent=1))
    return meta


# ---------------------------------------------------------------------------
# Reading blocks
# ---------------------------------------------------------------------------


def read_packed(packed_dir: Path | str) -> PackedData:
    """The :class:`PackedData` of a directory :func:`pack_corpus` wrote (``blocks.npy`` and
    ``meta.json``), e.g. the flow's ``packed`` reference loaded in a CPT step."""
    packed_dir = Path(packed_dir)
    meta_file, blocks = packed_dir / "meta.json", packed_dir / "blocks.npy"
    if not (meta_file.is_file() and blocks.is_file()):
        raise FileNotFoundError(f"{packed_dir} has no blocks.npy and meta.json: it was not written by "
                                "pack_corpus (the flow's pack_arm step)")
    meta = json.loads(meta_file.read_text())
    known = {f.name for f in fields(PackedData)} - {"path", "from_cache"}
    missing = sorted(known - set(meta))
    if missing:
        raise ValueError(f"{meta_file} lacks {missing}: written by an older azllm; pack the corpus again")
    return PackedData(**{k: v for k, v in meta.items() if k in known}, path=blocks)


def load_blocks(packed: PackedData | Path | str) -> np.ndarray:
    """The blocks as a read-only memory map, shape (num_blocks, block_size), int32.

    Index rows, then ``torch.from_numpy(np.asarray(rows, dtype=np.int64))`` for a batch.
    """
    path = Path(packed.path if isinstance(packed, PackedData) else packed)
    if path.is_dir():
        path = path / "blocks.npy"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: pack the corpus first with pack_corpus()")
    return np.load(path, mmap_mode="r")


def _document_starts(block: torch.Tensor, eos_id: int) -> torch.Tensor:
    """True where a document starts: position 0 and every token right after an EOS. (B, T)"""
    starts = torch.zeros_like(block, dtype=torch.bool)
    starts[..., 0] = True
    starts[..., 1:] = block[..., :-1] == eos_id
    return starts


def document_position_ids(block: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Position ids that restart at 0 after each EOS; same shape as ``block`` ((T,) or (B, T)).

    The EOS closing a document keeps that document's positions; the first document of a
    block (possibly the tail of one started in the previous block) starts at 0.
    """
    block = torch.as_tensor(block)
    starts = _document_starts(block, eos_id)
    idx = torch.arange(block.shape[-1], device=block.device).expand_as(block)
    last_start = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=-1).values
    return idx - last_start


def document_causal_mask(block: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Boolean mask (B, T, T), True where query t may attend key s: s <= t, same document."""
    block = torch.as_tensor(block)
    if block.dim() == 1:
        block = block.unsqueeze(0)
    doc = _document_starts(block, eos_id).long().cumsum(dim=-1)  # (B, T) document index
    T = block.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=block.device).tril()
    return (doc[:, :, None] == doc[:, None, :]) & causal
