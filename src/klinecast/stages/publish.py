"""The publish stage: a registry version always; the production pointer only past the gate,
which a book holds to its multiplicity too (Holm over its symbols' p-values)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from klinecast import atomic
from klinecast.book import Book
from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.release.promotion import Promotion, book_verdicts, publish_artifact
from klinecast.stages.files import require


def publish(
    params: Params,
    symbol: str,
    *,
    artifacts: Mapping[str, Path],
    receipt: Path,
    registry: str | None = None,
) -> Promotion:
    """Copies the symbol's artifact into the registry under its model's name as an immutable
    version (publishing the same bytes again adds none), and moves production to it only when
    its gate passes among the book's: its own conditions, and Holm's step-down over every
    symbol's largest p-value (`release.promotion.book_verdicts`); writes the receipt (what was
    published, the gate's verdict and reasons).

    Args:
        artifacts: every symbol of the book -> its trained artifact (train's outputs).
        registry: the registry's URI (default: publish.registry).

    Raises:
        KlinecastError: an artifact is missing or incomplete, or the upload failed; production
            is untouched.
    """
    settings = params.publish
    if registry:
        settings = dataclasses.replace(settings, registry=registry)
    book = Book(params)
    for name, artifact in artifacts.items():
        require(artifact, produced_by=f"klinecast train --symbol {name}")
    missing = set(book.symbols) - set(artifacts)
    if missing:
        raise KlinecastError(f"the book's gate needs every symbol's model; none of {sorted(missing)}")
    verdict = book_verdicts(artifacts, settings)[symbol]
    promotion = publish_artifact(
        artifacts[symbol], settings, model_name=book.model_name(symbol), verdict=verdict
    )
    atomic.write_json(receipt, promotion.as_dict())
    return promotion
