"""requirements.lock pins every package of every extra, within pyproject.toml's ranges."""

import re
import tomllib
from importlib.metadata import version

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from klinecast.platform.kfp.runs import compiled
from tests.support.paths import REPO

PROJECT = "klinecast (pyproject.toml)"


def read_lock(text: str) -> dict[str, tuple[str, set[str]]]:
    """name -> (pinned version, the names it is required by), from uv's annotated output."""
    pins: dict[str, tuple[str, set[str]]] = {}
    current = None
    for line in text.splitlines():
        pin = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if pin:
            current = canonicalize_name(pin[1])
            pins[current] = (pin[2], set())
            continue
        via = re.match(r"^\s+#\s+(?:via\s+)?([^\s#].*)$", line)
        if current and via and via[1] != "via":
            parent = via[1].strip()
            pins[current][1].add(parent if parent == PROJECT else canonicalize_name(parent))
    return pins


def project_requirements(pyproject: dict) -> list[Requirement]:
    project = pyproject["project"]
    texts = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        texts += [t for t in extra if not t.startswith(project["name"])]
    return [Requirement(t) for t in texts]


def disagreements(pyproject: dict, lock: dict) -> list[str]:
    """Every way the lock fails pyproject: a requirement unpinned or pinned outside its range,
    and a pin that nothing in the project needs any more."""
    found = []
    direct = {canonicalize_name(r.name) for r in project_requirements(pyproject)}
    for requirement in project_requirements(pyproject):
        name = canonicalize_name(requirement.name)
        if name not in lock:
            found.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(lock[name][0], prereleases=True):
            found.append(f"{requirement}: the lock pins {lock[name][0]}")
    for name, (_, parents) in lock.items():
        needed = {p for p in parents if p in lock} | (
            {PROJECT} & parents if name in direct else set()
        )
        if not needed:
            found.append(f"{name} is pinned but required by {sorted(parents) or 'nothing'}")
    return found


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def lock():
    return read_lock((REPO / "requirements.lock").read_text())


def test_lock_agrees_with_pyproject(pyproject, lock):
    assert disagreements(pyproject, lock) == [], "run `make lock`"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["project"]["dependencies"].append("polars>=1"), "polars>=1 is not"),
        (
            lambda p: p["project"]["dependencies"].__setitem__(0, "numpy>=1.26,<2"),
            "numpy<2,>=1.26: the lock pins",
        ),
        (
            lambda p: p["project"]["optional-dependencies"]["test"].remove("locust>=2.20,<3"),
            "locust is pinned but required by",
        ),
    ],
)
def test_the_check_catches_a_lock_that_pyproject_outgrew(pyproject, lock, edit, message):
    changed = tomllib.loads((REPO / "pyproject.toml").read_text())
    edit(changed)
    assert any(message in problem for problem in disagreements(changed, lock)), message


def test_this_environment_is_the_locked_one(lock):
    for name in ("kfp", "kserve", "xgboost-cpu", "optuna", "pandas", "numpy", "ta-lib"):
        assert version(name) == lock[name][0], f"{name}: run `make setup` to install the lock"


@pytest.mark.parametrize("name", ["training", "refresh"])
def test_compiled_pipelines_were_written_by_the_locked_kfp(lock, name):
    spec = next(yaml.safe_load_all(compiled(name).read_text()))
    assert spec["sdkVersion"] == f"kfp-{lock['kfp'][0]}"


def test_every_install_uses_the_lock():
    makefile = (REPO / "Makefile").read_text()
    assert "--constraint $(LOCK)" in makefile and "LOCK := requirements.lock" in makefile
    installs = re.findall(r"pip install (.*)", (REPO / "Dockerfile").read_text())
    resolving = [i for i in installs if "--no-deps" not in i]
    extras = {e for i in resolving for e in re.findall(r'"\.\[(.+?)\]"', i)}
    assert extras == {"pipeline,trader", "serving"}, extras  # both images' installs
    # an install that resolves dependencies takes the lock; --no-deps installs only the project
    assert all("--constraint requirements.lock" in i for i in resolving), resolving
