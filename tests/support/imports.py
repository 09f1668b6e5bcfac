"""What a Python file imports, read from its syntax tree (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path


def imported_names(path: Path, *, with_members: bool = False) -> set[str]:
    """The modules one file imports by absolute name, at any depth of the file (inside
    functions and under `if TYPE_CHECKING:` too).

    Args:
        with_members: also `a.b.c` for `from a.b import c` (c may be a module).
    """
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if with_members:
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names
