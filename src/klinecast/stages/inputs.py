"""What the research stages read: every symbol's features, and the pooled model they may form."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from klinecast.book import Book, Layout
from klinecast.config import Params
from klinecast.research.pooled import Pool


@dataclass(frozen=True)
class BookFeatures:
    """Each symbol's feature file (the features stage's output): a symbol's own model reads
    its own, a pooled model every symbol's."""

    paths: dict[str, Path]

    @classmethod
    def at(cls, params: Params, layout: Layout) -> BookFeatures:
        """Where a checkout keeps them (dvc.yaml's features stage), for the book of params."""
        book = Book(params)
        return cls({symbol: book.files(symbol, layout).features for symbol in book.symbols})

    def of(self, symbol: str) -> Path:
        return self.paths[symbol]

    def pool(self, params: Params) -> Pool | None:
        """The pooled model's symbols, when params (the book's) pool them; else None.

        Raises:
            KlinecastError: a pooled symbol's feature file is missing.
        """
        if params.tune.pooling != "pooled":
            return None
        return Pool.of(params, self.of)

