"""The library's layout: packages by lifecycle stage, each importing only earlier stages.

Every import counts here, also those inside functions and under `if TYPE_CHECKING:`: a lazy
import is still a dependency, only a later one.

The packages by stage, no stage importing a later one, no import cycle between modules or stages
(every import counts, lazy ones too), a docstring in every module; and that each check sees a
planted violation.
"""

import ast
from pathlib import Path

import pytest

from tests.support.imports import imported_names
from tests.support.paths import REPO

SOURCE = REPO / "src/klinecast"
#: The stages in lifecycle order; a module may import its own stage and earlier ones only.
#: The foundation (params, the book, environment names, errors, atomic writes, retries,
#: redaction, the indicator catalogue, page helpers) sits under all of them; `stages` (one
#: function per stage) over the research and release code it composes; the platform (the
#: Kubeflow components and pipelines among it) over the stages; the CLI, which parses and
#: calls, above all.
STAGES = (
    "foundation",
    "data",
    "research",
    "release",
    "stages",
    "serving",
    "trader",
    "monitor",
    "platform",
    "cli",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted(SOURCE.rglob("*.py"))}


def stage_of(module: str) -> str:
    """The stage a klinecast module belongs to: its package, or the foundation."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (SOURCE / parts[1]).is_dir()):
        return parts[1]
    return "foundation"


def imports_of(path: Path) -> set[str]:
    """Every klinecast module one file imports, wherever the import sits."""
    return {name for name in imported_names(path, with_members=True) if name in MODULES}


def graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {name: imports_of(path) - {name} for name, path in modules.items()}


def backward_imports(edges: dict[str, set[str]]) -> list[str]:
    """Each import of a later stage than the importer's own, as 'a (stage) -> b (stage)'."""
    rank = {stage: i for i, stage in enumerate(STAGES)}
    found = []
    for name, targets in sorted(edges.items()):
        for target in sorted(targets):
            if target == "klinecast":  # the package itself: its docstring, nothing else
                continue
            if rank[stage_of(target)] > rank[stage_of(name)]:
                found.append(f"{name} ({stage_of(name)}) -> {target} ({stage_of(target)})")
    return found


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> list[str] | None:
        state[name] = "open"
        for target in sorted(edges.get(name, ())):
            if state.get(target) == "open":
                return [*trail[trail.index(target) :], target]
            if target not in state:
                found = visit(target, [*trail, target])
                if found:
                    return found
        state[name] = "done"
        return None

    for name in sorted(edges):
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return None


def test_every_package_is_a_known_stage_and_says_what_it_owns():
    packages = {p.name for p in SOURCE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(STAGES) - {"foundation"}
    for name, path in MODULES.items():
        assert ast.get_docstring(ast.parse(path.read_text())), f"{name} has no docstring"


def test_no_stage_imports_a_later_one():
    assert backward_imports(graph(MODULES)) == []


def test_no_import_cycle_between_modules():
    assert cycle(graph(MODULES)) is None


def test_no_import_cycle_between_stages():
    edges = graph(MODULES)
    stages: dict[str, set[str]] = {}
    for name, targets in edges.items():
        stages.setdefault(stage_of(name), set()).update(
            stage_of(t) for t in targets if t != "klinecast"
        )
    assert cycle({s: t - {s} for s, t in stages.items()}) is None


def test_serving_imports_nothing_of_the_trader():
    edges = graph(MODULES)
    serving = {n: t for n, t in edges.items() if stage_of(n) == "serving"}
    assert not [t for targets in serving.values() for t in targets if stage_of(t) == "trader"]


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"klinecast.data.ingest": {"klinecast.research.features"}}, "data) -> klinecast.research"),
        ({"klinecast.serving.x": {"klinecast.trader.cycle"}}, "(serving) -> klinecast.trader"),
        ({"klinecast.config": {"klinecast.research.features"}}, "(foundation) -> klinecast"),
    ],
)
def test_the_order_check_sees_a_backward_import(edges, expected):
    found = backward_imports(edges)
    assert len(found) == 1 and expected in found[0]


def test_the_cycle_check_sees_a_cycle_through_a_lazy_import(tmp_path):
    """evaluation -> metadata -> evaluation once hid in a function's import and TYPE_CHECKING."""
    lazy = tmp_path / "evaluation.py"
    lazy.write_text("def f():\n    from klinecast.release.metadata import final_model\n")
    typed = tmp_path / "metadata.py"
    typed.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from klinecast.research.evaluation import Evaluation\n"
    )
    edges = graph(MODULES) | {
        "klinecast.research.evaluation": imports_of(lazy),
        "klinecast.release.metadata": imports_of(typed),
    }
    found = cycle(edges)
    assert found is not None and found[0] == found[-1]
    assert set(found) == {"klinecast.research.evaluation", "klinecast.release.metadata"}


