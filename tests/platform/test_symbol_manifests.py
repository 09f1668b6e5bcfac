"""The cluster side of a model per symbol: the manifests of examples/five-symbols.yaml, rendered
with `klinecast manifest --base` and `kubectl kustomize`, validated like the committed ones; one
InferenceService whose predictor (our image) hosts each symbol's production version behind one
transformer, with the names the registry and the servers use."""

import dataclasses
import datetime as dt

import kubernetes_validate
import pytest

from klinecast.cli import main
from klinecast.config import load_params
from klinecast.release import registry
from tests.support.kustomize import (
    K8S_VERSION,
    containers,
    crd_validator,
    find,
    problems,
    render,
)
from tests.support.paths import REPO

EXAMPLE = REPO / "examples" / "five-symbols.yaml"
SERVICE = "klinecast-1h"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")
REGISTRY = "s3://klinecast-models/registry"
MODELS = ",".join(
    f"{symbol}={REGISTRY}/{SERVICE}-{symbol.lower()}/versions/PRODUCTION" for symbol in SYMBOLS
)
IMAGE = "registry.example.com/klinecast/serving:0.1.0"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("five-symbols")
    assert main(["manifest", "--params", str(EXAMPLE), "--base", str(out)]) == 0
    return render(out)


def test_every_rendered_object_validates_and_keeps_the_policy(rendered):
    kinds = set()
    for obj in rendered:
        kinds.add(obj["kind"])
        if obj["kind"] in ("InferenceService", "Experiment"):
            errors = [e.message for e in crd_validator(obj["kind"]).iter_errors(obj)]
            assert not errors, f"{obj['kind']}: {errors[:3]}"
        else:
            assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True) == K8S_VERSION
    assert kinds == {
        "Namespace", "ServiceAccount", "Secret", "Role", "RoleBinding", "InferenceService",
        "NetworkPolicy", "CronJob", "Experiment", "ConfigMap", "Deployment", "Service",
    }  # fmt: skip
    # predictor, transformer, trader, monitor, a trial per symbol, Redis, feature sync
    assert sum(1 for o in rendered for _ in containers(o)) == 6 + len(SYMBOLS)
    assert [p for o in rendered for p in problems(o)] == []


def test_one_service_hosts_every_symbols_production_version(rendered):
    isvc = find(rendered, "InferenceService")
    assert isvc["metadata"]["name"] == SERVICE
    spec = isvc["spec"]
    (predictor,) = spec["predictor"]["containers"]
    (transformer,) = spec["transformer"]["containers"]
    assert "model" not in spec["predictor"]  # not KServe's xgboost runtime: our predictor
    assert predictor["image"] == transformer["image"] == IMAGE
    assert predictor["args"] == ["predictor", "--model-name", SERVICE, "--storage-uri", MODELS]
    assert transformer["args"] == [
        "transformer",
        "--storage-uri",
        MODELS,
        "--stale-after-minutes",
        "15",
    ]
    # no STORAGE_URI: KServe's storage initializer fetches one model; each process fetches its
    # own with the S3 Secret's keys
    for container in (predictor, transformer):
        assert "env" not in container
        assert {"secretRef": {"name": "klinecast-s3"}} in container["envFrom"]
        assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert predictor["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert transformer["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{SERVICE}"
    assert spec["predictor"]["serviceAccountName"] == "klinecast-models"


def test_the_trader_and_the_policies_name_the_service(rendered):
    policy = find(rendered, "NetworkPolicy", f"{SERVICE}-ingress")["spec"]
    assert policy["podSelector"] == {"matchLabels": {"serving.kserve.io/inferenceservice": SERVICE}}
    trader = find(rendered, "CronJob", "klinecast-trader")
    ((_, container, _),) = containers(trader)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (
        env["KLINECAST_INFERENCE_URL"]
        == f"http://{SERVICE}-transformer.klinecast.svc.cluster.local"
    )
    assert sorted(o["metadata"]["name"] for o in rendered if o["kind"] == "Experiment") == sorted(
        f"klinecast-{symbol.lower()}-tune" for symbol in SYMBOLS
    )


def test_the_manifests_names_are_the_servers_and_the_registrys(artifact, tmp_path):
    """What the servers make of the manifest's --storage-uri: each symbol's model under the
    registry name its publish step writes, resolved to the version production names."""
    from klinecast.serving.models import symbol_models

    params = load_params(EXAMPLE)
    models = symbol_models(SERVICE, MODELS)
    assert list(models) == list(params.data.symbols)
    for symbol, model in models.items():
        assert model.predictor_name == params.model_name_of(symbol)
        assert model.storage_uri == f"{REGISTRY}/{params.model_name_of(symbol)}/versions/PRODUCTION"
    store = registry.LocalStore(tmp_path)
    name = params.model_name_of("ETHUSDT")
    local = models["ETHUSDT"].storage_uri.replace(REGISTRY, str(tmp_path))
    with pytest.raises(registry.RegistryError) as refused:
        registry.resolve_production(local)
    assert str(refused.value) == f"no production version of {name} in {tmp_path}"
    receipt = registry.publish(
        artifact,
        store=store,
        model_name=name,
        promote=True,
        now=dt.datetime(2022, 1, 1, tzinfo=dt.UTC),
    )
    assert (
        registry.resolve_production(local)
        == receipt.uri
        == store.uri(f"{name}/versions/{receipt.version}")
    )


def test_a_storage_uri_names_one_model_not_five(capsys):
    argv = ["manifest", "--params", str(EXAMPLE), "--storage-uri", f"{REGISTRY}/x/versions/v1"]
    assert main(argv) == 1
    assert capsys.readouterr().err == (
        "klinecast manifest: error: a storage URI names one model; data.symbols lists 5, whose "
        "InferenceService serves each one's production version\n"
    )


def test_printed_five_symbol_manifests_need_no_registry(capsys, tmp_path):
    """Printed, one symbol's service needs its production URI from the registry; five look
    theirs up when they load, so an empty registry prints the same service as --base."""
    argv = ["manifest", "--params", str(EXAMPLE), "--registry", str(tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"  - {MODELS}\n" in printed and printed.count("kind: InferenceService\n") == 1


def test_one_symbol_keeps_kserves_xgboost_runtime():
    from klinecast.platform.manifests import base

    params = load_params(EXAMPLE)
    one = dataclasses.replace(
        params,
        data=dataclasses.replace(params.data, symbols=("ETHUSDT",)),
        trade=dataclasses.replace(params.trade, max_quantities={}),  # (caps of the other four)
    )
    spec = base(one)["inferenceservice.yaml"]["spec"]
    assert spec["predictor"]["model"]["modelFormat"] == {"name": "xgboost"}
    assert spec["predictor"]["model"]["storageUri"] == f"{REGISTRY}/{SERVICE}/versions/PRODUCTION"
    (transformer,) = spec["transformer"]["containers"]
    assert transformer["args"][:3] == ["transformer", "--storage-uri", "/mnt/models"]
