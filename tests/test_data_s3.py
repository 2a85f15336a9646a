"""S3 sources through a real moto server on localhost (boto3 picks it up from AWS_ENDPOINT_URL).

    .venv/bin/python -m pytest -q tests/test_data_s3.py

Nothing is mocked inside boto3: requests go over HTTP to moto's S3 implementation.
"""

from __future__ import annotations

import gzip
import io
import json

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from azllm.config import DataConfig, QualityConfig
from azllm.data.corpus import prepare_corpus
from azllm.data.readers import BadLines, DataError, iter_documents

DOCS = ["Birinci sənəd burada yazılıb.", "İkinci sənəd də var.", "Üçüncü və sonuncu sənəd."]
BUCKET = "azllm-test"


@pytest.fixture
def s3(moto_endpoint, monkeypatch):
    """A client on the moto server with a fresh bucket; the env is what the readers see."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    yield client
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)


def jsonl_bytes(docs: list[str]) -> bytes:
    return "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs).encode()


def test_single_object(s3):
    s3.put_object(Bucket=BUCKET, Key="corpus/a.jsonl", Body=jsonl_bytes(DOCS))
    assert list(iter_documents(f"s3://{BUCKET}/corpus/a.jsonl")) == DOCS


def test_prefix_reads_supported_objects_sorted(s3):
    s3.put_object(Bucket=BUCKET, Key="corpus/2.jsonl.gz", Body=gzip.compress(jsonl_bytes(DOCS[2:])))
    s3.put_object(Bucket=BUCKET, Key="corpus/1.txt", Body=DOCS[1].encode() + b"\n")
    s3.put_object(Bucket=BUCKET, Key="corpus/0.jsonl", Body=jsonl_bytes(DOCS[:1]))
    s3.put_object(Bucket=BUCKET, Key="corpus/README.md", Body=b"ignored")
    assert list(iter_documents(f"s3://{BUCKET}/corpus/")) == DOCS
    assert list(iter_documents(f"s3://{BUCKET}/corpus")) == DOCS


def test_parquet_object(s3):
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": DOCS}), buf)
    s3.put_object(Bucket=BUCKET, Key="p/c.parquet", Body=buf.getvalue())
    assert list(iter_documents(f"s3://{BUCKET}/p/c.parquet")) == DOCS


def test_missing_key_is_a_data_error(s3):
    with pytest.raises(DataError, match=rf"s3://{BUCKET}/nope.jsonl: no such S3 object"):
        list(iter_documents(f"s3://{BUCKET}/nope.jsonl"))


def test_bad_line_in_s3_object_names_key_and_line(s3):
    s3.put_object(Bucket=BUCKET, Key="bad.jsonl", Body=jsonl_bytes(DOCS[:1]) + b"{oops\n")
    with pytest.raises(DataError, match=rf"s3://{BUCKET}/bad.jsonl:2: invalid JSON"):
        list(iter_documents(f"s3://{BUCKET}/bad.jsonl"))
    counter = BadLines()
    assert list(iter_documents(f"s3://{BUCKET}/bad.jsonl", skip_bad_lines=True, counter=counter)) == DOCS[:1]
    assert counter.count == 1


def test_prepare_corpus_from_s3(s3, tmp_path):
    s3.put_object(Bucket=BUCKET, Key="c.jsonl", Body=jsonl_bytes(DOCS))
    s3.put_object(Bucket=BUCKET, Key="v.jsonl", Body=jsonl_bytes(["Yoxlama üçün ayrıca sənəd."]))
    cfg = DataConfig(corpus=(f"s3://{BUCKET}/c.jsonl",), validation=(f"s3://{BUCKET}/v.jsonl",),
                     quality=QualityConfig(enabled=False), work_dir=str(tmp_path / "work"))
    prepared = prepare_corpus(cfg, tmp_path / "out")
    assert prepared.stats["train"]["documents"] == 3
    assert prepared.stats["validation"]["documents"] == 1
