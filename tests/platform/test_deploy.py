"""`klinecast deploy` against a local endpoint speaking the Kubernetes API's wire format: the
book's InferenceService pinned to each symbol's production version."""

import copy
import datetime as dt

import pytest

from klinecast.book import Book, parse_storage
from klinecast.cli import main
from klinecast.config import params_from_mapping
from klinecast.errors import KlinecastError
from klinecast.platform import deploy
from klinecast.platform.inference_service import inference_service, placeholder_models
from klinecast.release import registry
from tests.support.helpers import write_params
from tests.support.kube_api_server import KubeApiServer

NAME, NAMESPACE = "klinecast", "klinecast"
PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/{NAME}"
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
BOOK = Book(params_from_mapping({"data": {"symbols": SYMBOLS}}))
PLACEHOLDERS = placeholder_models(BOOK)


@pytest.fixture()
def isvc():
    document = inference_service(
        service_name=NAME, models=PLACEHOLDERS, image="example/serving:1",
        stale_after_minutes=15, namespace=NAMESPACE,
    )  # fmt: skip
    document["metadata"]["resourceVersion"] = "7"
    return document


@pytest.fixture()
def kube(isvc, tmp_path, monkeypatch):
    with KubeApiServer({PATH: isvc}) as server:
        server.point_at(tmp_path, monkeypatch)
        yield server


@pytest.fixture()
def published(tmp_path, artifact):
    """A registry where BTCUSDT has a production version and ETHUSDT none (its gate refused)."""
    where = tmp_path / "registry"
    receipt = registry.publish(
        artifact, store=registry.LocalStore(where), model_name=BOOK.model_name("BTCUSDT"),
        promote=True, now=dt.datetime(2022, 1, 2, tzinfo=dt.UTC),
    )  # fmt: skip
    params = write_params(
        tmp_path / "params.yaml", {"data": {"symbols": SYMBOLS}, "publish": {"registry": str(where)}}
    )
    return params, receipt


def deploy_cli(params, *extra: str) -> int:
    return main(["deploy", "--params", str(params), "--namespace", NAMESPACE, *extra])


def served(kube, component: str) -> dict[str, str]:
    (container,) = kube.objects[PATH]["spec"][component]["containers"]
    (models,) = [e for e in container["env"] if e["name"] == "KLINECAST_MODELS"]
    return parse_storage(models["value"])


def test_deploy_pins_each_symbols_production_version_in_both_servers(kube, published, capsys):
    params, receipt = published
    assert deploy_cli(params) == 0
    out = capsys.readouterr().out
    assert f"deploy: BTCUSDT: {receipt.version}" in out
    assert "deploy: ETHUSDT: no production version (answered 404)" in out
    patch = [r for r in kube.requests if r["method"] == "PATCH"]
    assert len(patch) == 1 and patch[0]["type"] == "application/merge-patch+json"
    assert patch[0]["body"]["metadata"]["resourceVersion"] == "7"
    for component in ("predictor", "transformer"):
        models = served(kube, component)
        assert models["BTCUSDT"] == receipt.uri  # pinned
        assert models["ETHUSDT"].endswith("/klinecast-ethusdt-1h/versions/PRODUCTION")
    (container,) = kube.objects[PATH]["spec"]["transformer"]["containers"]
    assert container["image"] == "example/serving:1"  # the rest of the container is kept
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert f"BTCUSDT {parse_storage(PLACEHOLDERS)['BTCUSDT']} -> {receipt.uri}" in out

    assert deploy_cli(params) == 0  # already serving it: no second patch
    assert "already serving" in capsys.readouterr().out
    assert len([r for r in kube.requests if r["method"] == "PATCH"]) == 1


def test_a_concurrent_edit_is_not_overwritten(isvc):
    stale = copy.deepcopy(isvc)
    with KubeApiServer({PATH: isvc}) as server:
        server.objects[PATH]["metadata"]["resourceVersion"] = "8"  # someone else edited it
        patch = deploy.models_patch(stale, "BTCUSDT=s3://x/versions/v1,ETHUSDT=s3://y/versions/v2")
        from kubernetes import client

        api = client.ApiClient(client.Configuration(host=server.url))
        api.set_default_header("Authorization", f"Bearer {server.token}")
        objects = client.CustomObjectsApi(api)
        with pytest.raises(client.exceptions.ApiException) as caught:
            objects.patch_namespaced_custom_object(
                "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", NAME, patch
            )
        assert caught.value.status == 409
        assert deploy.served_models(server.objects[PATH]) == PLACEHOLDERS


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "not found; apply manifests/base first"),
        ("forbidden", "forbidden; the service account needs get and patch"),
        ("bad-token", "unauthorized"),
    ],
)
def test_api_errors_say_what_to_fix_and_change_nothing(kube, published, capsys, setup, message):
    if setup == "missing":
        kube.objects.clear()
    elif setup == "forbidden":
        kube.forbid_patch = True
    else:
        kube.token = "another-token"
    before = copy.deepcopy(kube.objects)
    assert deploy_cli(published[0]) == 1
    err = capsys.readouterr().err
    assert f"InferenceService {NAMESPACE}/{NAME}: {message}" in err
    assert "Traceback" not in err
    assert kube.objects == before


def test_outside_a_cluster_deploy_says_it_skips(published, monkeypatch, capsys):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert deploy_cli(published[0]) == 0
    out = capsys.readouterr().out
    assert "deploy: skipped: not in a Kubernetes cluster" in out
    assert f"deploy: BTCUSDT: {published[1].version}" in out


def test_a_service_klinecast_did_not_make_is_refused_untouched(isvc):
    (container,) = isvc["spec"]["predictor"]["containers"]
    container["env"] = []  # reads no KLINECAST_MODELS
    with KubeApiServer({PATH: isvc}) as server:
        from kubernetes import client

        api = client.ApiClient(client.Configuration(host=server.url))
        api.set_default_header("Authorization", f"Bearer {server.token}")
        with pytest.raises(KlinecastError, match=r"predictor reads no \$KLINECAST_MODELS"):
            deploy.deploy(api, name=NAME, namespace=NAMESPACE, models="BTCUSDT=s3://x")
        assert not [r for r in server.requests if r["method"] == "PATCH"]
