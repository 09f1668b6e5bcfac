"""The InferenceService manifest, the serving image's Dockerfile, and what serving imports.

The InferenceService against the CRD schema (and that the check can fail), stale manifests,
container policy, the Dockerfile's targets and stages.
"""

import copy
import re
import subprocess
import sys

import pytest
import yaml

from klinecast.book import Book
from klinecast.cli import main
from klinecast.config import Params
from klinecast.platform import inference_service as manifest
from tests.support.kustomize import crd_validator
from tests.support.paths import REPO

BASE = REPO / "manifests" / "base"


@pytest.fixture(scope="module")
def isvc_validator():
    return crd_validator("InferenceService")


def load(name: str) -> dict:
    return yaml.safe_load((BASE / name).read_text())


def test_committed_base_manifests_are_current(tmp_path):
    assert main(["manifest", "--params", str(REPO / "params.yaml"), "--base", str(tmp_path)]) == 0
    for path in tmp_path.iterdir():
        assert (BASE / path.name).read_text() == path.read_text(), (
            f"{path.name} is stale: regenerate"
        )


def test_the_transformer_gets_params_staleness_tolerance_and_a_writable_tmp():
    """online.stale_after_minutes reaches the transformer's args; its read-only root gets an
    emptyDir at /tmp (loading the model's metadata writes there)."""
    import dataclasses

    from klinecast.config import Params
    from klinecast.platform.manifests import base

    params = Params()
    params = dataclasses.replace(
        params, online=dataclasses.replace(params.online, stale_after_minutes=42)
    )
    isvc = base(params)["inferenceservice.yaml"]
    transformer = isvc["spec"]["transformer"]
    (container,) = transformer["containers"]
    args = container["args"]
    assert args[args.index("--stale-after-minutes") + 1] == "42"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert transformer["volumes"] == [{"name": "tmp", "emptyDir": {}}]


def test_inference_service_validates_against_the_crd(isvc_validator):
    isvc = load("inferenceservice.yaml")
    assert list(isvc_validator.iter_errors(isvc)) == []
    # the book of one: our predictor hosts its one model, as it would host five
    book = Book(Params())
    for component in ("predictor", "transformer"):
        (container,) = isvc["spec"][component]["containers"]
        assert {"name": "KLINECAST_MODELS", "value": manifest.placeholder_models(book)} in (
            container["env"]
        )
    assert manifest.placeholder_models(book) == (
        "BTCUSDT=s3://klinecast-models/registry/klinecast-btcusdt-1h/versions/PRODUCTION"
    )


def test_the_challengers_service_follows_each_symbols_challenger(isvc_validator):
    """A second InferenceService, the same servers, each symbol's version CHALLENGER: what the
    trader asks for the shadow book (the trader's KLINECAST_CHALLENGER_URL names it)."""
    isvc = load("challenger-inferenceservice.yaml")
    assert list(isvc_validator.iter_errors(isvc)) == []
    assert isvc["metadata"]["name"] == "klinecast-challenger"
    book = Book(Params())
    for component in ("predictor", "transformer"):
        (container,) = isvc["spec"][component]["containers"]
        (models,) = container["env"]
        assert models["value"] == manifest.placeholder_models(book, "CHALLENGER") == (
            "BTCUSDT=s3://klinecast-models/registry/klinecast-btcusdt-1h/versions/CHALLENGER"
        )
    (predictor,) = isvc["spec"]["predictor"]["containers"]
    assert predictor["args"] == ["predictor", "--model-name", "klinecast-challenger"]
    trader = load("trader-cronjob.yaml")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in trader["containers"][0]["env"]}
    assert env["KLINECAST_CHALLENGER_URL"] == (
        "http://klinecast-challenger-transformer.klinecast.svc.cluster.local"
    )


@pytest.mark.parametrize(
    "breakage",
    [
        lambda m: m["spec"]["predictor"]["containers"][0]["resources"]["limits"].__setitem__(
            "cpu", 0.5
        ),
        lambda m: m["spec"]["predictor"].__setitem__("minReplicas", "one"),
        lambda m: m["spec"]["transformer"]["containers"][0].__setitem__(
            "ports", [{"containerPort": "http"}]
        ),
    ],
)
def test_the_schema_check_can_fail(isvc_validator, breakage):
    broken = copy.deepcopy(load("inferenceservice.yaml"))
    breakage(broken)
    assert list(isvc_validator.iter_errors(broken))


