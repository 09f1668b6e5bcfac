"""The cluster side of a book of five: the manifests of examples/five-symbols.yaml, rendered with
`klinecast manifest --base` and `kubectl kustomize`, validated like the committed ones; one
InferenceService whose predictor (our image) hosts each symbol's production version behind one
transformer, with the names the registry and the servers use; the same shape as a book of one."""

import dataclasses
import datetime as dt

import kubernetes_validate
import pytest
import yaml

from klinecast.book import Book, parse_storage
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
SERVICE = "klinecast"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")
REGISTRY = "s3://klinecast-models/registry"
MODELS = ",".join(
    f"{symbol}={REGISTRY}/klinecast-{symbol.lower()}-1h/versions/PRODUCTION" for symbol in SYMBOLS
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
    # predictor, transformer (the book's and the challengers'), trader, monitor, the challenger
    # rule, a trial per symbol, Redis, feature sync
    assert sum(1 for o in rendered for _ in containers(o)) == 9 + len(SYMBOLS)
    assert [p for o in rendered for p in problems(o)] == []


def test_one_service_hosts_every_symbols_production_version(rendered):
    isvc = find(rendered, "InferenceService", SERVICE)
    assert isvc["metadata"]["name"] == SERVICE
    spec = isvc["spec"]
    (predictor,) = spec["predictor"]["containers"]
    (transformer,) = spec["transformer"]["containers"]
    assert "model" not in spec["predictor"]  # not KServe's xgboost runtime: our predictor
    assert predictor["image"] == transformer["image"] == IMAGE
    assert predictor["args"] == ["predictor", "--model-name", SERVICE]
    assert transformer["args"] == ["transformer", "--stale-after-minutes", "15"]
    # the book's models in one variable that deploy patches; no STORAGE_URI: KServe's storage
    # initializer fetches one model, and each process fetches its own with the S3 Secret's keys
    for container in (predictor, transformer):
        assert container["env"] == [{"name": "KLINECAST_MODELS", "value": MODELS}]
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
    book = Book(params)
    for symbol, model in models.items():
        assert model.predictor_name == book.predictor_model_name(symbol)
        assert model.storage_uri == f"{REGISTRY}/{book.model_name(symbol)}/versions/PRODUCTION"
    store = registry.LocalStore(tmp_path)
    name = book.model_name("ETHUSDT")
    local = models["ETHUSDT"].storage_uri.replace(REGISTRY, str(tmp_path))
    with pytest.raises(registry.RegistryError) as refused:
        registry.resolve_pointer(local)
    assert str(refused.value) == f"no production version of {name} in {tmp_path}"
    receipt = registry.publish(
        artifact,
        store=store,
        model_name=name,
        promote=True,
        now=dt.datetime(2022, 1, 1, tzinfo=dt.UTC),
    )
    assert (
        registry.resolve_pointer(local)
        == receipt.uri
        == store.uri(f"{name}/versions/{receipt.version}")
    )


def test_printed_manifests_need_no_registry(capsys):
    """Printed, the service looks each symbol's production version up when it loads: the
    same service as --base, whatever the registry holds."""
    assert main(["manifest", "--params", str(EXAMPLE)]) == 0
    printed = capsys.readouterr().out
    assert f"value: {MODELS}\n" in printed and printed.count("kind: InferenceService\n") == 2  # the challengers' too


def test_a_book_of_one_has_the_same_shape():
    from klinecast.platform.manifests import base

    params = load_params(EXAMPLE)
    one = dataclasses.replace(
        params,
        data=dataclasses.replace(params.data, symbols=("ETHUSDT",)),
        trade=dataclasses.replace(params.trade, max_quantities={}),  # (caps of the other four)
    )
    five, alone = (base(p)["inferenceservice.yaml"]["spec"] for p in (params, one))
    assert "model" not in alone["predictor"]
    for component in ("predictor", "transformer"):
        (of_one,) = alone[component]["containers"]
        (of_five,) = five[component]["containers"]
        assert of_one["args"] == of_five["args"]
        (models,) = of_one["env"]
        assert models["value"] == f"ETHUSDT={REGISTRY}/klinecast-ethusdt-1h/versions/PRODUCTION"


def test_deploy_dry_run_renders_the_pinned_service_that_kustomize_and_the_crd_accept(
    artifact, tmp_path, capsys
):
    """`klinecast deploy --dry-run` on the five-symbol params: each symbol's production version
    pinned (a refused symbol keeps its placeholder), in a service the CRD schema and
    `kubectl kustomize` accept."""
    from klinecast.release import registry

    registry_dir = tmp_path / "registry"
    store = registry.LocalStore(registry_dir)
    book = Book(load_params(EXAMPLE))
    receipts = {
        symbol: registry.publish(artifact, store=store, model_name=book.model_name(symbol),
                                 promote=True, now=dt.datetime(2022, 1, 2, tzinfo=dt.UTC))
        for symbol in ("BTCUSDT", "XRPUSDT")
    }  # fmt: skip
    argv = ["deploy", "--params", str(EXAMPLE), "--registry", str(registry_dir), "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines, _, document = out.partition("apiVersion:")
    assert f"deploy: XRPUSDT: {receipts['XRPUSDT'].version}" in lines
    assert "deploy: ETHUSDT: no production version (answered 404)" in lines
    isvc = yaml.safe_load("apiVersion:" + document)
    assert not list(crd_validator("InferenceService").iter_errors(isvc))
    (predictor,) = isvc["spec"]["predictor"]["containers"]
    pinned = parse_storage(predictor["env"][0]["value"])
    assert pinned["BTCUSDT"] == receipts["BTCUSDT"].uri
    # a symbol without one keeps the placeholder, in the registry deploy read
    assert pinned["ETHUSDT"] == registry.LocalStore(registry_dir).uri(
        "klinecast-ethusdt-1h/versions/PRODUCTION"
    )
    folder = tmp_path / "kustomized"
    folder.mkdir()
    (folder / "isvc.yaml").write_text(yaml.safe_dump(isvc))
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({"resources": ["isvc.yaml"]}))
    (rendered,) = render(folder)
    assert rendered["spec"] == isvc["spec"]
