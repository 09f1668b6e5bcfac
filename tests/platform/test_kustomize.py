"""The kustomize overlays, rendered offline: every object validated, the container policy held,
RBAC as small as it can be, and only the trader admitted to the model.

Both overlays rendered with `kubectl kustomize` and validated (strict kubernetes-validate, the
CRD schemas), the container policy, RBAC, the NetworkPolicy, Secret references, dev vs prod,
`.ci/pin-images`.
"""

import copy
import re
import subprocess

import kubernetes_validate
import pytest

from klinecast.platform.kfp.runs import compiled
from tests.support.kustomize import (
    K8S_VERSION,
    OVERLAYS,
    REPO,
    containers,
    crd_validator,
    find,
    overlay,
    pod_specs,
    problems,
    render,
)

TRADER = "klinecast-trader"
REDIS_IMAGE = "redis:7.2.4-alpine"
MODEL = "klinecast"  # the book's InferenceService (publish.service_name)


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_rendered_object_validates(name):
    kinds = set()
    for obj in overlay(name):
        kinds.add(obj["kind"])
        if obj["kind"] in ("InferenceService", "Experiment"):
            errors = [e.message for e in crd_validator(obj["kind"]).iter_errors(obj)]
            assert not errors, f"{obj['kind']}: {errors[:3]}"
        else:  # the Python API: the CLI exits 0 even when it finds no schema
            assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True) == K8S_VERSION
    assert kinds == {
        "Namespace", "ServiceAccount", "Secret", "Role", "RoleBinding", "InferenceService",
        "NetworkPolicy", "CronJob", "Experiment", "ConfigMap", "Deployment", "Service",
    }  # fmt: skip


@pytest.mark.parametrize(
    "breakage",
    [
        lambda o: find(o, "CronJob", TRADER)["spec"].update(concurrencypolicy="Forbid"),  # a typo
        lambda o: find(o, "NetworkPolicy", f"{MODEL}-ingress")["spec"].update(
            policyTypes="Ingress"
        ),
        lambda o: find(o, "InferenceService", "klinecast")["spec"]["predictor"].update(scaleMetric="gpu"),
        lambda o: find(o, "Experiment")["spec"].update(maxTrialCount="many"),
    ],
)
def test_the_validation_can_fail(breakage):
    objects = copy.deepcopy(list(overlay("prod")))
    breakage(objects)
    failures = 0
    for obj in objects:
        if obj["kind"] in ("InferenceService", "Experiment"):
            failures += any(True for _ in crd_validator(obj["kind"]).iter_errors(obj))
        else:
            try:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError:
                failures += 1
    assert failures == 1


@pytest.mark.parametrize("name", OVERLAYS)
def test_no_container_breaks_the_policy(name):
    objects = overlay(name)
    # predictor, transformer (the book's and the challengers'), trader, monitor, the challenger
    # rule, trial, Redis, feature sync
    assert sum(1 for o in objects for _ in containers(o)) == 10
    assert [p for o in objects for p in problems(o)] == []


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda c: c["securityContext"].update(runAsNonRoot=False), "may run as root"),
        (lambda c: c["securityContext"].update(runAsUser=0), "may run as root"),
        (lambda c: c["resources"].pop("limits"), "lacks cpu and memory limits"),
        (lambda c: c.update(image="python:latest"), "(no tag or :latest)"),
        (lambda c: c.update(image="registry.example.com/x/trader"), "(no tag or :latest)"),
        (lambda c: c["env"].append({"name": "BINANCE_API_SECRET", "value": "s3cr3t"}), "plain"),
        (lambda c: c["env"].append({"name": "DB", "value": "postgresql://u:pw@db/x"}), "plain"),
    ],
)
def test_the_policy_catches_each_breach(breakage, expected):
    cronjob = copy.deepcopy(find(overlay("prod"), "CronJob", TRADER))
    ((_, trader, _),) = containers(cronjob)
    breakage(trader)
    (problem,) = problems(cronjob)
    assert expected in problem


def test_the_policy_catches_a_secret_with_values():
    secret = copy.deepcopy(find(overlay("dev"), "Secret", "klinecast-binance"))
    assert problems(secret) == []
    secret["stringData"] = {"BINANCE_API_KEY": "abc"}
    assert problems(secret) == ["Secret/klinecast-binance holds values"]


