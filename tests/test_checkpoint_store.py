"""Checkpoint integrity (sizes and checksums in meta.json) and the checkpoint store, without torchrun.

Real one-process DCP checkpoints of a small module; the store is a local directory and a real
moto S3 server on localhost (boto3 over HTTP, nothing mocked inside it). A few seconds.

    .venv/bin/python -m pytest -q tests/test_checkpoint_store.py

The multi-node kill/resume tests through the store are in tests/test_multinode.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from azllm.train.checkpointing import (
    COMPLETE_MARKER,
    KEPT_AFTER_PHASE,
    CheckpointStore,
    StoreUploader,
    checkpoint_problems,
    finish_store,
    restore_from_store,
    resumable_checkpoint,
    save_checkpoint,
    staging_dir,
    store_checkpoints,
    store_problems,
)


def _save(root, step: int, uploader=None):
    torch.manual_seed(step)
    model = torch.nn.Linear(64, 32)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 64)).sum().backward()
    optimizer.step()
    return save_checkpoint(root, step, model=model, optimizer=optimizer, trainer_state={"data": {"step": step}},
                           uploader=uploader)


def _truncate(path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


@pytest.mark.parametrize("damage", ["truncate_shard", "truncate_trainer", "flip_byte", "drop_meta"])
def test_a_damaged_newest_checkpoint_is_skipped_with_one_line(tmp_path, capsys, damage):
    first, second = _save(tmp_path, 3), _save(tmp_path, 6)
    meta = json.loads((second / COMPLETE_MARKER).read_text())
    names = {"__0_0.distcp", ".metadata", "trainer.pt", "rng-rank00000.pt", "done-rank00000.json"}
    assert names <= meta["files"].keys()
    assert checkpoint_problems(second) == [] and resumable_checkpoint(tmp_path) == second
    if damage == "truncate_shard":
        _truncate(second / "__0_0.distcp")
        expected = "__0_0.distcp has"
    elif damage == "truncate_trainer":
        _truncate(second / "trainer.pt", keep=100)
        expected = "trainer.pt has 100 bytes"
    elif damage == "flip_byte":  # same size, other content: only the checksum sees it
        data = bytearray((second / "__0_0.distcp").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (second / "__0_0.distcp").write_bytes(bytes(data))
        expected = "checksum differs"
    else:
        (second / COMPLETE_MARKER).unlink()
        expected = "meta.json is missing"
    capsys.readouterr()
    for _ in range(2):  # every rerun skips it again, and says so in one line
        assert resumable_checkpoint(tmp_path) == first
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1 and "skipping" in lines[0] and "step-000006" in lines[0], lines
        assert expected in lines[0], lines[0]
    assert second.exists(), "the damaged checkpoint is left for inspection"


@pytest.fixture(params=["dir", "s3"])
def store_url(request, tmp_path, monkeypatch):
    """The same tests on a local directory (the local datastore) and on S3 (moto on localhost)."""
    if request.param == "dir":
        return str(tmp_path / "store")
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", request.getfixturevalue("moto_endpoint"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    bucket = f"ckpt-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/flow/run/cpt_full/arm"


def test_store_upload_completeness_rotation_restore_and_cleanup(tmp_path, store_url, capsys):
    store = CheckpointStore(store_url)
    uploader = StoreUploader(store, rank=0, keep_last=2)
    for step in (2, 4, 6):
        assert _save(tmp_path / "node", step, uploader=uploader) is None  # staged, uploaded beside training
    uploader.close()
    assert not any(staging_dir(tmp_path / "node", 0).iterdir()), "staging copies are deleted once uploaded"
    found = store_checkpoints(store)
    # rank 0 rotates before each upload: the 2 newest complete ones, and the one being uploaded
    assert sorted(found) == [2, 4, 6] and all(not store_problems(store, s, found[s]) for s in found)
    assert set(uploader.seconds) == {2, 4, 6}

    # one rank's shard missing from the store (an upload cut short): never resumed, the previous is
    store.delete(["step-000006/__0_0.distcp"])
    capsys.readouterr()
    node = tmp_path / "other-node"
    (node / "step-000006").mkdir(parents=True)  # a stale local copy must not win over the store
    restored = restore_from_store(store, node)
    out = capsys.readouterr().out
    assert restored == node / "step-000004" and checkpoint_problems(restored) == []
    assert "skipping" in out and "step-000006" in out and "__0_0.distcp is missing" in out, out
    assert sorted(p.name for p in node.iterdir()) == ["step-000004"]
    state = torch.load(restored / "trainer.pt", weights_only=False)
    assert state["step"] == 4 and state["data"] == {"step": 4}

    # a half-written store object (size differs from the recorded one) is as incomplete
    raw = bytearray(store.read_bytes("step-000004/trainer.pt"))
    local = tmp_path / "short.pt"
    local.write_bytes(bytes(raw[:10]))
    store.put(local, "step-000004/trainer.pt")
    assert restore_from_store(store, tmp_path / "third") == tmp_path / "third" / "step-000002"

    # a finished phase keeps only meta.json and trainer.pt of its last checkpoint
    freed = finish_store(store)
    assert freed > 0 and sorted(store.listing()) == [f"step-000006/{n}" for n in sorted(KEPT_AFTER_PHASE)]


def test_store_rotation_keeps_keep_last(tmp_path):
    store = CheckpointStore(str(tmp_path / "store"))
    uploader = StoreUploader(store, rank=0, keep_last=1)
    for step in (1, 2, 3, 4):
        _save(tmp_path / "node", step, uploader=uploader)
    uploader.close()
    assert sorted(store_checkpoints(store)) == [3, 4]
    shutil.rmtree(tmp_path / "node")
