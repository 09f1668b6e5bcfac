"""The book's InferenceService as the Kubernetes API holds it: where its models are read, the
patch that moves them, what a move did, and the API's refusals in words (`deploy`, `canary`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from klinecast import environment
from klinecast.book import parse_storage
from klinecast.errors import KlinecastError

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
#: The components whose containers read the book's models.
COMPONENTS = ("predictor", "transformer")


@dataclass(frozen=True)
class Deployment:
    name: str
    namespace: str
    models: str
    previous: str | None

    @property
    def changed(self) -> bool:
        return self.models != self.previous

    def __str__(self) -> str:
        where = f"InferenceService {self.namespace}/{self.name}"
        if not self.changed:
            return f"{where}: already serving {self.models}"
        before = parse_storage(self.previous) if self.previous else {}
        moves = [
            f"{symbol} {before.get(symbol, '-')} -> {uri}"
            for symbol, uri in parse_storage(self.models).items()
            if before.get(symbol) != uri
        ]
        return f"{where}: {'; '.join(moves)}"


def served_models(isvc: dict) -> str | None:
    """The book's models the InferenceService serves now (its predictor's $KLINECAST_MODELS)."""
    for container in ((isvc.get("spec") or {}).get("predictor") or {}).get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == environment.MODELS:
                return env.get("value")
    return None


def models_patch(isvc: dict, models: str) -> dict:
    """A merge patch that moves both components' $KLINECAST_MODELS to models (a merge patch
    replaces a list whole: each container is sent back complete, with only that value new).

    Raises:
        KlinecastError: a component has no container that reads $KLINECAST_MODELS.
    """
    spec = isvc.get("spec") or {}
    patch: dict = {
        "metadata": {"resourceVersion": isvc.get("metadata", {}).get("resourceVersion")},
        "spec": {},
    }
    for component in COMPONENTS:
        containers = copy.deepcopy((spec.get(component) or {}).get("containers") or [])
        found = [e for c in containers for e in c.get("env") or [] if e.get("name") == environment.MODELS]
        if not found:
            raise KlinecastError(
                f"the InferenceService's {component} reads no ${environment.MODELS}: it was not "
                "made by `klinecast manifest`; apply manifests/base"
            )
        for env in found:
            env["value"] = models
        patch["spec"][component] = {"containers": containers}
    return patch


def explain(exc) -> str:
    reasons = {
        404: "not found; apply manifests/base first (kubectl apply -k manifests/base)",
        403: "forbidden; the service account needs get and patch on inferenceservices (and watch, for a canary)",
        401: "unauthorized; the credentials were rejected",
        409: "changed while it was being patched; rerun deploy",
    }
    return reasons.get(exc.status, f"the API server answered {exc.status} {exc.reason}")
