"""A canary rollout from params to the patched objects, against a local endpoint speaking the
Kubernetes API (read, merge patch, and a watch of the InferenceService's status) with a
controller that reports each revision and its share of traffic as KServe does. The new
revision's own URL is a real model server asked by symbol from a synced online store; a breach
injected between steps rolls the service and the registry back."""

import datetime as dt

import pytest

from klinecast.book import Book, parse_storage
from klinecast.cli import main
from klinecast.config import params_from_mapping
from klinecast.platform.inference_service import inference_service
from klinecast.release import registry
from klinecast.serving.local import LocalServing
from tests.support.helpers import free_port, write_params
from tests.support.kube_api_server import KubeApiServer
from tests.support.kustomize import crd_validator
from tests.support.model_fixtures import small_artifact
from tests.support.online import synced_store

pytestmark = pytest.mark.integration
NAME = NAMESPACE = "klinecast"
PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/{NAME}"
BOOK = Book(params_from_mapping({}))
MODEL = BOOK.model_name("BTCUSDT")
CLOCK = "2022-02-01T00:10:00Z"
DAY = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def published(artifact, tmp_path_factory):
    """The registry: an old version promoted, then the session's model promoted after it."""
    root = tmp_path_factory.mktemp("registry")
    store = registry.LocalStore(root)
    old = small_artifact(root.parent / "old", MODEL, 1)
    first = registry.publish(old, store=store, model_name=MODEL, promote=True, now=DAY)
    second = registry.publish(
        artifact, store=store, model_name=MODEL, promote=True, now=DAY + dt.timedelta(days=1)
    )
    return str(root), first, second


@pytest.fixture(scope="module")
def latest(published, redis, tmp_path_factory):
    """The new revision: the model servers with the new version, answering by symbol."""
    root = tmp_path_factory.mktemp("canary")
    with synced_store(redis, root / "store", {"BTCUSDT": CLOCK}) as settings:
        with LocalServing(
            NAME, f"BTCUSDT={published[2].uri}", free_port(), free_port(), log_dir=root / "logs",
            online=settings, now=CLOCK,
        ) as local:  # fmt: skip
            yield local


def controller(latest_url: str, *, dead_at: int | None = None):
    """KServe's part: each patch makes a revision (the generation), ready at once, with the
    spec's canaryTrafficPercent of the traffic (all without one) and a URL of its own; from the
    step at dead_at percent on, the new revision's URL answers nothing (a breach)."""
    dead = f"http://127.0.0.1:{free_port()}"

    def reconcile(isvc: dict) -> dict:
        generation = int(isvc["metadata"]["resourceVersion"])
        status = {"components": {}}
        for component in ("predictor", "transformer"):
            percent = isvc["spec"][component].get("canaryTrafficPercent", 100)
            url = dead if dead_at is not None and percent >= dead_at else latest_url
            revision = f"{NAME}-{component}-{generation:05d}"
            status["components"][component] = {
                "latestCreatedRevision": revision, "latestReadyRevision": revision,
                "traffic": [
                    {"latestRevision": True, "percent": percent, "revisionName": revision,
                     "tag": "latest", "url": url},
                    {"latestRevision": False, "percent": 100 - percent, "tag": "prev",
                     "revisionName": f"{NAME}-{component}-00001", "url": "http://prev.invalid"},
                ],
            }  # fmt: skip
        return status

    return reconcile


@pytest.fixture()
def kube(published, tmp_path, monkeypatch):
    document = inference_service(
        service_name=NAME, models=f"BTCUSDT={published[1].uri}", image="example/serving:1",
        stale_after_minutes=15, namespace=NAMESPACE, canary=True,
    )  # fmt: skip
    document["metadata"]["resourceVersion"] = "1"
    with KubeApiServer({PATH: document}) as server:
        server.point_at(tmp_path, monkeypatch)
        yield server


def params(tmp_path, registry_uri: str, **rollout) -> str:
    rollout = {"canary_steps": [10, 50], "probe_requests": 12, "max_p99_ms": 60_000} | rollout
    return str(write_params(tmp_path / "params.yaml", {
        "publish": {"registry": registry_uri, "rollout": rollout}, "online": {"stale_after_minutes": 15},
    }))  # fmt: skip


def patches(kube) -> list[dict]:
    return [r["body"]["spec"] for r in kube.requests if r["method"] == "PATCH"]


def served(kube) -> str:
    (container,) = kube.objects[PATH]["spec"]["transformer"]["containers"]
    (models,) = [e for e in container["env"] if e["name"] == "KLINECAST_MODELS"]
    return parse_storage(models["value"])["BTCUSDT"]


