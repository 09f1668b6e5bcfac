"""Render the kustomize overlays offline and walk their containers (shared by the manifest tests)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.support.paths import REPO, SHARED

MANIFESTS = REPO / "manifests"
OVERLAYS = ("dev", "prod")
K8S_VERSION = "1.31"
CRD_SCHEMAS = {
    "InferenceService": SHARED / "crds" / "InferenceService.v1beta1.schema.json",
    # Katib's CRD accepts any object; its OpenAPI-derived schema is the real check.
    "Experiment": SHARED / "crds" / "Experiment.v1beta1.openapi-derived.schema.json",
}

SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL", re.IGNORECASE)
CREDENTIALS_IN_URL = re.compile(r"://[^/@\s]+:[^/@\s]+@")


def render(directory: Path) -> list[dict]:
    """`kubectl kustomize DIR` (kustomize v2 in Debian's kubectl 1.20, v5 in newer ones)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is missing: `make setup` installs Debian's kubernetes-client")
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory} failed:\n{done.stderr}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@cache
def overlay(name: str) -> tuple[dict, ...]:
    return tuple(render(MANIFESTS / "overlays" / name))


@cache
def crd_validator(kind: str):
    import jsonschema

    path = CRD_SCHEMAS[kind]
    if not path.exists():
        pytest.fail(f"the shared CRD schema is missing: {path}")
    return jsonschema.Draft202012Validator(json.loads(path.read_text()))


def find(objects, kind: str, name: str | None = None) -> dict:
    matches = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def pod_specs(obj: dict):
    """Every pod spec inside an object, wherever its kind nests it."""
    if isinstance(obj, dict):
        if "containers" in obj and isinstance(obj["containers"], list):
            yield obj
        for value in obj.values():
            yield from pod_specs(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from pod_specs(item)


def containers(obj: dict):
    """(where, container, pod spec) for every container of an object."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    for pod in pod_specs(obj):
        for container in pod["containers"] + pod.get("initContainers", []):
            yield f"{name}:{container['name']}", container, pod


def problems(obj: dict) -> list[str]:
    """What the container policy forbids: root, no limits, :latest, secrets in plain text."""
    found = []
    if obj["kind"] == "Secret" and (obj.get("data") or obj.get("stringData")):
        found.append(f"Secret/{obj['metadata']['name']} holds values")
    for where, container, pod in containers(obj):
        security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        if not security.get("runAsNonRoot") or security.get("runAsUser") == 0:
            found.append(f"{where} may run as root")
        limits = container.get("resources", {}).get("limits", {})
        if not {"cpu", "memory"} <= set(limits):
            found.append(f"{where} lacks cpu and memory limits")
        image = container.get("image", "")
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if tag in ("", "latest"):
            found.append(f"{where} uses {image or 'no image'} (no tag or :latest)")
        for env in container.get("env", []):
            value = str(env.get("value", ""))
            if (value and SECRET_NAME.search(env["name"])) or CREDENTIALS_IN_URL.search(value):
                found.append(f"{where} has ${env['name']} in plain text")
    return found
