"""The InferenceService manifest (serving.kserve.io/v1beta1), generated from one place."""

from __future__ import annotations

from klinecast.platform import k8s
from klinecast.platform.feature_store import store_env
from klinecast.platform.k8s import (
    NAMESPACE,
    resources,
    restricted_security_context,
    runtime_security_context,
    secret_template,
)
from klinecast.platform.names import S3_KEYS, S3_SECRET

SERVICE_ACCOUNT = "klinecast-models"
PORT = 8080


def placeholder_uri(model_name: str) -> str:
    """The storageUri of the committed base manifest; deploy replaces it with production's."""
    return f"s3://klinecast-models/registry/{model_name}/versions/PRODUCTION"


def inference_service(
    *,
    model_name: str,
    storage_uri: str,
    image: str,
    stale_after_minutes: int,
    namespace: str = NAMESPACE,
) -> dict:
    """Transformer (our image) + XGBoost predictor (KServe's runtime) for one model version.

    Args:
        stale_after_minutes: params' online.stale_after_minutes, the transformer's tolerance.
    """
    predictor = {
        "serviceAccountName": SERVICE_ACCOUNT,
        **autoscaling(1, 3),
        "model": {
            "modelFormat": {"name": "xgboost"},
            "protocolVersion": "v1",
            "storageUri": storage_uri,
            "resources": resources("250m", "512Mi", "1", "1Gi"),
            "readinessProbe": _probe(f"/v1/models/{model_name}", PORT, period=10),
            "livenessProbe": _probe("/", PORT, period=20),
            "securityContext": runtime_security_context(),
        },
    }
    transformer = _our_server(
        image,
        ["transformer", "--storage-uri", "/mnt/models",
         "--stale-after-minutes", str(stale_after_minutes)],
        # The storage initializer downloads STORAGE_URI to /mnt/models: the
        # transformer reads the same version's metadata.json as the predictor.
        env=[{"name": "STORAGE_URI", "value": storage_uri}],
        # where the online store is, for requests by symbol
        env_from=store_env(),
        ready_path=f"/v1/models/{model_name}",
    )  # fmt: skip
    return _service(model_name, namespace, predictor=predictor, transformer=transformer)


def symbols_inference_service(
    *,
    model_name: str,
    storage_uris: dict[str, str],
    image: str,
    stale_after_minutes: int,
    namespace: str = NAMESPACE,
) -> dict:
    """A model per symbol behind one transformer: our image's predictor hosts every symbol's
    model (as `symbol_model_name`), and the transformer asks each symbol's row of its own.

    KServe's storage initializer downloads one STORAGE_URI, so neither container names one:
    each process fetches its symbols' versions itself (boto3, with the klinecast-s3 Secret's
    keys and endpoint). A URI of the version PRODUCTION is read as the version the registry's
    pointer names when the model loads: nothing has to patch a version per symbol in, and a
    symbol with none (its gate refused it) is answered 404 while the others are served.

    Args:
        storage_uris: symbol -> its model's storage URI, in data.symbols' order.
        stale_after_minutes: params' online.stale_after_minutes, the transformer's tolerance.
    """
    models = ",".join(f"{symbol}={uri}" for symbol, uri in storage_uris.items())
    s3 = [{"secretRef": {"name": S3_SECRET}}]
    predictor = _our_server(
        image,
        ["predictor", "--model-name", model_name, "--storage-uri", models],
        env_from=s3,
        # ready once one symbol's model is (serving.protocol): a missing one answers 503 on
        # its own, and the transformer, which lacks it too, answers 404 naming the symbol
        ready_path="/v2/health/ready",
    )
    transformer = _our_server(
        image,
        ["transformer", "--storage-uri", models,
         "--stale-after-minutes", str(stale_after_minutes)],
        env_from=store_env(),
        ready_path=f"/v1/models/{model_name}",
    )  # fmt: skip
    return _service(model_name, namespace, predictor=predictor, transformer=transformer)


def _service(model_name: str, namespace: str, *, predictor: dict, transformer: dict) -> dict:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": model_name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "klinecast",
                "app.kubernetes.io/component": "model",
            },
            # Plain Deployments + HPA: callers reach the pods directly, so the NetworkPolicy
            # that admits only the trader means what it says (no Knative activator between).
            "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
        },
        "spec": {"predictor": predictor, "transformer": transformer},
    }


def _our_server(
    image: str, args: list[str], *, env_from: list[dict], ready_path: str, env: list | None = None
) -> dict:
    """A component running our serving image (`python -m klinecast.serving.server ...`)."""
    container = {"name": "kserve-container", "image": image, "args": args}
    if env is not None:
        container["env"] = env
    container |= {
        "envFrom": env_from,
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "resources": resources("250m", "512Mi", "1", "1Gi"),
        "readinessProbe": _probe(ready_path, PORT, period=10),
        "livenessProbe": _probe("/", PORT, period=20),
        "securityContext": restricted_security_context(),
        # the root filesystem is read-only: loading the model's metadata
        # (and any library's scratch files) needs a writable /tmp
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "serviceAccountName": SERVICE_ACCOUNT,
        **autoscaling(1, 3),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }


def service_account(namespace: str = NAMESPACE) -> dict:
    """Holds the S3 credentials Secret; KServe's storage initializer reads it."""
    return k8s.service_account(
        SERVICE_ACCOUNT, namespace=namespace, secrets=[{"name": S3_SECRET}]
    )


def s3_secret_template(namespace: str = NAMESPACE) -> dict:
    """The S3 credentials Secret, keys only: fill them at deploy time, never in git."""
    annotations = {
        "serving.kserve.io/s3-endpoint": "minio.klinecast.svc:9000",
        "serving.kserve.io/s3-usehttps": "0",
        "serving.kserve.io/s3-region": "us-east-1",
    }
    return secret_template(S3_SECRET, list(S3_KEYS), namespace=namespace, annotations=annotations)


def autoscaling(low: int, high: int, cpu_percent: int = 80) -> dict:
    """KServe's HPA in RawDeployment mode: between low and high replicas at this CPU use."""
    return {"minReplicas": low, "maxReplicas": high, "scaleMetric": "cpu", "scaleTarget": cpu_percent}


def _probe(path: str, port: int, *, period: int) -> dict:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
