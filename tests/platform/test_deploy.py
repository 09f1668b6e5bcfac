"""`klinecast deploy` against a local endpoint speaking the Kubernetes API's wire format."""

import copy

import pytest
import yaml

from klinecast.cli import main
from klinecast.errors import KlinecastError
from klinecast.platform import deploy
from klinecast.platform.inference_service import inference_service, placeholder_uri
from tests.support.kube_api_server import KubeApiServer

NAME, NAMESPACE = "klinecast-btcusdt-1h", "klinecast"
PLACEHOLDER = placeholder_uri(NAME)
PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/{NAME}"
NEW_URI = "s3://klinecast-models/registry/klinecast-btcusdt-1h/versions/20261121T000000Z-abc"


@pytest.fixture()
def isvc():
    document = inference_service(
        model_name=NAME, storage_uri=PLACEHOLDER, image="example/serving:1",
        stale_after_minutes=15, namespace=NAMESPACE,
    )  # fmt: skip
    document["metadata"]["resourceVersion"] = "7"
    return document


@pytest.fixture()
def kube(isvc, tmp_path, monkeypatch):
    with KubeApiServer({PATH: isvc}) as server:
        config = tmp_path / "kubeconfig"
        config.write_text(yaml.safe_dump(server.kubeconfig()))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", str(config))
        yield server


def deploy_cli(*extra: str) -> int:
    return main(["deploy", "--storage-uri", NEW_URI, "--namespace", NAMESPACE, *extra])


def test_deploy_moves_predictor_and_transformer_to_the_version(kube, capsys):
    assert deploy_cli() == 0
    assert f"{PLACEHOLDER} -> {NEW_URI}" in capsys.readouterr().out
    patch = [r for r in kube.requests if r["method"] == "PATCH"]
    assert len(patch) == 1 and patch[0]["type"] == "application/merge-patch+json"
    assert patch[0]["body"]["metadata"]["resourceVersion"] == "7"
    served = kube.objects[PATH]
    assert served["spec"]["predictor"]["model"]["storageUri"] == NEW_URI
    (container,) = served["spec"]["transformer"]["containers"]
    assert {"name": "STORAGE_URI", "value": NEW_URI} in container["env"]
    assert container["image"] == "example/serving:1"  # the rest of the container is kept
    assert served["spec"]["predictor"]["model"]["resources"]["limits"]["memory"] == "1Gi"

    assert deploy_cli() == 0  # already serving it: no second patch
    assert "already serving" in capsys.readouterr().out
    assert len([r for r in kube.requests if r["method"] == "PATCH"]) == 1


def test_a_concurrent_edit_is_not_overwritten(isvc):
    stale = copy.deepcopy(isvc)
    with KubeApiServer({PATH: isvc}) as server:
        server.objects[PATH]["metadata"]["resourceVersion"] = "8"  # someone else edited it
        patch = deploy.storage_uri_patch(stale, NEW_URI)
        from kubernetes import client

        api = client.ApiClient(client.Configuration(host=server.url))
        api.set_default_header("Authorization", f"Bearer {server.token}")
        objects = client.CustomObjectsApi(api)
        with pytest.raises(client.exceptions.ApiException) as caught:
            objects.patch_namespaced_custom_object(
                "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", NAME, patch
            )
        assert caught.value.status == 409
        assert server.objects[PATH]["spec"]["predictor"]["model"]["storageUri"] == PLACEHOLDER


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "not found; apply manifests/base first"),
        ("forbidden", "forbidden; the service account needs get and patch"),
        ("bad-token", "unauthorized"),
    ],
)
def test_api_errors_say_what_to_fix_and_change_nothing(kube, capsys, setup, message, tmp_path):
    if setup == "missing":
        kube.objects.clear()
    elif setup == "forbidden":
        kube.forbid_patch = True
    else:
        kube.token = "another-token"
    before = copy.deepcopy(kube.objects)
    assert deploy_cli() == 1
    err = capsys.readouterr().err
    assert f"InferenceService {NAMESPACE}/{NAME}: {message}" in err
    assert "Traceback" not in err
    assert kube.objects == before


def test_outside_a_cluster_deploy_says_it_skips(monkeypatch, capsys):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert deploy_cli() == 0
    out = capsys.readouterr().out
    assert "deploy: skipped: not in a Kubernetes cluster" in out and NEW_URI in out


def test_without_a_storage_uri_deploy_needs_a_production_version(tmp_path, capsys):
    registry = tmp_path / "registry"
    registry.mkdir()
    assert main(["deploy", "--registry", str(registry)]) == 1
    assert f"no production version of {NAME} in {registry}" in capsys.readouterr().err


def test_an_isvc_without_predictor_is_reported(isvc):
    del isvc["spec"]["predictor"]
    with KubeApiServer({PATH: isvc}) as server:
        from kubernetes import client

        api = client.ApiClient(client.Configuration(host=server.url))
        api.set_default_header("Authorization", f"Bearer {server.token}")
        with pytest.raises(KlinecastError, match="has no spec.predictor"):
            deploy.deploy(api, name=NAME, namespace=NAMESPACE, storage_uri=NEW_URI)
