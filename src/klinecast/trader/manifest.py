"""The trader's CronJob (batch/v1) and its Secret template, generated from one place."""

from __future__ import annotations

from klinecast.k8s import UID, resources, restricted_security_context

SECRET = "klinecast-binance"
IMAGE = "registry.example.com/klinecast/pipeline:0.1.0"  # the repo-root Dockerfile


def cronjob(*, image: str = IMAGE, namespace: str = "klinecast", model_name: str) -> dict:
    """`klinecast trade once` at minute 1 of every hour, never two at a time."""
    env = [
        {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": SECRET, "key": name}},
        }
        for name in ("BINANCE_API_KEY", "BINANCE_API_SECRET", "KLINECAST_LEDGER_URL")
    ]
    env.append(
        {
            "name": "KLINECAST_INFERENCE_URL",
            "value": f"http://{model_name}-transformer.{namespace}.svc.cluster.local",
        }
    )
    container = {
        "name": "trader",
        "image": image,
        "args": ["trade", "once", "--params", "/app/params.yaml"],
        "env": env,
        "resources": resources("100m", "256Mi", "500m", "512Mi"),
        "securityContext": restricted_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": "klinecast-trader",
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "klinecast",
                "app.kubernetes.io/component": "trader",
            },
        },
        "spec": {
            "schedule": "1 * * * *",
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,  # later than minute 11 the hour is missed, not traded late
            "successfulJobsHistoryLimit": 24,
            "failedJobsHistoryLimit": 24,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 2,  # reruns are safe: the ledger and client order ids dedupe
                    "activeDeadlineSeconds": 900,
                    "template": {
                        "metadata": {"labels": {"app.kubernetes.io/component": "trader"}},
                        "spec": {
                            "restartPolicy": "Never",
                            "serviceAccountName": "klinecast-trader",
                            "automountServiceAccountToken": False,
                            "securityContext": {"runAsNonRoot": True, "fsGroup": UID},
                            "containers": [container],
                            "volumes": [{"name": "tmp", "emptyDir": {}}],
                        },
                    },
                }
            },
        },
    }


def secret_template(namespace: str = "klinecast") -> dict:
    """Keys only: fill them with `kubectl create secret` (never commit the values)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": namespace},
        "type": "Opaque",
        "stringData": {"BINANCE_API_KEY": "", "BINANCE_API_SECRET": "", "KLINECAST_LEDGER_URL": ""},
    }


def service_account(namespace: str = "klinecast") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "klinecast-trader", "namespace": namespace},
        "automountServiceAccountToken": False,
    }
