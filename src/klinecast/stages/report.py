"""The report stage: one self-contained HTML page of a symbol's research."""

from __future__ import annotations

from pathlib import Path

from klinecast import atomic
from klinecast.release import report as pages


def report(
    *,
    predictions: Path,
    metrics: Path,
    trials: Path,
    artifact: Path,
    out: Path,
    receipt: Path | None = None,
) -> str:
    """The equity, drawdown, accuracy, importance and tuning of one model, with the gate's
    verdict (from publish's receipt, when given), written to out.

    Returns:
        The page.

    Raises:
        KlinecastError: an input is missing or unreadable.
    """
    inputs = pages.ReportInputs.read(
        predictions=predictions, metrics=metrics, trials=trials, artifact=artifact,
        receipt=receipt,
    )  # fmt: skip
    page = pages.render(inputs)
    atomic.atomic_write(out, lambda tmp: tmp.write_text(page))
    return page
