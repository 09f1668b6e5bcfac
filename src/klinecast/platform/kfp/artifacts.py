"""What the pipelines pass between their symbol branches: each symbol's artifacts gathered in
one folder laid out as a checkout lays them out (`klinecast.book.Layout`), so that a stage of
the book reads them as `dvc repro`'s does (each symbol's research its features, or a pooled
model every symbol's; the portfolio every symbol's evaluation and receipt)."""

from __future__ import annotations

import shutil
from pathlib import Path

from klinecast.book import Book, Layout
from klinecast.config import Params
from klinecast.errors import KlinecastError


def lay_out(params: Params, root: Path, **collected) -> Layout:
    """Copies each collected artifact (its metadata names its symbol) to where the layout rooted
    at root keeps that file of that symbol.

    Args:
        collected: a `SymbolFiles` field (features, predictions, metrics, receipt, best_params)
            -> that output of every symbol's task (dsl.Collected).

    Raises:
        KlinecastError: the artifacts are not one per symbol of the book.
    """
    book, layout = Book(params), Layout(Path(root))
    for field, artifacts in collected.items():
        given = sorted(artifact.metadata["symbol"] for artifact in artifacts)
        if given != sorted(book.symbols):
            raise KlinecastError(
                f"the {field} collected are of {given}, not of the book's {sorted(book.symbols)}"
            )
        for artifact in artifacts:
            target = getattr(layout.symbol(artifact.metadata["symbol"]), field)
            target.parent.mkdir(parents=True, exist_ok=True)
            if Path(artifact.path).is_dir():  # a model artifact
                shutil.copytree(artifact.path, target, dirs_exist_ok=True)
            else:
                shutil.copyfile(artifact.path, target)
    return layout


def include(layout: Layout, root: Path) -> Layout:
    """Copies the files of another laid-out folder (the receipts publish wrote) into layout's."""
    shutil.copytree(root, layout.root, dirs_exist_ok=True)
    return layout