def test_rbac_is_as_small_as_it_can_be():
    objects = overlay("prod")
    pipeline = find(objects, "Role", "klinecast-pipeline")["rules"]
    isvc = [r for r in pipeline if r["resources"] == ["inferenceservices"]]
    assert isvc == [
        {
            "apiGroups": ["serving.kserve.io"],
            "resources": ["inferenceservices"],
            "verbs": ["get", "patch"],
            "resourceNames": [MODEL],
        }
    ]
    trader = find(objects, "Role", "klinecast-trader")["rules"]
    assert trader == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get"],
            "resourceNames": ["klinecast-binance", "klinecast-postgres"],
        }
    ]
    for role in (o for o in objects if o["kind"] == "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
            assert not {"delete", "deletecollection", "list", "watch"} & set(rule["verbs"])
    for binding in (o for o in objects if o["kind"] == "RoleBinding"):
        (subject,) = binding["subjects"]
        assert subject["kind"] == "ServiceAccount" and binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] == subject["name"]


def test_only_the_trader_reaches_the_model():
    objects = overlay("prod")
    policy = find(objects, "NetworkPolicy", f"{MODEL}-ingress")["spec"]
    model_pods = {"serving.kserve.io/inferenceservice": MODEL}
    assert policy["podSelector"] == {"matchLabels": model_pods}
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    sources = [s["podSelector"]["matchLabels"] for s in rule["from"]]
    assert sources == [{"app.kubernetes.io/component": "trader"}, model_pods]
    assert all(set(s) == {"podSelector"} for s in rule["from"])  # no namespace is admitted
    trader_pod = find(objects, "CronJob", TRADER)["spec"]["jobTemplate"]["spec"]["template"]
    assert trader_pod["metadata"]["labels"] == {"app.kubernetes.io/component": "trader"}
    isvc = find(objects, "InferenceService", "klinecast")
    # Pods reached directly, not through Knative's activator, for the selector to hold.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    trader_url = next(
        e["value"]
        for e in trader_pod["spec"]["containers"][0]["env"]
        if e["name"] == "KLINECAST_INFERENCE_URL"
    )
    assert trader_url.startswith(f"http://{MODEL}-transformer.klinecast.svc")


def test_only_the_transformer_and_the_sync_reach_redis():
    objects = overlay("prod")
    policy = find(objects, "NetworkPolicy", "klinecast-redis-ingress")["spec"]
    redis = find(objects, "Deployment", "klinecast-redis")
    assert policy["podSelector"]["matchLabels"] == redis["spec"]["template"]["metadata"]["labels"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    sources = [s["podSelector"]["matchLabels"] for s in rule["from"]]
    transformers = [
        {"serving.kserve.io/inferenceservice": name, "component": "transformer"}
        for name in (MODEL, f"{MODEL}-challenger")
    ]
    sync = find(objects, "CronJob", "klinecast-features-sync")
    sync_pod = sync["spec"]["jobTemplate"]["spec"]["template"]
    assert sources == [*transformers, sync_pod["metadata"]["labels"]]
    assert all(set(s) == {"podSelector"} for s in rule["from"])  # no namespace is admitted
    # both read where the store is from the same ConfigMap; the registry needs S3's keys
    config = find(objects, "ConfigMap", "klinecast-online")["data"]
    assert config["KLINECAST_REDIS"] == "klinecast-redis.klinecast.svc.cluster.local:6379"
    assert config["KLINECAST_FEAST_REGISTRY"].startswith("s3://")
    isvc = find(objects, "InferenceService", "klinecast")["spec"]["transformer"]["containers"][0]
    (sync_container,) = sync_pod["spec"]["containers"]
    for container in (isvc, sync_container):
        refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
        assert refs == {"klinecast-online", "klinecast-s3"}
    assert sync_container["args"] == ["features", "sync", "--params", "/app/params.yaml"]
    assert sync["spec"]["schedule"] == "0 * * * *"  # before the trader at minute 1
    assert find(objects, "CronJob", TRADER)["spec"]["schedule"] == "1 * * * *"


def test_every_secret_a_pod_uses_has_a_template():
    objects = overlay("prod")
    templates = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    used = set()
    for obj in objects:
        for _, container, _ in containers(obj):
            used |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", [])
                     if "valueFrom" in e}  # fmt: skip
            used |= {
                e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e
            }
        used |= {s["name"] for s in obj.get("secrets", [])}  # a ServiceAccount's
    pipeline = compiled("training").read_text()
    used |= set(re.findall(r"secretName: (\S+)", pipeline))
    assert used == templates == {"klinecast-s3", "klinecast-postgres", "klinecast-binance"}
    keys = {
        o["metadata"]["name"]: o["metadata"]["annotations"]["klinecast.io/keys"].split(",")
        for o in objects
        if o["kind"] == "Secret"
    }
    assert keys["klinecast-postgres"] == ["optuna-url", "ledger-url"]
    assert keys["klinecast-binance"] == ["BINANCE_API_KEY", "BINANCE_API_SECRET"]


