"""The portfolio stage: every symbol's out-of-sample result combined into the book, with the
book's own gate beside the symbols'."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from klinecast import atomic
from klinecast.book import SymbolFiles
from klinecast.config import Params
from klinecast.release import portfolio_page
from klinecast.research.portfolio import daily_equity


@dataclass(frozen=True)
class PortfolioFiles:
    figures: Path  # portfolio.json: the book's figures and gates, the symbols traded
    equity: Path  # the book's daily equity (dvc plots' CSV)
    page: Path  # the book's HTML page


def portfolio(
    params: Params, *, files_of: Callable[[str], SymbolFiles], out: PortfolioFiles
) -> portfolio_page.BookResult:
    """Reads each symbol's evaluate, tune and publish outputs, combines their after-cost hourly
    returns at the book's weights (and the baselines the same way), tests the book against
    every declared baseline with the gate's bootstrap, and writes the figures, the equity and
    the page.

    Raises:
        KlinecastError: a symbol's outputs are missing or unreadable (the message names it).
    """
    book, returns = portfolio_page.evaluate_book(params, files_of)
    atomic.write_json(out.figures, book.as_dict())
    atomic.atomic_write(out.equity, lambda tmp: daily_equity(returns).to_csv(tmp))
    page = portfolio_page.render(book, returns)
    atomic.atomic_write(out.page, lambda tmp: tmp.write_text(page))
    return book
