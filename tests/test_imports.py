"""What the library imports: every third-party package is declared in pyproject.toml, and every
module imports on its own without the CLI (and without kfp or kserve unless it needs them).
The import graph's order and cycles: test_architecture.py."""

import json
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.helpers import explain
from tests.support.imports import imported_names
from tests.support.paths import REPO

SOURCE = REPO / "src/klinecast"


def declared_distributions() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_every_imported_package_is_declared():
    declared = declared_distributions()
    providers = packages_distributions()
    missing = {}
    for path in SOURCE.rglob("*.py"):
        for name in imported_names(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top == "klinecast":
                continue
            distributions = {canonicalize_name(d) for d in providers.get(top, [top])}
            if not distributions & declared:
                missing.setdefault(top, set()).add(str(path.relative_to(REPO)))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


LIBRARY = sorted(
    ".".join(p.relative_to(REPO / "src").with_suffix("").parts).removesuffix(".__init__")
    for p in SOURCE.rglob("*.py")
    if "cli" not in p.relative_to(SOURCE).parts
)
#: The only library modules that may load kfp or kserve when imported.
MAY_IMPORT = {
    "kserve": ("klinecast.serving.",),
    "kfp": ("klinecast.platform.kfp.",),
}

# Imports each module in a fresh child (os.fork of an interpreter that has loaded nothing of
# klinecast) and reports what it pulled in: the same as `python -c "import klinecast.<module>"`.
# The parent loads the heaviest third-party packages first, none of which loads kfp, kserve or
# klinecast, so each child does not load them again: a module's own names still resolve only
# through its own imports, so nothing a module lacks is hidden.
PRELOADED = ("numpy", "pandas", "scipy.stats", "pyarrow", "xgboost", "sqlalchemy", "optuna",
             "matplotlib.pyplot", "boto3", "requests", "talib")  # fmt: skip
PROBE = """
import importlib, json, os, sys
for heavy in sys.argv[1].split(","):
    importlib.import_module(heavy)
assert not [m for m in sys.modules if m.split(".")[0] in ("kfp", "kserve", "klinecast")]
for name in sys.argv[2:]:
    read, write = os.pipe()
    if os.fork() == 0:
        try:
            __import__(name)
            found = sorted(m for m in sys.modules if m.split(".")[0] in ("kfp", "kserve")
                           or m.startswith("klinecast.cli"))
        except BaseException as exc:
            found = {"error": repr(exc)}
        os.write(write, json.dumps(found).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        print(json.dumps([name, json.loads(answer.read())]))
    os.wait()
"""


@pytest.mark.slow
def test_every_library_module_imports_alone_without_the_cli_or_what_it_does_not_need():
    # two probes side by side (the machines have two cores), each over half of the modules
    probes = [
        subprocess.Popen(
            [sys.executable, "-c", PROBE, ",".join(PRELOADED), *LIBRARY[half::2]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for half in (0, 1)
    ]
    loaded = {}
    for probe in probes:
        out, err = probe.communicate(timeout=600)
        assert probe.returncode == 0, err
        loaded |= dict(json.loads(line) for line in out.splitlines())
    assert set(loaded) == set(LIBRARY)
    failed = {name: found for name, found in loaded.items() if isinstance(found, dict)}
    assert not failed, f"modules that do not import on their own: {failed}"
    for name, found in loaded.items():
        assert not [m for m in found if m.startswith("klinecast.cli")], f"{name} loads the CLI"
        for package, allowed in MAY_IMPORT.items():
            if any(m.split(".")[0] == package for m in found):
                assert name.startswith(allowed), f"{name} loads {package} at import"


COMMANDS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py") if "__main__" in p.read_text())


@pytest.mark.parametrize("script", COMMANDS)
def test_every_benchmark_command_loads_against_the_library(script):
    """The benchmarks run only by hand (make bench-*): at least their imports and arguments
    must still fit the library they call. (locustfile.py is run by bench_serve.py.)"""
    argv = [sys.executable, str(REPO / "benchmarks" / script), "--help"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, explain(done)
    assert "usage:" in done.stdout