def trader_env(name: str) -> dict:
    (_, trader, _), = containers(find(overlay(name), "CronJob", TRADER))  # fmt: skip
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in trader["env"]}


def test_dev_trades_on_paper_with_small_resources():
    env = trader_env("dev")
    assert env["KLINECAST_BROKER"] == "paper"
    assert env["BINANCE_API_KEY"]["secretKeyRef"]["optional"] is True
    dev, prod = overlay("dev"), overlay("prod")
    for where, container, _ in (c for o in dev for c in containers(o)):
        twin = next(c for o in prod for w, c, _ in containers(o) if w == where)
        assert cpu(container["resources"]["limits"]["cpu"]) <= cpu(
            twin["resources"]["limits"]["cpu"]
        ), where
    for name in ("klinecast", "klinecast-challenger"):  # the challengers' service is small too
        isvc = find(dev, "InferenceService", name)["spec"]
        assert isvc["predictor"]["maxReplicas"] == isvc["transformer"]["maxReplicas"] == 1
    assert find(dev, "Experiment")["spec"]["parallelTrialCount"] == 1


def test_prod_trades_on_the_testnet_and_autoscales():
    env = trader_env("prod")
    assert env["KLINECAST_BROKER"] == "testnet"
    assert env["BINANCE_API_KEY"]["secretKeyRef"] == {
        "name": "klinecast-binance",
        "key": "BINANCE_API_KEY",
        "optional": False,
    }
    assert env["BINANCE_API_SECRET"]["secretKeyRef"]["optional"] is False
    isvc = find(overlay("prod"), "InferenceService", "klinecast")["spec"]
    for component in ("predictor", "transformer"):
        scaling = {k: isvc[component][k] for k in ("minReplicas", "maxReplicas", "scaleMetric")}
        assert scaling == {"minReplicas": 2, "maxReplicas": 6, "scaleMetric": "cpu"}


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_pin_images_points_every_klinecast_container_at_the_commit(tmp_path):
    registry = "registry.gitlab.example.com/team/klinecast"
    pin = REPO / ".ci" / "pin-images"
    done = subprocess.run([pin, registry, "0123456"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    objects = render(REPO / "build" / "deploy")
    images = {c["image"] for o in objects for _, c, _ in containers(o) if "image" in c}
    # every klinecast image moves to the commit; Redis is the official image at its pinned tag
    assert images == {f"{registry}/pipeline:0123456", f"{registry}/serving:0123456", REDIS_IMAGE}
    assert [p for o in objects for p in problems(o)] == []
    refused = subprocess.run([pin, registry, "0123456", "staging"], capture_output=True, text=True)
    assert refused.returncode == 2 and "no overlay manifests/overlays/staging" in refused.stderr
    refused = subprocess.run([pin, registry], capture_output=True, text=True)
    assert refused.returncode == 2 and "usage:" in refused.stderr


def test_pod_specs_finds_every_nested_pod():
    nested = {
        "spec": {
            "first": {"containers": [{"name": "one"}]},
            "jobs": [
                {"template": {"spec": {"containers": [{"name": "two"}]}}},
                [{"deeper": {"still": {"containers": [{"name": "three"}]}}}],
            ],
        }
    }
    assert [p["containers"][0]["name"] for p in pod_specs(nested)] == ["one", "two", "three"]
    # in the rendered overlay: one pod template in each workload, none anywhere else
    # (the InferenceService: its predictor and its transformer)
    pods_per_kind = {"Deployment": 1, "CronJob": 1, "Experiment": 1, "InferenceService": 2}
    for obj in overlay("dev"):
        found = list(pod_specs(obj))
        assert len(found) == pods_per_kind.get(obj["kind"], 0), obj["metadata"]["name"]
    (pod,) = pod_specs(find(overlay("dev"), "Experiment"))
    assert pod["serviceAccountName"] == "klinecast-pipeline"