def test_the_canary_steps_through_its_shares_probing_the_new_revision_each_time(
    kube, published, latest, tmp_path, capsys
):
    registry_uri, first, second = published
    kube.controller = controller(latest.transformer_url)
    assert main(["deploy", "--params", params(tmp_path, registry_uri), "--namespace", NAMESPACE]) == 0
    out = capsys.readouterr().out
    assert "(canary: 10 %: 0 of 12 failed" in out and "50 %: 0 of 12 failed" in out
    shares = [{c: spec[c].get("canaryTrafficPercent", "-") for c in ("predictor", "transformer")}
              for spec in patches(kube)]  # fmt: skip
    assert shares == [{"predictor": 10, "transformer": 10}, {"predictor": 50, "transformer": 50},
                      {"predictor": None, "transformer": None}]  # fmt: skip
    assert served(kube) == second.uri  # the first patch moved the models; the last, all traffic
    for component in ("predictor", "transformer"):
        assert "canaryTrafficPercent" not in kube.objects[PATH]["spec"][component]
    watches = [r for r in kube.requests if "watch=" in r["path"]]
    assert len(watches) == 2 and all("fieldSelector=metadata.name" in r["path"] for r in watches)
    store = registry.LocalStore(registry_uri)
    assert registry.production(store, MODEL)["version"] == second.version


@pytest.mark.parametrize(
    ("rollout", "dead_at", "why"),
    [({}, 50, "the canary at 50 % failed (error rate 100.0% > 2.0%)"),
     ({"max_p99_ms": 0.001}, None, "the canary at 10 % failed (p99 ")],
)  # fmt: skip
def test_a_breach_between_steps_rolls_the_service_and_the_registry_back(
    kube, published, latest, tmp_path, capsys, rollout, dead_at, why
):
    registry_uri, first, second = published
    store = registry.LocalStore(registry_uri)
    kube.controller = controller(latest.transformer_url, dead_at=dead_at)
    argv = ["deploy", "--params", params(tmp_path, registry_uri, **rollout), "--namespace", NAMESPACE]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert why in err and f"rolled back to BTCUSDT={first.uri}" in err
    last_two = patches(kube)[-2:]
    assert [spec["predictor"]["canaryTrafficPercent"] for spec in last_two] == [0, None]
    assert served(kube) == first.uri  # the spec is back at the previous version
    pointer = registry.production(store, MODEL)
    assert pointer["version"] == first.version  # and so is the registry, on record
    decision = registry.decisions(store, MODEL)[-1]
    assert (decision["action"], decision["from"], decision["by"]) == (
        "rollback", second.version, "klinecast deploy"
    )
    assert why in decision["reason"]
    registry.promote_version(store, MODEL, second.version, by="test", reason="restore the fixture")


def test_a_canary_renders_the_service_as_kserve_supports_it():
    """KServe's canary needs Serverless mode; tag routing gives the new revision its own URL;
    the model pods then admit Knative's and the mesh's namespaces, the calls' way in. The
    challengers' service and a book without a canary stay RawDeployment."""
    from klinecast.platform.manifests import base

    rendered = base(params_from_mapping({"publish": {"rollout": {"canary_steps": [10, 50]}}}))
    isvc = rendered["inferenceservice.yaml"]
    assert list(crd_validator("InferenceService").iter_errors(isvc)) == []
    assert isvc["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "Serverless",
        "serving.kserve.io/enable-tag-routing": "true",
    }
    (rule,) = rendered["model-networkpolicy.yaml"]["spec"]["ingress"]
    namespaces = [s["namespaceSelector"]["matchLabels"] for s in rule["from"] if "namespaceSelector" in s]
    assert namespaces == [{"kubernetes.io/metadata.name": "knative-serving"},
                          {"kubernetes.io/metadata.name": "istio-system"}]  # fmt: skip
    (isvc_rule, *_) = rendered["pipeline-role.yaml"]["rules"]  # deploy watches it, by name
    assert (isvc_rule["verbs"], isvc_rule["resourceNames"]) == (["get", "patch", "watch"], [NAME])
    raw = {"serving.kserve.io/deploymentMode": "RawDeployment"}
    assert rendered["challenger-inferenceservice.yaml"]["metadata"]["annotations"] == raw
    assert base(params_from_mapping({}))["inferenceservice.yaml"]["metadata"]["annotations"] == raw


@pytest.mark.parametrize("steps", [[50, 10], [10, 10], [0, 50], [10, 100]])
def test_canary_steps_are_increasing_shares_below_all(steps):
    from klinecast.errors import ParamsError

    with pytest.raises(ParamsError, match="canary_steps"):
        params_from_mapping({"publish": {"rollout": {"canary_steps": steps}}})
