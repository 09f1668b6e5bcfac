"""Point the book's InferenceService at model versions through the Kubernetes API.

The pipeline's deploy step runs this in-cluster (the pod's service account); an operator can
run it from a laptop with $KUBECONFIG. The book's models are one string, $KLINECAST_MODELS of
both model servers (SYMBOL=URI[,...]); deploy pins each symbol's production version in it. The
patch carries the object's resourceVersion, so a concurrent edit fails with 409 instead of being
overwritten.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from klinecast import environment
from klinecast.book import Book, parse_storage
from klinecast.errors import KlinecastError
from klinecast.platform.canary import CanaryBreach, roll_out
from klinecast.platform.isvc_objects import (
    GROUP,
    PLURAL,
    VERSION,
    Deployment,
    explain,
    models_patch,
    served_models,
)

#: What deploy says where it has nothing to patch.
NO_CLUSTER = "skipped: not in a Kubernetes cluster (no KUBERNETES_SERVICE_HOST) and no $KUBECONFIG"


@dataclass(frozen=True)
class PinnedModels:
    """Each symbol's production version (None: it has none), and the book's storage string."""

    models: str
    versions: dict[str, str | None]


def production_models(book: Book, registry_uri: str) -> PinnedModels:
    """Each symbol's production version in the registry, pinned; a symbol with none keeps the
    PRODUCTION placeholder, which its server answers 404 for until a version passes.

    Raises:
        RegistryError: the registry could not be read.
    """
    from klinecast.release import registry

    store = registry.open_store(registry_uri)
    pointers = {s: registry.production(store, book.model_name(s)) for s in book.symbols}

    def uri(symbol: str) -> str:
        pointer = pointers[symbol]
        production = f"{book.model_name(symbol)}/versions/{registry.PRODUCTION_VERSION}"
        return pointer["uri"] if pointer else store.uri(production)

    return PinnedModels(
        models=book.storage_string(uri),
        versions={s: pointer["version"] if pointer else None for s, pointer in pointers.items()},
    )


def deploy_book(book: Book, *, registry_uri: str, namespace: str):
    """Pins the book's InferenceService to each symbol's production version (`deploy` where
    there are credentials; outside a cluster, nothing), at once or as a canary in steps
    (publish.rollout). A canary that breaches is rolled back on the cluster, and each symbol
    whose version it brought is rolled back in the registry too (its decision names the breach),
    so the next deploy does not try it again.

    Returns:
        The pinned models, and the Deployment (None outside a cluster).

    Raises:
        CanaryBreach: a canary step failed; the cluster and the registry were rolled back.
        KlinecastError: the registry or the Kubernetes API failed; nothing is half-changed.
    """
    pinned = production_models(book, registry_uri)
    try:
        done = deploy_where_possible(
            name=book.service_name, namespace=namespace, models=pinned.models,
            rollout=book.params.publish.rollout, symbols=book.symbols,
        )  # fmt: skip
    except CanaryBreach as breach:
        _roll_back_registry(book, registry_uri, breach)
        raise
    return pinned, done


def _roll_back_registry(book: Book, registry_uri: str, breach) -> None:
    """Each symbol whose version the breached canary brought goes back to its previous one."""
    from klinecast.release import registry

    store = registry.open_store(registry_uri)
    before = parse_storage(breach.previous) if breach.previous else {}
    for symbol, uri in parse_storage(breach.models).items():
        served = before.get(symbol)
        if served == uri:
            continue
        version = (served or "").rstrip("/").rpartition("/versions/")[2]
        name, record = book.model_name(symbol), {"by": "klinecast deploy", "reason": str(breach)}
        if version in registry.versions(store, name):  # the version served before the canary
            registry.promote_version(store, name, version, action="rollback", **record)
        else:  # it served a pointer's placeholder: the version before in the registry
            registry.rollback(store, name, **record)


def api_client():
    """A client from in-cluster credentials, else $KUBECONFIG; None when there are neither."""
    from kubernetes import client, config

    if os.environ.get(environment.KUBERNETES_SERVICE_HOST):
        config.load_incluster_config()
        return client.ApiClient()
    if os.environ.get(environment.KUBECONFIG):
        return config.new_client_from_config(config_file=os.environ[environment.KUBECONFIG])
    return None


def deploy(api, *, name: str, namespace: str, models: str) -> Deployment:
    """Patches the InferenceService name in namespace to serve the book's models.

    Raises:
        KlinecastError: the service does not exist or was not made by klinecast, the
            credentials may not patch it, it changed while being patched, or the API server
            failed; nothing is half-changed.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    objects = client.CustomObjectsApi(api)
    where = f"InferenceService {namespace}/{name}"
    try:
        isvc = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        previous = served_models(isvc)
        if previous != models:
            objects.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, models_patch(isvc, models)
            )
    except ApiException as exc:
        raise KlinecastError(f"{where}: {explain(exc)}") from None
    return Deployment(name, namespace, models, previous)


def deploy_where_possible(
    *, name: str, namespace: str, models: str, rollout=None, symbols: tuple[str, ...] = ()
) -> Deployment | None:
    """deploy() with the credentials at hand, or a canary (`canary.roll_out`) when rollout
    (publish.rollout) has steps; None outside a cluster and without $KUBECONFIG (a laptop or a
    local pipeline run), where there is nothing to patch."""
    api = api_client()
    if api is None:
        return None
    with api:
        if rollout is not None and rollout.canary:
            return roll_out(
                api, name=name, namespace=namespace, models=models, rollout=rollout,
                symbols=symbols,
            )  # fmt: skip
        return deploy(api, name=name, namespace=namespace, models=models)
