"""The trader's and the monitor's CronJobs (batch/v1) and the trader's Secret template,
generated from one place."""

from __future__ import annotations

from klinecast.book import challenger_service
from klinecast.environment import variable_of
from klinecast.platform import k8s
from klinecast.platform.cluster import PIPELINE_ACCOUNT, TRADER_ACCOUNT, TRADER_LABEL
from klinecast.platform.k8s import (
    NAMESPACE,
    PIPELINE_IMAGE,
    UID,
    resources,
    restricted_security_context,
)
from klinecast.platform.names import (
    BINANCE_KEYS,
    BINANCE_SECRET,
    POSTGRES_KEYS,
    POSTGRES_SECRET,
    S3_SECRET,
)


def cronjob(*, image: str = PIPELINE_IMAGE, namespace: str = NAMESPACE, service_name: str) -> dict:
    """`klinecast trade once` at minute 1 of every hour, never two at a time."""
    # The paper broker needs no keys, so the pod starts without them; testnet refuses to.
    env = [_secret_env(name, BINANCE_SECRET, name, optional=True) for name in BINANCE_KEYS]
    env.append(_secret_env(variable_of("trade.ledger"), POSTGRES_SECRET, POSTGRES_KEYS["ledger"]))
    for key, service in (("trade.inference_url", service_name),
                         ("trade.challenger_url", challenger_service(service_name))):  # fmt: skip
        url = f"http://{service}-transformer.{namespace}.svc.cluster.local"
        env.append({"name": variable_of(key), "value": url})
    # Missed after minute 11 rather than traded late; reruns are safe (the ledger and the
    # client order ids dedupe).
    return _ledger_cronjob(
        "trader", ["trade", "once", "--params", "/app/params.yaml"], env,
        image=image, namespace=namespace, minute=1, labels=TRADER_LABEL, backoff_limit=2,
    )  # fmt: skip


def monitor_cronjob(*, image: str = PIPELINE_IMAGE, namespace: str = NAMESPACE) -> dict:
    """`klinecast monitor` at minute 15 of every hour, after the trader: a report per symbol
    and the book's, from the trader's ledger (it reads; it sends nothing anywhere)."""
    env = [_secret_env(variable_of("trade.ledger"), POSTGRES_SECRET, POSTGRES_KEYS["ledger"])]
    job = _ledger_cronjob(
        "monitor", ["monitor", "--params", "/app/params.yaml", "--out-dir", "/tmp/monitor"], env,
        image=image, namespace=namespace, minute=15,
        labels={"app.kubernetes.io/component": "monitor"}, backoff_limit=1,
    )  # fmt: skip
    # the registry's decisions about each challenger, for its page (without them it says so)
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    container["envFrom"] = [{"secretRef": {"name": S3_SECRET, "optional": True}}]
    return job


def challenger_cronjob(*, image: str = PIPELINE_IMAGE, namespace: str = NAMESPACE) -> dict:
    """`klinecast challenger decide` at minute 20 of every hour, after the monitor: the
    promotion rule over each symbol's shadow book (the ledger), recorded in the registry (S3's
    keys), and a promotion deployed as `klinecast deploy` does, so it runs as the pipeline's
    service account, the one that may patch the book's InferenceService."""
    env = [_secret_env(variable_of("trade.ledger"), POSTGRES_SECRET, POSTGRES_KEYS["ledger"])]
    job = _ledger_cronjob(
        "challenger", ["challenger", "decide", "--params", "/app/params.yaml"], env,
        image=image, namespace=namespace, minute=20,
        labels={"app.kubernetes.io/component": "challenger"}, backoff_limit=1,
        account=PIPELINE_ACCOUNT,
    )  # fmt: skip
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    container["envFrom"] = [{"secretRef": {"name": S3_SECRET}}]
    return job


def _ledger_cronjob(
    role: str, args: list[str], env: list[dict], *, image: str, namespace: str, minute: int,
    labels: dict, backoff_limit: int, account: str = TRADER_ACCOUNT,
) -> dict:  # fmt: skip
    """klinecast-<role> at `minute` of every hour, as the trader's service account (it may read
    the Binance and ledger Secrets, nothing else) or the pipeline's (`account`: it may patch
    the InferenceService, so its token is mounted), in the restricted container all share."""
    container = {
        "name": role,
        "image": image,
        "args": args,
        "env": env,
        "resources": resources("100m", "256Mi", "500m", "512Mi"),
        "securityContext": restricted_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return k8s.hourly_cronjob(
        f"klinecast-{role}",
        namespace=namespace,
        minute=minute,
        labels={"app.kubernetes.io/name": "klinecast", **labels},
        pod_labels=labels,
        container=container,
        backoff_limit=backoff_limit,
        pod={
            "serviceAccountName": account,
            "automountServiceAccountToken": account != TRADER_ACCOUNT,
            "securityContext": {"runAsNonRoot": True, "fsGroup": UID},
        },
    )


def secret_template(namespace: str = NAMESPACE) -> dict:
    """The testnet keys: fill them with `kubectl create secret` (never commit the values)."""
    return k8s.secret_template(BINANCE_SECRET, list(BINANCE_KEYS), namespace=namespace)


def service_account(namespace: str = NAMESPACE) -> dict:
    return k8s.service_account(
        TRADER_ACCOUNT, namespace=namespace, automountServiceAccountToken=False
    )


def _secret_env(name: str, secret: str, key: str, *, optional: bool = False) -> dict:
    ref = {"name": secret, "key": key, **({"optional": True} if optional else {})}
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}