#: What would let the library import code from outside the package (a repository folder put on
#: sys.path, a module found by name at run time): then the checks above could not see it.
RUNTIME_IMPORTS = ("importlib", "__import__", "sys.path", "runpy", "imp")
#: ... but reading an installed package's version is not importing code.
METADATA = "importlib.metadata"


def runtime_imports(source: str) -> list[tuple[int, str]]:
    """Each use of RUNTIME_IMPORTS in a module's source, as (line, what)."""
    tree = ast.parse(source)
    attributes = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names = [f"{node.value.id}.{node.attr}"]
        elif isinstance(node, ast.Name) and id(node) not in attributes:
            names = [node.id]
        else:
            continue
        found += [
            (node.lineno, name)
            for name in names
            if (name in RUNTIME_IMPORTS or name.split(".")[0] in RUNTIME_IMPORTS)
            and not name.startswith(METADATA)
        ]
    return sorted(found)


def test_the_library_imports_nothing_at_run_time_by_name():
    """The pipelines live in the package (klinecast.platform.kfp) and are imported like any
    module: nothing edits sys.path or imports a folder of the repository."""
    found = {name: runtime_imports(path.read_text()) for name, path in MODULES.items()}
    assert {name: hits for name, hits in found.items() if hits} == {}


def test_the_runtime_import_check_sees_one():
    sneaky = (
        "import sys\nimport importlib\nsys.path.insert(0, 'pipelines')\n"
        "importlib.import_module('training_pipeline')\n"
    )
    assert runtime_imports(sneaky) == [
        (2, "importlib"), (3, "sys.path"), (4, "importlib.import_module")
    ]


def test_the_pipelines_are_part_of_the_package():
    kfp = {name for name in MODULES if name.startswith("klinecast.platform.kfp.")}
    assert {"klinecast.platform.kfp.training", "klinecast.platform.kfp.refresh"} <= kfp
    assert not (REPO / "pipelines").exists() and not (REPO / "components").exists()


#: The CLI commands that run a stage of klinecast.stages, by the function that runs them.
STAGE_COMMANDS = {
    "cli/data.py": ("run_ingest", "run_candles", "run_features"),
    "cli/model.py": ("run_tune", "run_evaluate", "run_train", "run_publish", "run_report",
                     "run_tune_trial"),  # fmt: skip
    "cli/portfolio.py": ("run_pool", "run_portfolio"),
}
#: "About 30 lines": parse, call the stage function, write or print what it returned.
ADAPTER_LINES = 35


def function_lengths(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text())
    return {
        node.name: node.end_lineno - node.lineno + 1
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }


def test_the_cli_commands_and_kfp_components_are_thin_adapters_over_the_stages():
    long = {}
    for module, names in STAGE_COMMANDS.items():
        lengths = function_lengths(SOURCE / module)
        long |= {f"{module}:{n}": lengths[n] for n in names if lengths[n] > ADAPTER_LINES}
    for module in ("data_components.py", "model_components.py"):
        lengths = function_lengths(SOURCE / "platform/kfp" / module)
        long |= {f"{module}:{n}": k for n, k in lengths.items() if k > ADAPTER_LINES}
    assert long == {}
    # and each stage's component calls its stage function
    components = (SOURCE / "platform/kfp/model_components.py").read_text()
    components += (SOURCE / "platform/kfp/data_components.py").read_text()
    for stage in ("ingest", "candles", "features", "pool", "tune", "evaluate", "train",
                  "publish", "report", "portfolio"):  # fmt: skip
        assert f"from klinecast.stages.{stage} import" in components, stage


def count_branches(source: str) -> list[int]:
    """Lines that compare how many symbols there are with a number (`len(symbols) == 1`,
    `len(self.models) > 1`): a branch on one symbol or many."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        counts = [
            side for side in sides
            if isinstance(side, ast.Call) and getattr(side.func, "id", None) == "len"
            and any(word in ast.unparse(side.args[0]).lower() for word in ("symbol", "models"))
        ]  # fmt: skip
        if counts and any(isinstance(side, ast.Constant) for side in sides):
            found.append(node.lineno)
    return found


def test_no_module_but_the_book_branches_on_how_many_symbols_there_are():
    """One symbol is a book of one: only klinecast.book may ask how many there are (and a
    ledger migration, history that checks the data it found)."""
    found = {
        name: lines
        for name, path in MODULES.items()
        if name != "klinecast.book"
        and ".migrations.versions." not in name
        and (lines := count_branches(path.read_text()))
    }
    assert found == {}


def test_the_count_check_sees_a_branch():
    assert count_branches("if len(params.data.symbols) == 1:\n    pass\n") == [1]
    assert count_branches("x = len(symbols) > 1 and y\n") == [1]
    assert count_branches("per_symbol = len(self.models) > 1\n") == [1]
    assert count_branches("if len(histories) != len(symbols):\n    pass\n") == []
