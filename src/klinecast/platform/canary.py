"""A canary rollout of the book's InferenceService, as KServe documents it (Serverless mode).

Each step of publish.rollout.canary_steps patches canaryTrafficPercent on both components (the
first step also moves $KLINECAST_MODELS to the new versions, which makes KServe create a new
revision beside the last rolled-out one). Then it watches the object until KServe reports the
new revision ready with that share of traffic, and probes the new revision through its own URL
(tag routing's `latest`): probe_requests forecasts asked by symbol, their error rate and p99
latency. A breach, or a revision that never gets ready, rolls back: canaryTrafficPercent 0 (all
traffic to the previous revision at once, as KServe documents), then the previous versions.
After the last step the field is removed and the new revision takes all traffic.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np

from klinecast.config import RolloutParams
from klinecast.errors import KlinecastError
from klinecast.platform.isvc_objects import (
    COMPONENTS,
    GROUP,
    PLURAL,
    VERSION,
    Deployment,
    explain,
    models_patch,
    served_models,
)


class CanaryBreach(KlinecastError):
    """A canary step failed its checks; the InferenceService was rolled back."""

    def __init__(self, message: str, *, previous: str | None, models: str):
        super().__init__(message)
        self.previous, self.models = previous, models  # the storage strings: served, and tried


@dataclass(frozen=True)
class Probe:
    """What the new revision answered at one step."""

    requests: int
    errors: int
    p99_ms: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 1.0

    def breach(self, rollout: RolloutParams) -> str:
        """Why the step fails ("" when it passes)."""
        if self.error_rate > rollout.max_error_rate:
            return f"error rate {self.error_rate:.1%} > {rollout.max_error_rate:.1%}"
        if self.p99_ms > rollout.max_p99_ms:
            return f"p99 {self.p99_ms:.0f} ms > {rollout.max_p99_ms:.0f} ms"
        return ""

    def __str__(self) -> str:
        return f"{self.errors} of {self.requests} failed, p99 {self.p99_ms:.0f} ms"


@dataclass(frozen=True)
class Rollout(Deployment):
    """A Deployment done in canary steps: each step's share and probe."""

    steps: list[tuple[int, Probe]] = field(default_factory=list)

    def __str__(self) -> str:
        steps = "; ".join(f"{percent} %: {probe}" for percent, probe in self.steps)
        return f"{Deployment.__str__(self)} (canary: {steps}; then 100 %)" if steps else super().__str__()


def probe(url: str, model: str, symbols: tuple[str, ...], count: int, timeout: float = 5.0) -> Probe:
    """Asks the revision at url for count forecasts by symbol (V1, the symbols in turn)."""
    import requests

    latencies, errors = [], 0
    with requests.Session() as session:
        for i in range(count):
            body = {"instances": [{"symbol": symbols[i % len(symbols)]}]}
            started = time.perf_counter()
            try:
                answer = session.post(f"{url}/v1/models/{model}:predict", json=body, timeout=timeout)
                failed = answer.status_code != 200
            except requests.RequestException:
                failed = True
            latencies.append((time.perf_counter() - started) * 1000.0)
            errors += failed
    return Probe(count, errors, float(np.percentile(latencies, 99)))


def roll_out(
    api, *, name: str, namespace: str, models: str, rollout: RolloutParams,
    symbols: tuple[str, ...],
) -> Rollout:  # fmt: skip
    """Moves the InferenceService to models in rollout.canary_steps, checking the new revision
    at each step; rolls back on a breach.

    Raises:
        CanaryBreach: a step failed its checks (or the revision never got ready); the service
            serves the previous models again.
        KlinecastError: the Kubernetes API failed.
    """
    from kubernetes import client

    objects = client.CustomObjectsApi(api)
    isvc = _get(objects, name, namespace)
    previous = served_models(isvc)
    done = Rollout(name, namespace, models, previous)
    if previous == models:
        return done
    for number, percent in enumerate(rollout.canary_steps):

        def step(isvc: dict, percent=percent, first=number == 0) -> dict:
            patch = models_patch(isvc, models) if first else _versioned(isvc)
            for component in COMPONENTS:
                patch["spec"].setdefault(component, {})["canaryTrafficPercent"] = percent
            return patch

        _patch(objects, name, namespace, step)
        isvc = _watch_until(objects, name, namespace, percent, rollout.ready_timeout_seconds)
        checked = (
            probe(_latest_url(isvc), name, symbols, rollout.probe_requests)
            if isvc is not None
            else None
        )
        why = "the new revision was not ready in time" if checked is None else checked.breach(rollout)
        if checked is not None:
            done.steps.append((percent, checked))
        if why:
            _roll_back(objects, name, namespace, previous)
            raise CanaryBreach(
                f"InferenceService {namespace}/{name}: the canary at {percent} % failed ({why}); "
                f"the service was rolled back to {previous}",
                previous=previous, models=models,
            )  # fmt: skip
    _patch(objects, name, namespace, lambda isvc: _share(isvc, None))  # all to the new one
    return done


