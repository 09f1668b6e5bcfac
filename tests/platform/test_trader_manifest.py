"""The trader's CronJob and its companions, validated offline with kubernetes-validate (strict)."""

import copy

import kubernetes_validate
import pytest
import yaml

from tests.support.kustomize import K8S_VERSION
from tests.support.paths import REPO

BASE = REPO / "manifests/base"
CORE = tuple(
    path.name
    for path in sorted(BASE.glob("*.yaml"))
    if path.name
    not in ("kustomization.yaml", "inferenceservice.yaml", "challenger-inferenceservice.yaml")
    and not path.name.startswith("katib-")  # CRDs: validated against their schemas elsewhere
)


def load(name: str) -> dict:
    return yaml.safe_load((BASE / name).read_text())


@pytest.mark.parametrize("name", CORE)
def test_core_manifests_validate_strictly(name):
    # the Python API, not the CLI: the CLI exits 0 even when it finds no schema
    assert kubernetes_validate.validate(load(name), K8S_VERSION, strict=True) == K8S_VERSION


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["spec"]["jobTemplate"]["spec"].update(backofflimit=2),  # a typo
        lambda d: d["spec"].update(concurrencyPolicy=3),
        lambda d: d["spec"]["jobTemplate"]["spec"]["template"]["spec"].pop("containers"),
    ],
)
def test_the_strict_check_can_fail(breakage):
    broken = copy.deepcopy(load("trader-cronjob.yaml"))
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_cronjob_runs_once_an_hour_safely():
    spec = load("trader-cronjob.yaml")["spec"]
    assert spec["schedule"] == "1 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert spec["startingDeadlineSeconds"] > 0 and job["backoffLimit"] >= 0
    assert 0 < job["activeDeadlineSeconds"] < 3600  # done well before the next hour
    (container,) = job["template"]["spec"]["containers"]
    assert container["args"][:2] == ["trade", "once"]
    secret_env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in container["env"]
        if "valueFrom" in e
    }
    assert secret_env == {
        "BINANCE_API_KEY": "klinecast-binance",
        "BINANCE_API_SECRET": "klinecast-binance",
        "KLINECAST_LEDGER_URL": "klinecast-postgres",
    }
    assert not any("value" in e and "SECRET" in e["name"] for e in container["env"])
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] != 0
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert ":" in container["image"] and not container["image"].endswith(":latest")


def test_core_manifests_cover_the_base():
    assert len(CORE) == 21 and {"trader-cronjob.yaml", "monitor-cronjob.yaml"} <= set(CORE)
    assert {"features-sync-cronjob.yaml", "redis-deployment.yaml", "online-configmap.yaml"} < set(
        CORE
    )


def test_secret_templates_hold_no_values():
    names = [name for name in CORE if name.endswith(".template.yaml")]
    assert len(names) == 3
    for name in names:
        secret = load(name)
        assert "stringData" not in secret and "data" not in secret
        assert secret["metadata"]["annotations"]["klinecast.io/keys"]


def test_the_monitor_runs_hourly_after_the_trader_reading_only_the_ledger():
    spec = load("monitor-cronjob.yaml")["spec"]
    assert spec["schedule"] == "15 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:3] == ["monitor", "--params", "/app/params.yaml"]
    (env,) = container["env"]
    assert env["name"] == "KLINECAST_LEDGER_URL"
    assert env["valueFrom"]["secretKeyRef"]["name"] == "klinecast-postgres"
    assert container["securityContext"]["readOnlyRootFilesystem"]
    assert container["envFrom"] == [{"secretRef": {"name": "klinecast-s3", "optional": True}}]


def test_the_promotion_rule_runs_hourly_after_the_monitor_as_the_pipeline():
    """`klinecast challenger decide` reads the ledger and the registry and deploys a promotion,
    so it runs as the account that may patch the InferenceService (its token mounted)."""
    spec = load("challenger-cronjob.yaml")["spec"]
    assert spec["schedule"] == "20 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "klinecast-pipeline"
    assert pod["automountServiceAccountToken"] is True
    (container,) = pod["containers"]
    assert container["args"] == ["challenger", "decide", "--params", "/app/params.yaml"]
    (env,) = container["env"]
    assert env["valueFrom"]["secretKeyRef"]["name"] == "klinecast-postgres"
    assert container["envFrom"] == [{"secretRef": {"name": "klinecast-s3"}}]
    trader = load("trader-cronjob.yaml")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert trader["automountServiceAccountToken"] is False  # the trader's stays unmounted
