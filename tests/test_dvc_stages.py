"""dvc.yaml's code deps: a stage reruns when any library module its result depends on changes.

A stage whose deps miss a module it uses is skipped by `dvc repro` after that module changed,
and its stale outputs look current (the horizon labels and the purge, in features.py, were once
missing from tune, evaluate and train).

Every dvc.yaml stage depends on every library module its command uses (derived from the
imports), so `dvc repro` reruns it when one changes.
"""

import ast
from pathlib import Path

import pytest
import yaml

from tests.support.paths import REPO

SRC = REPO / "src"
#: The stage function behind each stage's `klinecast <command>`.
STAGE_ROOTS = {
    "candles": ["klinecast.stages.candles"],
    "reference": ["klinecast.stages.candles"],
    "pool": ["klinecast.stages.pool", "klinecast.research.tuning"],
    "features": ["klinecast.stages.features"],
    "tune": ["klinecast.stages.tune"],
    "evaluate": ["klinecast.stages.evaluate"],
    "train": ["klinecast.stages.train"],
    "publish": ["klinecast.stages.publish"],
    "report": ["klinecast.stages.report"],
    "portfolio": ["klinecast.stages.portfolio"],
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
    """The book, the cross-asset reference and the pool are one for all symbols; adding a
    symbol reruns no other symbol's stage (a model's name no longer depends on the count)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    fanned = {name for name, stage in stages.items() if stage.get("foreach") == "${data.symbols}"}
    assert fanned == set(STAGE_ROOTS) - {"portfolio", "reference", "pool"}
    for name in fanned - {"publish"}:
        assert "data.symbols" not in stages[name]["do"].get("params", [])
    # publishing weighs every symbol's model (the book's gate): adding a symbol reruns each
    # symbol's publish, in seconds, and publishing the same bytes again adds no version
    assert "data.symbols" in stages["publish"]["do"]["params"]


def layout_files(stage: str) -> tuple[set[str], set[str]]:
    """The data files a stage reads and writes, as klinecast.book.Layout places them (a
    foreach stage's for the symbol `${item}`, as dvc.yaml writes it)."""
    from klinecast.book import LAYOUT
    from klinecast.research.tuning import TuningFiles

    s, book = LAYOUT.symbol("${item}"), LAYOUT.book
    plots = TuningFiles.in_dir(s.tune_dir)
    files = {
        "candles": ({s.raw}, {s.candles, s.candles_report}),
        "reference": ({book.raw}, {book.reference}),
        "features": ({s.candles, book.reference}, {s.features, s.features_report}),
        "pool": ({Path("data")}, {book.pool}),
        "tune": (
            {s.features, book.pool},
            {s.best_params, s.trials, plots.history, plots.importances, plots.parallel_coordinate},
        ),
        "evaluate": ({s.features, book.pool, s.best_params}, {s.metrics, s.predictions, s.equity}),
        "train": ({s.features, book.pool, s.best_params, s.metrics}, {s.candidate}),
        "publish": ({Path("models")}, {s.receipt}),  # every symbol's model: the book's gate
        "report": (
            {s.predictions, s.metrics, s.trials, s.receipt, s.candidate},
            {s.report},
        ),
        "portfolio": (
            {book.reports},
            {book.portfolio, book.portfolio_equity, book.portfolio_page},
        ),
    }[stage]
    return tuple({str(path) for path in group} for group in files)


def _names(entries: list) -> set[str]:
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries}


@pytest.mark.parametrize("stage", sorted(STAGE_ROOTS))
def test_the_files_of_each_stage_are_where_the_layout_says(stage):
    """The CLI's stage commands read and write where klinecast.book.Layout says; dvc.yaml must
    name the same files, or DVC would track files nothing writes."""
    definition = STAGES[stage]
    reads = {d for d in definition["deps"] if not d.startswith("src/")}
    writes = _names(definition.get("outs", [])) | _names(definition.get("metrics", []))
    assert (reads, writes) == layout_files(stage)
