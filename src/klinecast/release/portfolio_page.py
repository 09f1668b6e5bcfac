"""The book's research result over every symbol: each symbol's evaluation and gate, the portfolio's figures
against the baselines combined the same way, and the portfolio's own gate
(reports/portfolio.json, reports/portfolio.html).

The portfolio gate asks of the book what the publish gate asks of one model: that it beat
every baseline declared for any of its symbols (a meta-labelled symbol's own primary only when
every symbol has it) by publish.gate_min_excess_return, with the
largest one-sided bootstrap p-value at most publish.gate_max_p_value. It is reported beside
the symbols' gates, never instead of them: a symbol is traded only when its own model passed
(`traded`), whatever the book did.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from klinecast.book import Book, SymbolFiles
from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.pages import REPORT_STYLE, img, png
from klinecast.release.gate import Gate, significance_conditions
from klinecast.research import portfolio
from klinecast.research.portfolio import BookMetrics
from klinecast.research.scorecard import BaselineTest, Scorecard


@dataclass(frozen=True)
class SymbolLine:
    """One symbol's row of the book: its share, its data, its result and its gate."""

    symbol: str
    weight: float
    first_usable_hour: str | None
    starts_later: bool
    model_return: float
    model_sharpe: float
    trades: int
    buy_and_hold_return: float
    max_p_value: float
    max_p_baseline: str
    passed: bool  # its own gate: the trader trades it only then

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass(frozen=True)
class BookResult:
    """The book out of sample: its symbols' lines, the portfolio's figures and its gate."""

    first_hour: str
    last_hour: str
    symbols: tuple[SymbolLine, ...]
    model: BookMetrics
    baselines: dict[str, BookMetrics]
    tests: dict[str, BaselineTest]
    gate: Gate

    @property
    def traded(self) -> tuple[str, ...]:
        """The symbols whose own model passed its gate: the only ones the trader trades."""
        return tuple(line.symbol for line in self.symbols if line.passed)

    def as_dict(self) -> dict:
        return {
            "span": {"first_hour": self.first_hour, "last_hour": self.last_hour},
            "symbols": [line.as_dict() for line in self.symbols],
            "traded": list(self.traded),
            "portfolio": {
                "model": self.model.as_dict(),
                "baselines": {name: m.as_dict() for name, m in self.baselines.items()},
                "tests": {name: t.__dict__.copy() for name, t in self.tests.items()},
                "gate": self.gate.as_dict(),
            },
        }


def evaluate_book(
    params: Params, files_of: Callable[[str], SymbolFiles]
) -> tuple[BookResult, pd.DataFrame]:
    """The book from every symbol's evaluate, tune and publish outputs (at files_of(symbol)).

    Returns:
        The book, and its hourly returns (a column for the model and each baseline).

    Raises:
        KlinecastError: a symbol's outputs are missing or unreadable (the message names it).
    """
    book = Book(params)
    weights = book.weights
    predictions, cards, lines = {}, {}, []
    for symbol in book.symbols:
        files = files_of(symbol)
        predictions[symbol] = _read(files.predictions, symbol, pd.read_parquet)
        cards[symbol] = card = _read(files.metrics, symbol, Scorecard.read)
        receipt = _read(files.receipt, symbol, _json)
        span = _read(files.best_params, symbol, _json).get("data", {})
        significance = card.significance
        lines.append(
            SymbolLine(
                symbol=symbol,
                weight=weights[symbol],
                first_usable_hour=span.get("first_usable_hour"),
                starts_later=bool(span.get("starts_later")),
                model_return=card.model.cumulative_return,
                model_sharpe=card.model.sharpe,
                trades=card.model.trades,
                buy_and_hold_return=card.baselines["buy_and_hold"].cumulative_return,
                max_p_value=significance.max_p_value,
                max_p_baseline=significance.max_p_baseline,
                passed=bool(receipt["gate"]["passed"]),
            )
        )
    combined = sorted(set.intersection(*(set(card.baselines) for card in cards.values())))
    # a meta-labelled symbol's own primary (primary_<feature>) is a baseline of that symbol
    # alone when the others chose another or none: the book is held to those all of them have
    declared = sorted(
        {name for card in cards.values() for name in card.significance.declared} & set(combined)
    )
    returns = portfolio.combine(predictions, weights, combined)
    tests = portfolio.tests_against_baselines(
        returns, declared, reps=params.backtest.bootstrap_reps, seed=params.tune.seed
    )
    beat, significant, verdicts = significance_conditions(tests, params.publish)
    return (
        BookResult(
            first_hour=returns.index[0].isoformat(),
            last_hour=returns.index[-1].isoformat(),
            symbols=tuple(lines),
            model=portfolio.book_metrics(returns[portfolio.MODEL].to_numpy()),
            baselines={name: portfolio.book_metrics(returns[name].to_numpy()) for name in combined},
            tests=tests,
            gate=Gate((beat, significant), verdicts),
        ),
        returns,
    )


