"""Point the InferenceService at a model version through the Kubernetes API.

The pipeline's deploy step runs this in-cluster (the pod's service account); an operator can
run it from a laptop with $KUBECONFIG. The patch carries the object's resourceVersion, so a
concurrent edit fails with 409 instead of being overwritten.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

from klinecast.errors import KlinecastError

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
STORAGE_ENV = "STORAGE_URI"  # the transformer reads the same version (serving/manifest.py)
#: What deploy says where it has nothing to patch.
NO_CLUSTER = "skipped: not in a Kubernetes cluster (no KUBERNETES_SERVICE_HOST) and no $KUBECONFIG"


@dataclass(frozen=True)
class Deployment:
    name: str
    namespace: str
    storage_uri: str
    previous_uri: str | None

    @property
    def changed(self) -> bool:
        return self.storage_uri != self.previous_uri

    def __str__(self) -> str:
        change = (
            f"{self.previous_uri} -> {self.storage_uri}"
            if self.changed
            else f"already serving {self.storage_uri}"
        )
        return f"InferenceService {self.namespace}/{self.name}: {change}"


def api_client():
    """A client from in-cluster credentials, else $KUBECONFIG; None when there are neither."""
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    if os.environ.get("KUBECONFIG"):
        return config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    return None


def storage_uri_patch(isvc: dict, uri: str) -> dict:
    """A merge patch that moves the predictor and the transformer's STORAGE_URI to uri."""
    spec = isvc.get("spec") or {}
    patch: dict = {
        "metadata": {"resourceVersion": isvc.get("metadata", {}).get("resourceVersion")},
        "spec": {"predictor": {"model": {"storageUri": uri}}},
    }
    containers = copy.deepcopy((spec.get("transformer") or {}).get("containers") or [])
    for container in containers:
        for env in container.get("env") or []:
            if env.get("name") == STORAGE_ENV:
                env["value"] = uri
    if containers:
        patch["spec"]["transformer"] = {"containers": containers}
    return patch


def deploy(api, *, name: str, namespace: str, storage_uri: str) -> Deployment:
    """Patches the InferenceService name in namespace to serve storage_uri.

    Raises:
        KlinecastError: the service does not exist, the credentials may not patch it, it
            changed while being patched, or the API server failed; nothing is half-changed.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    objects = client.CustomObjectsApi(api)
    where = f"InferenceService {namespace}/{name}"
    try:
        isvc = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        previous = isvc["spec"]["predictor"].get("model", {}).get("storageUri")
        if previous != storage_uri:
            objects.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, storage_uri_patch(isvc, storage_uri)
            )
    except ApiException as exc:
        raise KlinecastError(f"{where}: {_explain(exc)}") from None
    except KeyError:
        raise KlinecastError(f"{where} has no spec.predictor; apply manifests/base") from None
    return Deployment(name, namespace, storage_uri, previous)


def _explain(exc) -> str:
    reasons = {
        404: "not found; apply manifests/base first (kubectl apply -k manifests/base)",
        403: "forbidden; the service account needs get and patch on inferenceservices",
        401: "unauthorized; the credentials were rejected",
        409: "changed while it was being patched; rerun deploy",
    }
    return reasons.get(exc.status, f"the API server answered {exc.status} {exc.reason}")


def deploy_where_possible(*, name: str, namespace: str, storage_uri: str) -> Deployment | None:
    """deploy() with the credentials at hand; None outside a cluster and without $KUBECONFIG
    (a laptop or a local pipeline run), where there is nothing to patch."""
    api = api_client()
    if api is None:
        return None
    with api:
        return deploy(api, name=name, namespace=namespace, storage_uri=storage_uri)
