"""dvc.yaml's code deps: a stage reruns when any library module its result depends on changes.

A stage whose deps miss a module it uses is skipped by `dvc repro` after that module changed,
and its stale outputs look current (the horizon labels and the purge, in features.py, were once
missing from tune, evaluate and train).
"""

import ast
from pathlib import Path

import pytest
import yaml

from tests.support.paths import REPO

SRC = REPO / "src"
#: The library call behind each stage's `klinecast <command>`.
STAGE_ROOTS = {
    "candles": ["klinecast.data.build"],
    "reference": ["klinecast.data.build"],
    "pool": ["klinecast.research.pooled", "klinecast.layout"],
    "features": ["klinecast.research.features"],
    "tune": ["klinecast.research.tuning"],
    "evaluate": ["klinecast.research.evaluation"],
    "train": ["klinecast.release.registry", "klinecast.release.metadata"],
    "publish": ["klinecast.release.promotion"],
    "report": ["klinecast.release.report"],
    "portfolio": ["klinecast.release.book"],
}
#: Plumbing that does not decide a result (errors, atomic writes, retries, the params loader,
#: whose values DVC tracks through `params:`); their imports are not followed either.
PLUMBING = {"klinecast", "klinecast.atomic", "klinecast.config", "klinecast.errors",
            "klinecast.redaction", "klinecast.retries"}  # fmt: skip


def module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def klinecast_imports(path: Path, *, nested: bool) -> set[str]:
    """Library modules one file imports: at module level, and with `nested` inside functions
    too (a stage's own entry module calls what it imports there)."""
    found = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree) if nested else tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("klinecast")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("klinecast"):
                found.add(node.module)
                found |= {
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if module_file(f"{node.module}.{a.name}")
                }
    return found


def needed_files(roots: list[str]) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name in PLUMBING or module_file(name) is None:
            continue
        seen.add(name)
        todo += klinecast_imports(module_file(name), nested=name in roots)
    return {str(module_file(name).relative_to(REPO)) for name in seen}


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


#: Each stage's definition; a foreach stage's is its `do` (the same for every symbol).
STAGES = {
    name: stage.get("do", stage)
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items()
}


def test_every_stage_is_mapped():
    assert set(STAGES) == set(STAGE_ROOTS)


@pytest.mark.parametrize("stage", sorted(STAGE_ROOTS))
def test_each_stage_depends_on_every_module_it_uses(stage):
    deps = STAGES[stage]["deps"]
    missing = sorted(p for p in needed_files(STAGE_ROOTS[stage]) if not covered(p, deps))
    assert missing == [], f"dvc.yaml stage {stage!r} lacks deps {missing}"


def test_the_check_sees_a_missing_module():
    deps = [d for d in STAGES["tune"]["deps"] if d != "src/klinecast/research"]
    needed = needed_files(STAGE_ROOTS["tune"])
    assert "src/klinecast/research/features.py" in needed
    assert not covered("src/klinecast/research/features.py", deps)
    assert covered("src/klinecast/research/features.py", STAGES["tune"]["deps"])


def test_every_stage_but_the_shared_ones_fans_out_over_the_symbols():
    """The book, the cross-asset reference and the pool's record are one for all symbols."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    fanned = {name for name, stage in stages.items() if stage.get("foreach") == "${data.symbols}"}
    assert fanned == set(STAGE_ROOTS) - {"portfolio", "reference", "pool"}
    for name in fanned - {"train", "publish"}:  # adding a symbol must not rerun the others'
        assert "data.symbols" not in stages[name]["do"].get("params", [])
    for name in ("train", "publish"):  # the model's name depends on how many symbols there are
        assert "data.symbols" in stages[name]["do"]["params"]