def _read(path: Path, symbol: str, reader):
    if not path.exists():
        raise KlinecastError(
            f"{symbol}: {path} does not exist; run `dvc repro` (its evaluate and publish stages) first"
        )
    try:
        return reader(path)
    except KlinecastError as exc:
        raise KlinecastError(f"{symbol}: {exc}") from None
    except Exception as exc:  # a damaged Parquet or JSON file raises several unrelated types
        raise KlinecastError(f"{symbol}: {path} is not readable: {exc}") from None


def _json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def render(book: BookResult, returns: pd.DataFrame) -> str:
    """The book's page: the symbols, the portfolio against the baselines, both gates, and the
    equity curves, in one self-contained HTML file."""
    import matplotlib

    matplotlib.use("Agg")
    verdict = "passed" if book.gate.passed else "refused"
    traded = ", ".join(book.traded) or "none"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in book.gate.reasons())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>klinecast: the book</title>
{REPORT_STYLE}</head><body>
<h1>klinecast: the book of {len(book.symbols)} symbol(s)</h1>
<p>Out of sample {book.first_hour[:10]} .. {book.last_hour[:10]}, after costs, each symbol
with its own model and rule, capital split at the start as portfolio.weights says, each symbol's share then compounding
on its own (never rebalanced).</p>
<p class="{'pass' if book.gate.passed else 'fail'}">The portfolio gate <b>{verdict}</b>.
The trader trades only the symbols whose own model passed its gate: <b>{html.escape(traded)}</b>.</p>
<ul>{reasons}</ul>
<h2>Symbols</h2>{_symbols_table(book)}
<h2>The portfolio against the baselines, combined the same way</h2>{_book_table(book)}
<h2>Equity after costs</h2>{img(_equity_plot(returns))}
</body></html>
"""


def _symbols_table(book: BookResult) -> str:
    head = ["symbol", "weight", "data from", "model", "Sharpe", "changes", "buy and hold",
            "largest p (baseline)", "its gate"]  # fmt: skip
    rows = []
    for line in book.symbols:
        start = (line.first_usable_hour or "-")[:16].replace("T", " ")
        if line.starts_later:
            start += " (after in_sample_start: trained from its first usable hour)"
        cells = [
            f"{line.weight:.0%}", html.escape(start), f"{line.model_return:+.1%}",
            f"{line.model_sharpe:+.2f}", str(line.trades), f"{line.buy_and_hold_return:+.1%}",
            f"{line.max_p_value:.3f} ({html.escape(line.max_p_baseline)})",
            "<span class='pass'>passed</span>" if line.passed else "<span class='fail'>refused</span>",
        ]  # fmt: skip
        rows.append(f"<tr><td>{line.symbol}</td>{''.join(f'<td>{c}</td>' for c in cells)}</tr>")
    return _table(head, rows)


def _book_table(book: BookResult) -> str:
    head = ["", "after costs", "Sharpe", "max drawdown", "excess of the model", "p-value"]
    m = book.model
    rows = [
        f"<tr class='model'><td>the book's models</td><td>{m.cumulative_return:+.1%}</td>"
        f"<td>{m.sharpe:+.2f}</td><td>{m.max_drawdown:.1%}</td><td></td><td></td></tr>"
    ]
    for name, b in book.baselines.items():
        test = book.tests.get(name)
        excess = f"{test.excess_return:+.1%}" if test else "(not declared)"
        p_value = f"{test.p_value:.3f}" if test else ""
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{b.cumulative_return:+.1%}</td>"
            f"<td>{b.sharpe:+.2f}</td><td>{b.max_drawdown:.1%}</td><td>{excess}</td>"
            f"<td>{p_value}</td></tr>"
        )
    return _table(head, rows)


def _table(head: list[str], rows: list[str]) -> str:
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def _equity_plot(returns: pd.DataFrame) -> bytes:
    import matplotlib.pyplot as plt

    equity = (1.0 + returns).cumprod()
    fig, axis = plt.subplots(figsize=(11, 5))
    for name in equity.columns:
        axis.plot(equity.index, equity[name], label=name, lw=2.2 if name == "model" else 1)
    axis.set_yscale("log")
    axis.set_ylabel("equity (log scale)")
    axis.legend(loc="best", fontsize=8)
    axis.grid(alpha=0.3)
    return png(fig)