def _versioned(isvc: dict) -> dict:
    return {"metadata": {"resourceVersion": isvc["metadata"].get("resourceVersion")}, "spec": {}}


def _share(isvc: dict, percent: int | None) -> dict:
    """A patch of canaryTrafficPercent alone (None removes it: the newest revision takes all)."""
    patch = _versioned(isvc)
    for component in COMPONENTS:
        patch["spec"][component] = {"canaryTrafficPercent": percent}
    return patch


def _roll_back(objects, name: str, namespace: str, previous: str | None) -> None:
    """All traffic to the previous revision at once, then the previous models in the spec."""
    _patch(objects, name, namespace, lambda isvc: _share(isvc, 0))
    if previous is None:
        return

    def back(isvc: dict) -> dict:
        patch = models_patch(isvc, previous)
        for component in COMPONENTS:
            patch["spec"][component]["canaryTrafficPercent"] = None
        return patch

    _patch(objects, name, namespace, back)


#: How often a patch is built again from a fresh read when the operator wrote the object
#: (its status) between the read and the patch (409).
PATCH_ATTEMPTS = 5


def _patch(objects, name: str, namespace: str, build) -> dict:
    """Reads the object, patches it with build(object) under its resourceVersion, and reads
    again on a conflict (the controller writes status between steps)."""
    from kubernetes.client.exceptions import ApiException

    for attempt in range(PATCH_ATTEMPTS):
        isvc = _get(objects, name, namespace)
        try:
            return objects.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, build(isvc)
            )
        except ApiException as exc:
            if exc.status != 409 or attempt == PATCH_ATTEMPTS - 1:
                raise _refused(exc, name, namespace) from None
    raise AssertionError("unreachable")


def _watch_until(objects, name: str, namespace: str, percent: int, timeout: float) -> dict | None:
    """Watches the InferenceService until both components report the newest revision ready
    with percent of the traffic; None when that does not happen within timeout seconds."""
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    watcher = watch.Watch()
    try:
        for event in watcher.stream(
            objects.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
            field_selector=f"metadata.name={name}", timeout_seconds=max(1, int(timeout)),
        ):  # fmt: skip
            isvc = event["object"]
            if event["type"] in ("ADDED", "MODIFIED") and _split_applied(isvc, percent):
                return copy.deepcopy(isvc)
    except ApiException as exc:
        raise _refused(exc, name, namespace) from None
    finally:
        watcher.stop()
    return None


def _split_applied(isvc: dict, percent: int) -> bool:
    components = (isvc.get("status") or {}).get("components") or {}
    for component in COMPONENTS:
        status = components.get(component) or {}
        latest = [t for t in status.get("traffic") or [] if t.get("latestRevision")]
        ready = status.get("latestReadyRevision") == status.get("latestCreatedRevision")
        if not ready or not latest or latest[0].get("percent") != percent:
            return False
    return True


def _latest_url(isvc: dict) -> str:
    """The new revision's own URL (tag routing's `latest`) on the transformer, where requests
    come in."""
    traffic = isvc["status"]["components"]["transformer"]["traffic"]
    (latest,) = [t for t in traffic if t.get("latestRevision")]
    if not latest.get("url"):
        raise KlinecastError(
            "the new revision has no URL of its own: the InferenceService needs the annotation "
            "serving.kserve.io/enable-tag-routing (klinecast manifest sets it for a canary)"
        )
    return latest["url"].rstrip("/")


def _get(objects, name: str, namespace: str) -> dict:
    from kubernetes.client.exceptions import ApiException

    try:
        return objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        raise _refused(exc, name, namespace) from None


def _refused(exc, name: str, namespace: str) -> KlinecastError:
    """The API server's refusal in words (`isvc_objects.explain`), naming the service."""
    return KlinecastError(f"InferenceService {namespace}/{name}: {explain(exc)}")
