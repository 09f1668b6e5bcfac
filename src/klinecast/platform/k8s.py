"""Pieces every generated Kubernetes manifest uses: resources, non-root containers, Secrets."""

from __future__ import annotations

#: The uid every klinecast image runs as (USER 10001 in both of the Dockerfile's targets).
UID = 10001
#: The annotation that lists a Secret template's keys (the template itself holds no values).
KEYS_ANNOTATION = "klinecast.io/keys"
NAMESPACE = "klinecast"
#: The default images (overlays and CI replace name and tag): the Dockerfile's `pipeline` target
#: serves the KFP components, Katib trials, the trader and the monitor; its `serving` target the
#: InferenceService's transformer.
PIPELINE_IMAGE = "registry.example.com/klinecast/pipeline:0.1.0"
SERVING_IMAGE = "registry.example.com/klinecast/serving:0.1.0"


def resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict:
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


def restricted_security_context() -> dict:
    """Non-root, no privilege escalation, read-only root filesystem, no capabilities."""
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def service_account(name: str, *, namespace: str = NAMESPACE, **fields) -> dict:
    """A ServiceAccount; fields: what it adds (secrets, automountServiceAccountToken)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
        **fields,
    }


def secret_template(
    name: str, keys: list[str], *, namespace: str = NAMESPACE, annotations: dict | None = None
) -> dict:
    """A Secret with no data: its keys are listed in an annotation, never given values here.

    Fill it with `kubectl create secret generic` (not `kubectl apply`): `kubectl apply -k` then
    never touches the values, since no applied configuration ever held them.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {KEYS_ANNOTATION: ",".join(keys), **(annotations or {})},
        },
        "type": "Opaque",
    }


def hourly_cronjob(
    name: str,
    *,
    namespace: str,
    minute: int,
    labels: dict,
    pod_labels: dict,
    container: dict,
    backoff_limit: int,
    pod: dict,
) -> dict:
    """A CronJob at `minute` of every hour (UTC), never two at a time, missed rather than late
    after 10 minutes, with a day of history. pod: the pod spec's fields besides the container."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "schedule": f"{minute} * * * *",
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 24,
            "failedJobsHistoryLimit": 24,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": backoff_limit,
                    "activeDeadlineSeconds": 900,
                    "template": {
                        "metadata": {"labels": pod_labels},
                        "spec": {
                            "restartPolicy": "Never",
                            **pod,
                            "containers": [container],
                            "volumes": [{"name": "tmp", "emptyDir": {}}],
                        },
                    },
                }
            },
        },
    }
