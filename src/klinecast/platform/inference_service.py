"""The InferenceService manifest (serving.kserve.io/v1beta1), generated from one place."""

from __future__ import annotations

from klinecast import environment
from klinecast.book import Book
from klinecast.platform import k8s
from klinecast.platform.feature_store import store_env
from klinecast.platform.k8s import (
    NAMESPACE,
    resources,
    restricted_security_context,
    secret_template,
)
from klinecast.platform.names import S3_KEYS, S3_SECRET
from klinecast.release.registry import PRODUCTION_VERSION

SERVICE_ACCOUNT = "klinecast-models"
PORT = 8080


def placeholder_uri(model_name: str, version: str = PRODUCTION_VERSION) -> str:
    """A symbol's model in the committed base manifest: the version its production pointer
    (or its challenger's: CHALLENGER) names when a server loads it (`klinecast deploy` pins a
    production version instead)."""
    return f"s3://klinecast-models/registry/{model_name}/versions/{version}"


def placeholder_models(book: Book, version: str = PRODUCTION_VERSION) -> str:
    """The book's models in the committed base manifest: each symbol's production version
    (or challenger)."""
    return book.storage_string(lambda symbol: placeholder_uri(book.model_name(symbol), version))


def inference_service(
    *,
    service_name: str,
    models: str,
    image: str,
    stale_after_minutes: int,
    namespace: str = NAMESPACE,
    canary: bool = False,
) -> dict:
    """The book's InferenceService: our image's predictor hosts each symbol's model (as
    `klinecast.book.predictor_model_name`), and one transformer answers for every symbol,
    asking each symbol's own model.

    Both read the book's models from $KLINECAST_MODELS (SYMBOL=URI[,...]; `klinecast deploy`
    patches it). KServe's storage initializer fetches one storageUri, so neither component
    names one: each process fetches its symbols' versions itself (boto3, with the klinecast-s3
    Secret's keys and endpoint). A URI of the version PRODUCTION is read as the version the
    registry's pointer names when the model loads; a symbol with none (its gate refused it) is
    answered 404 while the others are served.

    Args:
        models: the book's storage string (`klinecast.book.Book.storage_string`).
        stale_after_minutes: params' online.stale_after_minutes, the transformer's tolerance.
        canary: rendered for KServe's canary rollout (publish.rollout.canary_steps), which
            KServe supports in Serverless mode only: that mode, with tag routing, so each
            revision has a URL of its own (`latest`, `prev`) that deploy's probe can reach.
    """
    env = [{"name": environment.MODELS, "value": models}]
    predictor = _our_server(
        image,
        ["predictor", "--model-name", service_name],
        env=env,
        env_from=[{"secretRef": {"name": S3_SECRET}}],
        # ready once one symbol's model is (serving.protocol): a missing one answers 503 on
        # its own, and the transformer, which lacks it too, answers 404 naming the symbol
        ready_path="/v2/health/ready",
    )
    transformer = _our_server(
        image,
        ["transformer", "--stale-after-minutes", str(stale_after_minutes)],
        env=env,
        env_from=store_env(),
        ready_path=f"/v1/models/{service_name}",
    )
    return _service(
        service_name, namespace, predictor=predictor, transformer=transformer, canary=canary
    )


#: Plain Deployments + HPA: callers reach the pods directly, so the NetworkPolicy that admits
#: only the trader means what it says (no Knative activator between).
RAW = {"serving.kserve.io/deploymentMode": "RawDeployment"}
#: KServe's canary rollout needs Knative's revisions; tag routing gives each its own URL.
SERVERLESS = {
    "serving.kserve.io/deploymentMode": "Serverless",
    "serving.kserve.io/enable-tag-routing": "true",
}


def _service(
    service_name: str, namespace: str, *, predictor: dict, transformer: dict, canary: bool
) -> dict:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": service_name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "klinecast",
                "app.kubernetes.io/component": "model",
            },
            "annotations": dict(SERVERLESS if canary else RAW),
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
    """The model servers' account; it names the S3 credentials Secret (which both servers
    also read as their environment, to fetch each symbol's model themselves)."""
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
