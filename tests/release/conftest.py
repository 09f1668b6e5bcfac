"""A registry on a directory and on S3 (moto_server), for every registry test that must hold
on both."""

import uuid

import boto3
import pytest

from klinecast.release import registry


@pytest.fixture(params=["local", "s3"])
def registry_uri(request, tmp_path, monkeypatch):
    """A new, empty registry's URI: a directory, or a bucket of its own on moto_server."""
    if request.param == "local":
        return str(tmp_path / "registry")
    for key, value in request.getfixturevalue("moto_s3").items():
        monkeypatch.setenv(key, value)
    bucket = f"registry-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/models"


@pytest.fixture()
def store(registry_uri):
    return registry.open_store(registry_uri)
