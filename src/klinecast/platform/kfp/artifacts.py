"""What the pipelines pass between their symbol branches: every symbol's features in one
folder, laid out as a checkout lays them out (`klinecast.book.Layout`), so each symbol's research
reads its own (or a pooled model every symbol's) as `dvc repro` does."""

from __future__ import annotations

import shutil
from pathlib import Path

from klinecast.book import Layout
from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.stages.inputs import BookFeatures


def book_features(params: Params, root: Path, features) -> tuple[BookFeatures, Layout]:
    """Copies each features artifact (its metadata names its symbol) to where the layout
    rooted at root keeps that symbol's features.

    Args:
        features: the features component's outputs, one per symbol (dsl.Collected).

    Raises:
        KlinecastError: a symbol of the book has no features, or one has two.
    """
    layout = Layout(Path(root))
    owned = BookFeatures.at(params, layout)
    given = [artifact.metadata["symbol"] for artifact in features]
    if sorted(given) != sorted(owned.paths):
        raise KlinecastError(
            f"the features collected are of {sorted(given)}, not the book's {sorted(owned.paths)}"
        )
    for artifact in features:
        target = owned.of(artifact.metadata["symbol"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact.path, target)
    return owned, layout
