"""The online feature store on the cluster: Redis, where it and the Feast registry are, the
hourly sync CronJob, and the NetworkPolicy that admits only the transformer and the sync.

Where the store is travels in one ConfigMap, `klinecast-online`, read by the transformer and
the sync job alike. For an external Redis, patch its KLINECAST_REDIS in an overlay (and drop
the in-cluster Redis); a password goes in the connection string, so keep such a ConfigMap's
value in a Secret of your own and reference it the same way.
"""

from __future__ import annotations

from klinecast.book import challenger_service
from klinecast.platform.k8s import (
    NAMESPACE,
    PIPELINE_IMAGE,
    hourly_cronjob,
    resources,
    restricted_security_context,
)
from klinecast.platform.names import ONLINE_CONFIG_MAP, ONLINE_KEYS, S3_SECRET

REDIS = "klinecast-redis"
REDIS_IMAGE = "redis:7.2.4-alpine"
REDIS_UID = 999  # the official image's redis user
SYNC_LABEL = {"app.kubernetes.io/component": "feature-sync"}
REDIS_LABELS = {"app.kubernetes.io/name": "klinecast", "app.kubernetes.io/component": "redis"}
#: The registry lives beside the models, so the transformer and the sync job share it.
REGISTRY_URI = "s3://klinecast-models/feast/registry.db"


def config_map(*, namespace: str = NAMESPACE) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": ONLINE_CONFIG_MAP, "namespace": namespace},
        "data": dict(
            zip(
                ONLINE_KEYS,
                (
                    f"{REDIS}.{namespace}.svc.cluster.local:6379",
                    REGISTRY_URI,
                    "klinecast",
                    # Feast's S3 registry reads its endpoint from here (MinIO); AWS needs none
                    "http://minio.klinecast.svc:9000",
                ),
                strict=True,
            )
        ),
    }


def redis_deployment(*, namespace: str = NAMESPACE) -> dict:
    """One Redis without persistence: the sync rebuilds the newest rows within the hour."""
    container = {
        "name": "redis",
        "image": REDIS_IMAGE,
        "args": ["--save", "", "--appendonly", "no", "--protected-mode", "no"],
        "ports": [{"containerPort": 6379, "protocol": "TCP", "name": "redis"}],
        "resources": resources("100m", "128Mi", "500m", "256Mi"),
        "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 10},
        "livenessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 20},
        "securityContext": restricted_security_context() | {"runAsUser": REDIS_UID},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": REDIS, "namespace": namespace, "labels": REDIS_LABELS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": REDIS_LABELS},
            "template": {
                "metadata": {"labels": REDIS_LABELS},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "fsGroup": REDIS_UID},
                    "containers": [container],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def redis_service(*, namespace: str = NAMESPACE) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": REDIS, "namespace": namespace, "labels": REDIS_LABELS},
        "spec": {
            "selector": REDIS_LABELS,
            "ports": [{"name": "redis", "port": 6379, "targetPort": 6379, "protocol": "TCP"}],
        },
    }


def redis_network_policy(*, service_name: str, namespace: str = NAMESPACE) -> dict:
    """Only the models' transformers (the book's and the challengers', which read) and the sync
    job (which writes) reach Redis."""
    readers = [
        {"podSelector": {"matchLabels": {
            "serving.kserve.io/inferenceservice": name, "component": "transformer",
        }}}
        for name in (service_name, challenger_service(service_name))
    ]  # fmt: skip
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{REDIS}-ingress", "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": REDIS_LABELS},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        *readers,
                        {"podSelector": {"matchLabels": SYNC_LABEL}},
                    ],
                    "ports": [{"protocol": "TCP", "port": 6379}],
                }
            ],
        },
    }


def store_env() -> list[dict]:
    """What a pod that reads or writes the store gets: the ConfigMap, and the S3 credentials
    for the Feast registry."""
    return [{"configMapRef": {"name": ONLINE_CONFIG_MAP}}, {"secretRef": {"name": S3_SECRET}}]


def sync_cronjob(*, image: str = PIPELINE_IMAGE, namespace: str = NAMESPACE) -> dict:
    """`klinecast features sync` at minute 0 of every hour, before the trader at minute 1."""
    container = {
        "name": "feature-sync",
        "image": image,
        "args": ["features", "sync", "--params", "/app/params.yaml"],
        "envFrom": store_env(),
        "resources": resources("100m", "512Mi", "1", "1Gi"),
        "securityContext": restricted_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    # a rerun continues from the store's newest row
    return hourly_cronjob(
        "klinecast-features-sync",
        namespace=namespace,
        minute=0,
        labels={"app.kubernetes.io/name": "klinecast", **SYNC_LABEL},
        pod_labels=SYNC_LABEL,
        container=container,
        backoff_limit=3,
        pod={"automountServiceAccountToken": False, "securityContext": {"runAsNonRoot": True}},
    )
