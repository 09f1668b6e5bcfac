import datetime as dt
import json
import uuid

import boto3
import botocore.config
import pytest
import xgboost as xgb

from klinecast.release import registry
from klinecast.release.registry import RegistryError
from tests.support.model_fixtures import scorecard, small_metadata
from tests.support.s3_fault_proxy import S3FaultProxy

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


def write_candidate(out, excess: float):
    booster = xgb.train(
        {"objective": "binary:logistic"}, xgb.DMatrix([[0.0], [1.0]], label=[0, 1]), 2
    )
    metadata = small_metadata(model_name="m", metrics=scorecard(excess=excess))
    registry.write_artifact(out, booster, metadata)
    return out


@pytest.fixture()
def artifact(tmp_path):
    return write_candidate(tmp_path / "candidate", excess=0.1)


@pytest.fixture()
def retrained(tmp_path):
    """Another candidate: other bytes, so another version."""
    return write_candidate(tmp_path / "retrained", excess=0.2)


@pytest.fixture()
def s3(moto_s3, monkeypatch):
    for key, value in moto_s3.items():
        monkeypatch.setenv(key, value)
    bucket = f"registry-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/models"


def test_artifact_holds_a_model_kserve_can_load(artifact):
    assert sorted(p.name for p in artifact.iterdir()) == ["metadata.json", "model.json"]
    booster = xgb.Booster()
    booster.load_model(str(artifact / "model.json"))  # what KServe's xgbserver does
    assert registry.read_artifact_metadata(artifact).model_name == "m"


def test_incomplete_artifact_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a/model.json").write_text("{}")
    with pytest.raises(RegistryError, match="metadata.json is missing"):
        registry.read_artifact_metadata(tmp_path / "a")


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_publish_then_promote(artifact, retrained, tmp_path, kind, request):
    uri = str(tmp_path / "registry") if kind == "local" else request.getfixturevalue("s3")
    store = registry.open_store(uri)
    held = registry.publish(artifact, store=store, model_name="m", promote=False, now=NOW)
    assert registry.production(store, "m") is None and held.production is None
    promoted = registry.publish(
        retrained, store=store, model_name="m", promote=True, now=NOW + dt.timedelta(hours=1)
    )
    pointer = registry.production(store, "m")
    assert pointer["version"] == promoted.version and pointer["uri"] == promoted.uri
    assert registry.versions(store, "m") == [held.version, promoted.version]
    assert (
        store.get(f"m/versions/{promoted.version}/model.json")
        == (retrained / "model.json").read_bytes()
    )
    if kind == "s3":
        assert promoted.uri.startswith(uri + "/m/versions/v20261121T130000-")


def test_publishing_the_same_model_again_is_idempotent(artifact, tmp_path):
    """The same bytes are the same version, a second later or a day later (a rerun publish
    stage, or a book's publish after another symbol joined)."""
    store = registry.open_store(str(tmp_path / "r"))
    a = registry.publish(artifact, store=store, model_name="m", promote=True, now=NOW)
    b = registry.publish(
        artifact, store=store, model_name="m", promote=True, now=NOW + dt.timedelta(days=1)
    )
    assert a.version == b.version and registry.versions(store, "m") == [a.version]


def test_failed_s3_upload_leaves_production_and_versions_unchanged(
    artifact, retrained, s3, moto_s3
):
    store = registry.open_store(s3)
    good = registry.publish(artifact, store=store, model_name="m", promote=True, now=NOW)
    with S3FaultProxy(moto_s3["AWS_ENDPOINT_URL"], fail_suffix="metadata.json") as proxy:
        bucket, prefix = s3[len("s3://") :].split("/", 1)
        # boto's own retries (5 attempts, backing off) would only slow the same failure down
        once = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
        failing = registry.S3Store(
            bucket, prefix, client=boto3.client("s3", endpoint_url=proxy.url, config=once)
        )
        with pytest.raises(RegistryError, match="upload of s3://.*/metadata.json failed"):
            registry.publish(
                retrained,
                store=failing,
                model_name="m",
                promote=True,
                now=NOW + dt.timedelta(days=1),
            )
        assert proxy.failed >= 1
    assert registry.production(store, "m")["version"] == good.version
    assert registry.versions(store, "m") == [good.version]
    assert not [k for k in store.keys("m/versions/") if "20261122" in k]  # partial upload removed


def test_failed_local_write_leaves_nothing_behind(artifact, retrained, tmp_path):
    store = registry.open_store(str(tmp_path / "r"))
    good = registry.publish(artifact, store=store, model_name="m", promote=True, now=NOW)
    before = sorted(p for p in (tmp_path / "r").rglob("*"))
    elsewhere = registry.open_store(str(tmp_path / "elsewhere"))
    digest = registry.publish(retrained, store=elsewhere, model_name="m", promote=False)
    version_dir = tmp_path / f"r/m/versions/v20261122T120000-{digest.version.split('-')[1]}"
    blocker = version_dir / "metadata.json"
    blocker.mkdir(parents=True)  # a directory where the file must go: the second write fails
    with pytest.raises(RegistryError, match="write of .*metadata.json failed"):
        registry.publish(
            retrained, store=store, model_name="m", promote=True, now=NOW + dt.timedelta(days=1)
        )
    assert registry.production(store, "m")["version"] == good.version
    assert registry.versions(store, "m") == [good.version]
    # model.json was written before the failure and is gone again: only the blocker is left
    assert sorted(p for p in (tmp_path / "r").rglob("*")) == sorted([*before, version_dir, blocker])


def test_bad_registry_uris():
    with pytest.raises(RegistryError, match="names no bucket"):
        registry.open_store("s3:///prefix")
    with pytest.raises(RegistryError, match="expected a directory or s3://"):
        registry.open_store("gs://bucket/x")


def test_pointer_is_json_with_the_evaluation(artifact, tmp_path):
    store = registry.open_store(str(tmp_path / "r"))
    registry.publish(artifact, store=store, model_name="m", promote=True, now=NOW)
    pointer = json.loads((tmp_path / "r/m/production.json").read_text())
    assert pointer["evaluation"]["buy_and_hold"] == 0.1
