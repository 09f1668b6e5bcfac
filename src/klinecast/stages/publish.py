"""The publish stage: a registry version always; the production pointer only past the gate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from klinecast import atomic
from klinecast.book import Book
from klinecast.config import Params
from klinecast.release.promotion import Promotion, publish_artifact
from klinecast.stages.files import require


def publish(
    params: Params, symbol: str, *, artifact: Path, receipt: Path, registry: str | None = None
) -> Promotion:
    """Copies the symbol's artifact into the registry under its model's name as a new
    immutable version, and moves production to it only when the gate passes; writes the
    receipt (what was published, and the gate's verdict and reasons).

    Args:
        registry: the registry's URI (default: publish.registry).

    Raises:
        KlinecastError: the artifact is missing or incomplete, or the upload failed;
            production is untouched.
    """
    settings = params.publish
    if registry:
        settings = dataclasses.replace(settings, registry=registry)
    promotion = publish_artifact(
        require(artifact, produced_by=f"klinecast train --symbol {symbol}"),
        settings,
        model_name=Book(params).model_name(symbol),
    )
    atomic.write_json(receipt, promotion.as_dict())
    return promotion