def test_every_container_is_non_root_limited_and_pinned():
    spec = load("inferenceservice.yaml")["spec"]
    for component in ("predictor", "transformer"):
        (container,) = spec[component]["containers"]
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["runAsUser"] != 0
        assert not container["image"].endswith(":latest") and ":" in container["image"]
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["limits"]) and resources["requests"]
    for component in ("predictor", "transformer"):
        assert spec[component]["serviceAccountName"] == "klinecast-models"
        assert 1 <= spec[component]["minReplicas"] <= spec[component]["maxReplicas"]


def test_service_account_holds_the_s3_secret_and_the_secret_is_a_template():
    assert load("serviceaccount.yaml")["secrets"] == [{"name": "klinecast-s3"}]
    secret = load("s3-secret.template.yaml")
    assert "stringData" not in secret and "data" not in secret  # no credential in git
    keys = secret["metadata"]["annotations"]["klinecast.io/keys"]
    assert keys == "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY"


def stages(text: str) -> dict[str, str]:
    """The Dockerfile's stages by name: {name: the stage's text}."""
    parts = re.split(r"^FROM (\S+) AS (\S+)$", text, flags=re.M)
    return {parts[i + 1]: parts[i + 2] for i in range(1, len(parts) - 1, 3)}


@pytest.mark.parametrize(
    ("target", "extras", "entry_point"),
    [
        ("serving", "serving", '["python", "-m", "klinecast.serving.server"]'),
        ("pipeline", "pipeline,trader", '["klinecast"]'),
    ],
)
def test_dockerfile_targets(target, extras, entry_point):
    text = (REPO / "Dockerfile").read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert bases and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", bases[0])  # pinned
    assert "latest" not in text
    for line in re.findall(r"^(?:ARG|ENV)\b.*$", text, re.M):
        assert not re.search(r"(?i)(secret|password|token|key)\s*=", line), line
    found = stages(text)
    assert re.search(rf"^FROM runtime AS {target}$", text, re.M)  # the runtime base, no build tools
    image = found[target]
    assert re.findall(r"^USER (\S+)", image, re.M) == ["10001"]
    assert f"ENTRYPOINT {entry_point}" in image
    # its dependencies at the lock's versions, then the project's wheel over the stand-in
    deps = found[f"{target}-deps"]
    lock = "--constraint requirements.lock"
    assert re.findall(r"pip install --no-cache-dir (.+)$", deps, re.M) == [
        f'{lock} --no-build-isolation ".[{extras}]"'
    ]
    assert f"COPY --from={target}-deps /opt/venv /opt/venv" in image
    assert (
        "COPY --from=wheel /wheels /tmp/wheels" in image and "--no-deps --force-reinstall" in image
    )
    # the dependencies' layers depend on pyproject.toml and the lock alone
    assert re.findall(r"^COPY (.+)$", found["build"], re.M) == [
        "pyproject.toml requirements.lock ./"
    ]
    assert re.findall(r"^COPY (.+)$", found["wheel"], re.M) == ["README.md ./", "src ./src"]
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "build", "data", "models"} <= ignored  # no venv, tools or data


def serving_closure() -> set[str]:
    """Every distribution the serving image installs: klinecast[serving] and its dependencies."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found, todo = set(), [("klinecast", {"serving"})]
    while todo:
        name, extras = todo.pop()
        try:
            requirements = requires(name) or []
        except PackageNotFoundError:
            continue
        for line in requirements:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is not None and not any(
                marker.evaluate({"extra": extra}) for extra in (extras or {""})
            ):
                continue
            key = canonicalize_name(requirement.name)
            if key not in found:
                found.add(key)
                todo.append((requirement.name, set(requirement.extras)))
    return found


def test_serving_imports_only_what_the_serving_image_installs():
    """The serving image has klinecast[serving] only: a module of the pipeline's or the
    trader's extras (sklearn, optuna, ...) that a serving import reaches would fail there.
    Those packages are blocked here while the servers' modules import (xgboost's optional
    sklearn import included), so such a reach fails this test instead of the image."""
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    closure = serving_closure()
    blocked = sorted(
        top
        for top, distributions in packages_distributions().items()
        if not {canonicalize_name(d) for d in distributions} & (closure | {"klinecast"})
        and top.isidentifier()
    )
    assert {"sklearn", "optuna", "binance", "matplotlib", "arch"} <= set(blocked)
    code = (
        "import sys\n"
        f"blocked = set({blocked!r})\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in blocked:\n"
        "            raise ModuleNotFoundError(f'{name} is not in the serving image')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import klinecast.serving.server, klinecast.serving.predictor\n"
        "import klinecast.serving.transformer, klinecast.serving.online_store\n"
        "print('imported')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "imported", out.stderr[-2000:]


def test_the_serving_import_check_sees_a_reach_into_the_pipeline():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'sklearn':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import klinecast.research.evaluation\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and "sklearn" in out.stderr
